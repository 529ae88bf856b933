"""Writing the demo files: Segment JSON Lines for the events, CSV for the CRM side.

Events are rendered a chunk at a time without a Python loop per event: each kind of message has a
template (`TEMPLATES`) of literal JSON text and slots; a slot is filled column-wise with Arrow
(timestamps and message ids from fixed-width numpy text, numbers cast to text, names looked up in
tables of pre-encoded JSON values), and the pieces are joined with `binary_join_element_wise`.
Every table value is encoded with orjson, so each line is valid JSON by construction; the unit
tests parse every line to prove it. Two threads render chunks (numpy and Arrow release the GIL)
while a third writes (and gzips) them in order. Message ids derive from the row number, so the
bytes do not depend on the chunking.
"""

from __future__ import annotations

import csv
import gzip as gz
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from . import business as B
from .behaviour import N_MODES, EventTable, Kind
from .formatting import ascii_column, iso_ms, message_ids

CHUNK_ROWS = 200_000
RENDER_THREADS = 2


@dataclass(frozen=True)
class Int:
    """An integer column written as a JSON number."""

    col: str


@dataclass(frozen=True)
class Id:
    """An integer column written as `"<prefix><n>"`, or null when negative."""

    col: str
    prefix: str


@dataclass(frozen=True)
class Look:
    """A column indexing a table of JSON fragments; negative indexes give `null`."""

    col: str
    table: str


TS, MID, IDS = "\0ts", "\0mid", "\0ids"  # chunk-level columns
Part = str | Int | Id | Look

_HEAD = ('{"type":"', None, '","messageId":"', MID, '","timestamp":"', TS, '",', IDS)


def _msg(mtype: str, *rest: Part) -> tuple[Part, ...]:
    return tuple(mtype if p is None else p for p in _HEAD) + rest + ("}\n",)


def _track(event: str, *props: Part) -> tuple[Part, ...]:
    return _msg(
        "track",
        orjson.dumps(event).decode().join((',"event":', ',"properties":')),
        *(props or ("{}",)),
    )


TEMPLATES: dict[Kind, tuple[Part, ...]] = {
    Kind.PAGE: _msg("page", ",", Look("a", "page_head"), Look("b", "referrer"), "}"),
    Kind.PAGE_CAMPAIGN: _msg(
        "page",
        ",",
        Look("a", "page_head"),
        Look("b", "referrer"),
        '},"context":{"campaign":',
        Look("c", "campaign"),
        "}",
    ),
    Kind.IDENTIFY: _msg("identify", ',"traits":', Look("a", "bodies")),
    Kind.GROUP: _msg(
        "group", ',"groupId":', Look("a", "account_id"), ',"traits":', Look("a", "group_traits")
    ),
    Kind.ALIAS: _msg("alias", ',"previousId":', Look("person", "old_user_id")),
    Kind.SIGNED_UP: _track(
        "Signed Up", '{"referral_code":', Look("a", "code"), ',"source":', Look("b", "source"), "}"
    ),
    Kind.LOGGED_IN: _track("Logged In"),
    Kind.ENV_LAUNCHED: _track(
        "Environment Launched",
        '{"environment_id":',
        Id("a", "env-"),
        ',"template":',
        Look("b", "template"),
        ',"guests":',
        Int("c"),
        ',"class_id":',
        Id("d", "cls-"),
        ',"max_duration_minutes":',
        Look("b", "max_duration"),
        "}",
    ),
    Kind.ENV_STOPPED: _track(
        "Environment Stopped",
        '{"environment_id":',
        Id("a", "env-"),
        ',"duration_minutes":',
        Int("b"),
        ',"guests":',
        Int("c"),
        ",",
        Look("d", "stop_tail"),
        "}",
    ),
    Kind.ENV_RESUMED: _track("Environment Resumed", '{"environment_id":', Id("a", "env-"), "}"),
    Kind.EMAIL_OPENED: _track(
        "Email Opened", '{"campaign":', Look("a", "email_campaign"), ',"link":null}'
    ),
    Kind.EMAIL_CLICKED: _track(
        "Email Clicked",
        '{"campaign":',
        Look("a", "email_campaign"),
        ',"link":',
        Look("a", "email_link"),
        "}",
    ),
    Kind.DOCS_PURCHASED: _track("Documentation Purchased", Look("a", "doc")),
    Kind.TRAINING_REGISTERED: _track("Training Registered", '{"course":', Look("a", "course"), "}"),
    Kind.CONTACT_SALES: _track("Contact Sales Requested", '{"topic":', Look("a", "topic"), "}"),
    Kind.SUBSCRIPTION_STARTED: _track(
        "Subscription Started",
        '{"plan":',
        Look("a", "plan"),
        ',"amount":',
        Int("b"),
        ',"currency":"USD","interval":"year"}',
    ),
}


def _j(v: Any) -> str:
    return orjson.dumps(v).decode()


def static_tables() -> dict[str, list[str]]:
    """Catalogue lookups, each value already JSON-encoded."""
    page_head = [
        f'"name":{_j(p.name)},"properties":{{"path":{_j(p.path)},"url":{_j(p.url)},'
        f'"title":{_j(p.title)},"referrer":'
        for p in B.PAGES
    ]
    return {
        "page_head": page_head,
        "referrer": [_j(r) for r in B.REFERRERS],
        "campaign": [
            _j({"source": c.source, "medium": c.medium, "name": c.campaign}) for c in B.CHANNELS
        ],
        "code": [_j(c) for c in B.CODES],
        "source": [_j(s) for s in B.SOURCES],
        "template": [_j(t) for t in B.TEMPLATES],
        "max_duration": [str(int(m)) for m in B.MAX_DURATION],
        "stop_tail": [  # index 2 * template + auto_suspended
            f'"auto_suspended":{_j(bool(auto))},"max_duration_minutes":{int(limit)}'
            for limit in B.MAX_DURATION
            for auto in (0, 1)
        ],
        "email_campaign": [_j(c[0]) for c in B.EMAIL_CAMPAIGNS],
        "email_link": [_j(c[2]) for c in B.EMAIL_CAMPAIGNS],
        "doc": [_j({"title": t, "price": p, "currency": "USD"}) for t, p in B.DOCS],
        "course": [_j(c) for c in B.COURSES],
        "topic": [_j(t) for t in B.CONTACT_TOPICS],
        "plan": [_j(p) for p in B.PLANS],
    }


def run_tables(pop: B.Population, bodies: list[str]) -> dict[str, pa.Array]:
    """Static lookups plus the tables of this run (ids, identify and group payloads)."""
    acc = pop.accounts
    tables: dict[str, Sequence[str] | pa.Array] = dict(static_tables())
    tables["account_id"] = [_j(a) for a in B.account_ids(len(acc))]
    tables["group_traits"] = [
        _j(
            {
                "name": acc.name[i],
                "employees": int(acc.employees[i]),
                "industry": B.INDUSTRIES[acc.industry[i]],
                "website": "https://www." + acc.domain[i],
            }
        )
        for i in range(len(acc))
    ]
    tables["old_user_id"] = [_j(u) for u in pop.old_user_id]
    tables["bodies"] = pa.array(bodies, type=pa.string())
    out: dict[str, pa.Array] = {}
    for name, values in tables.items():
        arr = values if isinstance(values, pa.Array) else pa.array(list(values), pa.string())
        out[name] = pa.concat_arrays([arr, pa.array(["null"], pa.string())])  # index -1 -> null
    # identifiers by (mode, person): see behaviour.Mode
    uid = pa.array(pop.user_id, pa.string())
    old = pa.array(pop.old_user_id, pa.string())
    aid = pa.array(pop.anonymous_id, pa.string())

    def join(*parts: Any) -> pa.Array:
        return pc.binary_join_element_wise(*parts, "")

    anon = join('"anonymousId":"', aid, '"')
    user = join('"userId":"', uid, '"')
    olduser = join('"userId":"', old, '"')
    ids = [anon, user, join(user, ",", anon), olduser, join(olduser, ",", anon)]
    assert len(ids) == N_MODES
    out["ids"] = pa.concat_arrays(ids)
    return out


def _render(
    tbl: EventTable,
    lo: int,
    hi: int,
    tables: dict[str, pa.Array],
    n_people: int,
    key: tuple[int, int],
) -> list[pa.Buffer]:
    """The JSON lines of rows lo..hi, in row order, as contiguous buffers."""
    n = hi - lo
    kind = tbl.kind[lo:hi]
    perm = np.argsort(kind, kind="stable")
    cols = {
        name: getattr(tbl, name)[lo:hi][perm] for name in ("person", "mode", "a", "b", "c", "d")
    }
    bounds = np.searchsorted(kind[perm], np.arange(len(Kind) + 1))
    ts_txt = ascii_column(iso_ms(tbl.ts[lo:hi][perm]))
    mid_txt = ascii_column(message_ids(lo + perm, key))
    ids_idx = cols["mode"].astype(np.int64) * n_people + cols["person"]
    pieces = []
    for k in Kind:
        s, e = int(bounds[k]), int(bounds[k + 1])
        if s == e:
            continue
        parts: list[Any] = []
        for part in TEMPLATES[k]:
            if part == TS:
                parts.append(ts_txt.slice(s, e - s))
            elif part == MID:
                parts.append(mid_txt.slice(s, e - s))
            elif part == IDS:
                parts.append(tables["ids"].take(pa.array(ids_idx[s:e])))
            elif isinstance(part, str):
                parts.append(pa.scalar(part, pa.string()))
            elif isinstance(part, Int):
                parts.append(pc.cast(pa.array(cols[part.col][s:e]), pa.string()))
            elif isinstance(part, Id):
                v = cols[part.col][s:e]
                txt = pc.binary_join_element_wise(
                    '"' + part.prefix, pc.cast(pa.array(v), pa.string()), '"', ""
                )
                parts.append(pc.if_else(pa.array(v < 0), pa.scalar("null"), txt))
            else:
                table = tables[part.table]
                v = cols[part.col][s:e]
                parts.append(table.take(pa.array(np.where(v < 0, len(table) - 1, v))))
        pieces.append(pc.binary_join_element_wise(*parts, ""))
    inv = np.empty(n, dtype=np.int64)
    inv[perm] = np.arange(n)
    lines = pa.chunked_array(pieces).take(pa.array(inv))
    out = []
    for chunk in lines.chunks:
        offsets = np.frombuffer(
            chunk.buffers()[1], dtype=np.int32, count=len(chunk) + 1, offset=4 * chunk.offset
        )
        out.append(chunk.buffers()[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0])))
    return out


def write_events(
    path: Path, tbl: EventTable, pop: B.Population, bodies: list[str], seed: int, *, compress: bool
) -> None:
    """Render and write every event line; the file is byte-identical for the same inputs.

    Chunks are rendered by `RENDER_THREADS` threads (numpy and Arrow release the GIL) and written,
    in order, by one more thread, with a bounded number of chunks in flight.
    """
    tables = run_tables(pop, bodies)
    k1, k2 = (int(k) for k in B.stream(seed, "message-ids").integers(0, 2**63, 2))
    key = (k1, k2)
    raw: IO[bytes] = open(path, "wb")  # noqa: SIM115 - closed below, after the writer thread
    sink: IO[bytes] | gz.GzipFile = raw
    if compress:  # no name, no mtime in the header: byte-identical output
        sink = gz.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=3)

    def write(buffers: list[pa.Buffer]) -> None:
        for buf in buffers:
            sink.write(buf)

    rendering: deque[Future[list[pa.Buffer]]] = deque()
    writing: deque[Future[None]] = deque()
    try:
        with (
            ThreadPoolExecutor(RENDER_THREADS, thread_name_prefix="sample-render") as renderers,
            ThreadPoolExecutor(1, thread_name_prefix="sample-writer") as writer,
        ):
            for lo in range(0, len(tbl), CHUNK_ROWS):
                hi = min(lo + CHUNK_ROWS, len(tbl))
                rendering.append(renderers.submit(_render, tbl, lo, hi, tables, pop.n, key))
                if len(rendering) > RENDER_THREADS:
                    writing.append(writer.submit(write, rendering.popleft().result()))
                while len(writing) > 1:
                    writing.popleft().result()
            while rendering:
                writing.append(writer.submit(write, rendering.popleft().result()))
            while writing:
                writing.popleft().result()
    finally:
        if compress:
            sink.close()
        raw.close()


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    n = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for row in rows:
            w.writerow(row)
            n += 1
    return n
