"""The append-only ingestion log: how the HTTP API acknowledges events durably *and* fast.

    request ─► IngestLog.append(line) ─► writer thread ─► write + fdatasync ─► acknowledge (200)
                                         (one fsync for every request waiting: group commit)
                                                   │
                                       log/ingest-000042.jsonl  (append-only segments)
                                                   │
                                     LogLoader (loader_thread.py) ─► the store, in micro-batches

A request appends its lines (one message per line, see `ingest.encode_lines`) in one write.
The log only ever grows at its end; it is cut into segments of about `segment_bytes`, and a
segment is deleted once the store has loaded all of it (`LogLoader` decides). Every start
begins a new segment, so a segment written by an earlier run is read-only; a trailing line
without its newline (a crash in the middle of a write, which was therefore never acknowledged)
is moved aside to `<segment>.torn` on start, so later lines never run into it.

Only one process may write a log: `open()` takes an exclusive lock on `log/LOCK`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import logging
import os
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import StoreBusy, StoreError

log = logging.getLogger("leadrefinery.ingest_log")

SEGMENT_RE = re.compile(r"^ingest-(\d+)\.jsonl$")
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024


def segment_name(number: int) -> str:
    return f"ingest-{number:06d}.jsonl"


def segment_number(name: str) -> int | None:
    m = SEGMENT_RE.match(name)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class Segment:
    number: int
    name: str
    durable: int  # bytes fsync'd (whole lines only)
    current: bool  # the writer may still append to it


class LogWriteError(StoreError):
    """The log could not be written (disk full, I/O error): the request is not acknowledged."""

    http_status = 503


_STOP = object()


class IngestLog:
    """Append-only, fsync'd, segmented log of request lines with group commit."""

    def __init__(self, directory: str | Path, *, segment_bytes: int = DEFAULT_SEGMENT_BYTES,
                 on_durable: Callable[[], None] | None = None) -> None:
        self.dir = Path(directory)
        self.segment_bytes = segment_bytes
        self.on_durable = on_durable  # called (writer thread) after each fsync
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._sizes: dict[int, int] = {}  # segment number -> durable bytes
        self._sizes_lock = threading.Lock()
        self._current = 0
        self._fd = -1
        self._lock_fd = -1
        self._thread: threading.Thread | None = None
        self._closed = False
        # counters (read without locks: they are only ever incremented by the writer)
        self.appends = 0  # requests acknowledged
        self.fsyncs = 0  # group commits
        self.bytes_written = 0
        self.torn_bytes = 0  # bytes moved aside on open
        self.commit_seconds: deque[float] = deque(maxlen=4096)  # write+fsync time, recent groups

    # -- opening and closing -------------------------------------------------------------

    def open(self, *, first_free: int = 1) -> IngestLog:
        """Lock the log, repair torn tails, start a new segment and the writer thread.

        `first_free` is the lowest segment number that may be created (the store remembers
        numbers of deleted segments, so numbers are never reused).
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.dir / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise StoreBusy(
                f"the ingestion log {self.dir} is in use by another `leadrefinery serve`; "
                "stop it first"
            ) from None
        numbers = []
        for p in self.dir.iterdir():
            n = segment_number(p.name)
            if n is not None:
                numbers.append(n)
                self._sizes[n] = self._repair(p)
        self._current = max([*numbers, first_free - 1]) + 1
        self._fd = os.open(
            self.dir / segment_name(self._current), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644
        )
        self._sizes[self._current] = os.fstat(self._fd).st_size
        self._fsync_dir()
        self._thread = threading.Thread(target=self._run, name="ingest-log-writer", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Write and acknowledge everything queued, then stop the writer and release the lock."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._lock_fd >= 0:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = -1

    def _repair(self, path: Path) -> int:
        """Cut a trailing partial line (never acknowledged) into `<name>.torn`; return size."""
        size = path.stat().st_size
        if size == 0:
            return 0
        with open(path, "r+b") as f:
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return size
            end = size
            while end > 0:  # find the last newline, reading backwards
                start = max(0, end - 65536)
                f.seek(start)
                cut = f.read(end - start).rfind(b"\n")
                if cut >= 0:
                    end = start + cut + 1
                    break
                end = start
            f.seek(end)
            tail = f.read()
            with open(path.with_name(path.name + ".torn"), "ab") as torn:
                torn.write(tail)
                torn.flush()
                os.fsync(torn.fileno())
            f.truncate(end)
            f.flush()
            os.fsync(f.fileno())
        self.torn_bytes += len(tail)
        log.warning(
            "%s ended in a partial line (%d bytes, from a crash mid-write; never acknowledged): "
            "moved to %s.torn", path.name, len(tail), path.name,
        )
        return end

    def _fsync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- appending ------------------------------------------------------------------------

    def _check(self, data: bytes) -> None:
        if self._closed:
            raise LogWriteError("the ingestion log is closed (the server is stopping)")
        if not data.endswith(b"\n"):
            raise ValueError("log lines must end with a newline")

    def append(self, data: bytes, timeout: float | None = None) -> None:
        """Append whole lines and wait until they are on disk (for threads; see `append_async`)."""
        self._check(data)
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put((data, fut))
        fut.result(timeout)

    def append_async(self, data: bytes) -> asyncio.Future:
        """Append whole lines; the returned future resolves once they are on disk."""
        self._check(data)
        fut = asyncio.get_running_loop().create_future()
        self._queue.put((data, fut))
        return fut

    # -- the writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        q = self._queue
        while True:
            items = [q.get()]
            while True:  # everything that queued up during the last fsync: one group
                try:
                    items.append(q.get_nowait())
                except queue.Empty:
                    break
            stop = False
            if any(it is _STOP for it in items):
                stop = True
                items = [it for it in items if it is not _STOP]
                while True:  # nothing more can arrive (closed), take the stragglers
                    try:
                        items.append(q.get_nowait())
                    except queue.Empty:
                        break
            if items:
                self._commit(items)
            if stop:
                return

    def _commit(self, items: list) -> None:
        data = b"".join(it[0] for it in items)
        error: BaseException | None = None
        try:
            size = self._sizes[self._current]
            if size >= self.segment_bytes:
                self._rotate()
                size = 0
            began = time.perf_counter()
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fdatasync(self._fd)
            self.commit_seconds.append(time.perf_counter() - began)
        except OSError as exc:
            log.error("cannot write the ingestion log: %s", exc)
            error = LogWriteError(f"cannot write the ingestion log {self.dir}: {exc}")
            with contextlib.suppress(OSError):  # keep the segment line-aligned: drop a half write
                os.ftruncate(self._fd, self._sizes[self._current])
        else:
            with self._sizes_lock:
                self._sizes[self._current] = size + len(data)
            self.appends += len(items)
            self.fsyncs += 1
            self.bytes_written += len(data)
            if self.on_durable is not None:
                self.on_durable()
        self._settle(items, error)

    def _rotate(self) -> None:
        os.close(self._fd)
        number = self._current + 1
        self._fd = os.open(
            self.dir / segment_name(number), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644
        )
        self._fsync_dir()
        with self._sizes_lock:
            self._sizes[number] = 0
            self._current = number

    @staticmethod
    def _settle(items: list, error: BaseException | None) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future]] = {}
        for _, fut in items:
            if isinstance(fut, asyncio.Future):
                by_loop.setdefault(fut.get_loop(), []).append(fut)
            elif error is None:
                fut.set_result(None)
            else:
                fut.set_exception(error)
        for loop, futs in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                loop.call_soon_threadsafe(_settle_futures, futs, error)

    # -- what the loader needs ------------------------------------------------------------

    def segments(self) -> list[Segment]:
        with self._sizes_lock:
            cur = self._current
            return [Segment(n, segment_name(n), size, n == cur)
                    for n, size in sorted(self._sizes.items())]

    @property
    def written(self) -> int:
        """Durable bytes in the segments still on disk."""
        with self._sizes_lock:
            return sum(self._sizes.values())

    def path(self, segment: Segment | int) -> Path:
        n = segment.number if isinstance(segment, Segment) else segment
        return self.dir / segment_name(n)

    def delete(self, segment: Segment) -> None:
        """Remove a segment the store has fully loaded (never the current one)."""
        if segment.current:
            raise ValueError("cannot delete the segment being written")
        with self._sizes_lock:
            self._sizes.pop(segment.number, None)
        self.path(segment).unlink(missing_ok=True)
        torn = self.path(segment).with_name(segment.name + ".torn")
        if torn.exists():
            log.info("keeping %s (never-acknowledged bytes, for inspection)", torn.name)
        self._fsync_dir()


def _settle_futures(futs: list[asyncio.Future], error: BaseException | None) -> None:
    for f in futs:
        if not f.done():
            if error is None:
                f.set_result(None)
            else:
                f.set_exception(error)


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.01) -> bool:
    """Poll `predicate` until true or `timeout` seconds pass (for shutdown and tests)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True
