"""The HTTP application: `create_app(project)` builds it; routers add the endpoints.

    app = create_app(project)          # FastAPI; app.state.project, app.state.ingest
    app.state.ingest.on_loaded.append(hook)   # runs after each loaded micro-batch

Every `LeadRefineryError` becomes a JSON `{code, message, ...}` response with the error class's
HTTP status (one mapping, here), which is what Segment clients expect from a tracking API.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import AuthError, LeadRefineryError, NotFound, StoreBusy
from .service import IngestService

if TYPE_CHECKING:
    from ..project import Project

log = logging.getLogger("leadrefinery.serve")

# error class -> `code` in the JSON body, when the error carries none of its own
ERROR_CODES: dict[type[LeadRefineryError], str] = {
    AuthError: "unauthorized",
    NotFound: "not_found",
    StoreBusy: "store_busy",
}
CONTEXT_FIELDS = ("field", "index", "message_id", "file", "line", "rule", "key")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def error_body(exc: LeadRefineryError) -> dict[str, Any]:
    code = getattr(exc, "code", None)
    if not code:
        known = (c for cls, c in ERROR_CODES.items() if isinstance(exc, cls))
        code = next(known, _snake(type(exc).__name__))
    body: dict[str, Any] = {"code": code, "message": exc.message}
    for k in CONTEXT_FIELDS:
        v = getattr(exc, k, None)
        if v not in (None, ""):
            body[k] = v
    return body


def create_app(
    project: Project,
    *,
    service: IngestService | None = None,
    **service_options: Any,
) -> FastAPI:
    """The app for `project`. `service_options` go to `IngestService` (segment size, ...)."""
    ingest_service = service or IngestService(project, **service_options)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ingest_service.start()  # no-op when `serve` already started it
        app.state.realtime.start()  # live rescoring, triggers, alert delivery (act/realtime.py)
        monitor = asyncio.create_task(ingest_service.watch_event_loop())
        try:
            yield
        finally:
            monitor.cancel()
            await run_in_threadpool(ingest_service.stop)
            await run_in_threadpool(app.state.realtime.stop)  # after the log's tail is loaded

    app = FastAPI(
        title="Lead Refinery",
        version=__version__,
        description="Segment-compatible event ingestion (`/v1/*`) for Lead Refinery.",
        lifespan=lifespan,
    )
    app.state.project = project
    app.state.ingest = ingest_service

    @app.exception_handler(LeadRefineryError)
    async def lead_refinery_error(request: Request, exc: LeadRefineryError) -> JSONResponse:
        headers = None
        if exc.http_status == 401:
            headers = {"WWW-Authenticate": 'Basic realm="leadrefinery"'}
        if exc.http_status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(error_body(exc), status_code=exc.http_status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _snake(re.sub(r"\W+", "", str(exc.detail).title())) if exc.detail else "error"
        return JSONResponse({"code": code, "message": f"{request.url.path}: {exc.detail}"},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def request_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"code": "invalid_request", "message": f"{where}: {first.get('msg')}",
                             "field": where}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"code": "internal_error", "message": f"{type(exc).__name__}: {exc}"},
                            status_code=500)

    from .ingest import router as ingest_router

    app.include_router(ingest_router)
    from .dashboard import install as install_dashboard  # the web dashboard and /api

    install_dashboard(app, project)
    from ..act.routes import install as install_act  # forms, activities, unsubscribe, triggers

    install_act(app, project, ingest_service)
    return app
