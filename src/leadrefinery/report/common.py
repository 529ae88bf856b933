"""What every report query shares: who may see which leads, "now" in the data, the outcome and
prediction tables, and small helpers to turn rows into dicts.

    Scope.everyone() / Scope.of_rep(["ann@acme.com", "Ann Smith"])   which leads a viewer sees
    scope_sql(scope, person="p.person_id", ...)                      -> (SQL condition, params)
    reference_time(engine)           the newest event time (or now, if events are recent)
    converted_sql()                  person ids with a won deal / conversion (a subquery)
    predictions(engine)              the predictive scores table, when a model is published

Report functions take an `Engine` and plain arguments and return rows as dicts; the REST API,
the dashboard pages and the CRM export all call them, so they always agree.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..store.engine import Engine

Params = list[Any]


@dataclass(frozen=True)
class Scope:
    """Which leads a viewer may see: everyone, or those owned by one of `owners`.

    A lead is owned by X when its `people.owner`, its account's owner or the rep of its newest
    routing assignment is X (compared case-insensitively).
    """

    owners: tuple[str, ...] | None = None

    @classmethod
    def everyone(cls) -> Scope:
        return cls(None)

    @classmethod
    def of_rep(cls, owners: Sequence[str]) -> Scope:
        return cls(tuple(sorted({o.strip().lower() for o in owners if o and o.strip()})))

    @property
    def limited(self) -> bool:
        return self.owners is not None


# the newest routing assignment of each person (portable SQL: no arg_max / DISTINCT ON)
LAST_ASSIGNMENT = (
    "(SELECT person_id, rep FROM (SELECT person_id, rep, row_number() OVER "
    "(PARTITION BY person_id ORDER BY assigned_at DESC) AS rn FROM assignments) x WHERE rn = 1)"
)


def owner_sql(p: str = "p", a: str = "a", asg: str = "asg") -> str:
    """The lead's owner: the person's CRM owner, else the account's, else the routed rep."""
    return f"coalesce({p}.owner, {a}.owner, {asg}.rep)"


def scope_sql(scope: Scope | None, *, person: str = "p.person_id") -> tuple[str, Params]:
    """A WHERE condition on the column `person` limiting rows to the scope (`1 = 1` for
    everyone). A semi-join against the (small) set of the owner's people, so callers need no
    join to people or accounts for it."""
    if scope is None or not scope.limited:
        return "1 = 1", []
    if not scope.owners:
        return "1 = 0", []
    marks = ", ".join("?" for _ in scope.owners)
    own = list(scope.owners)
    cond = (f"{person} IN (SELECT person_id FROM people WHERE lower(owner) IN ({marks}) OR "
            f"account_id IN (SELECT account_id FROM accounts WHERE lower(owner) IN ({marks})) "
            f"UNION SELECT person_id FROM assignments WHERE lower(rep) IN ({marks}))")
    return cond, own * 3


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def reference_time(engine: Engine) -> datetime:
    """"Now" for recency questions (last week, logged in now): the wall clock when events are
    arriving, else the newest event — so a historical data set still shows its last week."""
    now = utcnow()
    newest = engine.scalar("SELECT max(ts) FROM events")
    if newest is None or newest > now - timedelta(days=1):
        return now
    return newest


def converted_sql() -> str:
    """Person ids with a won deal or a conversion (account-level outcomes count for every
    person of the account)."""
    return (
        "(SELECT o.person_id FROM outcomes o WHERE (o.won OR o.kind = 'conversion') "
        "AND o.person_id IS NOT NULL "
        "UNION SELECT p2.person_id FROM outcomes o2 "
        "JOIN people p2 ON p2.account_id = o2.account_id "
        "WHERE (o2.won OR o2.kind = 'conversion') AND o2.person_id IS NULL)"
    )


@dataclass(frozen=True)
class Predictions:
    """The predictive scores, when the `predict` package has published a model: a table with
    `person_id` and some of `probability`, `bucket`, `factors` (newest row per person)."""

    table: str
    probability: str | None
    bucket: str | None
    factors: str | None
    order: str | None  # a time column: the newest row per person wins

    def subquery(self) -> str:
        cols = ["person_id"]
        cols.append(f"{self.probability} AS probability" if self.probability else
                    "CAST(NULL AS DOUBLE) AS probability")
        cols.append(f"CAST({self.bucket} AS VARCHAR) AS bucket" if self.bucket else
                    "CAST(NULL AS VARCHAR) AS bucket")
        cols.append(f"CAST({self.factors} AS VARCHAR) AS factors" if self.factors else
                    "CAST(NULL AS VARCHAR) AS factors")
        if not self.order:
            return f"(SELECT {', '.join(cols)} FROM {self.table})"
        return (f"(SELECT {', '.join(cols)} FROM (SELECT *, row_number() OVER (PARTITION BY "
                f"person_id ORDER BY {self.order} DESC) AS _rn FROM {self.table}) _p "
                f"WHERE _rn = 1)")


def _first(have: set[str], *names: str) -> str | None:
    return next((n for n in names if n in have), None)


_PRED_CACHE: dict[int, tuple[float, Predictions | None]] = {}


def predictions(engine: Engine, *, ttl: float = 15.0) -> Predictions | None:
    """The predictions table (looked up at most every `ttl` seconds per engine)."""
    now = time.monotonic()
    hit = _PRED_CACHE.get(id(engine))
    if hit and hit[0] > now:
        return hit[1]
    found = _find_predictions(engine)
    _PRED_CACHE[id(engine)] = (now + ttl, found)
    return found


def _find_predictions(engine: Engine) -> Predictions | None:
    for table in ("latest_predictions", "predictions"):
        try:
            have = set(engine.existing_columns(table))
        except Exception:  # noqa: BLE001 - an engine without the table may raise
            have = set()
        if "person_id" not in have:
            continue
        p = Predictions(
            table,
            _first(have, "probability", "p", "prob", "predicted", "score"),
            _first(have, "bucket", "predictive_bucket"),
            _first(have, "factors", "reasons", "explanation"),
            None if table == "latest_predictions" else _first(have, "as_of", "scored_at",
                                                               "created_at", "ts"),
        )
        if p.probability or p.bucket:
            return p
    return None


# engines whose tables expose a physical row locator usable as `col = ANY(list)`: fetching a
# page's rows by it reads only those rows, where `person_id IN (...)` decompresses whole
# columns (such as the JSON components) of a 200 k-row table
ROW_LOCATOR = {"duckdb": "rowid"}


def fetch(engine: Engine, table: str, cols: str, key: str, ids: Sequence[Any],
          where: str = "1 = 1", params: Sequence[Any] = ()) -> dict[Any, tuple]:
    """Rows of `table` whose `key` is in `ids`, as {key: (cols...)}; `cols` starts with `key`.
    Reads only those rows: the key column is filtered first, then the rows fetched by locator.
    `where` (with `params`) may narrow further (our own SQL, never user text)."""
    if not ids:
        return {}
    marks = ", ".join("?" for _ in ids)
    loc = ROW_LOCATOR.get(engine.name)
    if loc:
        locs = [r[0] for r in engine.query(
            f"SELECT {loc} FROM {table} WHERE {key} IN ({marks}) AND {where}",
            [*ids, *params])]
        got = engine.query(f"SELECT {cols} FROM {table} WHERE {loc} = ANY(?)", [locs])
    else:
        got = engine.query(f"SELECT {cols} FROM {table} WHERE {key} IN ({marks}) AND {where}",
                           [*ids, *params])
    return {r[0]: r[1:] for r in got}


def loads(v: Any) -> Any:
    """A JSON column's value as Python (DuckDB returns JSON as text)."""
    if v is None:
        return None
    if isinstance(v, str):
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def num(v: Any) -> float | None:
    return None if v is None else float(v)


def rows(cols: Sequence[str], data: list[tuple]) -> list[dict[str, Any]]:
    return [dict(zip(cols, r, strict=True)) for r in data]


def rate(part: float | None, whole: float | None) -> float | None:
    return (part or 0) / whole if whole else None
