"""Real time: rescore the people each loaded micro-batch touched, fire triggers, send alerts.

    rt = Realtime.for_project(project)          # what `serve` runs (api/app.py wires it in)
    service.on_loaded.append(rt.on_loaded)      # ids of the people a micro-batch touched
    rt.start() ... rt.stop()                    # the rescoring thread and the alert deliverer

    rt.scorer.process(person_ids)               # or by hand: one rescore, in one transaction
    rt.scorer.sweep()                           # everyone (decay): `leadrefinery sweep`

One path, two sizes of input
----------------------------
`process(ids)` runs the *same* compiled SQL as a batch rescore (`model.scoring.scoring_sql`,
restricted to a table of the ids), so a person's live score equals a batch rescore at the same
time; act/live_scores.py writes it to `latest_scores`. In **one transaction** it then

1. finds in SQL who may have moved (`_moved`: a superset of what `material` sees), so the many
   rescored people whose state did not change cost no Python;
2. compares those new states (score, grade, stage, segments, abuse flags, predictive bucket)
   with the last one kept in `person_state` and evaluates the triggers (act/triggers.py):
   episodes opened or closed in `trigger_episodes`, a cool-down per trigger, person and key;
3. writes the new `person_state`, the episodes and the alert rows (act/outbox.py `enqueue`),
   the history rows (`scores`) of the people whose state changed — not of everyone rescored —
   and fast-tracks buy-ready leads to a rep (act/routing.py, with its alerts);
4. moves the lane's watermark (`meta`: events received up to then are processed);

and after the commit wakes the deliverer. A crash therefore leaves either all of it or none.

Two lanes inside `serve`
------------------------
Rescoring costs about the same whether a batch holds five people or thousands (the compiled
query and its plan dominate), so when events arrive faster than that, batches grow (at most
`[triggers] max_batch_people`) and score-based alerts wait for the next batch. Buy-readiness
triggers need no rescoring — the event is the condition — so a **fast lane** evaluates them
for every loaded micro-batch at once, with the last stored score in the alert, and fast-tracks
the lead; the rescoring lane then leaves them alone. Abuse rules that one event raises (a class
of 40 guests: act/live_abuse.py `LiveRules`, the rule's own compiled matcher) go the same way:
the fast lane opens their episodes and alerts, a rescore only ends them (`live_rules` in
act/triggers.py `evaluate`). The fast lane runs *inside the loader's
micro-batch transaction* (`act_in_load` -> `Scorer.act_on_stored`, reading only the events the
micro-batch stored): no hand-over, no second transaction, and the alert commits with its event.
When that is not possible (before the startup sweep; the loader's retry of a failed micro-batch
runs without it) the people go to the fast lane's own thread (`Scorer.act_on_actions`), and
the in-load path waits until that thread is idle, so the two never evaluate side by side.

The hot lane
------------
Waiting for the loader costs up to two micro-batches (the one under way, then its own): under
load, more than a second. So the HTTP handler picks the messages that can fire an action
trigger or raise such an abuse rule (act/received.py) and, once their request is durable,
hands them to the fast lane's
thread, which evaluates them at once (`Scorer.act_on_received`) in a small transaction of its
own: the person resolved as the loader will (`people_of`), the stored profile overlaid with
what not-yet-stored requests said (identify traits, anonymous-id links), episodes, alerts and
the fast-track. The message's event itself is stored by the loader as always. Claims keep the
two evaluators apart — two transactions side by side would not see each other's episodes and
could announce one lead twice: the in-load pass skips the messages the hot lane claimed, stands
aside (to the thread) for people the hot lane committed work for after the micro-batch began,
and the hot lane waits for a micro-batch to end before evaluating people its in-load pass has.
A `kill -9` between the hot lane's commit and the load loses nothing: the replayed micro-batch
finds the message in the episodes' memory (an abuse episode: open) and does not announce it
again. Until the load, a rescore cannot see the message and would end the abuse episode the
hot lane opened for it: it leaves open an episode whose message is not stored yet.
The lanes never write the same rows: buy-readiness memory lives in `trigger_episodes`, not in
`person_state`. In `serve` the rescoring thread runs nicer than the loader (`[triggers]
rescore_nice`) and starts a batch once the loader has caught up (at most `yield_seconds` later):
a rescoring batch slows every micro-batch — and so the fast lane — while it runs.

The urgent lane
---------------
Score-based alerts wait for rescoring, and under load the ordinary batches are large and
yield to ingestion first (seconds to tens of seconds behind). Most of the people they carry
cannot cross a line; those whose latest score (`latest_scores`) is less than `[triggers]
urgent_points` below one an alert fires on (`TriggerSet.rising_lines`: a score trigger's
threshold, the lowest score of a grade a grade trigger watches) may. The rescoring thread sorts
each micro-batch's people as they arrive and rescores those first, in batches of at most
`urgent_batch_people`, without yielding — same `process`, same compiled SQL. A lead further
below a line, or graded by volume or matrix, takes the ordinary batches.

The warm lane
-------------
The urgent lane still waits for the loader (under load, most of a second) and for a rescoring
batch under way. So the rescoring thread keeps, every `NEAR_SECONDS`, the ids of the people
near a line (`near`: person, user and anonymous ids); the HTTP handler picks their messages
(act/received.py) and, once the request is durable, a thread of its own scores those people
(`Scorer.score_received`) with the same compiled SQL reading the stored events *and* their
messages not stored yet, normalised by the loader's own SQL (act/warm_lane.py). It opens the
grade and score episodes that rise, with their alerts, and writes nothing else: the rescoring
lane keeps `person_state`, and once the events are stored its rescore finds the episode open
(the urgent lane leaves people the warm lane just scored to the ordinary batches, unless new
traits came with their events: the score reads those from `people`, once loaded). Until then a
rescore cannot see the messages: an episode naming a message not stored yet stays open
(`_keep_unstored`, as for the hot lane's abuse). Claims keep the warm lane and the rescoring
thread apart (`_rescoring_claim`): a batch waits for the warm lane to finish with its people,
and the warm lane leaves a batch's people (or everyone, during a sweep) to the urgent lane.

Time passes without events: scores decay, stages expire, a lab session runs past its limit.
The **sweeps** catch that, in the server and from `leadrefinery sweep` (cron):

* `sweep()` evaluates everyone (without storing) and processes those whose state changed
  (grade, stage, segments, flags, bucket, a score threshold side, or the score by
  `[triggers] min_score_change`) — every `[triggers] sweep_seconds`;
* `abuse_sweep()` does the same for people active within the longest allowed session — every
  `abuse_sweep_seconds` — so a session still open past its limit is flagged *while it runs*
  (the model's session rules count an open session up to the as-of time);
* the unusual-usage detector (act/live_abuse.py) — every `unusual_seconds`.

The first thing the thread does is a sweep, which is also the recovery (`catch_up`): people
whose micro-batch committed but whose rescore a `kill -9` interrupted are in it (their stored
state is old), and so is anyone with events received after the lane's watermark — each lane
records, with its work, how far the micro-batches it was handed reach (`received_at`), so a
server down for any length of time loses no buy-readiness alert. Triggers never evaluated
before (a new store, a trigger just added) first record who already meets them, silently
(`[triggers] first_run`).

Nurture ticks and SLA checks (`periodic_jobs`) run on a thread of their own every
`[nurture] tick_seconds` / `[sla] check_seconds` (0: never): while `serve` holds the store, cron
cannot run them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa
from sqlglot import exp

from ..config import Settings
from ..errors import LeadRefineryError
from ..ingest.loader import STORED
from ..model.compile import ts_literal
from ..model.dialects import DIALECTS, render
from ..model.explain import reason as reason_text
from ..model.load import Model
from ..model.scoring import ScoreRun, as_of_params, score, scoring_sql, scoring_sql_at
from ..store.engine import Engine
from .clock import Clock, SystemClock
from .live_abuse import Hit, LiveRules
from .live_scores import RUN_TABLE, LiveRun, keep_history, score_live
from .outbox import AlertIn, enqueue, resolve_recipient
from .received import Received, Recent, profile_of
from .threads import join_all, lower_priority, spawn
from .triggers import (
    Action,
    Episode,
    Firing,
    LeadState,
    TriggerSet,
    evaluate,
)
from .warm_lane import EVENTS_VIEW, near_senders, pending_events, score_model

if TYPE_CHECKING:
    from ..project import Project
    from .delivery import Deliverer

log = logging.getLogger("leadrefinery.realtime")

IDS_TABLE = "lr_rt_ids"  # a temp table (per connection) of the people being processed
RECEIVED_TABLE = "lr_rt_received"  # (temp) received messages an abuse rule may read
CHUNK = 20_000  # people per transaction in a sweep
WARM_COLUMNS = ("person_id", "account_id", "score", "grade", "stage", "stage_rank",
                "categories", "components")  # what the warm lane reads of its query
STATE_COLUMNS = ("model", "person_id", "as_of", "run_id", "score", "grade", "stage",
                 "stage_rank", "segments", "flags", "bucket", "categories", "memo", "updated_at")
EPISODE_COLUMNS = ("episode_id", "model", "trigger_id", "person_id", "key", "status",
                   "opened_at", "closed_at", "fired_at", "leave_fired_at", "outcome",
                   "alert_key", "detail")
ALERT_KINDS = {  # trigger kind (+ direction) -> alerts.trigger_kind
    ("grade", "enter"): "grade_reached", ("grade", "leave"): "grade_left",
    ("bucket", "enter"): "bucket_reached", ("bucket", "leave"): "bucket_left",
    ("score", "enter"): "score_crossed", ("score", "leave"): "score_crossed",
    ("segment", "enter"): "segment_joined", ("segment", "leave"): "segment_left",
    ("abuse", "enter"): "abuse", ("stage", "moment"): "stage_forward",
    ("action", "moment"): "buy_readiness", ("surge", "moment"): "surge",
    ("unusual_usage", "enter"): "unusual_usage",
}  # fmt: skip
PERSON_FIELDS = ("email", "name", "company", "title", "country", "owner")  # in an alert
ACCOUNT_FIELDS = ("name", "domain", "size", "industry", "owner")
KNOWN_KEY = "triggers.evaluated:"  # meta key (+ model): trigger ids evaluated at least once
# meta key (+ lane:model): every event received up to this time was handed to the lane and its
# work committed — written in the same transaction as that work (see `unprocessed`)
THROUGH_KEY = "realtime.through:"
HOT_QUEUE = 10_000  # received messages waiting for the hot (or warm) lane, at most
NEAR_SECONDS = 1.0  # how often the senders near a line are looked up again (the warm lane)
WARM_KEEP = 120.0  # seconds the warm lane keeps a message for its sender's next messages
# a person the warm lane scored this many seconds before their micro-batch was loaded takes the
# ordinary batches, not the urgent lane: it saw their events (the loader is rarely further behind)
WARMED_COVERS = 10.0
RECEIVE_SKEW = timedelta(minutes=1)  # requests received together reach the log in any order
# an episode opened for messages not stored yet stays open for a rescore that cannot see them
# (`_keep_unstored`) — unless they are not stored within this (rejected by the loader, say)
UNSTORED_KEEP = timedelta(days=1)
_TS = pa.timestamp("us")


def _loads(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, str | bytes):
        try:
            return orjson.loads(v)
        except orjson.JSONDecodeError:
            return None
    return v


def _json(v: Any) -> str:
    return orjson.dumps(v, default=str).decode()


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


def _present(fields: Sequence[str], values: Sequence[Any]) -> dict[str, Any]:
    """The fields that have a value."""
    return {k: v for k, v in zip(fields, values, strict=True) if v is not None}


def _named_messages(detail: Any) -> set[str]:
    """The messages an episode was opened for (the hot lane's `message_id`, the warm lane's
    `message_ids`)."""
    if not isinstance(detail, dict):
        return set()
    return {str(m) for m in [detail.get("message_id"), *(detail.get("message_ids") or [])] if m}


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    return a if b is None else b if a is None else max(a, b)


def _ms(seconds: Sequence[float]) -> dict[str, float]:
    xs = sorted(seconds)
    if not xs:
        return {}
    return {"p50": round(xs[len(xs) // 2] * 1000, 1),
            "p99": round(xs[min(len(xs) - 1, int(len(xs) * 0.99))] * 1000, 1),
            "max": round(xs[-1] * 1000, 1)}


def state_memo(memo: dict[str, Any]) -> dict[str, Any]:
    """What of a person's trigger memory lives in person_state: not the buy-readiness
    events seen (those are kept in trigger_episodes; see `Scorer._action_memo`)."""
    return {k: v for k, v in memo.items() if not k.startswith("action:")}


def material(old: LeadState, new: LeadState, lines: Sequence[float], eps: float,
             surges: dict[str, float]) -> bool:
    """Could a trigger see a difference between `old` and `new`? Grade, stage, segments,
    abuse flags or bucket changed; the score moved by `eps` or crossed one of `lines`; a
    category a surge trigger watches moved by a quarter of its rise."""
    if (old.grade != new.grade or old.stage != new.stage or old.stage_rank != new.stage_rank
            or old.segments != new.segments or set(old.flags) != set(new.flags)
            or old.bucket != new.bucket):
        return True
    a, b = old.score, new.score
    if (a is None) != (b is None):
        return True
    if a is not None and b is not None and (
            abs(a - b) >= eps or any((a >= x) != (b >= x) for x in lines)):
        return True
    return any(abs(float(new.categories.get(c) or 0) - float(old.categories.get(c) or 0))
               >= rise / 4 for c, rise in surges.items())


@dataclass
class BatchResult:
    people: int = 0  # people rescored
    firings: int = 0  # triggers that fired
    alerts: int = 0  # alert rows enqueued (a firing may go to several recipients)
    suppressed: int = 0  # firings held back by a cool-down
    fast_tracked: int = 0
    unchanged: int = 0  # rescored, but nothing a trigger could see changed: state kept
    run_id: str | None = None
    seconds: float = 0.0

    def __iadd__(self, other: BatchResult) -> BatchResult:
        for k in ("people", "firings", "alerts", "suppressed", "fast_tracked", "unchanged",
                  "seconds"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        self.run_id = other.run_id or self.run_id
        return self


@dataclass
class SweepResult:
    kind: str  # startup | decay | abuse
    evaluated: int = 0  # people evaluated
    changed: int = 0  # of which the state changed (processed)
    batch: BatchResult = field(default_factory=BatchResult)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "evaluated": self.evaluated, "changed": self.changed,
                "firings": self.batch.firings, "alerts": self.batch.alerts,
                "suppressed": self.batch.suppressed, "seconds": round(self.seconds, 3)}


@dataclass
class RealtimeStats:
    batches: int = 0
    people: int = 0
    firings: int = 0
    alerts: int = 0
    suppressed: int = 0
    fast_tracked: int = 0
    errors: int = 0
    last_error: str | None = None
    last_batch_seconds: float = 0.0
    last_processed_at: float | None = None
    sweeps: dict[str, dict[str, Any]] = field(default_factory=dict)  # kind -> last result
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # nurture/sla -> last result
    batch_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=2048))
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=20))


@dataclass(frozen=True)
class Job:
    """Periodic work `serve` does beside the triggers: `run(now)` -> a summary for health."""

    kind: str
    every: float  # seconds; 0 = never
    run: Callable[[datetime], dict[str, Any]]


def periodic_jobs(project: Project) -> list[Job]:
    """Nurture ticks (`[nurture] tick_seconds`) and SLA checks (`[sla] check_seconds`), which
    `leadrefinery nurture tick` / `sla --alert` would otherwise run from cron — impossible
    while `serve` holds the store."""
    settings = project.settings

    def nurture(now: datetime) -> dict[str, Any]:
        from .nurture import Nurture

        # and send what is due, as `leadrefinery nurture tick` does
        return Nurture(project.engine, settings, root=project.root).tick(
            now, deliver=True).summary()

    def sla(now: datetime) -> dict[str, Any]:
        from .sla import alerts_for, health

        report = health(project.engine, settings, now=now)
        if report.findings:  # the same finding again has the same alert id: kept once
            enqueue(project.engine, alerts_for(report.findings), now=report.at)
        return {"findings": len(report.findings)}

    return [Job("nurture", settings.nurture.tick_seconds, nurture),
            Job("sla", settings.sla.check_seconds, sla)]


# -- the scorer: one transaction per batch of people ------------------------------------------


class Scorer:
    """Rescores people with the published model and evaluates the triggers; no threads."""

    def __init__(self, engine: Engine, settings: Settings, model: Model,
                 triggers: TriggerSet | None = None, *, clock: Clock | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.cfg = settings.triggers
        self.model = model
        self.warm_model = score_model(model)  # what the warm lane scores
        self._warm_parsed: tuple[str, Any] | None = None  # its query: text, parsed
        self.triggers = triggers
        self.clock = clock or SystemClock()
        self._last_abuse_sweep: datetime | None = None
        # False when a fast lane (`Realtime`) evaluates the buy-readiness triggers instead
        self.actions_in_batches = True
        self._predictions_checked = 0.0
        self._predictions: Any = None
        self.session_rules = [a for a in model.spec.abuse if a.kind == "session"]
        # abuse rules an abuse trigger watches that one event raises: the fast lane's
        self.live_rules = LiveRules(model, {
            r for t in (triggers.of_kind("abuse") if triggers else ())
            for r in (t.rules or [a.id for a in model.spec.abuse])})

    # -- helpers --------------------------------------------------------------------------

    def _ids_table(self, ids: Sequence[str]) -> None:
        e = self.engine
        # (every time: a rolled-back transaction takes a table it created with it)
        e.execute(f"CREATE TEMP TABLE IF NOT EXISTS {IDS_TABLE} (person_id VARCHAR)")
        e.execute(f"DELETE FROM {IDS_TABLE}")
        if ids:
            e.append(IDS_TABLE, pa.table({"person_id": pa.array(list(ids), pa.string())}))

    def _in_ids(self, column: str = "person_id") -> str:
        return f"{column} IN (SELECT person_id FROM {IDS_TABLE})"

    @property
    def fast_triggers(self) -> frozenset[str]:
        """What the fast lane evaluates, without a rescore: the buy-readiness triggers, and
        the abuse triggers when one event can raise a rule they watch."""
        if self.triggers is None:
            return frozenset()
        kinds = ("action", "abuse") if self.live_rules else ("action",)
        return frozenset(t.id for t in self.triggers.of_kind(*kinds))

    def warm(self, *, received: bool = False) -> None:
        """Render the restricted scoring SQL now (a good part of a second of Python, once),
        not on the first live micro-batch, whose alerts would wait for it; with `received`,
        the warm lane's too."""
        now = self.clock.now()
        scoring_sql(self.engine, self.model, as_of=now, restrict=IDS_TABLE)
        if received:
            self._warm_query(now)

    def _warm_query(self, now: datetime) -> tuple[Any, list[Any]]:
        """The warm lane's query as of `now`, and its parameters: parsed once (`Engine.parse`)
        for every round — parsing its 50 KB is a quarter of a round's query. (Read with
        `query`, not `query_arrow`: DuckDB's relation API spends some 80 ms of Python, holding
        the GIL the request loop needs, on each query this size.)"""
        e, cols = self.engine, ", ".join(WARM_COLUMNS)
        sql = scoring_sql_at(e, self.warm_model, restrict=IDS_TABLE, events=EVENTS_VIEW)
        if sql is None:  # (the model spells the stand-in time)
            sql = scoring_sql(e, self.warm_model, as_of=now, restrict=IDS_TABLE,
                              events=EVENTS_VIEW)
            return f"SELECT {cols} FROM ({sql}) q", []
        if self._warm_parsed is None or self._warm_parsed[0] != sql:
            self._warm_parsed = (sql, e.parse(f"SELECT {cols} FROM ({sql}) q"))
        return self._warm_parsed[1], as_of_params(now)

    def known_triggers(self) -> set[str]:
        v = self.engine.scalar("SELECT value FROM meta WHERE key = ?",
                               [KNOWN_KEY + self.model.name])
        return set(_loads(v) or [])

    def _remember_triggers(self, ids: Iterable[str]) -> None:
        known = sorted(self.known_triggers() | set(ids))
        self.engine.execute("DELETE FROM meta WHERE key = ?", [KNOWN_KEY + self.model.name])
        self.engine.execute("INSERT INTO meta VALUES (?, ?)",
                            [KNOWN_KEY + self.model.name, _json(known)])

    def new_triggers(self, *, unusual: bool = False) -> set[str]:
        """Triggers never evaluated on this store: evaluated silently first (`first_run`).
        Those of kind unusual_usage (`unusual=True`) are run by act/live_abuse.py."""
        if self.triggers is None or self.cfg.first_run == "fire":
            return set()
        ids = {t.id for t in self.triggers.triggers if (t.kind == "unusual_usage") == unusual}
        return ids - self.known_triggers()

    def predictions(self) -> Any:
        """The published predictive scores (report/common.py), re-checked every minute."""
        if time.monotonic() - self._predictions_checked > 60:
            self._predictions_checked = time.monotonic()
            try:
                from ..report.common import predictions

                self._predictions = predictions(self.engine)
            except Exception:  # noqa: BLE001 - no predictive model: no buckets
                self._predictions = None
        p = self._predictions
        return p if p is not None and p.bucket else None

    def _buckets(self, restricted: bool) -> dict[str, str | None]:
        p = self.predictions()
        if p is None:
            return {}
        where = f" WHERE {self._in_ids()}" if restricted else ""
        try:
            return dict(self.engine.query(f"SELECT person_id, bucket FROM {p.subquery()} _b"
                                          f"{where}"))
        except LeadRefineryError:
            return {}

    def state_of(self, row: dict[str, Any], bucket: str | None, as_of: datetime) -> LeadState:
        flags: dict[str, dict[str, Any]] = {}
        abuse = row.get("abuse")
        if abuse and abuse not in ("{}", {}):
            flags = {k: dict(v or {}) for k, v in (_loads(abuse) or {}).items()}
            for rule in self.session_rules:
                ev = flags.get(rule.id)
                if ev and ev.get("start") and ev.get("minutes") is not None:
                    try:
                        start = datetime.fromisoformat(str(ev["start"]).replace("Z", ""))
                        elapsed = (as_of - start).total_seconds() / 60
                        ev["still_running"] = abs(elapsed - float(ev["minutes"])) < 0.02
                    except ValueError:
                        pass
        cats = row.get("categories")
        return LeadState(
            score=_num(row.get("score")), grade=row.get("grade"), stage=row.get("stage"),
            stage_rank=int(row.get("stage_rank") or 0),
            segments=frozenset(_loads(row.get("segments")) or ()), flags=flags, bucket=bucket,
            categories={k: float(v) for k, v in (_loads(cats) or {}).items() if v is not None},
        )

    def _old_states(self, restricted: bool = True, ids: list[str] | None = None
                    ) -> dict[str, tuple[LeadState, dict, Any]]:
        """Stored states of the ids table's people (all with `restricted=False`; only `ids`
        when given)."""
        where, params = self._only(restricted, ids)
        rows = self.engine.query(
            "SELECT person_id, score, grade, stage, stage_rank, segments, flags, bucket, "
            f"categories, memo, as_of FROM person_state WHERE model = ?{where}",
            [self.model.name, *params])
        out = {}
        for pid, sc, gr, st, rank, segs, flags, bucket, cats, memo, as_of in rows:
            out[pid] = (LeadState(
                score=_num(sc), grade=gr, stage=st, stage_rank=int(rank or 0),
                segments=frozenset(_loads(segs) or ()),
                flags={f: {} for f in _loads(flags) or ()}, bucket=bucket,
                categories={k: float(v) for k, v in (_loads(cats) or {}).items()
                            if v is not None}), _loads(memo) or {}, as_of)
        return out

    def _only(self, restricted: bool, ids: list[str] | None) -> tuple[str, list[Any]]:
        """A condition on person_id (`AND ...`, its parameters): `ids`, else the ids table's
        people when `restricted`, else none."""
        if ids is not None:
            return " AND person_id = ANY(?)", [ids]
        return (f" AND {self._in_ids()}", []) if restricted else ("", [])

    def _episodes(self, now: datetime, restricted: bool = True, ids: list[str] | None = None
                  ) -> tuple[dict[str, dict[tuple[str, str], Episode]],
                             dict[str, dict[tuple[str, str, str], datetime]]]:
        """Open episodes and the last alert per (trigger, key, direction), per person."""
        assert self.triggers is not None
        since = now - self.triggers.max_cooldown()
        where, params = self._only(restricted, ids)
        rows = self.engine.query(
            "SELECT person_id, episode_id, trigger_id, key, status, opened_at, fired_at, "
            "leave_fired_at, outcome FROM trigger_episodes WHERE model = ? AND "
            f"(status = 'open' OR fired_at >= ? OR leave_fired_at >= ?){where}",
            [self.model.name, since, since, *params])
        open_: dict[str, dict[tuple[str, str], Episode]] = {}
        last: dict[str, dict[tuple[str, str, str], datetime]] = {}
        kinds = {t.id: t.kind for t in self.triggers.spec.triggers}
        for pid, eid, tid, key, status, opened, fired, left, outcome in rows:
            key = key or ""
            if status == "open":
                open_.setdefault(pid, {})[(tid, key)] = Episode(eid, tid, key, opened, fired,
                                                                outcome or "")
            moment = kinds.get(tid) in ("stage", "action", "surge")
            for direction, at in (("moment" if moment else "enter", fired), ("leave", left)):
                if at is not None:
                    d = last.setdefault(pid, {})
                    if d.get((tid, key, direction)) is None or at > d[(tid, key, direction)]:
                        d[(tid, key, direction)] = at
        return open_, last

    def _actions(self, now: datetime, source: str | None = None) -> dict[str, list[Action]]:
        """Recent buy-readiness events of the people being processed (action triggers); or
        all of those in `source`, a table or view shaped like `events`."""
        assert self.triggers is not None
        ts = self.triggers.of_kind("action")
        if not ts:
            return {}
        d = DIALECTS[self.engine.dialect]
        path = exp.Coalesce(this=d.json_text(exp.column("properties"), ["path"]),
                            expressions=[d.json_text(exp.column("context"), ["page", "path"])])
        names = sorted({n for t in ts for n in t.events})
        pages = sorted({p for t in ts for p in t.pages})
        conds: list[exp.Expression] = []
        if names:
            conds.append(exp.In(this=exp.column("event"),
                                expressions=[exp.Literal.string(n) for n in names]))
        for p in pages:  # a LIKE that admits at least the glob's matches; exact check in Python
            like = p.replace("*", "%").replace("?", "_")
            conds.append(exp.And(
                this=exp.EQ(this=exp.column("type"), expression=exp.Literal.string("page")),
                expression=exp.Like(this=path.copy(), expression=exp.Literal.string(like))))
        since = now - timedelta(hours=self.cfg.action_recent_hours)

        q = (exp.select("person_id", "message_id", "ts", "type", "event",
                        exp.alias_(path, "path"))
             .from_(source or "events")
             .where(exp.GTE(this=exp.column("ts"), expression=ts_literal(since)))
             .where(exp.LTE(this=exp.column("ts"), expression=ts_literal(now)))
             .where(exp.or_(*conds)))
        if source is None:
            q = q.where(exp.condition(self._in_ids()))
        out: dict[str, list[Action]] = {}
        for pid, mid, t, typ, ev, p in self.engine.query(render(q, self.engine.dialect,
                                                                  pretty=False)):
            out.setdefault(pid, []).append(Action(mid, t, typ, ev, p))
        return out

    def _action_memo(self, now: datetime, restricted: bool = True,
                     ids: list[str] | None = None) -> dict[str, dict]:
        """Buy-readiness events already announced (or held back by a cool-down) within the
        recent window, per person, as `evaluate` expects them in `memo` — kept in
        trigger_episodes, so a person's state row is never written by two lanes at once."""
        assert self.triggers is not None
        tids = [t.id for t in self.triggers.of_kind("action")]
        if not tids:
            return {}
        where, params = self._only(restricted, ids)
        rows = self.engine.query(
            "SELECT person_id, trigger_id, opened_at, detail FROM trigger_episodes WHERE "
            f"model = ? AND trigger_id = ANY(?) AND opened_at >= ?{where}",
            [self.model.name, tids, now - timedelta(hours=self.cfg.action_recent_hours),
             *params])
        out: dict[str, dict[str, list]] = {}
        for pid, tid, opened, detail in rows:
            ids = (_loads(detail) or {}).get("message_ids") or []
            out.setdefault(pid, {}).setdefault(f"action:{tid}", []).extend(
                [m, opened.isoformat(timespec="microseconds")] for m in ids)
        return out

    def _hits(self, now: datetime, source: str | None = None) -> dict[str, list[Hit]]:
        """Recent events that raise an abuse rule on their own (act/live_abuse.py), of the
        people being processed; or of anyone in `source`, a table shaped like `events`."""
        if not self.live_rules:
            return {}
        since = now - timedelta(hours=self.cfg.action_recent_hours)
        if source is not None:
            return self.live_rules.hits(self.engine, now, since, source)
        return self.live_rules.hits(self.engine, now, since, only=self._in_ids("e.person_id"))

    def received_hits(self, items: Sequence[Received], now: datetime | None = None
                      ) -> dict[str, list[Hit]]:
        """`_hits` of received messages the loader has not stored, by message id (their
        people are not resolved yet): the rules' compiled matchers read them from a small
        table shaped like `events`."""
        mine = [it for it in items if it.type == "track" and it.event in self.live_rules.tracks]
        if not mine:
            return {}
        now = now or self.clock.now()
        e = self.engine
        e.execute(f"CREATE TEMP TABLE IF NOT EXISTS {RECEIVED_TABLE} AS SELECT person_id, "
                  "message_id, ts, type, event, properties, context, traits FROM events "
                  "WHERE false")
        e.execute(f"DELETE FROM {RECEIVED_TABLE}")
        e.append(RECEIVED_TABLE, pa.table({
            "person_id": [it.message_id for it in mine],
            "message_id": [it.message_id for it in mine],
            "ts": pa.array([it.ts for it in mine], _TS),
            "type": [it.type for it in mine], "event": [it.event for it in mine],
            "properties": [_json(it.properties or {}) for it in mine]}))
        return self.live_rules.hits(e, now, now - timedelta(hours=self.cfg.action_recent_hours),
                                    RECEIVED_TABLE)

    def act_on_actions(self, person_ids: Iterable[str], now: datetime | None = None, *,
                       through: datetime | None = None) -> BatchResult:
        """The fast lane: buy-readiness triggers for `person_ids`, without rescoring — their
        condition is the event itself — and abuse rules one event raises. Alerts carry the
        last stored score and its reasons; fast-tracked leads are routed at once. Episodes,
        alerts, routing and the lane's watermark `through` in one transaction (nothing here
        writes `person_state`, which the rescoring lane owns)."""
        began = time.perf_counter()
        res = BatchResult()
        ids = sorted({p for p in person_ids if p})
        if not ids or not self.fast_triggers:
            return res
        now = now or self.clock.now()
        with self.engine.transaction():
            self.advance("actions", through)
            self._ids_table(ids)
            self._act(self._actions(now), now, res, hits=self._hits(now))
        res.seconds = time.perf_counter() - began
        return res

    def act_on_stored(self, source: str, now: datetime | None = None, *,
                      claim: Callable[[dict[str, list[Action]], dict[str, list[Hit]]],
                                      tuple[dict, dict] | None] | None = None
                      ) -> BatchResult | None:
        """The fast lane inside the loader's transaction: buy-readiness triggers and abuse
        rules one event raises, of the events in `source` (the micro-batch just stored), as
        `act_on_actions` — and the lane's watermark moved to the micro-batch's newest event, in
        the same transaction. `claim` takes the events found (person -> actions, person ->
        abuse hits) and returns those to evaluate here, or None to stand aside (nothing done:
        -> None)."""
        began = time.perf_counter()
        res = BatchResult()
        if not self.fast_triggers:
            return res
        now = now or self.clock.now()
        with self.engine.transaction():  # (joins the loader's)
            acts, hits = self._actions(now, source), self._hits(now, source)
            if claim is not None:
                mine = claim(acts, hits)
                if mine is None:
                    return None
                acts, hits = mine
            self.advance("actions", self.engine.scalar(f"SELECT max(received_at) FROM {source}"))
            self._act(acts, now, res, hits=hits)
        res.seconds = time.perf_counter() - began
        return res

    def people_of(self, items: Sequence[Received]) -> dict[str, str]:
        """message id -> the person the loader will store each received message under (its
        ingest/identity.py PERSON_ID, with the ids its request links): known ids resolve
        through `identities`, new ones are their own person."""
        ids = sorted({i for it in items for i in (it.user_id, it.anonymous_id, it.linked_user)
                      if i})
        known = dict(self.engine.query(
            "SELECT alias_id, person_id FROM identities WHERE alias_id = ANY(?)", [ids]))
        out = {}
        for it in items:
            user = it.user_id or (None if it.anonymous_id in known else it.linked_user)
            out[it.message_id] = (known.get(user, user) if user else
                                  known.get(it.anonymous_id, f"anon:{it.anonymous_id}"))
        return out

    def act_on_received(self, items: Sequence[Received], people: dict[str, str],
                        hits: dict[str, list[Hit]] | None = None,
                        now: datetime | None = None) -> BatchResult:
        """The hot lane: buy-readiness triggers and abuse rules one event raises (`hits`: see
        `received_hits`), of messages just received (`people`: see `people_of`), before the
        loader stores them — as `act_on_actions`, with what their request says of the sender
        (identify traits) over the stored profile. Episodes, alerts and fast-tracks in one
        transaction; no watermark (the loader's lane moves it)."""
        began = time.perf_counter()
        res = BatchResult()
        if self.triggers is None or not items:
            return res
        now = now or self.clock.now()
        acts: dict[str, list[Action]] = {}
        given: dict[str, dict[str, Any]] = {}
        mine: dict[str, list[Hit]] = {}
        for it in sorted(items, key=lambda i: i.ts):
            pid = people[it.message_id]
            if it.action:
                acts.setdefault(pid, []).append(Action(it.message_id, it.ts, it.type, it.event,
                                                       it.path))
            mine.setdefault(pid, []).extend((hits or {}).get(it.message_id, ()))
            if it.traits:
                given.setdefault(pid, {}).update(profile_of(it.traits))
        with self.engine.transaction():
            self._act(acts, now, res, given, mine)
        res.seconds = time.perf_counter() - began
        return res

    def score_received(self, items: Sequence[Received], people: dict[str, str],
                       now: datetime | None = None) -> BatchResult:
        """The warm lane: rescore the people of `items` (messages with `raw`, received, some
        not stored yet; `people`: see `people_of`) with the compiled model over the stored
        events and those messages (act/warm_lane.py), and open the grade and score episodes
        that rise, with their alerts — in one transaction. Nothing else: no `person_state`
        (the rescoring lane's, once the loader has stored the events), no leaving, no other
        trigger. The episodes name the messages not stored yet (see `_keep_unstored`). The
        model is `score_model`'s part: the alerts' segments, flags and bucket are the last
        stored ones."""
        began = time.perf_counter()
        res = BatchResult()
        only = frozenset(t.id for t in self.triggers.rising()) if self.triggers else None
        ids = sorted({people[it.message_id] for it in items})
        if not ids or not only:
            return res
        now = now or self.clock.now()
        e = self.engine
        with e.transaction():
            pending = pending_events(e, items, people, now,
                                     max_bytes=self.settings.server.max_message_bytes)
            self._ids_table(ids)
            stmt, params = self._warm_query(now)
            rows = [dict(zip(WARM_COLUMNS, r, strict=True)) for r in e.query(stmt, params)]
            olds = self._old_states(ids=ids)
            open_eps, last_fired = self._episodes(now, ids=ids)
            opened: list[dict[str, Any]] = []
            fired: list[tuple[str, dict, LeadState, LeadState | None, Firing]] = []
            for row in rows:
                pid = row["person_id"]
                old = olds.get(pid, (None, {}, None))[0]
                new = self.state_of(row, None, now)
                if old is not None:  # what the score model does not compute: as last stored
                    new = replace(new, segments=old.segments, flags=old.flags, bucket=old.bucket)
                out = evaluate(self.triggers, pid, old, new, memo={},
                               open_episodes=open_eps.get(pid, {}),
                               last_fired=last_fired.get(pid, {}), now=now, only=only)
                mids = pending.get(pid, [])
                opened += [{**o, "person_id": pid, "detail": {**o["detail"], "message_ids": mids}}
                           for o in out.opened]
                fired += [(pid, row, new, old, f) for f in out.firings if f.direction == "enter"]
                res.suppressed += out.suppressed
            self._write_episodes(opened, [])
            alerts = self._alerts(fired, now, {r["person_id"]: r["components"] for r in rows})
            if alerts:
                enqueue(e, alerts, now=now)
        res.people, res.firings, res.alerts = len(rows), len(fired), len(alerts)
        res.seconds = time.perf_counter() - began
        return res

    def _act(self, acts: dict[str, list[Action]], now: datetime, res: BatchResult,
             given: dict[str, dict[str, Any]] | None = None,
             hits: dict[str, list[Hit]] | None = None) -> None:
        """Evaluate the buy-readiness triggers of `acts` (person -> events) and the abuse
        rules events raise on their own (`hits`: person -> events); write episodes, alerts
        and fast-tracks (in the caller's transaction). `given`: person -> profile fields newer
        than the store's (see `act_on_received`)."""
        raised = {pid: LiveRules.evidence(h) for pid, h in (hits or {}).items() if h}
        if not acts and not raised:
            return
        ts = self.triggers
        assert ts is not None
        only = self.fast_triggers
        ids = sorted(set(acts) | set(raised))  # a few people: a list parameter
        olds = self._old_states(ids=ids)
        open_eps, last_fired = self._episodes(now, ids=ids)
        amemo = self._action_memo(now, ids=ids)
        opened: list[dict[str, Any]] = []
        fired: list[tuple[str, dict[str, Any], LeadState, LeadState | None, Firing]] = []
        fast: list[str] = []
        recent = timedelta(hours=self.cfg.action_recent_hours)
        for pid in ids:
            old = olds.get(pid, (None, {}, None))[0]
            state = old or LeadState()
            out = evaluate(ts, pid, old, state, memo=amemo.get(pid, {}),
                           open_episodes=open_eps.get(pid, {}),
                           last_fired=last_fired.get(pid, {}), now=now,
                           actions=acts.get(pid, ()), recent=recent, only=only,
                           raised=raised.get(pid, {}))
            opened += [{**o, "person_id": pid} for o in out.opened]
            fired += [(pid, {}, state, old, f) for f in out.firings]
            res.suppressed += out.suppressed
            if out.fast_track:
                fast.append(pid)
        self._write_episodes(opened, [])
        res.people, res.firings = len(ids), len(fired)
        res.alerts = self.enqueue_with_stored_reasons(fired, now, given)
        if fast:
            res.fast_tracked = self._fast_track(fast, now, given)

    # -- one batch --------------------------------------------------------------------------

    def process(self, person_ids: Iterable[str], now: datetime | None = None, *,
                silent: Iterable[str] = (), full: bool = False,
                actions: bool | None = None, through: datetime | None = None) -> BatchResult:
        """Rescore `person_ids` (everyone with `full`) as of `now`, evaluate the triggers and
        write state, episodes, alerts and the rescoring lane's watermark `through` — all in one
        transaction. `actions=False` leaves the buy-readiness triggers to `act_on_actions` (the
        fast lane of `Realtime`)."""
        began = time.perf_counter()
        ids = sorted({p for p in person_ids if p})
        res = BatchResult()
        if not ids and not full:
            return res
        now = now or self.clock.now()
        silent_ = frozenset(silent)
        e = self.engine
        with e.transaction():
            self.advance("rescore", through)
            run: ScoreRun | LiveRun
            if full:  # a full run: every row is history
                run = score(e, self.model, as_of=now)
                source: tuple[str, list[Any]] = (
                    "(SELECT * FROM scores WHERE run_id = ?) r", [run.run_id])
            else:
                self._ids_table(ids)
                run = score_live(e, self.model, IDS_TABLE, now)
                source = (f"{RUN_TABLE} r", [])
            res.run_id, res.people = run.run_id, run.people
            gone = set() if full else self._forget_merged()
            written = None  # without triggers nothing is compared: all of it is history
            if self.triggers is not None:
                in_batch = self.actions_in_batches if actions is None else actions
                written = self._evaluate(run.run_id, source, now, silent_, restricted=not full,
                                         res=res, skip=gone, actions=not full and in_batch)
                if silent_:
                    self._remember_triggers(silent_)
            if not full:
                keep_history(e, written)
        res.seconds = time.perf_counter() - began
        return res

    def _forget_merged(self) -> set[str]:
        """People merged into one being processed (an anonymous visitor who identified, an old
        user id aliased) no longer exist: drop their latest score and state, close their
        episodes — as a batch rescore, which knows only the merged person, would have it."""
        e = self.engine
        gone = [r[0] for r in e.query(
            "SELECT old_id FROM (SELECT alias_id AS old_id, person_id FROM identities WHERE "
            f"{self._in_ids()} UNION SELECT 'anon:' || alias_id, person_id FROM identities "
            f"WHERE {self._in_ids()}) o WHERE old_id <> person_id "
            "AND old_id IN (SELECT person_id FROM latest_scores WHERE model = ?)",
            [self.model.name])]
        if not gone:
            return set()
        for table in ("latest_scores", "person_state"):
            e.execute(f"DELETE FROM {table} WHERE model = ? AND person_id = ANY(?)",
                      [self.model.name, gone])
        e.execute("UPDATE trigger_episodes SET status = 'closed', closed_at = now(), "
                  "outcome = outcome || '+merged' WHERE model = ? AND status = 'open' AND "
                  "person_id = ANY(?)", [self.model.name, gone])
        return set(gone)

    def _evaluate(self, run_id: str, source: tuple[str, list[Any]], now: datetime,
                  silent: frozenset[str], *, restricted: bool, res: BatchResult,
                  skip: frozenset[str] | set[str] = frozenset(), actions: bool = True
                  ) -> list[str]:
        """Compare the rescored rows (`source`: a FROM clause aliased `r`, and its parameters)
        with the stored states, fire triggers, write what changed; -> the people written."""
        ts = self.triggers
        assert ts is not None
        e = self.engine
        acts = self._actions(now) if actions else {}
        cols = ("person_id", "account_id", "score", "grade", "stage", "stage_rank",
                "categories", "segments", "abuse")
        moved = None if silent else self._moved(source)  # silent: everyone is recorded
        if moved is not None:
            res.unchanged += int(e.scalar(f"SELECT count(*) FROM {source[0]}", source[1]) or 0)
            moved = sorted((set(moved) | set(acts)) - skip)
            res.unchanged -= len(moved)
            where = (" WHERE r.person_id = ANY(?)", [moved])
        else:
            where = ("", [])
        rows = [dict(zip(cols, r, strict=True)) for r in e.query(
            f"SELECT {', '.join('r.' + c for c in cols)} FROM {source[0]}{where[0]}",
            [*source[1], *where[1]]) if r[0] not in skip]
        if not rows:
            return []
        olds = self._old_states(restricted, [r["person_id"] for r in rows])
        open_eps, last_fired = self._episodes(now, restricted)
        amemo = self._action_memo(now, restricted) if acts else {}
        only = None if actions else frozenset(
            t.id for t in ts.triggers if t.kind != "action")
        # the fast lane announces abuse rules one event raises: a rescore only ends them
        live = frozenset() if actions else frozenset(self.live_rules.rules)
        buckets = self._buckets(restricted)
        recent = timedelta(hours=self.cfg.action_recent_hours)
        written = SystemClock().now()  # wall clock, like events.received_at (see unprocessed)
        states: dict[str, list[Any]] = {c: [] for c in STATE_COLUMNS}
        opened: list[dict[str, Any]] = []
        closed: list[tuple[Episode, dict[str, Any]]] = []
        fired: list[tuple[str, dict[str, Any], LeadState, LeadState | None, Firing]] = []
        fast: list[str] = []
        lines = self.score_lines()
        surges = {t.category: t.rise for t in ts.of_kind("surge")}
        skipped = 0
        for row in rows:
            pid = row["person_id"]
            new = self.state_of(row, buckets.get(pid), now)
            old, memo, _ = olds.get(pid, (None, {}, None))
            if (old is not None and pid not in acts and not silent
                    and not material(old, new, lines, self.cfg.min_score_change, surges)):
                skipped += 1  # nothing a trigger could see: the stored state stays
                continue
            out = evaluate(ts, pid, old, new, memo={**memo, **amemo.get(pid, {})},
                           open_episodes=open_eps.get(pid, {}),
                           last_fired=last_fired.get(pid, {}), now=now,
                           actions=acts.get(pid, ()), silent=silent, recent=recent, only=only,
                           live_rules=live)
            for o in out.opened:
                opened.append({**o, "person_id": pid})
            closed += out.closed
            for f in out.firings:
                fired.append((pid, row, new, old, f))
            res.suppressed += out.suppressed
            if out.fast_track:
                fast.append(pid)
            for c, v in (("model", self.model.name), ("person_id", pid), ("as_of", now),
                         ("run_id", run_id), ("score", new.score), ("grade", new.grade),
                         ("stage", new.stage), ("stage_rank", new.stage_rank),
                         ("segments", _json(sorted(new.segments))),
                         ("flags", _json(sorted(new.flags))), ("bucket", new.bucket),
                         ("categories", row.get("categories") or "{}"),
                         ("memo", _json(state_memo(out.memo))), ("updated_at", written)):
                states[c].append(v)
        # the new states replace the old ones
        res.unchanged += skipped
        if states["person_id"]:
            e.execute("DELETE FROM person_state WHERE model = ? AND person_id = ANY(?)",
                      [self.model.name, states["person_id"]])
            e.append("person_state", pa.table({
                c: pa.array(v, _TS if c in ("as_of", "updated_at") else
                            pa.int64() if c == "stage_rank" else
                            pa.float64() if c == "score" else pa.string())
                for c, v in states.items()}))
        closed, fired = self._keep_unstored(closed, fired, now)
        self._write_episodes(opened, closed)
        comps = dict(e.query(
            f"SELECT r.person_id, r.components FROM {source[0]} WHERE r.person_id = ANY(?)",
            [*source[1], sorted({f[0] for f in fired})])) if fired else {}
        alerts = self._alerts(fired, now, comps)
        res.firings += len(fired)
        if alerts:
            enqueue(e, alerts, now=now)
            res.alerts += len(alerts)
        if fast:
            res.fast_tracked += self._fast_track(fast, now)
        return states["person_id"]

    def _keep_unstored(self, closed: list[tuple[Episode, dict[str, Any]]],
                       fired: list[tuple[str, dict, LeadState, LeadState | None, Firing]],
                       now: datetime) -> tuple[list, list]:
        """An episode the hot or warm lane opened for messages the loader has not stored yet
        looks over to a rescore that cannot see them: it stays open, unannounced (unless the
        messages never arrive: `UNSTORED_KEEP`). -> the episodes to close, the firings."""
        mine = [ep.episode_id for ep, _ in closed if ep.opened_at >= now - UNSTORED_KEEP]
        if not mine:
            return closed, fired
        named = {eid: m for eid, d in self.engine.query(
            "SELECT episode_id, detail FROM trigger_episodes WHERE episode_id = ANY(?)", [mine])
            if (m := _named_messages(_loads(d)))}
        if not named:
            return closed, fired
        stored = {r[0] for r in self.engine.query(
            "SELECT message_id FROM events WHERE message_id = ANY(?)",
            [sorted({m for ms in named.values() for m in ms})])}
        kept = {eid for eid, ms in named.items() if not ms <= stored}
        return ([(ep, c) for ep, c in closed if ep.episode_id not in kept],
                [f for f in fired if f[4].direction != "leave" or f[4].episode_id not in kept])

    def _moved(self, source: tuple[str, list[Any]]) -> list[str]:
        """The rescored people whose state *may* differ from the stored one in a way
        `material` sees — found in SQL, so the many who did not move cost no Python. A
        superset: `material` decides. (DuckDB's JSON and list functions, like the ingestion
        path that feeds the live lanes.)"""
        assert self.triggers is not None
        surges = self.triggers.of_kind("surge")
        surge = "".join(
            " OR abs(coalesce(TRY_CAST(json_extract_string(r.categories, ?) AS DOUBLE), 0) - "
            "coalesce(TRY_CAST(json_extract_string(s.categories, ?) AS DOUBLE), 0)) >= ?"
            for _ in surges)
        surge_params = [v for t in surges for v in (f"$.{t.category}", f"$.{t.category}",
                                                   t.rise / 4)]
        p = self.predictions()
        buckets = "(SELECT NULL AS person_id, NULL AS bucket)" if p is None else (
            f"(SELECT person_id, bucket FROM {p.subquery()} _b)")
        rows = self.engine.query(
            f"SELECT r.person_id FROM {source[0]} LEFT JOIN person_state s "
            "ON s.model = ? AND s.person_id = r.person_id "
            f"LEFT JOIN {buckets} b ON b.person_id = r.person_id "
            "WHERE s.person_id IS NULL OR r.grade IS DISTINCT FROM s.grade "
            "OR r.stage IS DISTINCT FROM s.stage OR b.bucket IS DISTINCT FROM s.bucket "
            "OR coalesce(r.stage_rank, 0) <> coalesce(s.stage_rank, 0) "
            "OR (r.score IS NULL) <> (s.score IS NULL) OR abs(r.score - s.score) >= ? "
            "OR EXISTS (SELECT 1 FROM unnest(?::DOUBLE[]) t(x) "
            "WHERE (r.score >= t.x) <> (s.score >= t.x)) "
            "OR list_sort(coalesce(from_json(r.segments, '[\"VARCHAR\"]'), [])) IS DISTINCT "
            "FROM list_sort(coalesce(from_json(s.segments, '[\"VARCHAR\"]'), [])) "
            "OR list_sort(coalesce(json_keys(r.abuse), [])) IS DISTINCT "
            f"FROM list_sort(coalesce(from_json(s.flags, '[\"VARCHAR\"]'), [])){surge}",
            [*source[1], self.model.name, self.cfg.min_score_change, self.score_lines(),
             *surge_params])
        return [r[0] for r in rows]

    def _write_episodes(self, opened: list[dict[str, Any]],
                        closed: list[tuple[Episode, dict[str, Any]]]) -> None:
        e = self.engine
        if closed:
            ids = [ep.episode_id for ep, _ in closed]
            by_id = {ep.episode_id: ch for ep, ch in closed}
            rows = e.query(f"SELECT {', '.join(EPISODE_COLUMNS)} FROM trigger_episodes "
                           "WHERE episode_id = ANY(?)", [ids])
            e.execute("DELETE FROM trigger_episodes WHERE episode_id = ANY(?)", [ids])
            for r in rows:
                d = dict(zip(EPISODE_COLUMNS, r, strict=True))
                ch = by_id[d["episode_id"]]
                d.update(status="closed", closed_at=ch["closed_at"])
                if ch.get("leave_fired_at"):
                    d["leave_fired_at"] = ch["leave_fired_at"]
                    d["alert_key"] = ch["alert_key"]
                    d["outcome"] = f"{d['outcome']}+fired_on_leave"
                opened.append({**d, "_keep": True})
        if not opened:
            return
        cols: dict[str, list[Any]] = {c: [] for c in EPISODE_COLUMNS}
        for o in opened:
            keep = o.get("_keep")
            for c in EPISODE_COLUMNS:
                v = o.get(c)
                if c == "model" and not keep:
                    v = self.model.name
                elif c == "status" and v is None:
                    v = "open"
                elif c == "detail" and not isinstance(v, str | None):
                    v = _json(v)
                cols[c].append(v)
        ts_cols = ("opened_at", "closed_at", "fired_at", "leave_fired_at")
        e.append("trigger_episodes", pa.table({
            c: pa.array(v, _TS if c in ts_cols else pa.string()) for c, v in cols.items()}))

    # -- alerts -----------------------------------------------------------------------------

    def profiles(self, ids: Sequence[str], given: dict[str, dict[str, Any]] | None = None
                 ) -> dict[str, dict[str, Any]]:
        """person -> who they are for an alert, from `people` and `accounts`; with `given`
        (person -> profile fields) over the stored ones."""
        if not ids:
            return {}
        if given:
            return self._with_given(self.profiles(ids), given)
        rows = self.engine.query(
            "SELECT p.person_id, p.email, p.name, p.company, p.title, p.country, p.owner, "
            "p.account_id, a.name, a.domain, a.size, a.industry, a.owner FROM people p "
            "LEFT JOIN accounts a ON a.account_id = p.account_id WHERE p.person_id = ANY(?)",
            [list(ids)])
        out = {}
        for (pid, email, name, company, title, country, owner, acct, aname, adomain, asize,
             aind, aowner) in rows:
            out[pid] = {
                "person": _present(PERSON_FIELDS, (email, name, company, title, country,
                                                   owner)),
                "account": _present(ACCOUNT_FIELDS, (aname, adomain, asize, aind, aowner)),
                "account_id": acct, "owner": owner, "account_owner": aowner,
            }
        return out

    def _with_given(self, profiles: dict[str, dict[str, Any]],
                    given: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Profile fields a request just set, over the stored ones: a person the store does
        not know yet gets their account by their company email domain, as the loader will."""
        from ..ingest.webmail import webmail_domains

        webmail = webmail_domains(self.settings.ingest.webmail_domains_extra)
        domains: dict[str, str] = {}
        for pid, g in given.items():
            p = profiles.setdefault(pid, {"person": {}, "account": {}, "account_id": None,
                                          "owner": None, "account_owner": None})
            p["person"].update({k: v for k, v in g.items() if k in PERSON_FIELDS})
            if g.get("owner"):
                p["owner"] = g["owner"]
            domain = (g.get("email") or "").rpartition("@")[2].strip().lower()
            if p["account_id"] is None and domain and domain not in webmail:
                p["account_id"] = domains[pid] = f"domain:{domain}"
        if domains:
            for acct, name, dom, size, ind, owner in self.engine.query(
                    "SELECT account_id, name, domain, size, industry, owner FROM accounts "
                    "WHERE account_id = ANY(?)", [sorted(set(domains.values()))]):
                for pid in (p for p, a in domains.items() if a == acct):
                    profiles[pid]["account"] = _present(ACCOUNT_FIELDS,
                                                        (name, dom, size, ind, owner))
                    profiles[pid]["account_owner"] = owner
        return profiles

    def reasons(self, components: Any, top: int = 5) -> list[dict[str, Any]]:
        comps = _loads(components) or {}
        items = sorted(comps.items(), key=lambda kv: -abs(float(kv[1].get("points") or 0)))
        return [{"rule": rid, "points": round(float(c.get("points") or 0), 3),
                 "n": int(float(c.get("n") or 0)), "detail": reason_text(self.model, rid, c)}
                for rid, c in items[:top] if float(c.get("points") or 0) != 0]

    def _alerts(self, fired: Sequence[tuple[str, dict, LeadState, LeadState | None, Firing]],
                now: datetime, comps: dict[str, Any],
                given: dict[str, dict[str, Any]] | None = None) -> list[AlertIn]:
        """The outbox rows of what fired: one per recipient (the owner, else the trigger's
        `to`; plus its `also`), with who, what changed, why and the evidence."""
        if not fired:
            return []
        ts = self.triggers
        assert ts is not None
        pids = sorted({f[0] for f in fired})
        profiles = self.profiles(pids, given)
        directory = self.settings.alerts.recipients
        out = []
        for pid, row, new, old, f in fired:
            t = f.trigger
            prof = profiles.get(pid, {"person": {}, "account": {}})
            person = prof["person"]
            who = person.get("name") or person.get("email") or pid
            if person.get("company"):
                who = f"{who} ({person['company']})"
            recipients = [resolve_recipient(prof.get("owner"), prof.get("account_owner"),
                                            ts.to(t), directory=directory)]
            for extra in ts.also(t):
                r = resolve_recipient(None, None, extra, directory=directory)
                if r not in recipients:
                    recipients.append(r)
            change = {**f.change}
            if old is not None:
                change.setdefault("previous", old.brief())
            kind = ALERT_KINDS.get((t.kind, f.direction), t.kind)
            for r in recipients:
                out.append(AlertIn.to(
                    r, trigger_id=t.id, trigger_kind=kind, title=f.title.replace("{who}", who),
                    person_id=pid, account_id=row.get("account_id") or prof.get("account_id"),
                    severity=ts.severity(t), person=person, account=prof["account"],
                    change=change, reasons=self.reasons(comps.get(pid)), evidence=f.evidence,
                    data={**f.data, "model": self.model.name, "model_version": self.model.version,
                          "episode_id": f.episode_id, "as_of": now.isoformat(),
                          "recipient_via": r.via, "state": new.brief()},
                    key=f.alert_key, created_at=now))
        return out

    def enqueue_with_stored_reasons(
            self, fired: Sequence[tuple[str, dict, LeadState, LeadState | None, Firing]],
            now: datetime, given: dict[str, dict[str, Any]] | None = None) -> int:
        """Enqueue the alerts of what fired without a rescore (buy-readiness, unusual usage),
        with the reasons of the last stored score; -> how many."""
        comps = dict(self.engine.query(
            "SELECT person_id, components FROM latest_scores WHERE model = ? AND "
            "person_id = ANY(?)", [self.model.name, sorted({f[0] for f in fired})])
        ) if fired else {}
        alerts = self._alerts(fired, now, comps, given)
        if alerts:
            enqueue(self.engine, alerts, now=now)
        return len(alerts)

    def _fast_track(self, pids: list[str], now: datetime,
                    given: dict[str, dict[str, Any]] | None = None) -> int:
        """Route buy-ready leads at once (act/routing.py) and enqueue its alerts; `given`
        profile fields over the stored ones (routing's names: the owner is `person_owner`)."""
        from .routing import Router

        router = Router(self.engine, self.settings, clock=self.clock)
        leads = []
        for p in pids:
            g = {("person_owner" if k == "owner" else k): v
                 for k, v in (given or {}).get(p, {}).items()}
            leads.append({**g, "person_id": p, "trigger": "fast_track"})
        try:
            plan = router.plan(leads, trigger="fast_track", now=now)
        except LeadRefineryError as exc:  # e.g. routing rules naming an unknown team
            log.warning("fast-track routing skipped: %s", exc)
            return 0
        if not plan.assignments and not plan.waiting:
            return 0
        router.apply(plan)
        alerts = plan.alerts(waiting_to=self.settings.alerts.default_recipient)
        if alerts:
            enqueue(self.engine, alerts, now=now)
        return len(plan.assignments)

    # -- sweeps -----------------------------------------------------------------------------

    def _evaluate_all(self, now: datetime, restricted: bool) -> pa.Table:
        """Everyone (or the ids table) as of `now`, not stored. Volume grades must use the
        newest full run's cut-offs, as the stored (restricted) states do, not re-rank: a
        restriction to `people` (the model's population anyway) makes `scoring_sql` do so."""
        g = self.model.spec.grades
        restrict = IDS_TABLE if restricted else (
            "people" if g is not None and g.method == "volume" else None)
        return self.engine.query_arrow(scoring_sql(self.engine, self.model, as_of=now,
                                                   restrict=restrict))

    def score_lines(self) -> list[float]:
        """The scores where a score trigger's condition starts or stops holding."""
        lines: list[float] = []
        if self.triggers is not None:
            for t in self.triggers.of_kind("score"):
                lines += [t.threshold, t.threshold - t.hysteresis]
        return lines

    def near_lines(self, ids: Sequence[str], lines: Sequence[float], points: float
                   ) -> list[str]:
        """Of `ids`, those whose latest score is less than `points` below one of `lines`."""
        if not ids or not lines or points <= 0:
            return []
        near = " OR ".join("(score >= ? AND score < ?)" for _ in lines)
        return [r[0] for r in self.engine.query(
            f"SELECT person_id FROM latest_scores WHERE model = ? AND person_id = ANY(?) "
            f"AND ({near})", [self.model.name, list(ids),
                              *(x for line in lines for x in (line - points, line))])]

    def changed(self, table: pa.Table, now: datetime, restricted: bool) -> list[str]:
        """People whose evaluated state differs from their stored one (or who have none)."""
        old = {}
        where = f" AND {self._in_ids()}" if restricted else ""
        for pid, sc, gr, st, segs, flags, bucket in self.engine.query(
                "SELECT person_id, score, grade, stage, segments, flags, bucket "
                f"FROM person_state WHERE model = ?{where}", [self.model.name]):
            old[pid] = (_num(sc), gr, st, segs, flags, bucket)
        buckets = self._buckets(restricted)
        lines = self.score_lines()
        eps = self.cfg.min_score_change
        cols = table.select(["person_id", "score", "grade", "stage", "segments", "abuse"])
        out = []
        for pid, sc, gr, st, segs, abuse in zip(*(c.to_pylist() for c in cols.columns),
                                                strict=True):
            o = old.get(pid)
            if o is None:
                out.append(pid)
                continue
            osc, ogr, ost, osegs, oflags, obucket = o
            sc = _num(sc)
            moved = (sc is None) != (osc is None) or (
                sc is not None and osc is not None and (
                    abs(sc - osc) >= eps or any((sc >= x) != (osc >= x) for x in lines)))
            flags = sorted((_loads(abuse) or {}) if abuse not in (None, "{}") else ())
            if (gr != ogr or st != ost or buckets.get(pid, obucket) != obucket or moved
                    or sorted(_loads(segs) or ()) != (_loads(osegs) or [])
                    or flags != (_loads(oflags) or [])):
                out.append(pid)
        return out

    def sweep(self, now: datetime | None = None, *, kind: str = "decay",
              people: Sequence[str] | None = None, extra: Iterable[str] = ()) -> SweepResult:
        """Evaluate everyone (or `people`) as of `now`; process those whose state changed,
        plus `extra`. Triggers never evaluated before are evaluated for everyone, silently."""
        began = time.perf_counter()
        now = now or self.clock.now()
        res = SweepResult(kind)
        new = self.new_triggers()
        if new and people is None:  # record who already meets them, without alerting
            res.batch += self.process((), now, silent=new, full=True)
            res.evaluated = res.changed = res.batch.people
            res.seconds = time.perf_counter() - began
            return res
        with self.engine.transaction():  # one consistent read of the store
            restricted = people is not None
            if restricted:
                self._ids_table(list(people or ()))
            table = self._evaluate_all(now, restricted)
            res.evaluated = table.num_rows
            changed = self.changed(table, now, restricted)
        todo = sorted(set(changed) | set(extra))
        res.changed = len(todo)
        for i in range(0, len(todo), CHUNK):
            res.batch += self.process(todo[i:i + CHUNK], now)
        res.seconds = time.perf_counter() - began
        return res

    def session_candidates(self, now: datetime) -> list[str] | None:
        """People who may have a lab session running past its limit (None: no session rules)."""
        if not self.session_rules:
            return None
        last, self._last_abuse_sweep = self._last_abuse_sweep, now
        if last is None or last > now or any(r.max_minutes is None or r.limit is not None
                                             for r in self.session_rules):
            back = timedelta(hours=self.cfg.abuse_lookback_hours)
        else:  # a session crossing its limit since the last sweep started this long ago
            longest = max(float(r.max_minutes or 0) for r in self.session_rules)
            back = timedelta(minutes=longest) + (now - last) + timedelta(minutes=5)
        rows = self.engine.query(
            "SELECT DISTINCT person_id FROM events WHERE ts >= ? AND ts <= ? "
            "AND person_id IS NOT NULL", [now - back, now])
        return [r[0] for r in rows]

    def abuse_sweep(self, now: datetime | None = None) -> SweepResult:
        now = now or self.clock.now()
        people = self.session_candidates(now)
        if not people:
            return SweepResult("abuse")
        return self.sweep(now, kind="abuse", people=people)

    def through(self, lane: str) -> datetime | None:
        """The lane's watermark: events received up to then have been processed."""
        v = self.engine.scalar("SELECT value FROM meta WHERE key = ?",
                               [f"{THROUGH_KEY}{lane}:{self.model.name}"])
        return datetime.fromisoformat(v) if v else None

    def advance(self, lane: str, through: datetime | None) -> None:
        """Move the lane's watermark forward to `through` (in the caller's transaction)."""
        old = self.through(lane) if through is not None else None
        if through is None or (old is not None and old >= through):
            return
        key = f"{THROUGH_KEY}{lane}:{self.model.name}"
        self.engine.execute("DELETE FROM meta WHERE key = ?", [key])
        self.engine.execute("INSERT INTO meta VALUES (?, ?)", [key, through.isoformat()])

    def newest_received(self) -> datetime | None:
        return self.engine.scalar("SELECT max(received_at) FROM events")

    def unprocessed(self, lane: str = "rescore") -> list[str]:
        """People with events received after the lane's watermark (less `RECEIVE_SKEW`): what
        a crash between a micro-batch's commit and the lane's work left undone, however long
        the server was down. Without a watermark yet (a store from before it was kept): since
        the newest stored state. Processing someone twice is harmless (the triggers' episodes
        and memory say what was already announced)."""
        since = self.through(lane)
        if since is None:
            since = self.engine.scalar("SELECT max(updated_at) FROM person_state WHERE model = ?",
                                       [self.model.name])
        if since is None:
            return []
        rows = self.engine.query(
            "SELECT DISTINCT person_id FROM events WHERE received_at >= ? "
            "AND person_id IS NOT NULL", [since - RECEIVE_SKEW])
        return [r[0] for r in rows]

    def catch_up(self, now: datetime | None = None, *, kind: str = "startup",
                 fast_lane: bool = False) -> tuple[SweepResult, BatchResult]:
        """The startup sweep plus whatever the lanes left undone (see `unprocessed`), then
        their watermarks moved to the newest event received before it began."""
        through = self.newest_received()
        extra = self.unprocessed("rescore") if self.triggers is not None else []
        res = self.sweep(now, kind=kind, extra=extra)
        with self.engine.transaction():
            self.advance("rescore", through)
        actions = BatchResult()
        if fast_lane:  # buy-readiness events a crash left unannounced
            actions = self.act_on_actions(self.unprocessed("actions"), now, through=through)
            with self.engine.transaction():
                self.advance("actions", through)
        return res, actions


# -- the thread and the deliverer, as `serve` runs them --------------------------------------


class Realtime:
    """The live path inside `serve`: the `on_loaded` hook, the rescoring thread (batches and
    sweeps) and the alert deliverer. Without a model the hook does nothing; without a trigger
    file people are still rescored live, but nothing is compared or swept."""

    def __init__(self, scorer: Scorer | None, *, deliverer: Deliverer | None = None,
                 settings: Settings, nice: int = 0, clock: Clock | None = None,
                 jobs: Sequence[Job] = ()) -> None:
        self.scorer = scorer
        self.deliverer = deliverer
        self.jobs = [j for j in jobs if j.every > 0]
        self._jobs_thread: threading.Thread | None = None
        self.cfg = settings.triggers
        self.nice = nice
        self.clock = clock or (scorer.clock if scorer else SystemClock())
        self.stats = RealtimeStats()
        self._pending: dict[str, None] = {}  # people to rescore, in the order they came
        self._pending_since: float | None = None
        self._pending_through: datetime | None = None  # newest event received among them
        # the fast lane: buy-readiness triggers need no rescoring, so they do not wait for it
        self.fast_lane = bool(scorer and scorer.fast_triggers)
        if scorer is not None and self.fast_lane:
            scorer.actions_in_batches = False
        self._fast: set[str] = set()
        self._fast_since: float | None = None
        self._fast_through: datetime | None = None
        self._fast_wake = threading.Event()
        self._fast_thread: threading.Thread | None = None
        self._ready = threading.Event()  # the startup sweep is done
        self.fast_lag_seconds: deque[float] = deque(maxlen=4096)  # hook -> committed
        self.fast_seconds: deque[float] = deque(maxlen=4096)  # one fast-lane transaction
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None
        self._next: dict[str, float] = {}
        self.lag_seconds: deque[float] = deque(maxlen=4096)  # hook -> committed, per batch
        # the urgent lane (the rescoring thread's): people whose latest score is just below a
        # line an alert fires on go first, in small batches, without yielding to ingestion
        lines = scorer.triggers.rising_lines() if scorer and scorer.triggers else []
        self._lines = lines if self.cfg.urgent_points > 0 else []
        self._arrived: list[tuple[list[str], float]] = []  # handed over, not yet sorted
        self._urgent: dict[str, float] = {}  # person -> when handed over
        self._yield_until: float | None = None  # the ordinary batch's wait (_others_first)
        self.urgent_lag_seconds: deque[float] = deque(maxlen=4096)  # hook -> committed
        # the warm lane (a thread of its own): the messages of senders near a line (`near`,
        # refreshed by the rescoring thread), scored before the loader stores them; who it
        # evaluates now and who a rescoring batch does (None: a sweep, everyone) — never both
        self.warm_lane = bool(self._lines) and self.cfg.hot_lane and self.cfg.warm_lane
        self.near: frozenset[str] = frozenset()
        self._warm: deque[Received] = deque()  # (appended on the event loop: no lock)
        self._warm_wake = threading.Event()
        self._warm_thread: threading.Thread | None = None
        self._warming: set[str] = set()
        self._warmed: dict[str, float] = {}  # person -> when the warm lane last scored them
        self._rescoring: set[str] | None = set()
        self.warm_lag_seconds: deque[float] = deque(maxlen=4096)  # received -> committed
        self.warm_dropped = 0  # items over `HOT_QUEUE`, left to the urgent lane
        # how far ingestion has loaded (e.g. the loader's line count), set by whoever wires
        # the hook in: `caught_up` in health() says every loaded micro-batch was handed over
        self.progress: Any = None
        self._hooked: Any = None
        # the newest `received_at` loaded when the hook runs (the loader's), for the watermarks
        self.received_through: Callable[[], datetime | None] | None = None
        # is ingestion behind (acknowledged events waiting to be loaded)? set with the hook
        self.ingest_behind: Callable[[], bool] | None = None
        # did the last committed micro-batch include `act_in_load`'s work? set with the hook
        self.acted_in_load: Callable[[], bool] | None = None
        self._in_load: BatchResult | None = None  # its result, until `on_loaded` runs
        # it stood aside for part of the micro-batch (a source group): the thread takes it all
        self._in_load_skipped = False
        self._fast_busy = False
        # the hot lane (same thread): messages received, not yet evaluated; the message ids it
        # claimed (-> committed yet?), which the in-load pass leaves to it; when it last
        # committed work per person (inf while it evaluates them); the people the in-load pass
        # evaluates in the micro-batch under way — the hot lane waits for its end, and the
        # in-load pass stands aside for people the hot lane touched after the micro-batch began
        # (its snapshot would not see that work)
        self._hot: deque[Received] = deque()  # (appended on the event loop: no lock)
        self.recent = Recent()  # profile changes received, not yet loaded (act/received.py)
        self._hot_ids: dict[str, bool] = {}
        self._hot_people: dict[str, float] = {}
        self._loading: set[str] = set()
        self._claims = threading.Condition(self._lock)
        self.hot_lag_seconds: deque[float] = deque(maxlen=4096)  # received -> committed
        self.hot_dropped = 0  # items over `HOT_QUEUE`, left to the loader's lane
        # when the loader's micro-batch under way began (time.monotonic()), set with the hook
        self.load_began: Callable[[], float] = lambda: 0.0

    @classmethod
    def for_project(cls, project: Project, *, clock: Clock | None = None,
                    deliverer: bool | None = None, nice: int = 0) -> Realtime:
        """The project's live path. A model or trigger file that fails validation is an error
        here (at start), not a surprise later."""
        settings = project.settings
        cfg = settings.triggers
        scorer = None
        if cfg.enabled and project.model_path(cfg.model).is_file():
            from .triggers import for_project as triggers_for

            model = project.model(cfg.model)
            scorer = Scorer(project.engine, settings, model, triggers_for(project, model),
                            clock=clock)
        d = None
        if settings.alerts.enabled if deliverer is None else deliverer:
            from .delivery import Deliverer

            d = Deliverer.for_project(project)
        return cls(scorer, deliverer=d, settings=settings, nice=nice, clock=clock,
                   jobs=periodic_jobs(project))

    @property
    def triggers(self) -> TriggerSet | None:
        return self.scorer.triggers if self.scorer else None

    # -- the hook (the loader thread calls it after each committed micro-batch) -------------

    def act_in_load(self, engine: Engine) -> None:
        """The fast lane inside the loader's micro-batch transaction (`in_transaction` of
        api/loader_thread.py): the alerts commit with the events, and nothing waits for a
        hand-over, a second transaction or a thread. `on_loaded` then counts the result — or,
        when that commit did not include this work (the loader's retry after a failure runs
        without it), hands the people to the fast-lane thread as before."""
        if self.scorer is None or not self.fast_lane:
            return
        with self._lock:  # one evaluation at a time: the thread first, if it has work
            # (before the startup sweep, the thread's catch-up has them)
            if not self._ready.is_set() or self._fast or self._fast_busy:
                self._in_load_skipped = True
                return
        res = self.scorer.act_on_stored(STORED, claim=self._claim_for_load)
        if res is None:  # the hot lane has some of these people: the thread takes them all
            self._in_load_skipped = True
            return
        self.fast_seconds.append(res.seconds)
        if self._in_load is None:
            self._in_load = BatchResult()
        self._in_load += res

    def _claim_for_load(self, acts: dict[str, list[Action]], hits: dict[str, list[Hit]]
                        ) -> tuple[dict[str, list[Action]], dict[str, list[Hit]]] | None:
        """What of a micro-batch's buy-readiness events and abuse hits the in-load pass
        evaluates: not the messages the hot lane claimed. None (stand aside: the thread takes
        the micro-batch's people, after the hot lane) if the hot lane has not committed one of
        its messages yet — the lane's watermark would pass it — or is evaluating, or committed
        work for, one of the other people since the micro-batch began."""
        began = self.load_began()
        with self._lock:
            ids = [x.message_id for d in (acts, hits) for xs in d.values() for x in xs]
            if any(self._hot_ids.get(m) is False for m in ids):
                return None
            for pid in [p for p, t in self._hot_people.items() if t < began]:
                del self._hot_people[pid]  # done before this micro-batch's snapshot
            mine_acts, mine_hits = ({pid: left for pid, xs in d.items() if (
                left := [x for x in xs if x.message_id not in self._hot_ids])}
                for d in (acts, hits))
            people = set(mine_acts) | set(mine_hits)
            if people & set(self._hot_people):
                return None
            for m in ids:  # seen stored: the episodes' memory has them from now on
                self._hot_ids.pop(m, None)
            self._loading |= people
        return mine_acts, mine_hits

    def load_ended(self, committed: bool) -> None:
        """The loader's micro-batch committed or rolled back: the hot lane may go on with the
        people its in-load pass evaluated."""
        with self._claims:
            if self._loading:
                self._loading = set()
                self._claims.notify_all()

    def on_received(self, items: list[Received]) -> None:
        """Buy-readiness and abuse messages of a request now durable (api/ingest.py): to the
        hot lane; those of senders near a line: to the warm lane. On the event loop, so no
        lock (one a background thread holds while descheduled would stall requests): dict
        and deque operations are atomic. A claim registered late only means the in-load pass
        may evaluate the message first; the hot lane then waits for that micro-batch and
        finds it announced."""
        if self.scorer is None:
            return
        warm = [it for it in items if it.raw is not None] if self.warm_lane else []
        if warm and len(self._warm) >= HOT_QUEUE:  # far behind: the urgent lane has them
            self.warm_dropped += len(warm)
        elif warm:
            self._warm.extend(warm)
            self._warm_wake.set()
        items = [it for it in items if it.action or it.abuse]
        if not items or not self.fast_lane:
            return
        if len(self._hot) >= HOT_QUEUE:  # far behind: the loader's lane takes them
            self.hot_dropped += len(items)
            return
        for it in items:
            self._hot_ids[it.message_id] = False
        self._hot.extend(items)
        self._fast_wake.set()

    def on_loaded(self, person_ids: list[str], report: Any = None) -> None:
        if self.progress is not None:
            self._hooked = self.progress()
        acted, self._in_load = self._in_load, None
        skipped, self._in_load_skipped = self._in_load_skipped, False
        if acted is not None and not (self.acted_in_load and self.acted_in_load()):
            acted = None  # rolled back with a failed attempt: the thread does it
        # the thread re-evaluates people the in-load pass already did without alerting twice:
        # what was announced is in `trigger_episodes` (the memo)
        to_thread = acted is None or skipped
        if acted is not None and acted.alerts:
            self._count_fast(acted)
            if self.deliverer is not None:
                self.deliverer.wake()
        if self.scorer is None or not person_ids:
            return
        through = self.received_through() if self.received_through is not None else None
        if through is not None:
            self.recent.forget_before(through)
        with self._lock:
            if not self._pending:
                self._pending_since = time.monotonic()
            self._pending.update(dict.fromkeys(person_ids))
            self._pending_through = _later(self._pending_through, through)
            if self._lines:
                self._arrived.append((person_ids, time.monotonic()))
            if self.fast_lane and to_thread:
                if not self._fast:
                    self._fast_since = time.monotonic()
                self._fast.update(person_ids)
                self._fast_through = _later(self._fast_through, through)
            self._idle.clear()
        self._wake.set()
        self._fast_wake.set()

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self.deliverer is not None and not self.deliverer.running:
            self.deliverer.start()
        self._stop.clear()
        if self.jobs and self._jobs_thread is None:
            self._jobs_thread = spawn(self._run_jobs, "realtime-jobs")
        if self.scorer is None or self._thread is not None:
            return
        self._thread = spawn(self._run, "realtime-triggers")
        if self.fast_lane:
            self._fast_thread = spawn(self._run_fast, "realtime-actions")
        if self.warm_lane:
            self._warm_thread = spawn(self._run_warm, "realtime-warm")

    def stop(self, timeout: float = 30.0) -> None:
        """Process what is pending (up to `timeout`), stop the threads, then the deliverer."""
        self._stop.set()
        self._wake.set()
        self._fast_wake.set()
        self._warm_wake.set()
        if not join_all((self._fast_thread, self._warm_thread, self._thread, self._jobs_thread),
                        timeout):
            log.warning("real-time rescoring did not finish within %.0fs; the next start's "
                        "sweep catches up", timeout)
        self._thread = self._fast_thread = self._warm_thread = self._jobs_thread = None
        if self.deliverer is not None and self.deliverer.running:
            self.deliverer.stop()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until nothing is pending or being processed (tests, benchmarks)."""
        return self._idle.wait(timeout)

    def health(self) -> dict[str, Any]:
        st = self.stats
        with self._lock:
            pending = len(self._pending)
            fast = len(self._fast)
        lag = sorted(self.lag_seconds)
        fast_lag = sorted(self.fast_lag_seconds)
        hot = len(self._hot)
        out: dict[str, Any] = {
            "enabled": self.scorer is not None,
            "model": self.scorer.model.name if self.scorer else None,
            "triggers": [t.id for t in self.triggers.triggers] if self.triggers else [],
            "running": self._thread is not None and self._thread.is_alive(),
            "idle": self._idle.is_set() and not pending and not fast,
            "pending_people": pending, "fast_lane": self.fast_lane, "fast_pending": fast,
            "caught_up": self.progress is None or self.progress() == self._hooked,
            "batches": st.batches, "people": st.people, "firings": st.firings,
            "alerts": st.alerts, "suppressed": st.suppressed, "fast_tracked": st.fast_tracked,
            "errors": st.errors, "last_error": st.last_error,
            "last_batch_seconds": round(st.last_batch_seconds, 4),
            "last_processed_at": st.last_processed_at, "sweeps": st.sweeps, "jobs": st.jobs,
            "recent_batches": list(st.recent),
            "batch_lag_ms": _ms(lag), "fast_lag_ms": _ms(fast_lag),
            "urgent_lines": self._lines, "urgent_pending": len(self._urgent),
            "urgent_lag_ms": _ms(list(self.urgent_lag_seconds)),
            "hot_pending": hot, "hot_dropped": self.hot_dropped,
            "hot_lag_ms": _ms(list(self.hot_lag_seconds)),
            "warm_lane": self.warm_lane, "near": len(self.near),
            "warm_pending": len(self._warm), "warm_dropped": self.warm_dropped,
            "warm_lag_ms": _ms(list(self.warm_lag_seconds)),
            "fast_batch_ms": _ms(list(self.fast_seconds)),
        }
        if self.deliverer is not None:
            ds = self.deliverer.stats
            out["delivery"] = {"delivered": ds.delivered, "failed": ds.failed, "dead": ds.dead,
                               "errors": ds.errors, "last_error": ds.last_error}
        return out

    # -- the thread -------------------------------------------------------------------------

    def _due(self, kind: str, every: float) -> bool:
        return every > 0 and time.monotonic() >= self._next.get(kind, 0.0)

    def _schedule(self, kind: str, every: float) -> None:
        self._next[kind] = time.monotonic() + every

    def _run(self) -> None:
        # below the loader and the fast lane (which run at `nice`): rescoring is the elastic
        # work, and under load each of its batches would otherwise slow every micro-batch
        lower_priority(max(self.nice, self.cfg.rescore_nice) if self.nice > 0 else 0)
        scorer = self.scorer
        assert scorer is not None
        has_triggers = scorer.triggers is not None
        if has_triggers:
            self._guard("startup", lambda: self._startup())
            self._schedule("decay", self.cfg.sweep_seconds)
            self._schedule("abuse", self.cfg.abuse_sweep_seconds)
        self._guard("warm-up", lambda: scorer.warm(received=self.warm_lane))
        self._ready.set()
        backoff = 0.5
        while True:
            if has_triggers:  # due sweeps run between batches, also under a steady stream
                for kind, every, job in (
                        ("abuse", self.cfg.abuse_sweep_seconds, scorer.abuse_sweep),
                        ("decay", self.cfg.sweep_seconds, scorer.sweep),
                        ("unusual", self.cfg.unusual_seconds, self._unusual)):
                    if self._due(kind, every):
                        self._schedule(kind, every)
                        self._guard(kind, lambda job=job, kind=kind: self._sweep(kind, job))
            if self.warm_lane and self._due("near", NEAR_SECONDS):
                self._schedule("near", NEAR_SECONDS)
                self._guard("near", lambda: self._refresh_near())
            if self._lines and self._urgent_batch():
                continue
            if self._pending and not self._others_first():
                continue  # people arrived meanwhile: some may be urgent
            self._yield_until = None
            with self._lock:
                ids, self._pending = self._pending, {}
                since, self._pending_since = self._pending_since, None
                through, self._pending_through = self._pending_through, None
            if ids:
                chunk, rest = self._split(ids)
                if rest:  # the rest goes first next round, ahead of newer arrivals
                    self._put_back(rest, since, through)
                    through = None  # the watermark moves once all of it is done
                ok = self._guard("batch", lambda c=chunk, t=since, w=through: self._batch(c, t, w))
                if not ok:  # back in the queue; retried after a pause
                    self._put_back(chunk, since, through)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 10.0)
                    continue
                backoff = 0.5
                continue  # more may have arrived meanwhile
            if self._stop.is_set():
                self._idle.set()
                return
            with self._lock:
                if not self._pending:
                    self._idle.set()
            waits = [t - time.monotonic() for t in self._next.values()] or [1.0]
            self._wake.wait(max(0.01, min(1.0, *waits)))
            self._wake.clear()

    def _urgent_batch(self) -> bool:
        """Rescore now (up to `urgent_batch_people` of) the waiting people whose latest
        score is less than `urgent_points` below an alert's line: a lead about to turn hot
        does not wait behind everyone else's rescoring. True if a batch ran."""
        scorer = self.scorer
        assert scorer is not None
        with self._lock:
            arrived, self._arrived = self._arrived, []
        when: dict[str, float] = {}
        for ids, t in arrived:
            for p in ids:
                when.setdefault(p, t)
        warmed = self._warmed  # the warm lane scored them with those events: no hurry
        for p in scorer.near_lines(list(when), self._lines, self.cfg.urgent_points):
            if warmed.get(p, -math.inf) < when[p] - WARMED_COVERS:
                self._urgent.setdefault(p, when[p])
        through = None
        with self._lock:  # those an ordinary batch took meanwhile are done
            self._urgent = {p: t for p, t in self._urgent.items() if p in self._pending}
            chunk = list(self._urgent)[: self.cfg.urgent_batch_people]
            for p in chunk:
                del self._pending[p]
            if chunk and not self._pending:  # all that waited: the watermark moves too
                through, self._pending_through = self._pending_through, None
                self._pending_since = None
        if not chunk:
            return False
        since = min(self._urgent.pop(p) for p in chunk)
        if not self._guard("urgent", lambda: self._batch(chunk, since, through,
                                                         self.urgent_lag_seconds)):
            self._put_back(chunk, since, through)  # the ordinary batches retry them
            return False
        return True

    def _put_back(self, ids: Iterable[str], since: float | None,
                  through: datetime | None) -> None:
        """People taken for a batch but not done go back ahead of those waiting, with the
        time they were handed over and the newest event they carry."""
        with self._lock:
            self._pending = {**dict.fromkeys(ids), **self._pending}
            if since is not None:
                self._pending_since = min(since, self._pending_since or since)
            self._pending_through = _later(self._pending_through, through)

    def _others_first(self) -> bool:
        """Let ingestion and the fast lane go first: a rescoring batch keeps both cores busy
        for a while, and buy-readiness alerts (which need no rescoring) would wait behind it
        for the loader. Score-based alerts wait for the next batch anyway; at most
        `[triggers] yield_seconds` in all, so rescoring is never starved. False: interrupted
        by new arrivals for the urgent lane to sort (the wait goes on after them)."""
        if self._yield_until is None:
            self._yield_until = time.monotonic() + self.cfg.yield_seconds
        while time.monotonic() < self._yield_until and not self._stop.is_set():
            with self._lock:
                fast = bool(self._fast) or self._fast_busy or bool(self._warm or self._warming)
                arrived = bool(self._arrived)
            if not fast and not (self.ingest_behind is not None and self.ingest_behind()):
                return True
            if arrived:
                return False
            self._stop.wait(0.02)
        return True

    def _split(self, ids: dict[str, None]) -> tuple[list[str], dict[str, None]]:
        """The `max_batch_people` waiting longest to process now, the rest for the next
        round: under sustained overload nobody waits for ever."""
        order = list(ids)
        n = self.cfg.max_batch_people
        return order[:n], dict.fromkeys(order[n:])

    def _run_fast(self) -> None:
        """The fast lane: after each loaded micro-batch, buy-readiness triggers of the people
        it touched, without waiting for their rescoring."""
        lower_priority(self.nice)
        scorer = self.scorer
        assert scorer is not None
        while not self._ready.wait(0.5):  # triggers evaluated for the first time: baseline
            if self._stop.is_set():
                return
        backoff = 0.5
        while True:
            hot = [self._hot.popleft() for _ in range(len(self._hot))]
            if hot:  # received messages first: the urgent ones
                if not self._guard("received", lambda hot=hot: self._act_on_received(hot)):
                    self._hot.extendleft(reversed(hot))
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 10.0)
                else:
                    backoff = 0.5
                continue
            with self._lock:
                ids, self._fast = self._fast, set()
                since, self._fast_since = self._fast_since, None
                through, self._fast_through = self._fast_through, None
                self._fast_busy = bool(ids)
            if ids:
                def run(ids: set[str] = ids, since: float | None = since,
                        through: datetime | None = through) -> None:
                    res = scorer.act_on_actions(ids, through=through)
                    self.fast_seconds.append(res.seconds)
                    if since is not None:
                        self.fast_lag_seconds.append(time.monotonic() - since)
                    if res.alerts:
                        self._count_fast(res)
                        if self.deliverer is not None:
                            self.deliverer.wake()

                if not self._guard("actions", run):
                    with self._lock:
                        self._fast |= ids
                        self._fast_since = since
                        self._fast_through = _later(self._fast_through, through)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 10.0)
                backoff = 0.5
                continue
            with self._lock:
                self._fast_busy = False
            if self._stop.is_set():
                return
            self._fast_wake.wait(1.0)
            self._fast_wake.clear()

    def _act_on_received(self, items: list[Received]) -> None:
        scorer = self.scorer
        assert scorer is not None
        # most launches are not abuse: those no rule holds for are the in-load pass's again
        hits = scorer.received_hits(items)
        idle = [it for it in items if not it.action and it.message_id not in hits]
        if idle:
            with self._lock:
                for it in idle:
                    self._hot_ids.pop(it.message_id, None)
            items = [it for it in items if it.action or it.message_id in hits]
            if not items:
                return
        people = scorer.people_of(items)
        persons = set(people.values())
        with self._claims:  # not beside an in-load pass over the same people
            while persons & self._loading and not self._stop.is_set():
                self._claims.wait(0.5)
            for p in persons:
                self._hot_people[p] = math.inf
        try:
            res = scorer.act_on_received(items, people, hits)
        finally:
            with self._claims:
                done = time.monotonic()
                for p in persons:
                    self._hot_people[p] = done
        with self._lock:
            for it in items:
                if it.message_id in self._hot_ids:
                    self._hot_ids[it.message_id] = True
            if len(self._hot_ids) > 4 * HOT_QUEUE:  # a failing loader: forget committed ones
                self._hot_ids = {m: done for m, done in list(self._hot_ids.items()) if not done}
        for it in items:
            self.hot_lag_seconds.append(done - it.at)
        if res.alerts:
            self._count_fast(res)
            if self.deliverer is not None:
                self.deliverer.wake()

    def _refresh_near(self) -> None:
        scorer = self.scorer
        assert scorer is not None
        self.near = near_senders(scorer.engine, scorer.model.name, self._lines,
                                 self.cfg.urgent_points)

    @contextlib.contextmanager
    def _rescoring_claim(self, ids: set[str] | None) -> Any:
        """While the rescoring thread evaluates `ids` (None: everyone), the warm lane leaves
        them alone; it first waits for the warm lane to be done with any of them."""
        with self._claims:
            while (self._warming if ids is None else ids & self._warming) and (
                    not self._stop.is_set()):
                self._claims.wait(0.5)
            self._rescoring = ids
        try:
            yield
        finally:
            with self._claims:
                self._rescoring = set()

    def _run_warm(self) -> None:
        """The warm lane: people near a line scored from their messages once their request is
        durable, before the loader stores them. Each sender's messages are kept for a while
        (`WARM_KEEP`): the store may still lack earlier ones when the next one comes."""
        # halfway between the request loop and the loader: a round is most of the wait for a
        # lead turning hot, and at the loader's niceness the loader and DuckDB's workers took
        # the CPU from it (sessions of 30 at 20 k events/s, 4 interleaved pairs: alert p99
        # 0.95-1.20 s at nice 10, 0.84-0.90 s at 5; request p99 the same)
        lower_priority(self.nice // 2)
        while not self._ready.wait(0.5):
            if self._stop.is_set():
                return
        kept: dict[str, Received] = {}  # message id -> message
        while not self._stop.is_set():
            new = [self._warm.popleft() for _ in range(len(self._warm))]
            if not new:
                self._warm_wake.wait(1.0)
                self._warm_wake.clear()
                continue
            old = time.monotonic() - WARM_KEEP
            kept = {m: it for m, it in kept.items() if it.at >= old}
            kept.update((it.message_id, it) for it in new)
            self._guard("warm", lambda new=new, kept=kept: self._warm_round(new, kept))

    def _warm_round(self, new: list[Received], kept: dict[str, Received]) -> None:
        scorer = self.scorer
        assert scorer is not None
        senders = {i for it in new for i in (it.user_id, it.anonymous_id) if i}
        items = [it for it in kept.values() if it.user_id in senders
                 or it.anonymous_id in senders]
        people = scorer.people_of(items)
        with self._claims:  # a rescoring batch has them: its next one sees the events
            persons = {people[it.message_id] for it in new} - (
                self._rescoring if self._rescoring is not None else set(people.values()))
            self._warming = persons
        try:
            res = scorer.score_received([it for it in items if people[it.message_id] in persons],
                                        people)
        finally:
            with self._claims:
                self._warming = set()
                self._claims.notify_all()
        done = time.monotonic()
        if len(self._warmed) > 10_000:
            self._warmed = {p: t for p, t in self._warmed.items() if t > done - WARMED_COVERS}
        # traits (identify, group) reach the score through the loader's `people` and `accounts`:
        # those people's rescore after the load is still urgent
        traits = {people[it.message_id] for it in items if it.type in ("identify", "group")}
        self._warmed.update(dict.fromkeys(persons - traits, done))
        for it in new:
            if people[it.message_id] in persons:
                self.warm_lag_seconds.append(done - it.at)
        if res.alerts:
            self._count_fast(res)
            if self.deliverer is not None:
                self.deliverer.wake()

    def _run_jobs(self) -> None:
        """Nurture ticks and SLA checks, each every `job.every` seconds, on a thread of their
        own: sending nurture mail must not hold up rescoring. The first run is one interval
        after the start."""
        lower_priority(self.nice)
        due = {job.kind: time.monotonic() + job.every for job in self.jobs}
        while not self._stop.is_set():
            for job in self.jobs:
                if time.monotonic() >= due[job.kind]:
                    due[job.kind] = time.monotonic() + job.every
                    self._guard(job.kind, lambda job=job: self._job(job))
            self._stop.wait(max(0.01, min(due.values()) - time.monotonic()))

    def _job(self, job: Job) -> None:
        began = time.perf_counter()
        out = job.run(self.clock.now())
        self.stats.jobs[job.kind] = {**out, "at": time.time(),
                                     "seconds": round(time.perf_counter() - began, 3)}
        if self.deliverer is not None:  # alerts it may have enqueued
            self.deliverer.wake()

    def _count_fast(self, res: BatchResult) -> None:
        with self._lock:
            st = self.stats
            st.firings += res.firings
            st.alerts += res.alerts
            st.suppressed += res.suppressed
            st.fast_tracked += res.fast_tracked

    def _guard(self, what: str, fn: Any) -> bool:
        try:
            fn()
            return True
        except Exception as exc:  # noqa: BLE001 - keep running; retry; say so in health
            self.stats.errors += 1
            self.stats.last_error = f"{what}: {type(exc).__name__}: {exc}"[:1000]
            log.exception("real-time %s failed", what)
            return False

    def _batch(self, ids: list[str], since: float | None, through: datetime | None,
               lags: deque[float] | None = None) -> None:
        scorer = self.scorer
        assert scorer is not None
        with self._rescoring_claim(set(ids)):
            res = scorer.process(ids, through=through)
        self._count(res)
        if since is not None:
            (self.lag_seconds if lags is None else lags).append(time.monotonic() - since)
        if res.alerts and self.deliverer is not None:
            self.deliverer.wake()

    def _count(self, res: BatchResult) -> None:
        with self._lock:
            self._count_locked(res)

    def _count_locked(self, res: BatchResult) -> None:
        st = self.stats
        st.batches += 1
        st.people += res.people
        st.firings += res.firings
        st.alerts += res.alerts
        st.suppressed += res.suppressed
        st.fast_tracked += res.fast_tracked
        st.last_batch_seconds = res.seconds
        st.batch_seconds.append(res.seconds)
        st.last_processed_at = time.time()
        st.recent.append({"at": round(st.last_processed_at, 3), "people": res.people,
                          "unchanged": res.unchanged, "alerts": res.alerts,
                          "seconds": round(res.seconds, 3)})

    def _startup(self) -> None:
        scorer = self.scorer
        assert scorer is not None
        try:
            res, actions = scorer.catch_up(fast_lane=self.fast_lane)
            self._after_sweep(res)
            self._count_fast(actions)
        finally:
            self._ready.set()

    def _sweep(self, kind: str, job: Any) -> None:
        with self._rescoring_claim(None):
            res = job()
        if res is not None:
            self._after_sweep(res)

    def _after_sweep(self, res: SweepResult) -> None:
        self.stats.sweeps[res.kind] = {**res.as_dict(), "at": time.time()}
        if res.batch.people:
            self._count(res.batch)
        if res.batch.alerts and self.deliverer is not None:
            self.deliverer.wake()
        if res.changed or res.batch.firings:
            log.info("%s sweep: %d evaluated, %d changed, %d alert(s)", res.kind, res.evaluated,
                     res.changed, res.batch.alerts)

    def _unusual(self) -> SweepResult | None:
        from .live_abuse import run_unusual

        scorer = self.scorer
        assert scorer is not None
        res = run_unusual(scorer)
        return res


def run_sweep(project: Project, *, now: datetime | None = None, kind: str = "decay",
              deliver: bool = False) -> dict[str, Any]:
    """`leadrefinery sweep`: one sweep from the command line (cron), then optionally send the
    alerts due. Needs the store (the server must not be running)."""
    settings = project.settings
    cfg = settings.triggers
    model = project.model(cfg.model)
    from .triggers import for_project as triggers_for

    ts = triggers_for(project, model)
    scorer = Scorer(project.engine, settings, model, ts)
    out: dict[str, Any] = {"model": model.name, "triggers": len(ts.triggers) if ts else 0}
    if kind in ("decay", "all"):
        out["decay"] = scorer.catch_up(now, kind="decay")[0].as_dict()
    if kind in ("abuse", "all") and ts:
        out["abuse"] = scorer.abuse_sweep(now).as_dict()
    if kind in ("unusual", "all") and ts:
        from .live_abuse import run_unusual

        r = run_unusual(scorer, now)
        out["unusual"] = r.as_dict() if r else None
    if deliver:
        from .delivery import Deliverer

        d = Deliverer.for_project(project)
        try:
            d.run_once()
        finally:
            d.close()
        out["delivered"] = d.stats.delivered
        out["failed"] = d.stats.failed
    return out
