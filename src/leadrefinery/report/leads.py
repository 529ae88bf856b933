"""The ranked lead list: newest scores, filtered, one page at a time, each row with its reasons.

    f = LeadFilter(grade=["1", "2"], q="acme", owner="ann@acme.com")
    page = lead_page(engine, model, f, page=1, per_page=50, scope=Scope.everyone())
    page.total, page.rows                 # rows: score, grade, stage, reasons, last activity, ...
    for chunk in iter_leads(engine, model, f):   # every matching row, in chunks (CSV export)
    facets(engine, model)                 # the values each filter can take

Only one page (or one chunk) of rows is ever read: the count and the page are two queries over
`latest_scores` joined to `people`, `accounts`, the newest assignment and, when a predictive
model is published, its predictions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from ..model.explain import reason
from ..model.load import Model
from ..store.engine import Engine
from .common import (
    LAST_ASSIGNMENT,
    Params,
    Scope,
    converted_sql,
    loads,
    num,
    owner_sql,
    predictions,
    scope_sql,
)

SORTS = {
    "score": "s.score DESC, s.person_id",
    "recent": "p.last_seen DESC NULLS LAST, s.score DESC, s.person_id",
    "new": "p.first_seen DESC NULLS LAST, s.score DESC, s.person_id",
    "probability": "pr.probability DESC NULLS LAST, s.score DESC, s.person_id",
}


@dataclass
class LeadFilter:
    grade: list[str] = field(default_factory=list)
    bucket: list[str] = field(default_factory=list)
    stage: list[str] = field(default_factory=list)
    segment: list[str] = field(default_factory=list)
    owner: str | None = None  # an owner, or "-" for leads without one
    source: str | None = None
    since: datetime | None = None  # first seen (signed up) at or after
    until: datetime | None = None  # first seen before
    q: str | None = None  # search in email, name, company
    abuse: bool | None = None  # only flagged (True) / only clean (False)
    mql: bool | None = None
    sort: str = "score"

    def as_query(self) -> dict[str, Any]:
        """The filter as URL query parameters (for links and the CSV export)."""
        out: dict[str, Any] = {}
        for k, v in asdict(self).items():
            if v in (None, [], "") or (k == "sort" and v == "score"):
                continue
            if isinstance(v, datetime):
                v = v.date().isoformat() if v == datetime.combine(v.date(), datetime.min.time()) \
                    else v.isoformat()
            elif isinstance(v, bool):
                v = "1" if v else "0"
            out[k] = v
        return out


@dataclass
class LeadPage:
    rows: list[dict[str, Any]]
    total: int
    page: int
    per_page: int
    has_predictions: bool

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "page": self.page, "per_page": self.per_page,
                "pages": self.pages, "rows": self.rows}


COLUMNS = (
    "person_id", "score", "grade", "stage", "stage_rank", "mql", "flagged", "segments",
    "components", "abuse", "as_of", "email", "name", "first_name", "last_name", "company",
    "title", "phone", "country", "source", "campaign", "first_seen", "last_seen", "account_id",
    "account_name", "owner", "converted", "probability", "bucket",
)  # fmt: skip


def _from(pred_sql: str | None) -> str:
    pred = (f"LEFT JOIN {pred_sql} pr ON pr.person_id = s.person_id" if pred_sql else
            "LEFT JOIN (SELECT CAST(NULL AS VARCHAR) AS person_id, CAST(NULL AS DOUBLE) AS "
            "probability, CAST(NULL AS VARCHAR) AS bucket) pr ON 1 = 0")
    return (
        "FROM latest_scores s "
        "LEFT JOIN people p ON p.person_id = s.person_id "
        "LEFT JOIN accounts a ON a.account_id = p.account_id "
        f"LEFT JOIN {LAST_ASSIGNMENT} asg ON asg.person_id = s.person_id "
        f"{pred}"
    )


def _where(model: Model, f: LeadFilter, scope: Scope | None,
           extra: str | None = None) -> tuple[str, Params]:
    conds: list[str] = ["s.model = ?"]
    params: Params = [model.name]
    if extra:  # a trusted condition built by our own code (e.g. export --since)
        conds.append(extra)

    def isin(col: str, values: list[str]) -> None:
        conds.append(f"{col} IN ({', '.join('?' for _ in values)})")
        params.extend(values)

    if f.grade:
        isin("s.grade", f.grade)
    if f.bucket:
        isin("pr.bucket", f.bucket)
    if f.stage:
        if "-" in f.stage:
            rest = [s for s in f.stage if s != "-"]
            conds.append("(s.stage IS NULL" + (
                f" OR s.stage IN ({', '.join('?' for _ in rest)}))" if rest else ")"))
            params.extend(rest)
        else:
            isin("s.stage", f.stage)
    for seg in f.segment:
        conds.append("CAST(s.segments AS VARCHAR) LIKE ?")
        params.append(f'%"{seg}"%')
    if f.owner == "-":
        conds.append(f"{owner_sql()} IS NULL")
    elif f.owner:
        conds.append(f"lower({owner_sql()}) = ?")
        params.append(f.owner.lower())
    if f.source == "-":
        conds.append("p.source IS NULL")
    elif f.source:
        conds.append("p.source = ?")
        params.append(f.source)
    if f.since:
        conds.append("p.first_seen >= ?")
        params.append(f.since)
    if f.until:
        conds.append("p.first_seen < ?")
        params.append(f.until)
    if f.q and f.q.strip():
        like = f"%{f.q.strip().lower()}%"
        conds.append("(lower(p.email) LIKE ? OR lower(p.company) LIKE ? OR lower(p.name) LIKE ?"
                     " OR s.person_id = ?)")
        params += [like, like, like, f.q.strip()]
    if f.abuse is not None:
        conds.append("s.flagged" if f.abuse else "NOT coalesce(s.flagged, false)")
    if f.mql is not None:
        conds.append("s.mql" if f.mql else "NOT coalesce(s.mql, false)")
    sc, sp = scope_sql(scope, person="s.person_id")
    conds.append(sc)
    params += sp
    return " AND ".join(conds), params


def _select(pred_sql: str | None) -> str:
    return (
        "SELECT s.person_id, s.score, s.grade, s.stage, s.stage_rank, s.mql, s.flagged, "
        "s.segments, s.components, s.abuse, s.as_of, p.email, p.name, p.first_name, "
        "p.last_name, p.company, p.title, p.phone, p.country, p.source, p.campaign, "
        "p.first_seen, p.last_seen, p.account_id, a.name, "
        f"{owner_sql()}, s.person_id IN {converted_sql()}, pr.probability, pr.bucket "
        f"{_from(pred_sql)}"
    )


def top_reasons(model: Model, components: Any, n: int = 3) -> list[str]:
    """The components that moved the score most, in plain words (tiny decayed ones left out)."""
    comps = loads(components) or {}
    ranked = sorted(comps.items(), key=lambda kv: -abs(num(kv[1].get("points")) or 0.0))
    return [reason(model, rid, c) for rid, c in ranked
            if abs(num(c.get("points")) or 0.0) >= 0.05][:n]


def _shape(model: Model, r: tuple, reasons: int) -> dict[str, Any]:
    row = dict(zip(COLUMNS, r, strict=True))
    row["reasons"] = top_reasons(model, row.pop("components"), reasons)
    row["segments"] = loads(row["segments"]) or []
    row["abuse"] = sorted((loads(row["abuse"]) or {}).keys())
    row["score"] = num(row["score"]) or 0.0
    row["probability"] = num(row["probability"])
    row["converted"] = bool(row["converted"])
    return row


def lead_page(engine: Engine, model: Model, f: LeadFilter | None = None, *, page: int = 1,
              per_page: int = 50, scope: Scope | None = None, reasons: int = 3) -> LeadPage:
    f = f or LeadFilter()
    pred = predictions(engine)
    pred_sql = pred.subquery() if pred else None
    where, params = _where(model, f, scope)
    total = int(engine.scalar(f"SELECT count(*) {_from(pred_sql)} WHERE {where}", params) or 0)
    page = max(1, int(page))
    per_page = max(1, min(int(per_page), 1000))
    order = SORTS.get(f.sort, SORTS["score"])
    data = engine.query(
        f"{_select(pred_sql)} WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
        [*params, per_page, (page - 1) * per_page],
    )
    return LeadPage([_shape(model, r, reasons) for r in data], total, page, per_page,
                    pred is not None)


def iter_leads(engine: Engine, model: Model, f: LeadFilter | None = None, *,
               scope: Scope | None = None, chunk: int = 5000, reasons: int = 3,
               limit: int | None = None, extra_sql: str | None = None
               ) -> Iterator[dict[str, Any]]:
    """Every matching lead in rank order, read `chunk` rows at a time."""
    f = f or LeadFilter()
    pred = predictions(engine)
    pred_sql = pred.subquery() if pred else None
    where, params = _where(model, f, scope, extra_sql)
    order = SORTS.get(f.sort, SORTS["score"])
    offset, sent = 0, 0
    while True:
        n = chunk if limit is None else min(chunk, limit - sent)
        if n <= 0:
            return
        data = engine.query(f"{_select(pred_sql)} WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
                            [*params, n, offset])
        for r in data:
            yield _shape(model, r, reasons)
        sent += len(data)
        if len(data) < n:
            return
        offset += n


def facets(engine: Engine, model: Model, scope: Scope | None = None) -> dict[str, list[str]]:
    """The values each lead filter can take (for the filter form)."""
    spec = model.spec
    owners = [r[0] for r in engine.query(
        "SELECT DISTINCT o FROM (SELECT owner AS o FROM people UNION SELECT owner FROM accounts "
        "UNION SELECT rep FROM assignments UNION SELECT email FROM reps) x "
        "WHERE o IS NOT NULL ORDER BY o")]
    if scope is not None and scope.limited:
        owners = [o for o in owners if o.lower() in (scope.owners or ())]
    sources = [r[0] for r in engine.query(
        "SELECT source FROM people WHERE source IS NOT NULL GROUP BY source "
        "ORDER BY count(*) DESC, source LIMIT 200")]
    pred = predictions(engine)
    buckets: list[str] = []
    if pred and pred.bucket:
        buckets = [r[0] for r in engine.query(
            f"SELECT DISTINCT bucket FROM {pred.subquery()} b WHERE bucket IS NOT NULL "
            "ORDER BY bucket")]
    return {
        "grade": spec.grades.names() if spec.grades else [],
        "mql_grades": list(spec.grades.mql) if spec.grades else [],
        "stage": list(spec.stages.order) if spec.stages else [],
        "segment": list(spec.segments),
        "owner": owners,
        "source": sources,
        "bucket": buckets,
    }
