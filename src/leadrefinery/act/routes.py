"""HTTP routes of the acting side, mounted by `api/app.py` (thin: each calls one act function).

    GET  /v1/forms/{form}/fields?person=ID|EMAIL[&asset_value=N]   act.profiling.form_fields
    POST /v1/activities        CRM feedback (write key)             act.sla.record_activities
    GET  /v1/unsubscribe?token=T   a confirmation page               act.nurture.unsubscribe
    POST /v1/unsubscribe?token=T   unsubscribe (also an RFC 8058 one-click POST)
    GET  /v1/realtime          real-time rescoring and delivery stats (act/realtime.py)

`POST /v1/activities` takes a JSON list of activities (or `{"activities": [...]}`), each
`{person_id, kind, at, rep?, reason?, opportunity_id?, amount?, activity_id?}`, authenticated
like ingestion: a write key of `[server].write_keys` as the HTTP Basic user name (the CRM
integration gets its own key and source name). It answers `{"stored": N}`.
"""

from __future__ import annotations

import base64
import binascii
import html
from typing import Any
from urllib.parse import parse_qs

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ..errors import AuthError, InputError, LeadRefineryError

router = APIRouter(tags=["acting: forms, CRM feedback, unsubscribe"])


def _project(request: Request) -> Any:
    return request.app.state.project


def _write_key_source(request: Request) -> str:
    """The source name of the request's write key (HTTP Basic user name); 401 if none."""
    auth = request.headers.get("authorization") or ""
    scheme, _, cred = auth.partition(" ")
    key = None
    if scheme.lower() == "basic":
        try:
            key = base64.b64decode(cred.strip(), validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            raise AuthError("malformed HTTP Basic Authorization header") from None
    if not key:
        raise AuthError("missing write key: send it as the HTTP Basic user name")
    source = _project(request).settings.server.write_keys.get(key)
    if source is None:
        raise AuthError("unknown write key")
    return source


@router.get("/v1/forms/{form}/fields")
def form_fields_route(form: str, request: Request, person: str | None = None,
                      asset_value: str | None = None) -> dict[str, Any]:
    """Which questions a form should ask this visitor (progressive profiling)."""
    from .profiling import form_fields

    p = _project(request)
    value: float | str | None = asset_value
    if asset_value is not None:
        try:
            value = float(asset_value)
        except ValueError:
            value = asset_value  # a named value of [profiling].values
    return form_fields(p.engine, p.settings, form, person, value)


@router.post("/v1/activities")
async def activities_route(request: Request) -> JSONResponse:
    """Store CRM feedback (accepted, rejected, touched, opportunity, won, lost)."""
    from starlette.concurrency import run_in_threadpool

    from .sla import record_activities

    source = _write_key_source(request)
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise InputError(f"the body is not valid JSON: {exc}", code="invalid_json") from None
    rows = body.get("activities") if isinstance(body, dict) else body
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise InputError("send a JSON list of activities (or {\"activities\": [...]})",
                         field="activities")
    p = _project(request)
    n = await run_in_threadpool(record_activities, p.engine, rows, source=source)
    return JSONResponse({"stored": n})


_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<style>body{{font:16px system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}}
button{{font:inherit;padding:.5rem 1rem}}</style></head>
<body><h1>{title}</h1>{body}</body></html>"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=html.escape(title), body=body), status_code=status)


def _read_token(secret: str, token: str) -> tuple[str, str]:
    from .nurture import read_unsubscribe_token

    return read_unsubscribe_token(secret, token)


@router.get("/v1/unsubscribe", response_class=HTMLResponse)
def unsubscribe_page(request: Request, token: str = "") -> HTMLResponse:
    """The page an unsubscribe link opens: what it does, and a button (a GET changes nothing:
    mail scanners follow links)."""
    from .nurture import unsubscribe_secret

    p = _project(request)
    try:
        _, category = _read_token(unsubscribe_secret(p.root), token)
    except LeadRefineryError as exc:
        return _page("Unsubscribe", f"<p>{html.escape(exc.message)}</p>", 400)
    what = "all e-mail from us" if category == "*" else f"e-mail about {category}"
    return _page("Unsubscribe", (
        f"<p>Stop receiving {html.escape(what)}?</p>"
        f'<form method="post" action="/v1/unsubscribe?token={html.escape(token, quote=True)}">'
        '<button type="submit">Unsubscribe</button></form>'))


@router.post("/v1/unsubscribe")
async def unsubscribe_route(request: Request, token: str = "") -> Response:
    """Unsubscribe (the confirmation form, or a mail client's one-click POST)."""
    from starlette.concurrency import run_in_threadpool

    from .nurture import unsubscribe, unsubscribe_secret

    if not token:
        raw = (await request.body()).decode("utf-8", errors="replace")
        token = (parse_qs(raw).get("token") or [""])[0]
    p = _project(request)
    try:
        _, category = await run_in_threadpool(unsubscribe, p.engine, unsubscribe_secret(p.root),
                                              token)
    except AuthError as exc:
        if "json" in request.headers.get("accept", ""):
            raise
        return _page("Unsubscribe", f"<p>{html.escape(exc.message)}</p>", 400)
    if "json" in request.headers.get("accept", ""):
        return JSONResponse({"unsubscribed": True, "category": category})
    what = "any more e-mail" if category == "*" else f"e-mail about {category}"
    return _page("Unsubscribed", f"<p>Done: you will not receive {html.escape(what)}.</p>")


@router.get("/v1/realtime")
def realtime_route(request: Request) -> dict[str, Any]:
    """Real-time rescoring: pending people, batches, alerts, sweeps, delivery."""
    rt = getattr(request.app.state, "realtime", None)
    return rt.health() if rt is not None else {"enabled": False}


def install(app: Any, project: Any, ingest_service: Any) -> Any:
    """Mount the routes, build the live path and hook it to ingestion; returns the
    `Realtime` (started and stopped by the app's lifespan)."""
    from .realtime import Realtime

    realtime = Realtime.for_project(project, nice=getattr(ingest_service.loader, "nice", 0))
    loader = ingest_service.loader
    realtime.progress = lambda: (loader.stats.batches, loader.stats.lines)
    realtime._hooked = realtime.progress()  # nothing loaded yet: caught up
    realtime.received_through = lambda: loader.received_through
    # behind: anything acknowledged but not loaded yet — a rescoring batch slows the loader
    # (and so the fast lane's alerts) for its whole length, so it starts once the loader is
    # caught up (or after `[triggers] yield_seconds`)
    realtime.ingest_behind = lambda: loader.pending() > 0
    ingest_service.on_loaded.append(realtime.on_loaded)
    loader.in_transaction.append(realtime.act_in_load)  # the fast lane, with the events
    realtime.acted_in_load = lambda: loader.in_transaction_ran
    loader.after_transaction.append(realtime.load_ended)
    realtime.load_began = lambda: loader.transaction_began
    hot = realtime.fast_lane and project.settings.triggers.hot_lane  # see act/realtime.py
    if hot or realtime.warm_lane:
        from .received import ActionWatch, Picker

        watch = ActionWatch(realtime.triggers.of_kind("action") if hot else [],
                            realtime.scorer.live_rules.tracks if hot else frozenset())
        ingest_service.picker = lambda: Picker(watch, realtime.recent, realtime.near)
        ingest_service.received = realtime.on_received
    app.state.realtime = realtime
    app.include_router(router)
    return realtime
