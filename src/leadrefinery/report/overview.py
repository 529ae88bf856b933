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

    k = engine.query(
        f"SELECT count(*), count(*) FILTER (WHERE s.mql), count(*) FILTER (WHERE s.flagged), "
        f"count(*) FILTER (WHERE s.person_id IN {converted_sql()}), "
        f"count(*) FILTER (WHERE p.first_seen >= ?), "
        f"count(*) FILTER (WHERE p.first_seen >= ? AND s.mql), max(s.as_of) {BASE} WHERE {where}",
        [week_ago, week_ago, *wp])[0]
    kpis = {"people": k[0], "mql": k[1], "flagged": k[2], "converted": k[3],
            "new_last_week": k[4], "new_mql_last_week": k[5], "scored_as_of": k[6],
            "reference_time": ref, "signups_to": signups}

    new_by_grade = rows(("day", "grade", "leads"), engine.query(
        f"SELECT CAST(p.first_seen AS DATE) AS day, coalesce(s.grade, '-') AS g, count(*) {BASE} "
        f"WHERE {where} AND p.first_seen >= ? AND p.first_seen <= ? GROUP BY 1, 2 ORDER BY 1, 2",
        [*wp, signups - timedelta(days=days), signups]))

    # the grade distribution per full (not real-time partial) scoring run: the history
    hist_scope = "" if scope is None or not scope.limited else (
        " AND s.person_id IN (SELECT p.person_id FROM people p LEFT JOIN accounts a "
        f"ON a.account_id = p.account_id WHERE {scope_sql(scope)[0]})")
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

    mql_by_source_week = rows(("week", "source", "mql"), engine.query(
        f"SELECT CAST(date_trunc('week', p.first_seen) AS DATE), coalesce(p.source, '(none)'), "
        f"count(*) {BASE} WHERE {where} AND s.mql AND p.first_seen >= ? AND p.first_seen <= ? "
        "GROUP BY 1, 2 ORDER BY 1, 2", [*wp, signups - timedelta(weeks=weeks), signups]))

    lw = engine.query(
        f"SELECT coalesce(p.source, '(none)'), count(*), count(*) FILTER (WHERE s.mql) {BASE} "
        f"WHERE {where} AND p.first_seen >= ? AND p.first_seen <= ? GROUP BY 1 "
        "ORDER BY 3 DESC, 2 DESC", [*wp, week_ago, signups])
    last_week = [{"source": s, "leads": n, "mql": m, "mql_rate": rate(m, n)} for s, n, m in lw]

    conv = engine.query(
        f"SELECT coalesce(s.grade, '-'), count(*), "
        f"count(*) FILTER (WHERE s.person_id IN {converted_sql()}) {BASE} WHERE {where} "
        "GROUP BY 1", wp)
    by_grade = {g: (n, c) for g, n, c in conv}
    order = [*grades, *sorted(g for g in by_grade if g not in grades)]
    mql = set(spec.grades.mql) if spec.grades else set()
    conversion_by_grade = [
        {"grade": g, "leads": by_grade.get(g, (0, 0))[0], "converted": by_grade.get(g, (0, 0))[1],
         "rate": rate(by_grade.get(g, (0, 0))[1], by_grade.get(g, (0, 0))[0]), "mql": g in mql}
        for g in order]

    funnel = []
    if spec.stages:
        ranks = dict(engine.query(
            f"SELECT coalesce(s.stage_rank, 0), count(*) {BASE} WHERE {where} GROUP BY 1", wp))
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
