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
from .common import Scope, fetch, loads, reference_time, rows, scope_sql

ABUSE_KINDS = ("abuse", "abuse_flag", "unusual_usage", "unusual")


def abuse(engine: Engine, model: Model, *, scope: Scope | None = None, recent_days: int = 14,
          active_minutes: float = 30, limit: int = 20, page: int = 1) -> dict[str, Any]:
    ref = reference_time(engine)
    cond, cp = scope_sql(scope, person="s.person_id")
    descs = {a.id: a.description or a.id for a in model.spec.abuse}
    open_since = ref - timedelta(days=recent_days)
    # the page of flagged people (newest activity first) and the counts, in one join
    ranked = engine.query(
        "SELECT s.person_id, count(*) OVER (), count(*) FILTER (WHERE p.last_seen >= ?) OVER () "
        "FROM latest_scores s LEFT JOIN people p ON p.person_id = s.person_id "
        + f"WHERE s.model = ? AND s.flagged AND {cond} "
        "ORDER BY p.last_seen DESC NULLS LAST, s.person_id LIMIT ? OFFSET ?",
        [open_since, model.name, *cp, limit, (max(1, page) - 1) * limit])
    if ranked:
        counts = (ranked[0][1], ranked[0][2])
    else:
        counts = tuple(engine.query(
            "SELECT count(*), count(*) FILTER (WHERE p.last_seen >= ?) FROM latest_scores s "
            "LEFT JOIN people p ON p.person_id = s.person_id "
            + f"WHERE s.model = ? AND s.flagged AND {cond}",
            [open_since, model.name, *cp])[0])
    ids = [r[0] for r in ranked]
    flags = []
    if ids:
        sc = fetch(engine, "latest_scores", "person_id, score, grade, abuse", "person_id", ids,
                   "model = ?", [model.name])
        pp = fetch(engine, "people", "person_id, email, name, company, last_seen, owner, "
                   "account_id", "person_id", ids)
        acc = fetch(engine, "accounts", "account_id, owner", "account_id",
                    sorted({v[5] for v in pp.values() if v[5]}))
        got = {}
        for pid in ids:
            if pid not in sc:
                continue
            score, grade, ab = sc[pid]
            email, name, company, last_seen, owner, account_id = pp.get(pid, (None,) * 6)
            got[pid] = {"person_id": pid, "email": email, "name": name, "company": company,
                        "score": score, "grade": grade, "last_seen": last_seen, "abuse": ab,
                        "owner": owner or (acc.get(account_id) or (None,))[0]}
        for pid in ids:
            r = got.get(pid)
            if r is None:
                continue
            ev = loads(r.pop("abuse")) or {}
            r["rules"] = [{"rule": k, "description": descs.get(k, k), "evidence": v}
                          for k, v in ev.items()]
            seen = r["last_seen"]
            r["open"] = seen is not None and seen >= open_since
            flags.append(r)
    kinds = ", ".join(f"'{k}'" for k in ABUSE_KINDS)
    acond, ap = scope_sql(scope, person="al.person_id")
    alerts = rows(("alert_id", "created_at", "person_id", "email", "trigger_id", "severity",
                   "title", "status", "channel", "recipient"), engine.query(
        "SELECT al.alert_id, al.created_at, al.person_id, p.email, al.trigger_id, al.severity, "
        "al.title, al.status, al.channel, al.recipient FROM alerts al "
        "LEFT JOIN people p ON p.person_id = al.person_id "
        f"WHERE (al.trigger_kind IN ({kinds}) OR al.trigger_id LIKE 'abuse%') AND {acond} "
        "ORDER BY al.created_at DESC LIMIT 50", ap))
    since = ref - timedelta(minutes=active_minutes)
    # who is active: the event window first (time-ordered, so cheap), then who they are
    window = engine.query(
        "SELECT person_id, count(*), min(ts), max(ts) FROM events WHERE ts >= ? AND ts <= ? "
        "AND person_id IS NOT NULL GROUP BY person_id ORDER BY max(ts) DESC LIMIT 500",
        [since, ref])
    active: list[dict[str, Any]] = []
    if window:
        wid = [r[0] for r in window]
        m = ", ".join("?" for _ in wid)
        acond2, ap2 = scope_sql(scope)
        who = {r[0]: r[1:] for r in engine.query(
            "SELECT p.person_id, p.email, p.name, p.company, coalesce(s.flagged, false), s.grade "
            f"FROM (SELECT person_id, email, name, company FROM people "
            f"WHERE person_id IN ({m})) p "
            "LEFT JOIN latest_scores s ON s.person_id = p.person_id AND s.model = ? "
            f"WHERE {acond2}", [*wid, model.name, *ap2])}
        for pid, n, first, last in window:
            if pid in who:
                email, name, company, flagged, grade = who[pid]
                active.append({"person_id": pid, "email": email, "name": name,
                               "company": company, "events": n, "first": first, "last": last,
                               "flagged": bool(flagged), "grade": grade})
        active.sort(key=lambda x: (not x["flagged"], -x["last"].timestamp()))
        active = active[:100]
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
