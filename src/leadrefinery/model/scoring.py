"""Running a compiled model on an engine and keeping the results as snapshots.

    score(engine, model, as_of=None, restrict=None) -> ScoreRun

One scoring run is a handful of set-based statements, all through the `Engine` interface
(so DuckDB and PostgreSQL behave the same):

1. INSERT INTO scores SELECT ... FROM (the compiled model) — one row per person;
2. the run's row in score_runs (with the volume-grade cut-offs it produced);
3. latest_scores refreshed for the people scored, when this run is the newest;
4. account_scores: the account roll-up of the run.

`restrict` rescores only some people — a table of person ids (the real-time path's micro-batch)
or a list of ids — with the *same* compiled query, restricted by one predicate. Volume grades
then use the cut-offs of the newest full run, so a person's grade means the same in both paths.

Compiling and rendering a model takes a good part of a second of Python; the real-time path
rescores every second. So `scoring_sql` keeps the rendered SQL per model, dialect and restriction
with the as-of time (and run id) as stand-ins, and fills them in per run.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
from sqlglot import exp

from ..store.engine import Engine
from .compile import (
    SNAPSHOT_COLUMNS,
    Plan,
    build_plan,
    epoch_us,
    naive_utc,
    snapshot_query,
    time_text,
    ts_literal,
)
from .dialects import render
from .load import Model

SCORE_COLUMNS = ("run_id", "model", "model_version", "as_of", *SNAPSHOT_COLUMNS)
JSON_COLUMNS = ("categories", "segments", "abuse", "components", "stage_evidence")


@dataclass
class ScoreRun:
    run_id: str
    model: str
    model_version: str
    as_of: datetime
    people: int
    seconds: float
    restricted: bool
    latest: bool  # latest_scores was refreshed (this run is the newest)

    def as_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "model": self.model,
            "model_version": self.model_version,
            "as_of": self.as_of.isoformat(),
            "people": self.people,
            "seconds": round(self.seconds, 3),
            "restricted": self.restricted,
            "latest": self.latest,
        }


def now_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def latest_cutoffs(engine: Engine, model: Model) -> dict[str, float] | None:
    """The volume-grade cut-offs of the newest full run of this model (None if there is none)."""
    rows = engine.query(
        "SELECT cutoffs FROM score_runs WHERE model = ? AND NOT restricted "
        "ORDER BY as_of DESC, created_at DESC LIMIT 1",
        [model.name],
    )
    if not rows or rows[0][0] is None:
        return None
    value = rows[0][0]
    return json.loads(value) if isinstance(value, str) else dict(value)


# Two stand-ins, so a template is checked once: rendered for each, one filled in must give
# the other.
_STAND_INS = (
    (datetime(2001, 2, 3, 4, 5, 6, 789012), "lr-template-run-a"),
    (datetime(2002, 3, 4, 5, 6, 7, 890123), "lr-template-run-b"),
)
_TEMPLATES: dict[tuple, str | None] = {}
_MAX_TEMPLATES = 32
_TEMPLATES_LOCK = threading.Lock()  # the real-time lanes score from two threads


def _fill(sql: str, stand_in: tuple[datetime, str], as_of: datetime, run_id: str) -> str:
    at, run = stand_in
    return (
        sql.replace(time_text(at), time_text(as_of))
        .replace(str(epoch_us(at)), str(epoch_us(as_of)))
        .replace(run, run_id)
    )


def scoring_sql(
    engine: Engine,
    model: Model,
    *,
    as_of: datetime,
    restrict: str | list[str] | None = None,
    insert_run: str | None = None,
    snapshot: bool = True,
    events: str = "events",
) -> str:
    """The model's SQL as of `as_of`: the per-person query, or with `insert_run` the INSERT of
    that run's `scores` rows; `events`: the table of events read. Rendered once per
    model/dialect/restriction, then filled in."""
    as_of = naive_utc(as_of)
    template, render_at = _template(engine, model, restrict, insert_run, snapshot, events)
    if template is None:
        return render_at(as_of, insert_run or "")
    return _fill(template, _STAND_INS[0], as_of, insert_run or "")


def scoring_sql_at(
    engine: Engine, model: Model, *, restrict: str, events: str = "events"
) -> str | None:
    """`scoring_sql` with its time left as parameters (`as_of_params`): one text for every
    time, for a statement parsed once and run again and again (`Engine.parse`). None if the
    model's SQL spells the stand-in time itself."""
    template, _ = _template(engine, model, restrict, None, True, events)
    if template is None:
        return None
    at = _STAND_INS[0][0]
    text = time_text(at)
    sql = (template.replace(f"CAST('{text}' AS TIMESTAMP)", "CAST($1 AS TIMESTAMP)")
           .replace(str(epoch_us(at)), "CAST($2 AS BIGINT)"))
    return None if text in sql else sql  # (every time literal must have become a parameter)


def _template(
    engine: Engine,
    model: Model,
    restrict: str | list[str] | None,
    insert_run: str | None,
    snapshot: bool,
    events: str,
) -> tuple[str | None, Callable[[datetime, str], str]]:
    """The SQL rendered at the first stand-in time and run id (None: not worth keeping, or
    the stand-ins are not the only difference), and how to render it at another."""
    cutoffs = None  # a restricted run grades by the newest full run's volume cut-offs
    g = model.spec.grades
    if restrict is not None and g is not None and g.method == "volume":
        cutoffs = latest_cutoffs(engine, model) or {}

    def render_at(at: datetime, run: str) -> str:
        plan = build_plan(model, as_of=at, restrict=restrict, volume_cutoffs=cutoffs,
                          events=events)
        if insert_run is not None:
            return insert_scores_sql(engine, plan, run)
        return plan.sql(engine.dialect, snapshot=snapshot, pretty=False)

    if isinstance(restrict, list):  # ids inlined: one person's explain, not worth keeping
        return None, render_at
    key = (
        model.hash,
        engine.dialect,
        restrict,
        json.dumps(cutoffs, sort_keys=True),
        insert_run is not None,
        snapshot,
        events,
    )
    with _TEMPLATES_LOCK:
        if key not in _TEMPLATES:
            (at_a, run_a), (at_b, run_b) = _STAND_INS
            sql_a, sql_b = render_at(at_a, run_a), render_at(at_b, run_b)
            # None: the stand-ins are not the only difference (only if a model's own literal
            # spells one) — then this key is always rendered afresh.
            same = _fill(sql_a, _STAND_INS[0], at_b, run_b) == sql_b
            _TEMPLATES[key] = sql_a if same else None
            while len(_TEMPLATES) > _MAX_TEMPLATES:
                del _TEMPLATES[next(iter(_TEMPLATES))]
        return _TEMPLATES[key], render_at


def as_of_params(as_of: datetime) -> list:
    """The parameters of `scoring_sql_at`'s text as of `as_of`."""
    as_of = naive_utc(as_of)
    return [as_of, epoch_us(as_of)]


def _lit(value: object) -> exp.Expression:
    if value is None:
        return exp.Null()
    if isinstance(value, bool):
        return exp.true() if value else exp.false()
    if isinstance(value, datetime):
        return ts_literal(value)
    return exp.Literal.string(str(value))


def insert_scores_sql(engine: Engine, plan: Plan, run_id: str, table: str = "scores") -> str:
    """INSERT INTO scores (...) SELECT the run's rows — one statement, run by the engine."""
    json_type = engine.type_names.get("json", "JSON")
    cast_json = json_type.upper() not in ("STRING", "TEXT", "VARCHAR")
    model = plan.model
    cols: list[exp.Expression] = [
        exp.alias_(_lit(run_id), "run_id"),
        exp.alias_(_lit(model.name), "model"),
        exp.alias_(_lit(model.version), "model_version"),
        exp.alias_(_lit(plan.as_of), "as_of"),
    ]
    for c in SNAPSHOT_COLUMNS:
        node: exp.Expression = exp.column(c, "q")
        if c in JSON_COLUMNS and cast_json:
            node = exp.cast(node, exp.DataType.build(json_type, dialect=engine.dialect))
        cols.append(exp.alias_(node, c))
    select = exp.Select(expressions=cols).from_(
        exp.Subquery(this=snapshot_query(plan), alias=exp.TableAlias(this=exp.to_identifier("q")))
    )
    insert = exp.Insert(
        this=exp.Schema(
            this=exp.to_table(table), expressions=[exp.to_identifier(c) for c in SCORE_COLUMNS]
        ),
        expression=select,
    )
    return render(insert, engine.dialect, pretty=False)


def new_run_id(as_of: datetime) -> str:
    return f"{as_of:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def refresh_latest(
    engine: Engine, model: Model, as_of: datetime, rows: str, params: list, *, everyone: bool
) -> bool:
    """Make `rows` (`FROM … WHERE …` over the score columns) the model's latest scores — for
    everyone, or for those people only — unless a newer run exists; True if they were."""
    newest = engine.scalar("SELECT max(as_of) FROM score_runs WHERE model = ?", [model.name])
    if newest is not None and as_of < naive_utc(newest):  # older must not replace newer
        return False
    if everyone:
        engine.execute("DELETE FROM latest_scores WHERE model = ?", [model.name])
    else:
        engine.execute(
            f"DELETE FROM latest_scores WHERE model = ? AND person_id IN (SELECT person_id {rows})",
            [model.name, *params],
        )
    cols = ", ".join(SCORE_COLUMNS)
    engine.execute(f"INSERT INTO latest_scores ({cols}) SELECT {cols} {rows}", params)
    return True


def record_run(
    engine: Engine, model: Model, run_id: str, as_of: datetime, *, people: int,
    restricted: bool, seconds: float, cutoffs: dict[str, float] | None = None,
) -> None:
    """The run's row in `score_runs`."""
    engine.append(
        "score_runs",
        pa.table(
            {
                "run_id": [run_id],
                "model": [model.name],
                "model_version": [model.version],
                "model_hash": [model.hash],
                "as_of": pa.array([as_of], pa.timestamp("us")),
                "created_at": pa.array([now_utc()], pa.timestamp("us")),
                "engine": [engine.name],
                "people": pa.array([people], pa.int64()),
                "restricted": [restricted],
                "cutoffs": [json.dumps(cutoffs) if cutoffs is not None else None],
                "seconds": [seconds],
            }
        ),
    )


def score(
    engine: Engine,
    model: Model,
    *,
    as_of: datetime | None = None,
    restrict: str | list[str] | None = None,
) -> ScoreRun:
    """Score everyone (or the restricted people) as of `as_of` (default: now) and store it."""
    started = time.perf_counter()
    as_of = naive_utc(as_of) if as_of else now_utc()
    run_id = new_run_id(as_of)
    restricted = restrict is not None
    with engine.transaction():
        engine.execute(
            scoring_sql(engine, model, as_of=as_of, restrict=restrict, insert_run=run_id)
        )
        people = int(engine.scalar("SELECT count(*) FROM scores WHERE run_id = ?", [run_id]) or 0)
        cutoffs = None
        g = model.spec.grades
        if g is not None and g.method == "volume" and not restricted:
            cutoffs = {
                grade: float(low)
                for grade, low in engine.query(
                    "SELECT grade, min(score) FROM scores WHERE run_id = ? GROUP BY grade", [run_id]
                )
            }
        latest = refresh_latest(
            engine, model, as_of, "FROM scores WHERE run_id = ?", [run_id],
            everyone=not restricted,
        )
        if not restricted:
            engine.execute(
                """
                INSERT INTO account_scores (run_id, model, as_of, account_id, people,
                  engaged_people, mql_people, score_sum, score_max, best_stage_rank, flagged_people)
                SELECT run_id, model, as_of, account_id, count(*),
                       sum(CASE WHEN engaged THEN 1 ELSE 0 END),
                       sum(CASE WHEN mql THEN 1 ELSE 0 END),
                       sum(score), max(score), max(stage_rank),
                       sum(CASE WHEN flagged THEN 1 ELSE 0 END)
                FROM scores WHERE run_id = ? AND account_id IS NOT NULL
                GROUP BY run_id, model, as_of, account_id
                """,
                [run_id],
            )
        seconds = time.perf_counter() - started
        record_run(engine, model, run_id, as_of, people=people, restricted=restricted,
                   seconds=seconds, cutoffs=cutoffs)
    return ScoreRun(run_id, model.name, model.version, as_of, people, seconds, restricted, latest)


def compute(
    engine: Engine,
    model: Model,
    *,
    as_of: datetime | None = None,
    restrict: str | list[str] | None = None,
    snapshot: bool = True,
) -> pa.Table:
    """The per-person results without storing them (explain, backtest, tests)."""
    sql = scoring_sql(engine, model, as_of=as_of or now_utc(), restrict=restrict, snapshot=snapshot)
    return engine.query_arrow(sql)
