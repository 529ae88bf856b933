"""Backtest: replay a scoring model over history and see how its grades would have converted.

    backtest(engine, model, start=, end=, step_days=7, horizon_days=30, baseline=None) -> dict

At each cut-off (start, start + step, ... up to end) the model scores everyone as of that
moment (point-in-time: only events up to the cut-off, decay measured from it). A lead counts as
*converted* when a won deal or conversion (table `outcomes`, by person or by their account)
happens after the cut-off and within the horizon; people who had already converted by the
cut-off are customers and left out. Per grade the report gives: leads (person × cut-off),
converted, conversion rate, and the share of all conversions the grade captured; per cut-off
the MQL volume (and how many were new MQLs); and the same for `baseline` (the published model),
side by side, so a change can be judged before it is published.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlglot import exp

from ..errors import InputError
from ..model.compile import build_plan, naive_utc
from ..model.dialects import render
from ..model.load import Model
from ..store.engine import Engine


def cutoffs(start: datetime, end: datetime, step_days: float) -> list[datetime]:
    start, end = naive_utc(start), naive_utc(end)
    if end < start:
        raise InputError("--to is before --from")
    if step_days <= 0:
        raise InputError("the step must be positive")
    out, t = [], start
    while t <= end:
        out.append(t)
        t += timedelta(days=step_days)
    if len(out) > 520:
        raise InputError(f"{len(out)} cut-offs is too many; use a longer --step")
    return out


def conversions(engine: Engine) -> dict[str, list[datetime]]:
    """person id -> times of their won deals / conversions (account-level ones count for every
    person of the account)."""
    rows = engine.query(
        """
        SELECT o.person_id, p.person_id, coalesce(o.closed_at, o.created_at)
        FROM outcomes o
        LEFT JOIN people p ON o.person_id IS NULL AND p.account_id = o.account_id
        WHERE (o.won OR o.kind = 'conversion') AND coalesce(o.closed_at, o.created_at) IS NOT NULL
        """
    )
    out: dict[str, list[datetime]] = defaultdict(list)
    for pid, via_account, t in rows:
        who = pid or via_account
        if who:
            out[who].append(naive_utc(t))
    return {k: sorted(v) for k, v in out.items()}


def _grades_at(
    engine: Engine, model: Model, at: datetime
) -> list[tuple[str, str | None, bool, float]]:
    plan = build_plan(model, as_of=at)
    q = exp.select("person_id", "grade", "mql", "score").from_(
        exp.Subquery(this=plan.query, alias=exp.TableAlias(this=exp.to_identifier("q")))
    )
    return [
        (p, g, bool(m), float(s or 0))
        for p, g, m, s in engine.query(render(q, engine.dialect, pretty=False))
    ]


def evaluate(
    engine: Engine,
    model: Model,
    cuts: list[datetime],
    horizon: timedelta,
    conv: dict[str, list[datetime]],
) -> dict[str, Any]:
    order = model.spec.grades.names() if model.spec.grades else []
    per_grade: dict[str, dict[str, int]] = defaultdict(lambda: {"leads": 0, "converted": 0})
    weeks = []
    prev_mql: set[str] = set()
    total_conv = 0
    for at in cuts:
        rows = _grades_at(engine, model, at)
        mql_now: set[str] = set()
        converted_here = 0
        for pid, grade, mql, _ in rows:
            times = conv.get(pid, [])
            if any(t <= at for t in times):
                continue  # already a customer at the cut-off
            won = any(at < t <= at + horizon for t in times)
            key = grade if grade is not None else "(none)"
            per_grade[key]["leads"] += 1
            per_grade[key]["converted"] += int(won)
            converted_here += int(won)
            if mql:
                mql_now.add(pid)
        total_conv += converted_here
        weeks.append(
            {
                "cutoff": at.isoformat(sep=" "),
                "people": len(rows),
                "mql": len(mql_now),
                "new_mql": len(mql_now - prev_mql),
                "converted_within_horizon": converted_here,
            }
        )
        prev_mql = mql_now
    grades = []
    for g in [*order, *sorted(k for k in per_grade if k not in order)]:
        if g not in per_grade and g not in order:
            continue
        v = per_grade.get(g, {"leads": 0, "converted": 0})
        grades.append(
            {
                "grade": g,
                "leads": v["leads"],
                "converted": v["converted"],
                "conversion_rate": v["converted"] / v["leads"] if v["leads"] else None,
                "share_of_conversions": v["converted"] / total_conv if total_conv else None,
                "mql": g in (model.spec.grades.mql if model.spec.grades else []),
            }
        )
    mql_rows = [g for g in grades if g["mql"]]
    mql_leads = sum(g["leads"] for g in mql_rows)
    mql_conv = sum(g["converted"] for g in mql_rows)
    all_leads = sum(g["leads"] for g in grades)
    return {
        "model": model.name,
        "model_version": model.version,
        "file": model.file,
        "grades": grades,
        "weeks": weeks,
        "mql": {
            "grades": [g["grade"] for g in mql_rows],
            "leads": mql_leads,
            "converted": mql_conv,
            "conversion_rate": mql_conv / mql_leads if mql_leads else None,
            "share_of_conversions": mql_conv / total_conv if total_conv else None,
        },
        "leads": all_leads,
        "converted": total_conv,
        "base_rate": total_conv / all_leads if all_leads else None,
    }


def backtest(
    engine: Engine,
    model: Model,
    *,
    start: datetime,
    end: datetime,
    step_days: float = 7,
    horizon_days: float = 30,
    baseline: Model | None = None,
) -> dict[str, Any]:
    cuts = cutoffs(start, end, step_days)
    horizon = timedelta(days=horizon_days)
    conv = conversions(engine)
    out: dict[str, Any] = {
        "from": cuts[0].isoformat(sep=" "),
        "to": naive_utc(end).isoformat(sep=" "),
        "step_days": step_days,
        "horizon_days": horizon_days,
        "cutoffs": len(cuts),
        "candidate": evaluate(engine, model, cuts, horizon, conv),
    }
    if baseline is not None and baseline.hash != model.hash:
        out["published"] = evaluate(engine, baseline, cuts, horizon, conv)
    return out


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def format_report(report: dict[str, Any]) -> str:
    """The report as plain text: per-grade table(s) side by side, then MQL volume per cut-off."""
    lines = [
        f"backtest {report['from']} .. {report['to']}, every {report['step_days']:g} days, "
        f"conversions within {report['horizon_days']:g} days ({report['cutoffs']} cut-offs)"
    ]
    models = [("candidate", report["candidate"])]
    if "published" in report:
        models.append(("published", report["published"]))
    for label, m in models:
        lines.append("")
        lines.append(
            f"{label}: {m['model']} {m['model_version']} ({m['file']}) — "
            f"{m['leads']:,} leads, {m['converted']:,} converted, base rate {_pct(m['base_rate'])}"
        )
        lines.append(f"  {'grade':<8}{'leads':>10}{'converted':>11}{'rate':>9}{'share':>9}")
        for g in m["grades"]:
            star = "*" if g["mql"] else " "
            lines.append(
                f"  {g['grade'] + star:<8}{g['leads']:>10,}{g['converted']:>11,}"
                f"{_pct(g['conversion_rate']):>9}{_pct(g['share_of_conversions']):>9}"
            )
        q = m["mql"]
        lines.append(
            f"  MQL (*): {q['leads']:,} leads, {q['converted']:,} converted, rate "
            f"{_pct(q['conversion_rate'])}, captures {_pct(q['share_of_conversions'])} of conversions"
        )
    lines.append("")
    head = f"  {'cut-off':<20}" + "".join(f"{label + ' MQL':>16}{'new':>7}" for label, _ in models)
    lines.append("MQL volume per cut-off")
    lines.append(head)
    for i, w in enumerate(models[0][1]["weeks"]):
        row = f"  {w['cutoff'][:19]:<20}"
        for _, m in models:
            ww = m["weeks"][i]
            row += f"{ww['mql']:>16,}{ww['new_mql']:>7,}"
        lines.append(row)
    return "\n".join(lines)
