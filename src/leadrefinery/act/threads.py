"""The background threads of the live path (act/realtime.py's lanes, act/delivery.py's
dispatcher and senders, the server's loader): daemon threads started by name, joined against
one deadline, run below the request handlers.

    t = spawn(self._run, "realtime-triggers")
    done = join_all([t, ...], timeout=30)      # False: some still ran at the deadline
    lower_priority(10)                         # inside a thread: it runs nice 10
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable


def spawn(target: Callable[[], None], name: str) -> threading.Thread:
    """A started daemon thread: one that hangs cannot keep the process from exiting."""
    t = threading.Thread(target=target, name=name, daemon=True)
    t.start()
    return t


def join_all(threads: Iterable[threading.Thread | None], timeout: float) -> bool:
    """Wait for `threads` (None: none) within `timeout` seconds in all; True when every one
    has finished."""
    deadline = time.monotonic() + timeout
    alive = [t for t in threads if t is not None]
    for t in alive:
        t.join(max(0.0, deadline - time.monotonic()))
    return not any(t.is_alive() for t in alive)


def lower_priority(nice: int, *tids: int) -> None:
    """Raise the nice value of threads of this process, the calling one if no `tids` are given
    (Linux: niceness is per thread).

    The server runs the loader, the lanes and DuckDB's own worker threads below the event loop
    and the log writer: acknowledging requests stays fast while they work (they then take
    longer, which `/health` shows as lag).
    """
    for tid in tids or (threading.get_native_id(),):
        # not Linux, or not allowed: only slower, not wrong
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, tid, max(nice, os.getpriority(os.PRIO_PROCESS, tid)))


def other_threads() -> list[int]:
    """Native ids of this process's threads except the calling one (Linux; else empty)."""
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return []
    me = threading.get_native_id()
    return [t for t in tids if t != me]
