"""Segment-compatible tracking API: `POST /v1/identify|track|page|screen|group|alias|batch`.

Existing Segment and RudderStack client libraries work unchanged when pointed at the server:

* auth: the write key as HTTP Basic user name (empty password) or `writeKey` in the body;
  keys map to source names in `[server].write_keys`; a missing/unknown key is a 401;
* bodies may be gzip'd (`Content-Encoding: gzip`); a message may hold 32 KB and a batch 500 KB
  (`[server].max_message_bytes`, `max_batch_bytes`), as sent, else 400 `payload_too_large`;
* every message is validated (`ingest.segment.validate`, the same rules as file ingestion); one
  bad message rejects its request with 400 `{code, message, field, index}`;
* batch-level `context` / `integrations` are merged into each message (the message's own keys
  win), `receivedAt` is set to the server's clock and a missing `messageId` gets a uuid4;
* the request is acknowledged (`200 {"success": true}`) only once its messages are in the
  fsync'd ingestion log (`wal.py`); the store loads them a moment later (`GET /health` shows
  the lag). Duplicate `messageId`s are stored once.

Request parsing is plain functions (`read_body`, `parse_body`, `prepare_lines`) so tests and
benchmarks can use them without a server.
"""

from __future__ import annotations

import base64
import binascii
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from ..errors import AuthError, InputError, MessageError
from ..ingest.segment import parse_time, validate
from .service import IngestService

router = APIRouter(tags=["ingest (Segment tracking API)"])

# path -> message type ("batch" for envelopes); the one-letter forms are analytics.js' aliases
ENDPOINTS: dict[str, str] = {
    "batch": "batch", "track": "track", "identify": "identify", "page": "page", "screen": "screen",
    "group": "group", "alias": "alias", "import": "batch",
    "i": "identify", "t": "track", "p": "page", "s": "screen", "g": "group", "a": "alias",
    "b": "batch",
}
SUCCESS = b'{"success":true}'
GZIP_ENCODINGS = {"gzip", "x-gzip"}
MERGED = ("context", "integrations")  # batch-level fields merged into each message


def _too_large(what: str, limit: int) -> InputError:
    return InputError(
        f"{what} is larger than the {limit // 1024} KB limit; send smaller batches",
        code="payload_too_large",
    )


def _at(exc: MessageError, index: int) -> MessageError:
    out = MessageError(f"batch[{index}]: {exc.message}", field=exc.field,
                       message_id=exc.message_id)
    out.code = exc.code
    out.index = index  # type: ignore[attr-defined]
    return out


def write_key_from_header(authorization: str | None) -> str | None:
    """The write key of an `Authorization: Basic base64(key:)` header (None if absent)."""
    if not authorization:
        return None
    scheme, _, cred = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None  # e.g. a Bearer token: fall back to `writeKey` in the body
    try:
        user = base64.b64decode(cred.strip(), validate=True).decode("utf-8").partition(":")[0]
    except (binascii.Error, UnicodeDecodeError):
        raise AuthError("malformed HTTP Basic Authorization header") from None
    return user or None


async def read_body(request: Request, limit: int, what: str = "the batch") -> bytes:
    """The request body, gunzipped when `Content-Encoding: gzip`; 400 beyond `limit` bytes."""
    raw_limit = limit + 1024  # a gzip'd body may be a little larger than its content
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > raw_limit:
        raise _too_large(what, limit)
    chunks, n = [], 0
    async for chunk in request.stream():
        n += len(chunk)
        if n > raw_limit:
            raise _too_large(what, limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding in GZIP_ENCODINGS or (encoding == "" and body[:2] == b"\x1f\x8b"):
        body = gunzip(body, limit, what)
    elif encoding not in ("", "identity"):
        raise InputError(f"unsupported Content-Encoding {encoding!r}; use gzip or none",
                         code="unsupported_encoding")
    if len(body) > limit:
        raise _too_large(what, limit)
    return body


def gunzip(body: bytes, limit: int, what: str = "the batch") -> bytes:
    d = zlib.decompressobj(wbits=31)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InputError(f"the body is not valid gzip: {exc}", code="invalid_gzip") from None
    if len(out) > limit:
        raise _too_large(what, limit)
    if not d.eof:
        raise InputError("the gzip body is truncated", code="invalid_gzip")
    return out


def parse_body(body: bytes) -> dict[str, Any]:
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"the body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(obj, dict):
        raise InputError("the body must be a JSON object", code="invalid_json")
    return obj


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def prepare_lines(
    obj: dict[str, Any],
    kind: str,
    *,
    source: str,
    body_bytes: int,
    max_message_bytes: int,
    received_at: str,
    each: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[bytes, int]:
    """Validate and enrich the messages of one request (a message, or a batch envelope);
    return their log lines (see `encode_lines`) and how many there are. `each` sees every
    enriched message (the real-time hot lane's picker).

    One pass per message: validate, copy into the tagged/enriched line, serialise once.
    """
    if kind != "batch":
        if body_bytes > max_message_bytes:
            raise _too_large("the message", max_message_bytes)
        obj["type"] = kind  # the endpoint decides the type
        items: Any = [obj]
        merged: list[tuple[str, dict]] = []
        sent_at = None
    else:
        items = obj.get("batch")
        if not isinstance(items, list):
            raise MessageError("field 'batch' must be an array of messages", field="batch")
        merged = []
        for f in MERGED:
            value = obj.get(f)
            if value is not None:
                if not isinstance(value, dict):
                    raise MessageError(f"batch field '{f}' must be an object", field=f)
                if value:
                    merged.append((f, value))
        sent_at = obj.get("sentAt")
        if sent_at is not None and parse_time(sent_at) is None:
            raise MessageError(f"field 'sentAt' must be an ISO-8601 time (got {sent_at!r})",
                               field="sentAt")
    lines = []
    for i, m in enumerate(items):
        try:
            m = validate(m)
        except MessageError as exc:
            raise (_at(exc, i) if kind == "batch" else exc) from None
        e = {"_source": source, **m}
        e["_source"] = source  # first, and ours even if the client sent one
        e.pop("writeKey", None)
        if not e.get("messageId"):
            e["messageId"] = str(uuid4())
        e["receivedAt"] = received_at
        for f, value in merged:
            own = m.get(f)
            e[f] = value if not own else {**value, **own}
        if sent_at is not None and "sentAt" not in e:
            e["sentAt"] = sent_at
        line = orjson.dumps(e, option=orjson.OPT_APPEND_NEWLINE)
        # the limit is on the message as sent; the line is only a little larger, so measure
        # the message itself only when the line is over the limit
        if len(line) > max_message_bytes and len(orjson.dumps(m)) > max_message_bytes:
            too_big = MessageError(
                f"the message is larger than the {max_message_bytes // 1024} KB limit",
                field="", message_id=m.get("messageId"),
            )
            too_big.code = "payload_too_large"
            raise _at(too_big, i)
        lines.append(line)
        if each is not None:
            each(e)
    return b"".join(lines), len(lines)


def encode_lines(source: str, messages: list[dict[str, Any]]) -> bytes:
    """Log lines of messages as the server writes them: one per line, tagged with the source.

    `{"_source":"web","type":"track",...}` — the tag goes first so the loader can group lines
    by source without parsing them; ingestion ignores the unknown field, so a log segment is
    also valid input for `leadrefinery ingest`.
    """
    return b"".join(
        orjson.dumps({"_source": source, **m}, option=orjson.OPT_APPEND_NEWLINE) for m in messages
    )


async def handle(request: Request, kind: str) -> Response:
    began = time.perf_counter()
    service: IngestService = request.app.state.ingest
    cfg = request.app.state.project.settings.server
    header_key = write_key_from_header(request.headers.get("authorization"))
    source = service.source_for(header_key)
    if header_key is not None and source is None:
        raise AuthError("unknown write key")
    if kind == "batch":
        body = await read_body(request, cfg.max_batch_bytes, "the batch")
    else:
        body = await read_body(request, cfg.max_message_bytes, "the message")
    obj = parse_body(body)
    if source is None:
        key = obj.get("writeKey")
        source = service.source_for(key) if isinstance(key, str) else None
        if source is None:
            raise AuthError(
                "unknown write key" if key else
                "missing write key: send it as the HTTP Basic user name or as `writeKey`"
            )
    picker = service.picker() if service.picker is not None else None
    args = dict(source=source, body_bytes=len(body), max_message_bytes=cfg.max_message_bytes,
                received_at=now_iso(), each=picker)
    if len(body) > 256 * 1024:  # a big batch: keep the event loop free for other requests
        lines, n = await run_in_threadpool(prepare_lines, obj, kind, **args)
    else:
        lines, n = prepare_lines(obj, kind, **args)
    if n:
        await service.append(lines, n)
        if picker is not None and picker.hits:  # durable now: the hot and warm lanes go ahead
            service.received(picker.items())
    service.request_seconds.append(time.perf_counter() - began)
    return Response(SUCCESS, media_type="application/json")


def _endpoint(kind: str):
    async def endpoint(request: Request) -> Response:
        return await handle(request, kind)

    endpoint.__name__ = f"ingest_{kind}"
    return endpoint


# Plain Starlette routes: the hot path skips FastAPI's per-request dependency solving (about a
# third of a request's cost here); errors still go through the app's exception handlers.
for _path, _kind in ENDPOINTS.items():
    router.routes.append(
        Route(f"/v1/{_path}", _endpoint(_kind), methods=["POST"], name=f"ingest_{_path}")
    )


@router.get("/health")
@router.get("/v1/health")
def health(request: Request) -> dict[str, Any]:
    """Whether ingestion is healthy: log written vs loaded (lag), loader stats, row counts."""
    return request.app.state.ingest.health()
