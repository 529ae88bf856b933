"""Loads the ingestion log into the store in micro-batches, exactly once.

The loader thread reads the durable tail of the log (see `wal.py`), hands it to
`EventLoader.load_lines` — the same path as file ingestion — and records how far it got in
`ingest_log_offsets` *inside the same transaction*, via the loader's `after=` callback. A crash
therefore leaves either the micro-batch and its offset, or neither; on start the loader resumes
from the recorded offset, and the events table's message-id de-duplication is a second guard.

After each commit the registered `on_loaded(person_ids, report)` callbacks run (real-time
rescoring plugs in there). `in_transaction(engine)` callbacks run *inside* the micro-batch's
transaction, after its events are stored (the table `_stored` holds them): the real-time fast
lane, whose alerts then commit with the events that caused them. If a micro-batch fails, the
next attempt runs without them (`in_transaction_ran` says whether the last commit included
them), so a failing callback cannot stop ingestion. `after_transaction(committed)` callbacks
run once the micro-batch's transaction has ended either way (`transaction_began`: when it
began, `time.monotonic()`). Fully loaded segments that are no longer written are deleted.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import orjson
import pyarrow as pa

from ..act.threads import lower_priority
from ..config import Settings
from ..ingest.loader import EventLoader, IngestReport
from ..store.engine import Engine
from .wal import IngestLog, Segment, segment_number

log = logging.getLogger("leadrefinery.loader")

OnLoaded = Callable[[list[str], IngestReport], None]
InTransaction = Callable[[Engine], None]
AfterTransaction = Callable[[bool], None]

# a log line is `{"_source":<json string>,...the message...}` (see ingest.py `encode_lines`)
_PREFIX = b'{"_source":"'
DEFAULT_SOURCE = "http"


def line_source(line: bytes, cache: dict[bytes, str]) -> str:
    """The write-key source a log line was received with (cheap: no full parse)."""
    if not line.startswith(_PREFIX):
        return DEFAULT_SOURCE
    end = line.find(b'",', len(_PREFIX))
    raw = line[len(_PREFIX) - 1 : end + 1]
    src = cache.get(raw)
    if src is None:
        try:
            src = orjson.loads(raw) if end > 0 else None
        except orjson.JSONDecodeError:  # an escaped quote in the name: parse the whole line
            src = None
        if not isinstance(src, str):
            try:
                src = orjson.loads(line).get("_source")
            except (orjson.JSONDecodeError, AttributeError):
                src = None
            return src if isinstance(src, str) else DEFAULT_SOURCE
        cache[raw] = src
    return src


def offsets_in_store(engine: Engine) -> dict[str, int]:
    return dict(engine.query("SELECT log, max(loaded_bytes) FROM ingest_log_offsets GROUP BY log"))


@dataclass
class LoaderStats:
    batches: int = 0
    lines: int = 0
    report: IngestReport = field(default_factory=IngestReport)
    last_batch_seconds: float = 0.0
    last_loaded_at: float | None = None
    batch_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=4096))
    errors: int = 0
    failing: int = 0  # consecutive failed attempts (0 = the last one worked)
    last_error: str | None = None


class LogLoader:
    """The thread that moves the log's tail into the store."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        ingest_log: IngestLog,
        *,
        interval: float = 0.2,
        max_batch_bytes: int = 16 * 1024 * 1024,
        on_loaded: list[OnLoaded] | None = None,
        nice: int = 0,
    ) -> None:
        self.engine = engine
        self.nice = nice  # > 0: this thread yields the CPU to the request handlers
        # The server already checked each message's size as sent (Segment's 32 KB rule); the
        # messages it logs carry receivedAt/messageId/batch context on top, so the loader must
        # not apply the limit a second time to the enriched text.
        server = settings.server.model_copy(
            update={"max_message_bytes": settings.server.max_message_bytes + 1024 * 1024}
        )
        self.settings = settings.model_copy(update={"server": server})
        self.log = ingest_log
        self.interval = interval
        self.max_batch_bytes = max_batch_bytes
        self.on_loaded = on_loaded if on_loaded is not None else []
        self.in_transaction: list[InTransaction] = []
        self.in_transaction_ran = False  # did the last committed micro-batch run them?
        self.after_transaction: list[AfterTransaction] = []
        self.transaction_began = 0.0  # monotonic time the current/last micro-batch began
        self._failed = False  # the last attempt failed: the next one runs without them
        self.stats = LoaderStats()
        # the newest `received_at` loaded so far, set before the hooks run: what they have been
        # handed covers every event received up to then (the real-time lanes' watermark)
        self.received_through: datetime | None = None
        self.offsets: dict[int, int] = {}  # segment number -> loaded bytes
        self._lines: dict[int, int] = {}  # segment number -> lines loaded (for line numbers)
        self._sources: dict[bytes, str] = {}
        self._wake = threading.Event()  # new durable data (set after every fsync)
        self._stop = threading.Event()  # interrupts the pause between micro-batches
        self._stopping = False
        self._abandon = False
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None

    # -- life cycle -------------------------------------------------------------------------

    def read_offsets(self) -> None:
        """Read the loaded offsets from the store (before the log is opened)."""
        self.offsets = {}
        for name, loaded in offsets_in_store(self.engine).items():
            n = segment_number(name)
            if n is not None:
                self.offsets[n] = int(loaded)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ingest-log-loader", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            raise self._start_error

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 60.0) -> bool:
        """Load what is left (up to `timeout` seconds), then stop. False if it had to give up."""
        self._stopping = True
        self._stop.set()
        self._wake.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the loader did not finish within %.0fs; the rest loads on next start",
                        timeout)
            self._abandon = True  # finish the micro-batch under way, then stop
            self._thread.join()
            return False
        return True

    @property
    def loaded(self) -> int:
        """Bytes loaded from the segments still on disk."""
        offsets = dict(self.offsets)  # a copy: the loader thread changes it
        return sum(offsets.get(s.number, 0) for s in self.log.segments())

    def pending(self) -> int:
        offsets = dict(self.offsets)
        return sum(max(0, s.durable - offsets.get(s.number, 0)) for s in self.log.segments())

    # -- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        lower_priority(self.nice)
        try:
            # temp tables are per DuckDB connection, and each thread has its own cursor:
            # the EventLoader must be built on this thread
            self.loader = EventLoader(self.engine, self.settings)
            self._prepare()
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._start_error = exc
            self._ready.set()
            return
        self._ready.set()
        backoff = 0.5
        while True:
            began = time.monotonic()
            try:
                did = self.load_once()
            except Exception as exc:  # noqa: BLE001 - keep serving; retry; say so in /health
                self._failed = True
                self.stats.errors += 1
                self.stats.failing += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("loading the ingestion log failed (will retry)")
                if self._stopping and self.stats.failing >= 3:
                    return
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = 0.5
            self.stats.failing = 0
            if self._abandon:
                return
            if did:
                self._cleanup()
                if self.pending() >= self.max_batch_bytes:
                    continue  # far behind: no pause between micro-batches
            elif self._stopping:
                return
            # gather a micro-batch: at most one load per interval, sooner when woken at rest
            rest = self.interval - (time.monotonic() - began)
            if rest > 0 and not self._stopping:
                self._stop.wait(rest)
            if not did:
                self._wake.wait(1.0)
                self._wake.clear()

    def _prepare(self) -> None:
        """Line counts of partly loaded segments, offsets past a segment's end, stale rows."""
        on_disk = {s.number: s for s in self.log.segments()}
        for n, loaded in list(self.offsets.items()):
            seg = on_disk.get(n)
            if seg is None:
                continue
            if loaded > seg.durable:
                log.warning("%s: store says %d bytes loaded but the file has %d",
                            seg.name, loaded, seg.durable)
                self.offsets[n] = seg.durable
            self._lines[n] = _count_lines(self.log.path(seg), self.offsets[n])
        stale = [n for n in self.offsets if n not in on_disk]
        if stale:  # segments deleted after loading; their rows are no longer needed
            names = [f"ingest-{n:06d}.jsonl" for n in stale]
            marks = ", ".join("?" for _ in names)
            with self.engine.transaction():
                self.engine.execute(f"DELETE FROM ingest_log_offsets WHERE log IN ({marks})", names)
            for n in stale:
                self.offsets.pop(n)
        self._cleanup()  # segments an earlier run finished loading but did not delete
        behind = self.pending()
        if behind:
            log.info("replaying %d bytes of the ingestion log (acknowledged, not yet loaded)",
                     behind)

    def load_once(self) -> bool:
        """Load the next micro-batch (one segment's unloaded tail, bounded). False if none."""
        for seg in self.log.segments():
            start = self.offsets.get(seg.number, 0)
            if seg.durable > start:
                self._load(seg, start, seg.durable)
                return True
        return False

    def _load(self, seg: Segment, start: int, end: int) -> None:
        began = time.monotonic()
        with open(self.log.path(seg), "rb") as f:
            f.seek(start)
            data = f.read(min(end - start, self.max_batch_bytes))
            cut = data.rfind(b"\n") + 1
            if cut == 0:  # one line longer than a micro-batch: take it whole
                data += f.read(end - start - len(data))
                cut = data.rfind(b"\n") + 1
        if cut == 0:
            return
        first = self._lines.get(seg.number, 0) + 1
        n_lines, groups = self._split(data, cut, first)
        new_offset = start + cut
        touched: set[str] = set()
        received: list[datetime] = []
        report = IngestReport()
        e = self.engine

        hooks = list(self.on_loaded)
        in_tx = [] if self._failed else list(self.in_transaction)

        def collect(engine: Engine) -> None:
            for hook in in_tx:
                hook(engine)
            if hooks:  # fetching ids costs Python time under the GIL: only when wanted
                rows = engine.query("SELECT person_id FROM _touched WHERE person_id IS NOT NULL")
                touched.update(r[0] for r in rows)
                newest = engine.scalar("SELECT max(received_at) FROM _new")
                if newest is not None:
                    received.append(newest)

        def collect_and_record(engine: Engine) -> None:
            collect(engine)
            engine.execute("DELETE FROM ingest_log_offsets WHERE log = ?", [seg.name])
            engine.execute("INSERT INTO ingest_log_offsets VALUES (?, ?)", [seg.name, new_offset])

        self.transaction_began = time.monotonic()  # before BEGIN: its snapshot is newer
        committed = False
        try:
            with e.transaction():
                items = list(groups.items())
                if not items:
                    in_tx.clear()  # nothing stored
                    collect_and_record(e)
                for k, (source, table) in enumerate(items):
                    e.execute("CREATE OR REPLACE TEMP TABLE _touched (person_id VARCHAR)")
                    report += self.loader.load_lines(
                        table,
                        source,
                        after=collect_and_record if k == len(items) - 1 else collect,
                    )
            committed = True
        finally:
            for done in self.after_transaction:
                done(committed)
        # committed
        self._failed = False
        self.in_transaction_ran = bool(in_tx)
        self.offsets[seg.number] = new_offset
        self._lines[seg.number] = first - 1 + n_lines
        st = self.stats
        st.batches += 1
        st.lines += n_lines
        st.report += report
        st.last_batch_seconds = time.monotonic() - began
        st.batch_seconds.append(st.last_batch_seconds)
        st.last_loaded_at = time.time()
        if received:
            self.received_through = max(received + [self.received_through or received[0]])
        people = sorted(touched)
        for hook in hooks:
            try:
                hook(people, report)
            except Exception:  # noqa: BLE001 - a hook must not stop ingestion
                log.exception("on_loaded hook %r failed", hook)

    def _split(self, data: bytes, cut: int, first: int) -> tuple[int, dict[str, pa.Table]]:
        """The lines of `data[:cut]` (whole lines) as `(line_no, line)` tables, one per source.

        The arrays share `data`'s memory (offsets found by numpy, no Python object per line);
        each line keeps its newline, which JSON ignores. Usually every line has one source,
        which one `bytes.count` confirms; otherwise the lines are grouped one by one.
        """
        buf = np.frombuffer(data, dtype=np.uint8, count=cut)  # no copy of the cut
        ends = np.flatnonzero(buf == 10)
        n = len(ends)
        if n == 0:
            return 0, {}
        offsets = np.concatenate(([0], ends + 1)).astype(np.int32)  # micro-batches are < 2 GiB
        col = pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))
        try:
            col.validate(full=True)  # UTF-8 (always, for lines this server wrote)
        except pa.ArrowInvalid:
            pairs = itertools.pairwise(offsets)
            col = pa.array([data[a:b].decode("utf-8", errors="replace") for a, b in pairs],
                           pa.string())
        table = pa.table({"line_no": np.arange(first, first + n, dtype=np.int64), "line": col})
        end = data.find(b'",', len(_PREFIX)) if data.startswith(_PREFIX) else -1
        if end > 0 and data.count(b"\n" + data[: end + 2], 0, cut) == n - 1:
            return n, {line_source(data[: ends[0]], self._sources): table}
        sources = [line_source(data[a:b], self._sources) for a, b in itertools.pairwise(offsets)]
        groups = {}
        for src in dict.fromkeys(sources):
            mask = pa.array([s == src for s in sources])
            groups[src] = table.filter(mask)
        return n, groups

    def _cleanup(self) -> None:
        """Delete segments that are complete and fully loaded; forget their offsets."""
        for seg in self.log.segments():
            if seg.current or self.offsets.get(seg.number, 0) < seg.durable:
                continue
            self.log.delete(seg)  # file first: a crash here leaves a harmless stale row
            with self.engine.transaction():
                self.engine.execute("DELETE FROM ingest_log_offsets WHERE log = ?", [seg.name])
            self.offsets.pop(seg.number, None)
            self._lines.pop(seg.number, None)


def _count_lines(path, upto: int) -> int:
    n = 0
    with open(path, "rb") as f:
        left = upto
        while left > 0:
            block = f.read(min(left, 8 * 1024 * 1024))
            if not block:
                break
            n += block.count(b"\n")
            left -= len(block)
    return n
