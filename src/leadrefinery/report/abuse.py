"""Free-trial abuse: who is flagged and on what evidence, who is active right now and what they
are running — so sales can call while it happens.

    abuse(engine, model, scope=None, recent_days=14, active_minutes=30, limit=20, page=1)
      flags      flagged leads (newest activity first): rules raised with their evidence;
                 `open` when the person was active within `recent_days`
      alerts     abuse / unusual-usage alerts from the outbox
      active     people with events in the last `active_minutes` (of `reference_time`), each
                 with their latest events and whether they are flagged
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ..model.load import Model
from ..store.engine import Engine
from .common import Scope, loads, reference_time, rows, scope_sql

ABUSE_KINDS = ("abuse", "abuse_flag", "unusual_usage", "unusual")


def abuse(engine: Engine, model: Model, *, scope: Scope | None = None, recent_days: int = 14,
          active_minutes: float = 30, limit: int = 20, page: int = 1) -> dict[str, Any]:
    ref = reference_time(engine)
    cond, cp = scope_sql(scope, person="s.person_id")
    descs = {a.id: a.description or a.id for a in model.spec.abuse}
    base = ("FROM latest_scores s LEFT JOIN people p ON p.person_id = s.person_id "
            "LEFT JOIN accounts a ON a.account_id = p.account_id "
            f"WHERE s.model = ? AND s.flagged AND {cond}")
    counts = engine.query(
        f"SELECT count(*), count(*) FILTER (WHERE p.last_seen >= ?) {base}",
        [ref - timedelta(days=recent_days), model.name, *cp])[0]
    flags = []
    for r in rows(("person_id", "email", "name", "company", "score", "grade", "last_seen",
                   "abuse", "owner"), engine.query(
            "SELECT s.person_id, p.email, p.name, p.company, s.score, s.grade, p.last_seen, "
            f"s.abuse, coalesce(p.owner, a.owner) {base} "
            "ORDER BY p.last_seen DESC NULLS LAST, s.person_id LIMIT ? OFFSET ?",
            [model.name, *cp, limit, (max(1, page) - 1) * limit])):
        ev = loads(r.pop("abuse")) or {}
        r["rules"] = [{"rule": k, "description": descs.get(k, k), "evidence": v}
                      for k, v in ev.items()]
        seen = r["last_seen"]
        r["open"] = seen is not None and seen >= ref - timedelta(days=recent_days)
        flags.append(r)
    kinds = ", ".join(f"'{k}'" for k in ABUSE_KINDS)
    acond, ap = scope_sql(scope, person="al.person_id")
    alerts = rows(("alert_id", "created_at", "person_id", "email", "trigger_id", "severity",
                   "title", "status", "channel", "recipient"), engine.query(
        "SELECT al.alert_id, al.created_at, al.person_id, p.email, al.trigger_id, al.severity, "
        "al.title, al.status, al.channel, al.recipient FROM alerts al "
        "LEFT JOIN people p ON p.person_id = al.person_id "
        "LEFT JOIN accounts a ON a.account_id = p.account_id "
        f"WHERE (al.trigger_kind IN ({kinds}) OR al.trigger_id LIKE 'abuse%') AND {acond} "
        "ORDER BY al.created_at DESC LIMIT 50", ap))
    since = ref - timedelta(minutes=active_minutes)
    acond2, ap2 = scope_sql(scope, person="e.person_id")
    active = rows(("person_id", "email", "name", "company", "events", "first", "last",
                   "flagged", "grade"), engine.query(
        "SELECT e.person_id, p.email, p.name, p.company, count(*), min(e.ts), max(e.ts), "
        "coalesce(bool_or(s.flagged), false), min(s.grade) FROM events e "
        "LEFT JOIN people p ON p.person_id = e.person_id "
        "LEFT JOIN accounts a ON a.account_id = p.account_id "
        "LEFT JOIN latest_scores s ON s.person_id = e.person_id AND s.model = ? "
        f"WHERE e.ts >= ? AND e.ts <= ? AND e.person_id IS NOT NULL AND {acond2} "
        "GROUP BY 1, 2, 3, 4 ORDER BY 8 DESC, 7 DESC LIMIT 100",
        [model.name, since, ref, *ap2]))
    if active:
        ids = [a["person_id"] for a in active]
        marks = ", ".join("?" for _ in ids)
        recent: dict[str, list[dict]] = {}
        for pid, ts, typ, event, props in engine.query(
                "SELECT person_id, ts, type, event, properties FROM (SELECT person_id, ts, type, "
                "event, properties, row_number() OVER (PARTITION BY person_id ORDER BY ts DESC) "
                f"AS rn FROM events WHERE ts >= ? AND ts <= ? AND person_id IN ({marks})) x "
                "WHERE rn <= 4 ORDER BY person_id, ts DESC", [since, ref, *ids]):
            recent.setdefault(pid, []).append({"ts": ts, "what": _what(typ, event, loads(props))})
        for a in active:
            a["doing"] = recent.get(a["person_id"], [])
    return {"reference_time": ref, "flagged": counts[0], "open": counts[1],
            "page": max(1, page), "pages": max(1, -(-counts[0] // limit)),
            "recent_days": recent_days, "active_minutes": active_minutes,
            "flags": flags, "alerts": alerts, "active": active}


def _what(typ: str, event: str | None, props: Any) -> str:
    """An event in a few words: `Environment Launched template=windows-lab guests=32`."""
    if typ == "page":
        return f"viewed {props.get('path') if isinstance(props, dict) else event or 'a page'}"
    name = event or typ
    if isinstance(props, dict) and props:
        keep = [f"{k}={v}" for k, v in props.items()
                if v is not None and not isinstance(v, dict | list)][:4]
        return f"{name} " + " ".join(keep) if keep else name
    return name
