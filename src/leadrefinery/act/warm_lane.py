"""The warm lane's store work: who is near a line, and events received but not stored yet.

    near = near_senders(engine, model, lines, points)    # sender ids the HTTP handler watches
    pending = pending_events(engine, items, people, now) # person -> message ids not stored
    scoring_sql(engine, score_model(model), ..., events=EVENTS_VIEW)   # stored and received

A lead a few points below an alert's line turns hot with the event that carries it over; on
the rescoring lanes that alert waits for the loader (under load, more than a second) and then
for a rescoring batch. `Realtime` (act/realtime.py, "The warm lane") instead scores such a
person as soon as the request is durable, with the model's own compiled SQL reading
`EVENTS_VIEW`: the stored events and the received messages the store lacks, normalised by the
loader's own SQL (ingest/normalize.py), so the rows are the ones the loader will store —
and only the part of the model a score and grade read (`score_model`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta

import pyarrow as pa

from ..ingest.loader import EVENT_COLUMNS
from ..ingest.normalize import normalize_sql
from ..model import spec as S
from ..model.load import Model
from ..store.engine import Engine
from .received import Received

PENDING_TABLE = "lr_rt_pending"  # (temp) received messages the store has not got yet
EVENTS_VIEW = "lr_rt_events"  # (temp) `events` and PENDING_TABLE
_RAW, _WHO = "_lr_warm_raw", "_lr_warm_who"


def score_model(model: Model) -> Model:
    """`model` less what no score or grade reads: its segments, which people make an account
    engaged, and the abuse rules worth no points (their session, concurrency and regularity
    windows). A round of the warm lane is mostly DuckDB planning its query (parse, bind,
    optimise: 0.12 s of 0.17 s for the demo model), and this query plans in about a quarter
    less time. Same rules, same SQL for them: the score, grade, categories, reasons and stage
    are the whole model's."""
    spec = model.spec.model_copy(update={
        "segments": {}, "accounts": S.Accounts(),
        "abuse": [a for a in model.spec.abuse if a.points]})
    return dataclasses.replace(model, spec=spec)


def near_senders(engine: Engine, model: str, lines: Sequence[float], points: float
                 ) -> frozenset[str]:
    """The ids messages may name (person, user and anonymous ids) of the people whose latest
    score is less than `points` below one of `lines` (an anonymous visitor's person id is
    `anon:` and the id: ingest/identity.py)."""
    if not lines or points <= 0:
        return frozenset()
    near = " OR ".join("(score >= ? AND score < ?)" for _ in lines)
    rows = engine.query(
        f"WITH n AS (SELECT person_id FROM latest_scores WHERE model = ? AND ({near})) "
        "SELECT person_id FROM n UNION SELECT substr(person_id, 6) FROM n "
        "WHERE person_id LIKE 'anon:%' UNION SELECT alias_id FROM identities "
        "WHERE person_id IN (SELECT person_id FROM n)",
        [model, *(x for line in lines for x in (line - points, line))])
    return frozenset(r[0] for r in rows)


def pending_events(engine: Engine, items: Sequence[Received], people: dict[str, str],
                   now: datetime, *, max_bytes: int) -> dict[str, list[str]]:
    """Fill PENDING_TABLE with the events `items` (with `raw`) become, under their person
    (`people`: message id -> person), less those already stored; (re)create EVENTS_VIEW over
    it (in the caller's transaction). -> person -> the message ids pending."""
    mine = [it for it in items if it.raw is not None]
    raw = pa.table({"line_no": pa.array(range(len(mine)), pa.int64()),
                    "line": pa.array([it.raw.decode() for it in mine], pa.string())})
    who = pa.table({"message_id": pa.array([it.message_id for it in mine], pa.string()),
                    "person_id": pa.array([people[it.message_id] for it in mine], pa.string())})
    cols = ", ".join("w.person_id" if c == "person_id" else
                     "CAST(NULL AS VARCHAR) AS source" if c == "source" else f"n.{c}"
                     for c in EVENT_COLUMNS.split(", "))
    # a stored copy has the same id and time (the same normalisation); literal bounds let
    # DuckDB skip the row groups of other times
    ts = [it.ts for it in mine] or [now]
    engine.register(_RAW, raw)
    engine.register(_WHO, who)
    try:
        engine.execute(
            f"CREATE OR REPLACE TEMP TABLE {PENDING_TABLE} AS SELECT {cols} FROM "
            f"({normalize_sql(_RAW, max_bytes=max_bytes)}) n JOIN {_WHO} w "
            "ON w.message_id = n.message_id WHERE n.reason IS NULL AND NOT EXISTS ("
            "SELECT 1 FROM events e WHERE e.message_id = n.message_id AND e.ts = n.ts "
            "AND e.ts BETWEEN $2 AND $3)",
            [now.isoformat(), min(ts) - timedelta(days=1), max(ts) + timedelta(days=1)])
    finally:
        engine.unregister(_RAW)
        engine.unregister(_WHO)
    engine.execute(f"CREATE OR REPLACE TEMP VIEW {EVENTS_VIEW} AS SELECT {EVENT_COLUMNS} "
                   f"FROM events UNION ALL SELECT {EVENT_COLUMNS} FROM {PENDING_TABLE}")
    out: dict[str, list[str]] = {}
    for pid, mid in engine.query(f"SELECT person_id, message_id FROM {PENDING_TABLE} "
                                 "ORDER BY ts, message_id"):
        out.setdefault(pid, []).append(mid)
    return out
