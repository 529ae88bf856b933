"""Ideal customer profile: which traits and behaviours won customers have more (or less) often.

For every person: won (a won outcome) or not (lost or no outcome). For each trait value (the
newest value) and each behaviour (did the `track` event / page group at least once, before the
conversion for won people), the conversion rate among people with it, its Wilson 95 % interval,
and the lift = rate / overall rate (interval divided likewise).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ..store.engine import Engine
from .features import IDENTIFYING, PAGE_GROUP


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def icp(engine: Engine, *, exclude_events: list[str] | None = None, min_count: int = 20,
        top: int = 10) -> dict[str, Any]:
    excl = list(exclude_events or [])
    marks = ", ".join("?" for _ in excl) or "NULL"
    base = """WITH won AS (SELECT person_id, min(coalesce(closed_at, created_at)) AS t
                          FROM outcomes WHERE won GROUP BY 1),
               pp AS (SELECT p.person_id, w.t AS won_at FROM people p
                      LEFT JOIN won w USING (person_id))"""
    total, wins = engine.query(f"{base} SELECT count(*), count(won_at) FROM pp")[0]
    if not total or not wins:
        return {"people": total or 0, "won": wins or 0, "top": [], "bottom": [],
                "note": "no won outcomes yet; import conversions or opportunities"}
    rows = engine.query(
        f"""{base},
        traits AS (SELECT person_id, key, json_extract_string(arg_max(value, ts), '$') v
                   FROM trait_history GROUP BY 1, 2),
        beh AS (SELECT DISTINCT e.person_id,
                    CASE WHEN e.type = 'track' THEN 'did ' || e.event
                         ELSE 'viewed ' || {PAGE_GROUP} END AS what
                FROM events e JOIN pp ON pp.person_id = e.person_id
                WHERE (e.type = 'page' OR (e.type = 'track' AND e.event NOT IN ({marks})))
                  AND (pp.won_at IS NULL OR e.ts < pp.won_at))
        SELECT 'trait' kind, key || ' = ' || v AS what, count(*) n, count(pp.won_at) k
        FROM traits JOIN pp USING (person_id)
        WHERE lower(key) NOT IN ({", ".join("?" for _ in IDENTIFYING)}) AND key NOT LIKE '$%'
        GROUP BY ALL HAVING count(*) >= ?
        UNION ALL
        SELECT 'behaviour', what, count(*), count(pp.won_at) FROM beh JOIN pp USING (person_id)
        WHERE what IS NOT NULL GROUP BY ALL HAVING count(*) >= ?""",
        [*excl, *sorted(IDENTIFYING), min_count, min_count],
    )
    rate = wins / total
    items = []
    for kind, what, n, k in rows:
        lo, hi = wilson(int(k), int(n))
        items.append({"kind": kind, "what": what, "people": int(n), "won": int(k),
                      "rate": k / n, "lift": (k / n) / rate, "lift_low": lo / rate,
                      "lift_high": hi / rate})
    frame = pd.DataFrame(items)
    if frame.empty:
        return {"people": total, "won": wins, "rate": rate, "top": [], "bottom": []}
    frame = frame.sort_values(["lift", "people"], ascending=[False, False])
    return {"people": int(total), "won": int(wins), "rate": rate,
            "top": frame.head(top).to_dict(orient="records"),
            "bottom": frame.tail(top).iloc[::-1].to_dict(orient="records")}
