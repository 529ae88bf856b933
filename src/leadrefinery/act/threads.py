"""The background threads of the live path (act/realtime.py's lanes, act/delivery.py's
dispatcher and senders): daemon threads started by name, joined against one deadline.

    t = spawn(self._run, "realtime-triggers")
    done = join_all([t, ...], timeout=30)      # False: some still ran at the deadline
"""

from __future__ import annotations

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
