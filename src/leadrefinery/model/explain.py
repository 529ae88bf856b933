"""Why a person has their score: components, caps, stage evidence, abuse flags, timeline.

    explain(engine, model, person, as_of=None) -> dict
    leads(engine, model, grade=, stage=, segment=, top=) -> list[dict]
    reason(model, rule_id, component) -> str      one component in plain words

`explain` scores the one person live (the compiled model restricted to their id, nothing
stored), so what it shows is exactly what the model says now — or at `as_of`.
`leads` reads `latest_scores` (the newest stored run) and names each lead's top reasons.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlglot import exp

from ..errors import NotFound
from ..store.engine import Engine
from . import spec as S
from .compile import build_plan, naive_utc
from .dialects import render
from .load import Model
from .scoring import latest_cutoffs, now_utc


def _num(v: Any) -> float:
    return float(v) if v is not None else 0.0


def _fmt(v: float) -> str:
    return f"{v:+.1f}".replace("+-", "-")


def find_person(engine: Engine, person: str) -> dict:
    rows = engine.query(
        "SELECT person_id, email, name, company, title, account_id, first_seen, last_seen "
        "FROM people WHERE person_id = ? OR email = ? ORDER BY person_id LIMIT 2",
        [person, person.strip().lower()],
    )
    if not rows:
        raise NotFound(
            f"no person with id or email {person!r} — list people with "
            "`leadrefinery leads` or check the spelling"
        )
    keys = (
        "person_id",
        "email",
        "name",
        "company",
        "title",
        "account_id",
        "first_seen",
        "last_seen",
    )
    return dict(zip(keys, rows[0], strict=True))


def _rule_text(rule: S.Rule) -> str:
    if rule.description:
        return rule.description
    if rule.on_events:
        what = ", ".join(rule.event) if rule.event else rule.on
        return f"{what}" + (f" where {rule.when}" if rule.when else "")
    return rule.when or rule.id


def reason(model: Model, rule_id: str, comp: dict) -> str:
    """One component in plain words: `Visited the pricing page (5×): +20.0`."""
    rules = {r.id: r for r in model.spec.rules}
    rule = rules.get(rule_id)
    pts = _num(comp.get("points"))
    if rule is None:
        return f"{rule_id}: {_fmt(pts)}"
    text = _rule_text(rule)
    n = int(_num(comp.get("n")))
    times = f" ({n}×)" if rule.on_events and n > 1 else ""
    return f"{text}{times}: {_fmt(pts)}"


def explain(
    engine: Engine, model: Model, person: str, *, as_of: datetime | None = None, events: int = 20
) -> dict:
    who = find_person(engine, person)
    pid = who["person_id"]
    as_of = naive_utc(as_of) if as_of else now_utc()
    cutoffs = None
    if model.spec.grades is not None and model.spec.grades.method == "volume":
        cutoffs = latest_cutoffs(engine, model) or {}
    plan = build_plan(model, as_of=as_of, restrict=[pid], volume_cutoffs=cutoffs)
    rows = engine.query_arrow(plan.sql(engine.dialect, snapshot=False, pretty=False)).to_pylist()
    if not rows:
        raise NotFound(
            f"{person!r} has no activity up to {as_of:%Y-%m-%d %H:%M} (first seen "
            f"{who['first_seen']}); explain a later time with --as-of"
        )
    row = rows[0]
    rules = {r.id: r for r in model.spec.rules}
    components = []
    for r in plan.rules:
        n = int(_num(row[f"r_{r.id}_n"]))
        pts = _num(row[f"r_{r.id}"])
        if n == 0 and pts == 0:
            continue
        dec = _num(row[f"r_{r.id}_dec"])
        comp = {"n": n, "raw": _num(row[f"r_{r.id}_raw"]), "decayed": dec, "points": pts}
        rule = rules[r.id]
        components.append(
            {
                "rule": r.id,
                "category": r.category,
                "on": r.on,
                **comp,
                "capped": abs(dec - pts) > 1e-9,
                "cap": rule.cap,
                "half_life_days": rule.half_life,
                "window_days": rule.window,
                "frequency": rule.frequency
                if isinstance(rule.frequency, str)
                else rule.frequency.model_dump(exclude_none=True),
                "reason": reason(model, r.id, comp),
            }
        )
    components.sort(key=lambda c: -abs(c["points"]))
    categories = []
    for c in plan.categories:
        decl = model.spec.categories.get(c)
        raw, capped = _num(row[f"cat_{c}_raw"]), _num(row[f"cat_{c}"])
        categories.append(
            {
                "category": c,
                "points": capped,
                "before_cap": raw,
                "capped": abs(raw - capped) > 1e-9,
                "cap": decl.cap if decl else None,
                "min": decl.min if decl else None,
            }
        )
    total_raw = sum(c["points"] for c in categories)
    score = _num(row["score"])
    abuse = {}
    for aid, evidence in plan.abuse_evidence.items():
        if row.get(f"ab_{aid}"):
            abuse[aid] = {k: _jsonable(row.get(c)) for k, c in evidence}
    stage_info = None
    if model.spec.stages:
        st = model.spec.stages
        seen = []
        for k, name in enumerate(plan.stages):
            if f"st{k}_n" in row:
                ev = st.evidence[name]
                seen.append(
                    {
                        "stage": name,
                        "fresh_events": int(_num(row[f"st{k}_n"])),
                        "last": _jsonable(row.get(f"st{k}_last")),
                        "needs": ev.min_count,
                        "expires_days": ev.expires or st.expires,
                    }
                )
        stage_info = {
            "stage": row["stage"],
            "rank": row["stage_rank"],
            "evidence": {
                "events": int(_num(row["stage_n"])),
                "first": _jsonable(row["stage_first"]),
                "last": _jsonable(row["stage_last"]),
            },
            "all_stages": seen,
        }
    return {
        "person": {k: _jsonable(v) for k, v in who.items()},
        "model": model.name,
        "model_version": model.version,
        "as_of": as_of.isoformat(),
        "score": score,
        "grade": row["grade"],
        "mql": bool(row["mql"]),
        "score_range": {
            "min": model.spec.score.min,
            "max": model.spec.score.max,
            "before_range": total_raw,
            "clamped": abs(total_raw - score) > 1e-6,
        },
        "categories": categories,
        "components": components,
        "stage": stage_info,
        "abuse": abuse,
        "segments": [s for s in plan.segments if row.get(f"seg_{s}")],
        "timeline": timeline(engine, pid, as_of, events),
    }


def _jsonable(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat(sep=" ")
    if hasattr(v, "__float__") and not isinstance(v, bool | int | float):
        return float(v)
    return v


def timeline(engine: Engine, person_id: str, as_of: datetime, limit: int = 20) -> list[dict]:
    rows = engine.query(
        "SELECT ts, type, event, properties FROM events WHERE person_id = ? AND ts <= ? "
        "ORDER BY ts DESC LIMIT ?",
        [person_id, as_of, int(limit)],
    )
    out = []
    for ts, typ, event, props in rows:
        p = props if isinstance(props, dict) else (json.loads(props) if props else {})
        detail = p.get("path") if isinstance(p, dict) and p.get("path") else None
        if detail is None and isinstance(p, dict) and p:
            detail = ", ".join(f"{k}={v}" for k, v in list(p.items())[:4])
        out.append({"ts": _jsonable(ts), "type": typ, "event": event, "detail": detail})
    return out


def leads(
    engine: Engine,
    model: Model,
    *,
    grade: list[str] | None = None,
    stage: list[str] | None = None,
    segment: list[str] | None = None,
    top: int | None = 50,
    reasons: int = 3,
) -> list[dict]:
    """The ranked list a rep works from: newest scores, filtered, each with its top reasons."""
    s, p = exp.to_table("latest_scores").as_("s"), exp.to_table("people").as_("p")
    cols = [
        "person_id",
        "score",
        "grade",
        "stage",
        "mql",
        "flagged",
        "segments",
        "components",
        "abuse",
        "account_id",
    ]
    q = (
        exp.select(
            *[exp.column(c, "s") for c in cols],
            exp.column("email", "p"),
            exp.column("name", "p"),
            exp.column("company", "p"),
            exp.column("title", "p"),
        )
        .from_(s)
        .join(
            p,
            on=exp.EQ(this=exp.column("person_id", "p"), expression=exp.column("person_id", "s")),
            join_type="LEFT",
        )
    )
    conds: list[exp.Expression] = [
        exp.EQ(this=exp.column("model", "s"), expression=exp.Literal.string(model.name))
    ]
    if grade:
        conds.append(
            exp.In(
                this=exp.column("grade", "s"), expressions=[exp.Literal.string(g) for g in grade]
            )
        )
    if stage:
        conds.append(
            exp.In(
                this=exp.column("stage", "s"), expressions=[exp.Literal.string(g) for g in stage]
            )
        )
    known = list(model.spec.segments)
    for seg in segment or []:
        if seg not in known:
            raise NotFound(
                f"no segment {seg!r} in model {model.name} (segments: {', '.join(known) or 'none'})"
            )
        text = exp.cast(exp.column("segments", "s"), exp.DataType.build("VARCHAR"))
        conds.append(exp.StrPosition(this=text, substr=exp.Literal.string(f'"{seg}"')) > 0)
    q = q.where(exp.and_(*conds)).order_by(
        exp.Ordered(this=exp.column("score", "s"), desc=True),
        exp.Ordered(this=exp.column("person_id", "s")),
    )
    if top:
        q = q.limit(int(top))
    names = [*cols, "email", "name", "company", "title"]
    out = []
    for r in engine.query(render(q, engine.dialect, pretty=False)):
        row = dict(zip(names, r, strict=True))
        comps = _load(row.pop("components")) or {}
        ranked = sorted(comps.items(), key=lambda kv: -abs(_num(kv[1].get("points"))))
        row["reasons"] = [reason(model, rid, c) for rid, c in ranked if _num(c.get("points"))][
            :reasons
        ]
        row["segments"] = _load(row["segments"]) or []
        row["abuse"] = sorted((_load(row["abuse"]) or {}).keys())
        row["score"] = _num(row["score"])
        out.append(row)
    return out


def _load(v: Any) -> Any:
    if v is None:
        return None
    return json.loads(v) if isinstance(v, str) else v
