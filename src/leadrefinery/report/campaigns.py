"""Campaign effectiveness: which sources, campaigns and referral codes bring good leads and
customers, and what each good lead and each conversion cost.

    campaigns(engine, model, by="campaign", since=None, until=None, good_grades=None,
              good_buckets=("A", "B"), scope=None) -> dict

Per key (source | medium | campaign | referral code): leads (people first seen in the window),
good leads (a good grade — default the model's MQL grades — or a good predictive bucket),
conversions (won deal or conversion), rates, and the cost from the `campaigns` table (imported
campaign-cost CSV: campaign, source, medium, period, cost), pro-rated to the window by days, so
cost per lead, per good lead and per conversion. A person's campaign is their first-touch UTM
campaign (`context.campaign.name`), else their referral code / first campaign.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ..errors import InputError
from ..model.load import Model
from ..store.engine import Engine
from .common import Scope, converted_sql, predictions, rate, scope_sql

DIMENSIONS = {
    "source": "p.source",  # the first-touch source (utm source / referral source)
    "medium": "coalesce(ft.utm_medium, cm.medium)",
    "campaign": "coalesce(ft.utm_name, p.campaign)",
    "referral_code": "rc.code",
}
COST_KEY = {"source": "source", "medium": "medium", "campaign": "campaign",
            "referral_code": "campaign"}

FIRST_TOUCH = (
    "(SELECT person_id, "
    "min(CASE WHEN key = '$first_name' THEN json_extract_string(value, '$') END) AS utm_name, "
    "min(CASE WHEN key = '$first_source' THEN json_extract_string(value, '$') END) AS utm_source, "
    "min(CASE WHEN key = '$first_medium' THEN json_extract_string(value, '$') END) AS utm_medium "
    "FROM trait_history WHERE key IN ('$first_name', '$first_source', '$first_medium') "
    "GROUP BY person_id)"
)


def campaigns(engine: Engine, model: Model, *, by: str = "campaign",
              since: datetime | None = None, until: datetime | None = None,
              good_grades: list[str] | None = None, good_buckets: list[str] | None = None,
              scope: Scope | None = None) -> dict[str, Any]:
    if by not in DIMENSIONS:
        raise InputError(f"cannot group campaigns by {by!r}; use one of {', '.join(DIMENSIONS)}",
                         field="by")
    if good_grades is None:
        good_grades = list(model.spec.grades.mql) if model.spec.grades else []
    good_buckets = list(good_buckets or [])
    pred = predictions(engine)
    key = DIMENSIONS[by]
    cond, cp = scope_sql(scope)
    conds, params = [cond], list(cp)
    if since:
        conds.append("p.first_seen >= ?")
        params.append(since)
    if until:
        conds.append("p.first_seen < ?")
        params.append(until)
    # good leads, MQLs and conversions are small sets: semi-joins against them are far
    # cheaper than joining every person's score row
    good, good_params = [], []
    if good_grades:
        good.append("SELECT person_id FROM latest_scores WHERE model = ? AND grade IN "
                    f"({', '.join('?' for _ in good_grades)})")
        good_params += [model.name, *good_grades]
    if pred and pred.bucket and good_buckets:
        good.append(f"SELECT person_id FROM {pred.subquery()} pr WHERE bucket IN "
                    f"({', '.join('?' for _ in good_buckets)})")
        good_params += good_buckets
    good_sql = f"p.person_id IN ({' UNION '.join(good)})" if good else "false"
    joins = ""
    if "ft." in key:  # the first-touch UTM values: only when the key needs them
        joins += f"LEFT JOIN {FIRST_TOUCH} ft ON ft.person_id = p.person_id "
    if "rc." in key:  # the newest referralCode trait (cheaper than parsing every profile)
        joins += ("LEFT JOIN (SELECT person_id, arg_max(json_extract_string(value, '$'), ts) "
                  "AS code FROM trait_history WHERE key = 'referralCode' GROUP BY person_id) rc "
                  "ON rc.person_id = p.person_id ")
    if "cm." in key:
        joins += ("LEFT JOIN (SELECT campaign, min(medium) AS medium FROM campaigns "
                  "GROUP BY campaign) cm ON cm.campaign = p.campaign ")
    data = engine.query(
        f"SELECT coalesce({key}, '(none)') AS k, count(*), count(*) FILTER (WHERE {good_sql}), "
        f"count(*) FILTER (WHERE p.person_id IN {converted_sql()}), "
        "count(*) FILTER (WHERE p.person_id IN (SELECT person_id FROM latest_scores "
        f"WHERE model = ? AND mql)) FROM people p {joins}"
        f"WHERE {' AND '.join(conds)} GROUP BY 1",
        [*good_params, model.name, *params])
    costs = cost_by(engine, COST_KEY[by], since=since, until=until)
    out = []
    for k, leads, good_n, conv, mql in data:
        cost = costs.get(k)
        out.append(_row(k, leads, good_n, conv, mql, cost))
    seen = {r["key"] for r in out}
    if not (scope and scope.limited):  # money spent on a key that brought nobody
        out += [_row(k, 0, 0, 0, 0, c) for k, c in costs.items() if k not in seen and c]
    out.sort(key=lambda r: (-(r["good_leads"]), -(r["leads"]), r["key"]))
    total = _row("total", sum(r["leads"] for r in out), sum(r["good_leads"] for r in out),
                 sum(r["conversions"] for r in out), sum(r["mql"] for r in out),
                 sum(r["cost"] or 0 for r in out) if not (scope and scope.limited) else None)
    return {"by": by, "rows": out, "total": total, "since": since, "until": until,
            "good_grades": good_grades, "good_buckets": good_buckets if pred else [],
            "has_costs": bool(costs)}


def _row(k: str, leads: int, good: int, conv: int, mql: int, cost: float | None) -> dict:
    return {
        "key": k, "leads": leads, "good_leads": good, "good_rate": rate(good, leads),
        "conversions": conv, "conversion_rate": rate(conv, leads), "mql": mql,
        "cost": cost,
        "cost_per_lead": cost / leads if cost is not None and leads else None,
        "cost_per_good_lead": cost / good if cost is not None and good else None,
        "cost_per_conversion": cost / conv if cost is not None and conv else None,
    }


def cost_by(engine: Engine, column: str, *, since: datetime | None = None,
            until: datetime | None = None) -> dict[str, float]:
    """Spend per campaign / source / medium, each period pro-rated to the part of it inside
    [since, until) by days (a period's end date is inclusive, as in the cost CSV)."""
    lo = since or datetime(1900, 1, 1)
    hi = until or datetime(3000, 1, 1)
    got = engine.query(
        f"SELECT coalesce({column}, '(none)'), sum(cost * greatest(0, "
        "date_diff('second', greatest(period_start, ?), least(coalesce(period_end, period_start) "
        "+ INTERVAL 1 DAY, ?))) / greatest(1, date_diff('second', period_start, "
        "coalesce(period_end, period_start) + INTERVAL 1 DAY))) FROM campaigns GROUP BY 1",
        [lo, hi])
    return {k: float(v or 0) for k, v in got}


def window(days: int | None, ref: datetime) -> tuple[datetime | None, datetime | None]:
    if not days:
        return None, None
    return ref - timedelta(days=days), None
