"""`IngestService`: the durable ingestion machinery the HTTP app holds.

It ties the append-only log (`wal.py`) to the thread that loads it into the store
(`loader_thread.py`) and keeps the list of `on_loaded(person_ids, report)` hooks that run after
each micro-batch commits — the place for real-time rescoring to plug in:

    service = app.state.ingest
    service.on_loaded.append(lambda person_ids, report: rescore(person_ids))
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..ingest.loader import check_ingests
from .loader_thread import LogLoader, OnLoaded
from .wal import DEFAULT_SEGMENT_BYTES, IngestLog

if TYPE_CHECKING:
    from ..project import Project

log = logging.getLogger("leadrefinery.serve")

LOG_DIR = "log"


class IngestService:
    def __init__(
        self,
        project: Project,
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        load_interval: float | None = None,
        max_load_bytes: int = 16 * 1024 * 1024,
        loader_nice: int = 0,
    ) -> None:
        self.project = project
        cfg = project.settings.server
        self.on_loaded: list[OnLoaded] = []
        # real time's hot lane (act/realtime.py) sets both: a fresh picker per request, shown
        # every message it logs, and where its picks go once the request is durable
        self.picker: Callable[[], Any] | None = None
        self.received: Callable[[list[Any]], None] = lambda items: None
        self.log = IngestLog(project.root / LOG_DIR, segment_bytes=segment_bytes,
                             on_durable=self._durable)
        self.loader = LogLoader(
            project.engine,
            project.settings,
            self.log,
            interval=cfg.load_interval_ms / 1000 if load_interval is None else load_interval,
            max_batch_bytes=max_load_bytes,
            on_loaded=self.on_loaded,
            nice=loader_nice,
        )
        self.write_keys: dict[str, str] = dict(cfg.write_keys)
        self.started_at: float | None = None
        self.stopped = False
        self.messages = 0  # messages acknowledged by this process
        self.loop_lag: deque[float] = deque(maxlen=4096)
        self.request_seconds: deque[float] = deque(maxlen=4096)  # accepted requests, in server
        self.durable_seconds: deque[float] = deque(maxlen=4096)  # of which: waiting for fsync

    def _durable(self) -> None:
        self.loader.wake()

    def start(self) -> None:
        """Open the log (replaying what an earlier run left unloaded) and start loading."""
        if self.started_at is not None:
            return
        check_ingests(self.project.engine)  # before a request is acknowledged
        self.loader.read_offsets()
        self.log.open(first_free=max(self.loader.offsets, default=0) + 1)
        try:
            self.loader.start()
        except BaseException:
            self.log.close()
            raise
        self.started_at = time.time()

    def stop(self, timeout: float = 60.0) -> None:
        """Acknowledge what is queued, load the tail (bounded by `timeout`), stop the threads."""
        if self.started_at is None or self.stopped:
            return
        self.stopped = True
        self.log.close()
        self.loader.stop(timeout)

    async def watch_event_loop(self, every: float = 0.01) -> None:
        """Record how late the event loop wakes up (`/health` loop_lag_ms): the time a
        request can wait before its handler even starts (CPU or GIL contention)."""
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(every)
            self.loop_lag.append(max(0.0, loop.time() - t - every))

    def source_for(self, write_key: str | None) -> str | None:
        return self.write_keys.get(write_key) if write_key else None

    async def append(self, line: bytes, messages: int) -> None:
        """Durably log one request; returns once it is fsync'd (then it may be acknowledged)."""
        began = time.perf_counter()
        await self.log.append_async(line)
        self.durable_seconds.append(time.perf_counter() - began)
        self.messages += messages

    def health(self, *, counts: bool = True) -> dict[str, Any]:
        written, loaded = self.log.written, self.loader.loaded
        st = self.loader.stats
        alive = self.loader._thread is not None and self.loader._thread.is_alive()
        lag = max(0, written - loaded)
        if not alive and not self.stopped:
            status = "error"  # the loader thread is gone: nothing more reaches the store
        elif st.failing:
            status = "degraded"  # acknowledging, but loading fails (see last_error); retrying
        elif lag:
            status = "loading"
        else:
            status = "ok"
        out: dict[str, Any] = {
            "status": status,
            "pid": os.getpid(),
            "uptime_seconds": round(time.time() - self.started_at, 3) if self.started_at else 0,
            "log": {
                "written_bytes": written,
                "loaded_bytes": loaded,
                "lag_bytes": lag,
                "segments": len(self.log.segments()),
                "acknowledged_requests": self.log.appends,
                "acknowledged_messages": self.messages,
                "group_commits": self.log.fsyncs,
                "torn_bytes_set_aside": self.log.torn_bytes,
                "commit_ms": _percentiles(self.log.commit_seconds),
                "loop_lag_ms": _percentiles(self.loop_lag),
                "request_ms": _percentiles(self.request_seconds),
                "durable_ms": _percentiles(self.durable_seconds),
            },
            "loader": {
                "micro_batches": st.batches,
                "lines": st.lines,
                **{k: getattr(st.report, k)
                   for k in ("read", "stored", "duplicates", "quarantined")},
                "last_batch_seconds": round(st.last_batch_seconds, 4),
                "batch_ms": _percentiles(st.batch_seconds),
                "last_loaded_at": st.last_loaded_at,
                "errors": st.errors,
                "failing": st.failing,
                "last_error": st.last_error,
            },
        }
        if counts:
            e = self.project.engine
            out["counts"] = {
                t: e.scalar(f"SELECT count(*) FROM {t}")
                for t in ("events", "people", "accounts", "quarantine")
            }
        return out


def _percentiles(seconds) -> dict[str, float]:
    """p50/p99/max in milliseconds of recent durations (empty dict if none yet)."""
    xs = sorted(seconds)
    if not xs:
        return {}
    return {
        "p50": round(xs[len(xs) // 2] * 1000, 2),
        "p99": round(xs[min(len(xs) - 1, int(len(xs) * 0.99))] * 1000, 2),
        "max": round(xs[-1] * 1000, 2),
    }
