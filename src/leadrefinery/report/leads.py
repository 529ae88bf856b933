"""The ranked lead list: newest scores, filtered, one page at a time, each row with its reasons.

    f = LeadFilter(grade=["1", "2"], q="acme", owner="ann@acme.com")
    page = lead_page(engine, model, f, page=1, per_page=50, scope=Scope.everyone())
    page.total, page.rows                 # rows: score, grade, stage, reasons, last activity, ...
    for chunk in iter_leads(engine, model, f):   # every matching row, in chunks (CSV export)
    with_predictions(engine, rows, explain_missing=...)  # + holdout, surge, top factors
    facets(engine, model)                 # the values each filter can take

Only one page (or one chunk) of rows is ever read: the count and the page are two queries over
`latest_scores` joined to `people`, `accounts`, the newest assignment and, when a predictive
model is published, its predictions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from ..model.explain import reason
from ..model.load import Model
from ..store.engine import Engine
from .common import (
    LAST_ASSIGNMENT,
    ROW_LOCATOR,
    Params,
    Scope,
    converted_sql,
    fetch,
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
    # profile filters: one semi-join against the matching people (no join of every row)
    pconds: list[str] = []
    pparams: Params = []
    if f.source == "-":
        pconds.append("source IS NULL")
    elif f.source:
        pconds.append("source = ?")
        pparams.append(f.source)
    if f.since:
        pconds.append("first_seen >= ?")
        pparams.append(f.since)
    if f.until:
        pconds.append("first_seen < ?")
        pparams.append(f.until)
    if f.q and f.q.strip():
        text = f.q.strip()
        like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        pconds.append("(email ILIKE ? ESCAPE '\\' OR company ILIKE ? ESCAPE '\\' OR "
                      "name ILIKE ? ESCAPE '\\' OR person_id = ?)")
        pparams += [like, like, like, text]
    if pconds:
        conds.append(f"s.person_id IN (SELECT person_id FROM people WHERE {' AND '.join(pconds)})")
        params += pparams
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


def _lean_from(f: LeadFilter, scope: Scope | None, pred_sql: str | None,
               extra: str | None) -> str:
    """FROM for counting and ranking: only the joins the filters, scope and sort need (each
    join of two 200 k-row tables costs tens of milliseconds)."""
    need_a = bool(f.owner)
    need_p = need_a or bool(extra) or f.sort in ("recent", "new")
    out = "FROM latest_scores s "
    if need_p:
        out += "LEFT JOIN people p ON p.person_id = s.person_id "
    if need_a:
        out += "LEFT JOIN accounts a ON a.account_id = p.account_id "
    if f.owner:
        out += f"LEFT JOIN {LAST_ASSIGNMENT} asg ON asg.person_id = s.person_id "
    if pred_sql and (f.bucket or f.sort == "probability"):
        out += f"LEFT JOIN {pred_sql} pr ON pr.person_id = s.person_id "
    elif f.bucket or f.sort == "probability":
        out += ("LEFT JOIN (SELECT CAST(NULL AS VARCHAR) AS person_id, CAST(NULL AS DOUBLE) AS "
                "probability, CAST(NULL AS VARCHAR) AS bucket) pr ON 1 = 0 ")
    return out


def _details(engine: Engine, model: Model, ids: list[str], pred_sql: str | None,
             reasons: int, locators: list[Any] | None = None) -> list[dict[str, Any]]:
    """The full rows of `ids` (one page), in the order given: a few small queries, each cut
    to those people, put together here."""
    if not ids:
        return []
    m = ", ".join("?" for _ in ids)
    score_cols = ("person_id, score, grade, stage, stage_rank, mql, flagged, segments, "
                  "components, abuse, as_of")
    loc = ROW_LOCATOR.get(engine.name)
    got: dict[str, tuple] = {}
    if loc and locators:
        for r in engine.query(f"SELECT {score_cols} FROM latest_scores WHERE {loc} = ANY(?)",
                              [list(locators)]):
            got[r[0]] = r
    missing = [i for i in ids if i not in got]  # moved meanwhile (a rescore), or no locator
    if missing:
        mm = ", ".join("?" for _ in missing)
        for r in engine.query(f"SELECT {score_cols} FROM latest_scores WHERE model = ? AND "
                              f"person_id IN ({mm})", [model.name, *missing]):
            got[r[0]] = r
    people = fetch(engine, "people", "person_id, email, name, first_name, last_name, company, "
                   "title, phone, country, source, campaign, first_seen, last_seen, account_id, "
                   "owner", "person_id", ids)
    acc_ids = sorted({p[12] for p in people.values() if p[12]})
    accounts = fetch(engine, "accounts", "account_id, name, owner", "account_id", acc_ids)
    reps: dict[str, str] = {}
    for pid, rep in engine.query(
            f"SELECT person_id, rep FROM assignments WHERE person_id IN ({m}) "
            "ORDER BY assigned_at", ids):
        reps[pid] = rep  # the newest wins
    converted = {r[0] for r in engine.query(
        "SELECT person_id FROM outcomes WHERE (won OR kind = 'conversion') "
        f"AND person_id IN ({m})", ids)}
    if acc_ids:  # account-level wins count for every person of the account
        am = ", ".join("?" for _ in acc_ids)
        won = {r[0] for r in engine.query(
            "SELECT account_id FROM outcomes WHERE (won OR kind = 'conversion') AND "
            f"person_id IS NULL AND account_id IN ({am})", acc_ids)}
        converted |= {pid for pid, pp in people.items() if pp[12] in won}
    preds: dict[str, tuple] = {}
    if pred_sql:
        preds = {r[0]: r[1:] for r in engine.query(
            f"SELECT person_id, probability, bucket FROM {pred_sql} x "
            f"WHERE person_id IN ({m})", ids)}
    out = []
    for pid in ids:
        sc = got.get(pid)
        if sc is None:
            continue
        pp = people.get(pid) or (None,) * 14
        acc = accounts.get(pp[12]) if pp[12] else None
        owner = pp[13] or (acc[1] if acc else None) or reps.get(pid)
        pr = preds.get(pid, (None, None))
        row = (*sc, *pp[:13], acc[0] if acc else None, owner, pid in converted, *pr)
        out.append(_shape(model, row, reasons))
    return out


def lead_page(engine: Engine, model: Model, f: LeadFilter | None = None, *, page: int = 1,
              per_page: int = 50, scope: Scope | None = None, reasons: int = 3) -> LeadPage:
    """One page of the ranked list: count and rank over the lean join, then the full rows of
    just that page."""
    f = f or LeadFilter()
    pred = predictions(engine)
    pred_sql = pred.subquery() if pred else None
    where, params = _where(model, f, scope)
    lean = _lean_from(f, scope, pred_sql, None)
    page = max(1, int(page))
    per_page = max(1, min(int(per_page), 1000))
    order = SORTS.get(f.sort, SORTS["score"])
    loc = ROW_LOCATOR.get(engine.name)
    cols = f"s.person_id{f', s.{loc}' if loc else ''}"
    limit = [per_page, (page - 1) * per_page]
    if "(SELECT" in where:
        # costly filters (search, profile fields, a rep's scope): evaluate them once, counting
        # the matches with a window over the same scan that ranks them
        got = engine.query(f"SELECT {cols}, count(*) OVER () {lean} WHERE {where} "
                           f"ORDER BY {order} LIMIT ? OFFSET ?", [*params, *limit])
        total = int(got[0][-1]) if got else int(engine.scalar(
            f"SELECT count(*) {lean} WHERE {where}", params) or 0)
    else:
        total = int(engine.scalar(f"SELECT count(*) {lean} WHERE {where}", params) or 0)
        got = engine.query(f"SELECT {cols} {lean} WHERE {where} ORDER BY {order} "
                           "LIMIT ? OFFSET ?", [*params, *limit])
    ids = [r[0] for r in got]
    locators = [r[1] for r in got] if loc else None
    return LeadPage(_details(engine, model, ids, pred_sql, reasons, locators), total, page,
                    per_page, pred is not None)


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


PREDICTIVE = ("probability", "bucket", "holdout", "surge", "factors")


def with_predictions(
    engine: Engine, rows: list[dict[str, Any]],
    explain_missing: Callable[[list[str]], dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Add to each row (by `person_id`) its predictive probability, bucket, control-holdout
    mark, behavioural-surge flag and top factors ({"positive": [...], "negative": [...]}, each
    {"text", "contribution"}); None where no model has scored the person. `predict` caches
    factors for the top of the list only; `explain_missing(ids)` computes the rest, for just
    these rows."""
    for r in rows:
        r.update(dict.fromkeys(PREDICTIVE))
    pred = predictions(engine)
    ids = [str(r["person_id"]) for r in rows]
    if not pred or pred.table != "predictions" or not ids:
        return rows
    m = ", ".join("?" for _ in ids)
    got = {r[0]: r[1:] for r in engine.query(
        f"SELECT person_id, {', '.join(PREDICTIVE)} FROM predictions WHERE person_id IN ({m})",
        ids)}
    for r in rows:
        if r["person_id"] in got:
            p, bucket, holdout, surge, factors = got[r["person_id"]]
            r.update(probability=num(p), bucket=bucket, holdout=bool(holdout),
                     surge=bool(surge), factors=loads(factors))
    missing = [r["person_id"] for r in rows if r["person_id"] in got and not r["factors"]]
    if missing and explain_missing is not None:
        found = explain_missing(missing)
        for r in rows:
            if r["person_id"] in found:
                r["factors"] = json.loads(json.dumps(found[r["person_id"]], default=str))
    return rows
