"""The executive overview: how many leads, how good, where from, how far along, converting how.

    overview(engine, model, scope=None, days=90) -> dict
      kpis                 people scored, MQLs, flagged, converted, new leads in the last 7 days
      new_by_grade         [{day, grade, leads}]  new leads per day stacked by grade
      grade_history        [{as_of, grade, people}]  grade distribution per full scoring run
      mql_by_source_week   [{week, source, mql}]  MQLs by week of sign-up and source
      last_week_by_source  [{source, leads, mql, mql_rate}]
      conversion_by_grade  [{grade, leads, converted, rate, mql}]
      funnel               [{stage, reached, share}]  people who reached each buyer stage

"Now" is `reference_time` (the newest event when the data is historical); sign-up questions
(new leads, last week) count back from the newest sign-up when that is earlier — a data set
whose sign-ups stopped a while ago still shows its last week of them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ..model.load import Model
from ..store.engine import Engine
from .common import Scope, converted_sql, rate, reference_time, rows, scope_sql

BASE = ("FROM latest_scores s LEFT JOIN people p ON p.person_id = s.person_id "
        "LEFT JOIN accounts a ON a.account_id = p.account_id")


def overview(engine: Engine, model: Model, *, scope: Scope | None = None, days: int = 90,
             weeks: int = 8) -> dict[str, Any]:
    ref = reference_time(engine)
    cond, cp = scope_sql(scope, person="s.person_id")
    where = f"s.model = ? AND {cond}"
    wp = [model.name, *cp]
    spec = model.spec
    grades = spec.grades.names() if spec.grades else []
    newest = engine.scalar("SELECT max(first_seen) FROM people")
    signups = min(ref, newest) if newest is not None else ref
    week_ago = signups - timedelta(days=7)

    # totals, grades and stages: the score rows alone (conversions are a small semi-join)
    parts: dict[str, list[tuple]] = {"all": [], "g": [], "sr": [], "day": [], "wk": [], "lw": []}
    for r in engine.query(
            f"SELECT GROUPING(g, sr), g, sr, count(*), count(*) FILTER (WHERE mql), "
            "count(*) FILTER (WHERE flagged), count(*) FILTER (WHERE conv), max(as_of) FROM ("
            "SELECT coalesce(s.grade, '-') AS g, coalesce(s.stage_rank, 0) AS sr, "
            "coalesce(s.mql, false) AS mql, coalesce(s.flagged, false) AS flagged, s.as_of, "
            f"s.person_id IN {converted_sql()} AS conv FROM latest_scores s "
            f"WHERE {where}) x GROUP BY GROUPING SETS ((), (g), (sr))", wp):
        parts[{3: "all", 1: "g", 2: "sr"}[r[0]]].append(r[1:])
    # sign-up breakdowns: only the people who signed up in the window, joined to their scores
    day_from, wk_from = signups - timedelta(days=days), signups - timedelta(weeks=weeks)
    start = min(day_from, wk_from, week_ago)
    got = engine.query(
        f"""
        WITH c AS (
          SELECT coalesce(s.grade, '-') AS g, coalesce(s.mql, false) AS mql,
                 coalesce(p.source, '(none)') AS src,
                 CASE WHEN p.first_seen >= ? THEN CAST(p.first_seen AS DATE) END AS day,
                 CASE WHEN s.mql AND p.first_seen >= ?
                      THEN CAST(date_trunc('week', p.first_seen) AS DATE) END AS wk,
                 p.first_seen >= ? AS lw
          FROM (SELECT person_id, first_seen, source, owner, account_id FROM people
                WHERE first_seen >= ? AND first_seen <= ?) p
          JOIN latest_scores s ON s.person_id = p.person_id
          WHERE {where}
        )
        SELECT GROUPING(g, day, wk, src, lw), g, day, wk, src, lw, count(*),
               count(*) FILTER (WHERE mql)
        FROM c GROUP BY GROUPING SETS ((day, g), (wk, src), (lw, src))
        """,
        [day_from, wk_from, week_ago, start, signups, *wp])
    # GROUPING(g, day, wk, src, lw): a bit per column, 1 = not grouped by it
    for r in got:
        parts[{0b00111: "day", 0b11001: "wk", 0b11100: "lw"}[r[0]]].append(r[1:])
    tot = parts["all"][0] if parts["all"] else (None, None, 0, 0, 0, 0, None)
    lw_rows = [r for r in parts["lw"] if r[4]]
    kpis = {"people": tot[2] or 0, "mql": tot[3] or 0, "flagged": tot[4] or 0,
            "converted": tot[5] or 0, "new_last_week": sum(r[5] for r in lw_rows),
            "new_mql_last_week": sum(r[6] for r in lw_rows), "scored_as_of": tot[6],
            "reference_time": ref, "signups_to": signups}
    new_by_grade = sorted(({"day": r[1], "grade": r[0], "leads": r[5]} for r in parts["day"]
                           if r[1] is not None), key=lambda x: (x["day"], x["grade"]))

    # the grade distribution per full (not real-time partial) scoring run: the history
    hist_scope = "" if scope is None or not scope.limited else (
        f" AND {scope_sql(scope, person='s.person_id')[0]}")
    runs = engine.query(
        "SELECT run_id FROM score_runs WHERE model = ? AND NOT coalesce(restricted, false) "
        "ORDER BY as_of DESC LIMIT 60", [model.name])
    grade_history: list[dict[str, Any]] = []
    if len(runs) > 1:
        ids = [r[0] for r in runs]
        marks = ", ".join("?" for _ in ids)
        grade_history = rows(("as_of", "grade", "people"), engine.query(
            f"SELECT s.as_of, coalesce(s.grade, '-'), count(*) FROM scores s "
            f"WHERE s.run_id IN ({marks}){hist_scope} GROUP BY 1, 2 ORDER BY 1, 2",
            [*ids, *(scope_sql(scope)[1] if hist_scope else [])]))

    mql_by_source_week = sorted(({"week": r[2], "source": r[3], "mql": r[5]}
                                 for r in parts["wk"] if r[2] is not None),
                                key=lambda x: (x["week"], x["source"]))
    last_week = sorted(({"source": r[3], "leads": r[5], "mql": r[6], "mql_rate": rate(r[6], r[5])}
                        for r in lw_rows), key=lambda x: (-x["mql"], -x["leads"]))
    by_grade = {r[0]: (r[2], r[5]) for r in parts["g"]}
    order = [*grades, *sorted(g for g in by_grade if g not in grades)]
    mql = set(spec.grades.mql) if spec.grades else set()
    conversion_by_grade = [
        {"grade": g, "leads": by_grade.get(g, (0, 0))[0], "converted": by_grade.get(g, (0, 0))[1],
         "rate": rate(by_grade.get(g, (0, 0))[1], by_grade.get(g, (0, 0))[0]), "mql": g in mql}
        for g in order]

    funnel = []
    if spec.stages:
        ranks = {r[1]: r[2] for r in parts["sr"]}
        total = sum(ranks.values())
        for i, stage in enumerate(spec.stages.order, 1):
            reached = sum(n for r, n in ranks.items() if (r or 0) >= i)
            funnel.append({"stage": stage, "step": i, "reached": reached,
                           "share": rate(reached, total)})
    return {
        "kpis": kpis, "grades": grades, "new_by_grade": new_by_grade,
        "grade_history": grade_history, "mql_by_source_week": mql_by_source_week,
        "last_week_by_source": last_week, "conversion_by_grade": conversion_by_grade,
        "funnel": funnel, "days": days, "weeks": weeks,
    }
