"""What the dashboard and REST routers keep between requests (app.state.dashboard):

the published scoring model (re-loaded when its file changes), short-lived caches of filter
values, and the one background backtest job.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..model.load import Model

if TYPE_CHECKING:
    from ..project import Project

log = logging.getLogger("leadrefinery.dashboard")


@dataclass
class BacktestJob:
    running: bool = False
    started_at: float | None = None
    error: str | None = None


@dataclass
class DashboardState:
    project: Project
    _model: Model | None = None
    _model_key: tuple[object, ...] | None = None
    _cache: dict[str, tuple[float, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    backtest: BacktestJob = field(default_factory=BacktestJob)

    @property
    def engine(self):
        return self.project.engine

    def model(self) -> Model:
        """The published model; re-validated only when its file changed."""
        path = self.project.model_path(None)
        try:
            st = path.stat()
            key: tuple[object, ...] = (str(path), st.st_mtime_ns, st.st_size)
        except OSError:
            key = (str(path), None, None)
        if self._model is None or key != self._model_key:
            with self._lock:
                self._model = self.project.model(None)
                self._model_key = key
        return self._model

    def cached(self, key: str, ttl: float, make):
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit and hit[0] > now:
            return hit[1]
        value = make()
        self._cache[key] = (now + ttl, value)
        return value

    def start_backtest(self, **options: Any) -> bool:
        """Run the backtest in a background thread; False if one is already running."""
        from ..report.model_report import run_backtest

        with self._lock:
            if self.backtest.running:
                return False
            self.backtest = BacktestJob(running=True, started_at=time.time())

        def work() -> None:
            try:
                run_backtest(self.project, **options)
            except Exception as exc:  # noqa: BLE001 - shown on the page
                log.exception("backtest failed")
                self.backtest.error = f"{type(exc).__name__}: {exc}"
            finally:
                self.backtest.running = False

        threading.Thread(target=work, name="backtest", daemon=True).start()
        return True
