"""Abuse while it happens: declared rules one event raises, and the unusual-usage trigger.

The declared abuse rules of the model run on the live path like everything else (act/realtime.py
rescoring each micro-batch with the compiled model, and the abuse sweep re-checking people who
may have a session open past its limit — the model counts an open session up to the as-of time).

A rescore runs seconds behind under load, though, and a rule that one event raises (a class
launched with 40 guests) needs none: `LiveRules` evaluates those rules' own matchers (compiled
by model/compile.py `event_abuse_query`, the SQL the scoring query uses for them) on the events a
micro-batch stores, so the fast lane announces the abuse with the event, while it happens. The
rescore then finds the episode open and only ends it, once the flag is gone.

What nobody wrote a rule for is found here: an isolation forest (`act/unusual.py`) fitted on
the population's per-person usage features flags the few whose usage looks like nobody else's,
with the features that made them unusual.

Features are the model's own per-person aggregates — `facts.NAME` and `rules.ID` (how many times
an event rule matched) — taken from the *same compiled query* that scores people (its wide
form), so they mean exactly what the model says, on every engine, as of the sweep's time. The
population is everyone active within the trigger's `active_within` (people.last_seen).

    det, X = fit_usage(engine, model, trigger, as_of)   # the fitted detector and its features
    run_unusual(scorer)                                  # evaluate every unusual_usage trigger

An unusual_usage trigger is a condition: an episode opens when the detector flags the person
(one alert, unless cooled down) and closes when it no longer does.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
import pandas as pd
from sqlglot import exp

from ..model import spec as S
from ..model.compile import CHECK_AS_OF, event_abuse_query
from ..model.dialects import render
from ..model.expr import text_literal
from ..model.load import Model
from ..model.scoring import scoring_sql
from ..store.engine import Engine
from .triggers import Episode, LeadState, UnusualTrigger, evaluate
from .unusual import UnusualUsageDetector

if TYPE_CHECKING:
    from .realtime import Scorer, SweepResult


@dataclass(frozen=True)
class Hit:
    """One event that raises an abuse rule on its own."""

    rule: str
    message_id: str
    ts: datetime
    event: str | None
    properties: dict[str, Any]
    measure: float | None


class LiveRules:
    """The event abuse rules in `watched` that one event raises, for the fast lane."""

    def __init__(self, model: Model, watched: Iterable[str]) -> None:
        self.model = model
        ids = set(watched)
        self.rules = {a.id: a for a in model.spec.abuse if a.id in ids
                      and isinstance(a, S.EventAbuse)
                      and event_abuse_query(model, a, "events", CHECK_AS_OF) is not None}
        # what the hot lane picks from requests: the tracks these rules name (not globs)
        self.tracks = frozenset(n for a in self.rules.values() if a.on == "track"
                                for n in a.event or () if not any(c in n for c in "*?"))
        # compiled once unless a test reads the time (a `window:`, days_since(...)): the hot
        # lane runs this for every few requests
        self._static = all(
            _render(event_abuse_query(model, a, "t", CHECK_AS_OF), "duckdb")
            == _render(event_abuse_query(model, a, "t", CHECK_AS_OF + timedelta(days=1)),
                       "duckdb") for a in self.rules.values())
        self._sql: dict[tuple[str, str, str | None], str] = {}

    def __bool__(self) -> bool:
        return bool(self.rules)

    def _query(self, dialect: str, now: datetime, source: str, only: str | None) -> str:
        key = (dialect, source, only)
        if key in self._sql:
            return self._sql[key]
        parts = []
        for rid, a in self.rules.items():
            q = event_abuse_query(self.model, a, source, now)
            assert q is not None
            q = q.select(exp.alias_(text_literal(rid), "rule"))
            parts.append(q.where(exp.condition(only)) if only else q)
        union = parts[0]
        for q in parts[1:]:
            union = exp.union(union, q, distinct=False)
        sql = f"SELECT * FROM ({_render(union, dialect)}) h WHERE h.ts >= ? AND h.ts <= ?"
        if self._static:
            self._sql[key] = sql
        return sql

    def hits(self, engine: Engine, now: datetime, since: datetime, source: str = "events",
             only: str | None = None) -> dict[str, list[Hit]]:
        """person -> the events of `source` between `since` and `now` that raise a rule,
        oldest first (`only`: a condition on `e.person_id`, e.g. the batch's ids)."""
        if not self.rules:
            return {}
        out: dict[str, list[Hit]] = {}
        rows = engine.query(self._query(engine.dialect, now, source, only), [since, now])
        for pid, mid, t, event, props, measure, rid in sorted(rows, key=lambda r: r[2]):
            props = orjson.loads(props) if isinstance(props, str | bytes) else props or {}
            out.setdefault(pid, []).append(Hit(rid, mid, t, event, props, (
                None if measure is None else float(measure))))
        return out

    @staticmethod
    def evidence(hits: Iterable[Hit]) -> dict[str, dict[str, Any]]:
        """rule -> evidence: as the scoring query's (count, first, last, max), with the
        latest event's message id and its own fields (which class, environment, template)."""
        out: dict[str, dict[str, Any]] = {}
        for h in sorted(hits, key=lambda h: h.ts):
            ev = out.setdefault(h.rule, {"count": 0, "first": str(h.ts)})
            ev["count"] += 1
            ev["last"] = str(h.ts)
            if h.measure is not None:
                ev["max"] = max(h.measure, ev.get("max", h.measure))
            ev.update(event=h.event, message_id=h.message_id, properties={
                k: v for k, v in h.properties.items() if not isinstance(v, dict | list)})
        return out


def _render(q: exp.Expression | None, dialect: str) -> str:
    assert q is not None
    return render(q, dialect, pretty=False)


def feature_columns(model: Model, names: list[str] | None) -> dict[str, str]:
    """Feature name (`facts.x`, `rules.y`) -> column of the compiled wide query."""
    if names is None:
        names = [f"facts.{f}" for f in model.spec.facts]
        names += [f"rules.{r.id}" for r in model.spec.rules if r.on_events and r.enabled]
    out = {}
    for n in names:
        ns, _, name = n.partition(".")
        out[n] = f"f_{name}" if ns == "facts" else f"r_{name}_n"
    return out


def usage_features(engine: Engine, model: Model, as_of: datetime,
                   names: list[str] | None = None, *,
                   active_within: timedelta | None = None) -> pd.DataFrame:
    """One row per person active within `active_within` of `as_of`, one column per feature."""
    cols = feature_columns(model, names)
    wide = engine.query_arrow(scoring_sql(engine, model, as_of=as_of, snapshot=False))
    have = set(wide.column_names)
    cols = {n: c for n, c in cols.items() if c in have}
    frame = wide.select(["person_id", *cols.values()]).to_pandas()
    frame = frame.set_index("person_id").rename(columns={c: n for n, c in cols.items()})
    frame = frame.astype("float64")
    if active_within is not None:
        active = {r[0] for r in engine.query(
            "SELECT person_id FROM people WHERE last_seen >= ? AND last_seen <= ?",
            [as_of - active_within, as_of])}
        frame = frame.loc[frame.index.isin(active)]
    return frame


def fit_usage(engine: Engine, model: Model, t: UnusualTrigger,
              as_of: datetime) -> tuple[UnusualUsageDetector | None, pd.DataFrame]:
    """The detector fitted on the active population (None when it is too small)."""
    X = usage_features(engine, model, as_of, t.features,
                       active_within=timedelta(days=t.active_within))
    X = X.loc[:, X.nunique() > 1] if len(X) else X  # constant features say nothing
    if len(X) < t.min_population or X.shape[1] == 0:
        return None, X
    det = UnusualUsageDetector(contamination=t.contamination, random_state=t.random_state,
                               max_reasons=t.max_reasons).fit(X)
    return det, X


def run_unusual(scorer: Scorer, now: datetime | None = None) -> SweepResult | None:
    """Fit each unusual_usage trigger's detector on the population, then open (alert) and
    close episodes — state, episodes and alerts in one transaction per trigger."""
    from .realtime import BatchResult, SweepResult

    ts = scorer.triggers
    if ts is None:
        return None
    triggers = ts.of_kind("unusual_usage")
    if not triggers:
        return None
    began = time.perf_counter()
    now = now or scorer.clock.now()
    e = scorer.engine
    res = SweepResult("unusual")
    new_ids = scorer.new_triggers(unusual=True)
    for t in triggers:
        det, X = fit_usage(e, scorer.model, t, now)
        res.evaluated += len(X)
        flagged: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        if det is not None:
            ex = det.explain(X)
            flagged = {str(pid): (float(r["score"]), list(r["reasons"]))
                       for pid, r in ex.iterrows()}
        silent = frozenset({t.id}) if t.id in new_ids else frozenset()
        batch = BatchResult()
        with e.transaction():
            rows = e.query(
                "SELECT person_id, episode_id, key, opened_at, fired_at, outcome "
                "FROM trigger_episodes WHERE model = ? AND trigger_id = ? AND status = 'open'",
                [scorer.model.name, t.id])
            open_ = {pid: Episode(eid, t.id, key or "", opened, fired, outcome or "")
                     for pid, eid, key, opened, fired, outcome in rows}
            since = now - ts.cooldown(t)
            last = {pid: at for pid, at in e.query(
                "SELECT person_id, max(fired_at) FROM trigger_episodes WHERE model = ? AND "
                "trigger_id = ? AND fired_at >= ? GROUP BY person_id",
                [scorer.model.name, t.id, since])}
            people = sorted(set(flagged) | set(open_))
            states = _states(scorer, people)
            opened, closed, fired = [], [], []
            for pid in people:
                state, account_id = states.get(pid, (LeadState(), None))
                out = evaluate(
                    ts, pid, state, state, memo=None,
                    open_episodes={(t.id, ""): open_[pid]} if pid in open_ else {},
                    last_fired={(t.id, "", "enter"): last[pid]} if pid in last else {},
                    now=now, silent=silent, only=frozenset({t.id}),
                    unusual={t.id: flagged[pid]} if pid in flagged else {})
                opened += [{**o, "person_id": pid} for o in out.opened]
                closed += out.closed
                fired += [(pid, {"account_id": account_id}, state, state, f)
                          for f in out.firings]
                batch.suppressed += out.suppressed
            scorer._write_episodes(opened, closed)
            batch.firings = len(fired)
            batch.alerts = scorer.enqueue_with_stored_reasons(fired, now)
            if silent:
                scorer._remember_triggers(silent)
        res.changed += len(opened) + len(closed)
        res.batch += batch
    res.seconds = time.perf_counter() - began
    return res


def _states(scorer: Scorer, people: list[str]) -> dict[str, tuple[LeadState, str | None]]:
    """The stored states (person_state) of `people`, and their accounts."""
    from .realtime import _loads, _num

    if not people:
        return {}
    rows = scorer.engine.query(
        "SELECT s.person_id, s.score, s.grade, s.stage, s.stage_rank, s.segments, s.flags, "
        "s.bucket, p.account_id FROM person_state s LEFT JOIN people p ON p.person_id = "
        "s.person_id WHERE s.model = ? AND s.person_id = ANY(?)",
        [scorer.model.name, people])
    out = {}
    for pid, sc, gr, st, rank, segs, flags, bucket, acct in rows:
        out[pid] = (LeadState(score=_num(sc), grade=gr, stage=st, stage_rank=int(rank or 0),
                              segments=frozenset(_loads(segs) or ()),
                              flags={f: {} for f in _loads(flags) or ()}, bucket=bucket), acct)
    return out
