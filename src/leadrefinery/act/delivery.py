"""The deliverer: sends due `pending` alerts of the outbox through their channels.

    d = Deliverer.for_project(project)      # or Deliverer(engine, settings, channels=...)
    d.start()                               # a dispatcher thread and `workers` sender threads
    ...  enqueue(...) in a transaction; after the commit: d.wake()  (else found within poll_seconds)
    d.stop()                                # finishes the alerts in flight, then returns

    d.run_once()                            # or: send what is due now, in this thread (CLI)

How one alert goes (see outbox.py for the states):

1. The dispatcher *claims* due rows in one short transaction: `attempts + 1`, `claimed_at`,
   `claimed_by` (this deliverer). Claimed rows are invisible to other dispatchers, so on a shared
   PostgreSQL store several servers can deliver side by side without sending one alert twice.
2. A sender thread renders and sends it (channels.py). Sends run in parallel, so one slow or
   down receiver does not hold up the others.
3. The result is recorded: `delivered`; or, after a failure, `next_attempt_at` = now + back-off
   (exponential, capped, with jitter, at least the receiver's `Retry-After`); or `dead` when the
   attempts reach `max_attempts` or the failure is permanent.

A process killed between 1 and 3 leaves a claimed row. A DuckDB store is owned by one process, so
the next deliverer on it releases every claim at start and the alert goes again at once; on a
shared store a claim older than `claim_timeout_seconds` is released. Either way the receiver may
see that alert twice — with the same alert id. That is the at-least-once contract (outbox.py).
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import AlertsSection, Settings
from ..errors import StoreError
from ..store.engine import Engine
from .channels import Channel, DeliveryError, RenderContext, Secrets, build_channels, render
from .clock import Clock, SystemClock
from .outbox import COLUMNS, DEAD, DELIVERED, PENDING, SELECT, URGENT, AlertRow
from .threads import join_all, spawn

if TYPE_CHECKING:
    from ..project import Project

log = logging.getLogger("leadrefinery.alerts")

# engines whose store one process owns: at start, every claim is a dead process's leftover
SINGLE_WRITER_ENGINES = frozenset({"duckdb"})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off with jitter, capped; `dead` after `max_attempts` attempts."""

    max_attempts: int = 12
    base: float = 2.0
    factor: float = 2.0
    cap: float = 900.0
    jitter: float = 0.2

    @classmethod
    def from_settings(cls, cfg: AlertsSection) -> RetryPolicy:
        return cls(cfg.max_attempts, cfg.retry_base_seconds, cfg.retry_factor,
                   cfg.retry_max_seconds, cfg.retry_jitter)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1, 2, ...): the capped
        exponential, less a random part of up to `jitter` of it (so retries spread out)."""
        try:
            d = min(self.cap, self.base * self.factor ** max(0, attempt - 1))
        except OverflowError:
            d = self.cap
        return d * (1.0 - self.jitter * (rng or random).random())

    def gives_up(self, attempts: int) -> bool:
        return attempts >= self.max_attempts


@dataclass
class DeliveryStats:
    delivered: int = 0
    failed: int = 0  # failed attempts (each retried or dead)
    dead: int = 0
    errors: int = 0  # the deliverer's own troubles (store errors), not receivers'
    last_error: str | None = None
    last_delivered_at: datetime | None = None


_STOP = object()
_CHANNEL, _RECIPIENT = COLUMNS.index("channel"), COLUMNS.index("recipient")


class Deliverer:
    """Sends the outbox. One per process and store; `start`/`stop` explicitly."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        channels: dict[str, Channel] | None = None,
        secrets: Secrets | None = None,
        root: Path | None = None,
        policy: RetryPolicy | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        cfg = settings.alerts
        self.engine = engine
        self.context = RenderContext.from_settings(settings)
        self.policy = policy or RetryPolicy.from_settings(cfg)
        self._own_channels = channels is None
        self.channels = channels if channels is not None else build_channels(
            settings, engine, secrets, root=root)
        self.poll_seconds = cfg.poll_seconds
        self.workers = cfg.workers
        self.claim_timeout = timedelta(seconds=cfg.claim_timeout_seconds)
        self.clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self.id = f"{uuid.uuid4().hex[:12]}"
        self.stats = DeliveryStats()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._inflight: dict[str, tuple[str, str]] = {}  # alert id -> (channel, recipient)
        # at most this many sends to one receiver at a time: a hanging receiver cannot take
        # every sender thread and hold up the other receivers
        self.per_receiver = max(1, self.workers // 2)
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._last_release = 0.0
        self._closed = False

    @classmethod
    def for_project(cls, project: Project, **kwargs: Any) -> Deliverer:
        return cls(project.engine, project.settings, root=project.root, **kwargs)

    # -- life cycle -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return bool(self._threads) and not self._stopping.is_set()

    def start(self) -> None:
        if self._threads or self._closed:
            raise RuntimeError("a deliverer starts once; make a new one to start again")
        self._stopping.clear()
        self.release_claims(every=self.engine.name in SINGLE_WRITER_ENGINES)
        self._threads = [spawn(self._dispatch_loop, "alerts-dispatch")]
        self._threads += [spawn(self._send_loop, f"alerts-send-{i}") for i in range(self.workers)]

    def wake(self) -> None:
        """Look for due alerts now (call after committing a transaction that enqueued some)."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop claiming, let the alerts in flight finish (up to `timeout`), close channels.

        False if some sender was still busy at the deadline: its alert stays claimed and goes
        again on the next start.
        """
        self._stopping.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        dispatcher, senders = self._threads[:1], self._threads[1:]
        join_all(dispatcher, timeout)
        for _ in senders:  # after what the dispatcher queued: those are sent first
            self._queue.put(_STOP)
        done = join_all(self._threads, deadline - time.monotonic())
        if not done:
            log.warning("alerts still being sent at stop: %s", sorted(self._inflight))
        self._threads = []
        if done:
            self.close()
        return done

    def close(self) -> None:
        """Close the channels this deliverer built (HTTP connection pools)."""
        self._closed = True
        if self._own_channels:
            for ch in self.channels.values():
                ch.close()

    def __enter__(self) -> Deliverer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the work ---------------------------------------------------------------------------

    def release_claims(self, *, every: bool = False) -> int:
        """Release claims left by dead processes (all of them with `every`). Returns how many."""
        now = self.clock.now()
        cond, params = ("claimed_at IS NOT NULL", []) if every else (
            "claimed_at < ?", [now - self.claim_timeout])
        with self.engine.transaction():
            n = int(self.engine.scalar(
                f"SELECT count(*) FROM alerts WHERE status = ? AND {cond}", [PENDING, *params]
            ) or 0)
            if n:
                self.engine.execute(
                    f"UPDATE alerts SET claimed_at = NULL, claimed_by = NULL "
                    f"WHERE status = ? AND {cond}", [PENDING, *params])
        if n:
            log.info("resuming %d alert(s) that were being sent when a process stopped", n)
        return n

    def claim(self, limit: int, busy: Counter[tuple[str, str]] | None = None) -> list[AlertRow]:
        """Claim up to `limit` due alerts for this deliverer, urgent ones (outbox.URGENT)
        first, then oldest due first; with `busy` (sends in flight per receiver), none for a
        receiver already at `per_receiver`."""
        now = self.clock.now()
        e = self.engine
        with e.transaction():
            rows = e.query(
                f"{SELECT} WHERE status = ? AND claimed_at IS NULL AND next_attempt_at <= ? "
                f"ORDER BY {URGENT} DESC, next_attempt_at, created_at LIMIT ?",
                [PENDING, now, limit if busy is None else limit * 8])
            if busy is not None:
                load, picked = Counter(busy), list[tuple]()
                for r in rows:
                    to = (r[_CHANNEL], r[_RECIPIENT] or "")
                    if len(picked) < limit and load[to] < self.per_receiver:
                        load[to] += 1
                        picked.append(r)
                rows = picked
            if not rows:
                return []
            ids = [r[0] for r in rows]
            marks = ", ".join("?" for _ in ids)
            e.execute(
                f"UPDATE alerts SET claimed_at = ?, claimed_by = ?, attempts = attempts + 1 "
                f"WHERE alert_id IN ({marks}) AND status = ? AND claimed_at IS NULL",
                [now, self.id, *ids, PENDING])
            mine = {r[0] for r in e.query(
                f"SELECT alert_id FROM alerts WHERE alert_id IN ({marks}) AND claimed_by = ?",
                [*ids, self.id])}
        out = []
        for r in rows:
            row = AlertRow.from_tuple(r)
            if row.alert_id in mine:
                out.append(replace(row, attempts=row.attempts + 1, claimed_at=now,
                                   claimed_by=self.id))
        return out

    def deliver(self, row: AlertRow) -> bool:
        """Send one claimed alert and record the outcome. True if delivered."""
        try:
            channel = self.channels.get(row.channel)
            if channel is None:
                raise DeliveryError(f"no channel {row.channel!r} is configured", permanent=True)
            channel.send(render(row, self.context))
        except DeliveryError as exc:
            self._record_failure(row, exc)
            return False
        except Exception as exc:  # noqa: BLE001 - a bug in a channel: retry, keep the thread
            log.exception("sending alert %s failed unexpectedly", row.alert_id)
            self._record_failure(row, DeliveryError(f"{type(exc).__name__}: {exc}"))
            return False
        now = self.clock.now()
        self._record(
            "UPDATE alerts SET status = ?, delivered_at = ?, claimed_at = NULL, claimed_by = NULL "
            "WHERE alert_id = ? AND claimed_by = ?",
            [DELIVERED, now, row.alert_id, self.id])
        with self._lock:
            self.stats.delivered += 1
            self.stats.last_delivered_at = now
        return True

    def _record_failure(self, row: AlertRow, exc: DeliveryError) -> None:
        error = f"attempt {row.attempts}: {exc}"[:2000]
        dead = exc.permanent or self.policy.gives_up(row.attempts)
        with self._lock:
            self.stats.failed += 1
            self.stats.dead += dead
        if dead:
            log.warning("alert %s (%s to %s) is dead after %d attempt(s): %s", row.alert_id,
                        row.channel, row.recipient, row.attempts, exc)
            self._record(
                "UPDATE alerts SET status = ?, last_error = ?, next_attempt_at = NULL, "
                "claimed_at = NULL, claimed_by = NULL WHERE alert_id = ? AND claimed_by = ?",
                [DEAD, error, row.alert_id, self.id])
            return
        wait = self.policy.delay(row.attempts, self.rng)
        if exc.retry_after is not None:
            wait = min(max(wait, exc.retry_after), self.policy.cap)
        log.info("alert %s (%s to %s) attempt %d failed, retry in %.1fs: %s", row.alert_id,
                 row.channel, row.recipient, row.attempts, wait, exc)
        self._record(
            "UPDATE alerts SET last_error = ?, next_attempt_at = ?, claimed_at = NULL, "
            "claimed_by = NULL WHERE alert_id = ? AND claimed_by = ?",
            [error, self.clock.now() + timedelta(seconds=wait), row.alert_id, self.id])

    def _record(self, sql: str, params: list[Any]) -> None:
        """Write an outcome; the store refusing is retried (else the alert would be re-sent)."""
        delay = 0.05
        for attempt in range(1, 100):
            try:
                with self.engine.transaction():
                    self.engine.execute(sql, params)
                return
            except StoreError as exc:
                self._trouble(exc)
                if attempt >= 8 and self._stopping.is_set():
                    return  # left claimed: sent again on the next start
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _trouble(self, exc: BaseException) -> None:
        with self._lock:
            self.stats.errors += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"[:500]
        log.warning("alerts outbox: %s", self.stats.last_error)

    def run_once(self, *, max_rounds: int = 1000) -> int:
        """Send every alert due now, in this thread; returns how many attempts were made."""
        n = 0
        for _ in range(max_rounds):
            rows = self.claim(self.workers)
            if not rows:
                break
            for row in rows:
                self.deliver(row)
                n += 1
        return n

    # -- threads ----------------------------------------------------------------------------

    def _free(self) -> int:
        with self._lock:
            return self.workers - len(self._inflight)

    def _busy(self) -> Counter[tuple[str, str]]:
        with self._lock:
            return Counter(self._inflight.values())

    def _dispatch_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            wait = self.poll_seconds
            try:
                if time.monotonic() - self._last_release > self.claim_timeout.total_seconds() / 4:
                    self._last_release = time.monotonic()
                    self.release_claims()
                free = self._free()
                claimed = self.claim(free, self._busy()) if free > 0 else []
                for row in claimed:
                    with self._lock:
                        self._inflight[row.alert_id] = (row.channel, row.recipient)
                    self._queue.put(row)
                wait = self._next_wait(claimed=bool(claimed))
            except Exception as exc:  # noqa: BLE001 - keep delivering; say so in stats
                self._trouble(exc)
                wait = min(self.poll_seconds * 2, 5.0)
            if wait > 0:
                self._wake.wait(wait)

    def _next_wait(self, *, claimed: bool) -> float:
        """How long to sleep before looking again (a wake-up cuts it short)."""
        if self._free() <= 0:
            return self.poll_seconds  # a sender finishing wakes us
        due = self.engine.scalar(
            "SELECT min(next_attempt_at) FROM alerts WHERE status = ? AND claimed_at IS NULL",
            [PENDING])
        if due is None:
            return self.poll_seconds
        wait = (due - self.clock.now()).total_seconds()
        if wait <= 0 and not claimed:  # due, but its receiver is busy: a sender finishing wakes us
            return self.poll_seconds
        return min(self.poll_seconds, max(0.0, wait))

    def _send_loop(self) -> None:
        while True:
            row = self._queue.get()
            if row is _STOP:
                return
            try:
                self.deliver(row)
            finally:
                with self._lock:
                    self._inflight.pop(row.alert_id, None)
                self._wake.set()
