"""One lead, everything about them: profile, account, score breakdown, stage evidence,
predictive probability and factors, alerts, assignments and the event timeline.

    person_report(engine, model, "p-123", scope=...) -> dict     (NotFound outside the scope)
    timeline(engine, "p-123", before=None, limit=50) -> list[dict]
    score_history(engine, model, "p-123") -> list[dict]

The breakdown is the stored snapshot (`latest_scores`), the same numbers the lead list shows;
`model.explain.explain` recomputes it live when asked.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..errors import NotFound
from ..model.explain import reason
from ..model.load import Model
from ..store.engine import Engine
from .common import (
    Scope,
    loads,
    num,
    predictions,
    rows,
    scope_sql,
)

PEOPLE_COLS = ("person_id", "email", "first_name", "last_name", "name", "company", "domain",
               "webmail", "title", "phone", "country", "source", "campaign", "owner",
               "account_id", "traits", "first_seen", "last_seen")
SCORE_COLS = ("run_id", "model_version", "as_of", "score", "grade", "mql", "stage", "stage_rank",
              "flagged", "engaged", "categories", "segments", "abuse", "components",
              "stage_evidence")


def find(engine: Engine, person: str, scope: Scope | None = None) -> str:
    """The person id for an id or e-mail the viewer may see; NotFound otherwise (a rep gets
    the same answer for someone else's lead as for nobody, so ids cannot be probed)."""
    got = engine.query("SELECT person_id FROM people WHERE person_id = ?", [person])
    if not got:
        got = engine.query("SELECT person_id FROM people WHERE email = ? ORDER BY person_id "
                           "LIMIT 1", [person.strip().lower()])
    if got and scope is not None and scope.limited:
        cond, params = scope_sql(scope)
        got = engine.query(
            "SELECT p.person_id FROM (SELECT * FROM people WHERE person_id = ?) p "
            f"LEFT JOIN accounts a ON a.account_id = p.account_id WHERE {cond}",
            [got[0][0], *params])
    if not got:
        raise NotFound(f"no lead {person!r} that you can see")
    return got[0][0]


def person_report(engine: Engine, model: Model, person: str, *, scope: Scope | None = None,
                  events: int = 50) -> dict[str, Any]:
    pid = find(engine, person, scope)
    prof = rows(PEOPLE_COLS, engine.query(
        f"SELECT {', '.join(PEOPLE_COLS)} FROM people WHERE person_id = ?", [pid]))[0]
    prof["traits"] = loads(prof["traits"]) or {}
    rep = engine.scalar("SELECT rep FROM assignments WHERE person_id = ? "
                        "ORDER BY assigned_at DESC LIMIT 1", [pid])
    acc_owner = engine.scalar("SELECT owner FROM accounts WHERE account_id = ?",
                              [prof["account_id"]]) if prof["account_id"] else None
    owner = prof["owner"] or acc_owner or rep
    account = None
    if prof["account_id"]:
        acc = engine.query(
            "SELECT account_id, domain, name, size, industry, owner FROM accounts "
            "WHERE account_id = ?", [prof["account_id"]])
        if acc:
            account = dict(zip(("account_id", "domain", "name", "size", "industry", "owner"),
                               acc[0], strict=True))
            roll = engine.query(
                "SELECT people, engaged_people, mql_people, score_max, flagged_people, as_of "
                "FROM account_scores WHERE account_id = ? AND model = ? "
                "ORDER BY as_of DESC LIMIT 1", [prof["account_id"], model.name])
            if roll:
                account["rollup"] = dict(zip(("people", "engaged_people", "mql_people",
                                              "score_max", "flagged_people", "as_of"),
                                             roll[0], strict=True))
            account["people"] = rows(("person_id", "email", "name", "title", "score", "grade"),
                                     engine.query(
                "SELECT p.person_id, p.email, p.name, p.title, s.score, s.grade FROM people p "
                "LEFT JOIN latest_scores s ON s.person_id = p.person_id AND s.model = ? "
                "WHERE p.account_id = ? AND p.person_id <> ? "
                "ORDER BY s.score DESC NULLS LAST LIMIT 10", [model.name, prof["account_id"], pid]))
    score = None
    got = engine.query(f"SELECT {', '.join(SCORE_COLS)} FROM latest_scores "
                       "WHERE person_id = ? AND model = ?", [pid, model.name])
    if got:
        score = dict(zip(SCORE_COLS, got[0], strict=True))
        for k in ("categories", "segments", "abuse", "components", "stage_evidence"):
            score[k] = loads(score[k])
        comps = []
        rules = {r.id: r for r in model.spec.rules}
        for rid, c in (score["components"] or {}).items():
            rule = rules.get(rid)
            comps.append({
                "rule": rid, "category": rule.category if rule else None,
                "n": int(num(c.get("n")) or 0), "raw": num(c.get("raw")) or 0.0,
                "decayed": num(c.get("decayed")) or 0.0, "points": num(c.get("points")) or 0.0,
                "capped": abs((num(c.get("decayed")) or 0) - (num(c.get("points")) or 0)) > 1e-9,
                "reason": reason(model, rid, c),
                "description": (rule.description if rule else None) or rid,
            })
        comps.sort(key=lambda c: -abs(c["points"]))
        score["components"] = comps
        score["score"] = num(score["score"]) or 0.0
        abuse = []
        descs = {a.id: a.description for a in model.spec.abuse}
        for aid, ev in (score["abuse"] or {}).items():
            abuse.append({"rule": aid, "description": descs.get(aid) or aid, "evidence": ev})
        score["abuse"] = abuse
    pred = None
    p = predictions(engine)
    if p:
        got = engine.query(f"SELECT probability, bucket, factors FROM {p.subquery()} x "
                           "WHERE person_id = ?", [pid])
        if got:
            pred = {"probability": num(got[0][0]), "bucket": got[0][1],
                    "factors": _factors(loads(got[0][2]))}
    alerts = rows(("alert_id", "created_at", "trigger_id", "trigger_kind", "severity", "title",
                   "channel", "recipient", "status", "attempts", "delivered_at", "last_error"),
                  engine.query(
        "SELECT alert_id, created_at, trigger_id, trigger_kind, severity, title, channel, "
        "recipient, status, attempts, delivered_at, last_error FROM alerts WHERE person_id = ? "
        "ORDER BY created_at DESC LIMIT 30", [pid]))
    assignments = rows(("assigned_at", "rep", "team", "rule", "trigger", "grade"), engine.query(
        "SELECT assigned_at, rep, team, rule, trigger, grade FROM assignments "
        "WHERE person_id = ? ORDER BY assigned_at DESC LIMIT 10", [pid]))
    converted = bool(engine.scalar(
        "SELECT count(*) FROM outcomes WHERE (won OR kind = 'conversion') AND (person_id = ? "
        "OR (person_id IS NULL AND account_id = ?))", [pid, prof["account_id"]]))
    outcomes = rows(("kind", "created_at", "stage", "won", "amount", "closed_at", "owner"),
                    engine.query(
        "SELECT kind, created_at, stage, won, amount, closed_at, owner FROM outcomes "
        "WHERE person_id = ? OR (person_id IS NULL AND account_id = ?) "
        "ORDER BY created_at DESC LIMIT 10", [pid, prof["account_id"]]))
    return {
        "person": prof, "owner": owner, "account": account, "score": score,
        "predictive": pred, "alerts": alerts, "assignments": assignments,
        "converted": converted, "outcomes": outcomes,
        "stages": list(model.spec.stages.order) if model.spec.stages else [],
        "history": score_history(engine, model, pid),
        "timeline": timeline(engine, pid, limit=events),
    }


def _factors(v: Any) -> list[dict[str, Any]]:
    """Predictive factors as [{text, weight}] whatever shape the predict package stored."""
    if not v:
        return []
    if isinstance(v, dict):
        out = []
        for sign in ("positive", "negative"):
            for f in v.get(sign, []) or []:
                out.append(_factor(f, sign))
        if out:
            return out
        return [{"text": str(k), "weight": num(w) if isinstance(w, int | float) else None}
                for k, w in v.items()]
    if isinstance(v, list):
        return [_factor(f, None) for f in v]
    return [{"text": str(v), "weight": None}]


def _factor(f: Any, sign: str | None) -> dict[str, Any]:
    if isinstance(f, dict):
        w = f.get("weight", f.get("contribution", f.get("value")))
        text = f.get("text") or f.get("description") or f.get("feature") or str(f)
        w = num(w) if isinstance(w, int | float) else None
        if w is None and sign:
            w = 1.0 if sign == "positive" else -1.0
        return {"text": text, "weight": w}
    return {"text": str(f), "weight": 1.0 if sign == "positive" else -1.0 if sign else None}


def timeline(engine: Engine, person_id: str, *, before: datetime | None = None,
             limit: int = 50) -> list[dict[str, Any]]:
    """The person's newest events (older ones page with `before`)."""
    cond = "person_id = ?"
    params: list[Any] = [person_id]
    if before is not None:
        cond += " AND ts < ?"
        params.append(before)
    out = []
    for ts, typ, event, props, source in engine.query(
            f"SELECT ts, type, event, properties, source FROM events WHERE {cond} "
            "ORDER BY ts DESC LIMIT ?", [*params, int(limit)]):
        p = loads(props)
        detail = ""
        if isinstance(p, dict) and p:
            if p.get("path"):
                detail = str(p["path"])
            else:
                detail = ", ".join(f"{k}={v}" for k, v in list(p.items())[:5] if v is not None)
        out.append({"ts": ts, "type": typ, "event": event or "", "detail": detail,
                    "source": source})
    return out


def score_history(engine: Engine, model: Model, person_id: str, limit: int = 200
                  ) -> list[dict[str, Any]]:
    return rows(("as_of", "score", "grade", "stage"), engine.query(
        "SELECT as_of, score, grade, stage FROM scores WHERE person_id = ? AND model = ? "
        "ORDER BY as_of DESC LIMIT ?", [person_id, model.name, limit]))[::-1]
