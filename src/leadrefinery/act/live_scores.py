"""The live write path of a rescore restricted to a micro-batch's people.

    run = score_live(engine, model, "lr_rt_ids", as_of)   # rows in RUN_TABLE, latest_scores
    keep_history(engine, person_ids)                     # their rows into `scores` too

A batch rescore (`model.scoring.score`) keeps every person's row in `scores`, the history. Live,
people are rescored every time one of their events arrives — at 20 k events/s that would be
some 20 M history rows an hour, nearly all repeating the row before. So a live run

* computes its rows with the same SQL (`scoring_sql`, restricted) into a temp table;
* replaces the people's rows in `latest_scores` (when the run is the newest), as `score` does;
* records the run in `score_runs` (restricted);
* and adds to `scores` only the rows `keep_history` is given: the people whose state changed
  in a way a trigger could see (the rescoring lane passes those whose `person_state` it
  rewrites: grade, stage, segments, abuse flags, bucket, a score line, or the score moved by
  `[triggers] min_score_change`).

History queries keep working: the grade distribution per day reads full runs (all rows); a
person's score history has a row at every material change; point-in-time features take the
newest row not after the time asked, which differs from the exact live score by less than
`min_score_change`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from ..model.load import Model
from ..model.scoring import (
    SCORE_COLUMNS,
    new_run_id,
    record_run,
    refresh_latest,
    scoring_sql,
)
from ..store.engine import Engine

RUN_TABLE = "lr_rt_run"  # a temp table (per connection): the rows of the live run under way


@dataclass
class LiveRun:
    run_id: str
    as_of: datetime
    people: int


def score_live(engine: Engine, model: Model, ids_table: str, as_of: datetime) -> LiveRun:
    """Rescore the people in `ids_table` as of `as_of` into RUN_TABLE and `latest_scores`
    (in the caller's transaction)."""
    started = time.perf_counter()
    run_id = new_run_id(as_of)
    sql = scoring_sql(engine, model, as_of=as_of, restrict=ids_table)
    engine.execute(
        f"CREATE OR REPLACE TEMP TABLE {RUN_TABLE} AS SELECT ? AS run_id, ? AS model, "
        f"? AS model_version, CAST(? AS TIMESTAMP) AS as_of, q.* FROM ({sql}) q",
        [run_id, model.name, model.version, as_of])
    people = int(engine.scalar(f"SELECT count(*) FROM {RUN_TABLE}") or 0)
    refresh_latest(engine, model, as_of, f"FROM {RUN_TABLE}", [], everyone=False)
    record_run(engine, model, run_id, as_of, people=people, restricted=True,
               seconds=time.perf_counter() - started)
    return LiveRun(run_id, as_of, people)


def keep_history(engine: Engine, person_ids: list[str] | None = None) -> None:
    """Add the live run's rows of `person_ids` (everyone: None) to `scores`."""
    cols = ", ".join(SCORE_COLUMNS)
    if person_ids is None:
        engine.execute(f"INSERT INTO scores ({cols}) SELECT {cols} FROM {RUN_TABLE}")
    elif person_ids:
        engine.execute(f"INSERT INTO scores ({cols}) SELECT {cols} FROM {RUN_TABLE} "
                       "WHERE person_id = ANY(?)", [person_ids])
