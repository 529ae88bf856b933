"""`leadrefinery serve`: run the app under uvicorn and own the store while it runs.

DuckDB allows one writing process, so the server holds the store; `serve.json` in the project
(pid and URL) lets other commands say who holds it (`Project._owner_hint`). It is removed on a
clean stop; after a crash it is stale and simply overwritten by the next `serve`.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from ..act.threads import lower_priority, other_threads
from ..project import SERVE_LOCK
from .app import create_app

LOADER_NICE = 10  # the loader and DuckDB's threads run this much nicer than the event loop
# Seconds a thread may hold the GIL while another waits (default 5 ms). bench_realtime, rescoring
# on, 3 interleaved pairs: request p99 41-56 ms at 1 ms against 43-87 ms at 0.5 ms (each hand-off
# costs the lanes' threads too); 2 and 5 ms were worse in earlier runs.
SWITCH_INTERVAL = 0.001
# A garbage collection holds the GIL throughout, and the live lanes allocate hundreds of
# thousands of objects per batch: at the default thresholds (700, 10, 10) the collections they
# set off pause the request loop again and again. (Reading 20 k people's stored states: the
# longest pause of another thread 56 -> 24 ms, the step 25 % faster.)
GC_THRESHOLD = (50_000, 50, 1000)

if TYPE_CHECKING:
    from ..project import Project


def _setup_logging(level: str) -> None:
    logger = logging.getLogger("leadrefinery")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level.upper())


class _Stopped(BaseException):
    """Raised by our SIGINT/SIGTERM handlers, which uvicorn re-raises after its own shutdown."""


def _stop(signum: int, frame: object) -> None:
    raise _Stopped(signum)


def serve(
    project: Project,
    *,
    host: str | None = None,
    port: int | None = None,
    log_level: str = "info",
    access_log: bool = False,
    announce=None,
    **service_options: Any,
) -> None:
    """Serve `project` until SIGINT/SIGTERM; load the log's tail before returning."""
    import uvicorn

    _setup_logging(log_level)
    cfg = project.settings.server
    host = host or cfg.host
    port = cfg.port if port is None else port
    url = cfg.public_url or f"http://{host}:{port}"
    project.engine  # noqa: B018 - open (and lock) the store now: a clear StoreBusy if it is taken
    if project.engine.dialect == "duckdb":  # see `[server] checkpoint_mb`
        project.engine.execute(f"SET checkpoint_threshold = '{int(cfg.checkpoint_mb)}MB'")
    # requests first: the store's worker threads (started with it) and the loader run niced
    lower_priority(LOADER_NICE, *other_threads())
    service_options.setdefault("loader_nice", LOADER_NICE)
    app = create_app(project, **service_options)
    service = app.state.ingest
    service.start()
    lock = project.root / SERVE_LOCK
    lock.write_text(json.dumps({"pid": os.getpid(), "url": url, "started_at": time.time()}))
    # everything loaded so far lives as long as the server: keep it out of the collector's
    # full passes, which would otherwise pause request handling now and then
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
    # The log writer (fsync, then acknowledge) and the loader each need the GIL for a moment
    # between their system calls; with the default 5 ms switch interval they can wait that
    # long behind request parsing on the event loop. Acknowledgements are latency-bound.
    sys.setswitchinterval(SWITCH_INTERVAL)
    if announce:
        announce(url, service)
    try:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            access_log=access_log,
            timeout_graceful_shutdown=10,
            server_header=False,
        )
        # uvicorn handles the signal (graceful shutdown), then re-raises it to the handler
        # installed before it started: ours turns it into a clean return instead of a kill
        previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            uvicorn.Server(config).run()
        except _Stopped:
            pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        service.stop()
        try:
            if json.loads(lock.read_text()).get("pid") == os.getpid():
                lock.unlink()
        except (OSError, ValueError):
            pass
        project.close()
        gc.unfreeze()  # let the interpreter's exit clean up what was frozen
        gc.collect()
