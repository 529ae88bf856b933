"""Point-in-time features from the store: what was known about a person at a given moment.

    spec = FeatureSpec.learn(engine, examples)       # vocabulary: event names, pages, traits
    X = build_features(engine, examples, spec)       # one row per (person_id, as_of)

`examples` is a DataFrame of `person_id` and `as_of`. Every feature is computed in SQL through
the `Engine` from rows strictly older than the example's `as_of`:

* events (`ts < as_of`): counts of each `track` event name and page group (first two path
  segments) over 7/30/90 days, all events in the last 7 days and the 21 before (trend), distinct
  active days in 30 days, days since the last event, days since the first event;
* traits from `trait_history` as of then (the newest value with `ts < as_of`), the account's
  traits likewise, and a webmail flag from the e-mail as of then;
* the rule model's category scores and stage from the newest `scores` snapshot whose own
  `as_of <= as_of` (a snapshot only used events up to its as_of), when one exists.

Conversion events (`[ingest] conversion_events`) are never features: they are the label.
`tests/unit/test_features_pit.py` fails if any feature changes when events after `as_of` are
added.

One SQL text per query, for every engine: each is written in DuckDB's dialect with the
`LR_` placeholders of `model.dialects` (JSON access, exact epoch microseconds), parsed by sqlglot,
its `?` values bound as literals in the tree, and rendered for `engine.dialect`. The few
constructs neither sqlglot nor `model.dialects` carry across are rewritten by `_REWRITES` here.
`tests/engines/test_features_engines.py` proves DuckDB and PostgreSQL build the same frame.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
from sqlglot import exp

from ..model.dialects import call, parse_ours, render
from ..store.engine import Engine
from .explain import FeatureDescriber

__all__ = ["FeatureSpec", "build_features", "describer_for"]

WINDOWS = (7, 30, 90)
# the first two path segments of a page view ('' when the path does not start with '/')
PAGE_GROUP = (
    "coalesce(regexp_extract(coalesce(LR_JSON_TEXT(e.properties, 'path'), ''),"
    " '^(/[^/?#]*(/[^/?#]*)?)', 1), '')"
)
DAY_US = 86_400_000_000
# traits that identify a person rather than describe one
IDENTIFYING = {
    "email", "phone", "firstname", "lastname", "first_name", "last_name", "name", "createdat",
    "created_at", "userid", "user_id", "id", "company", "website", "$account_id", "$first_name",
    "address", "plan",
}
MAX_CATEGORIES = 60
EXAMPLES = "_pit_examples"


Rewrite = Callable[[exp.Expression], exp.Expression]


def _json_keys(build: Rewrite) -> Rewrite:
    """LR_JSON_KEYS(col), one row per key of a JSON object column, as `build(col)`."""

    def rewrite(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Anonymous) and str(node.this).upper() == "LR_JSON_KEYS":
            return build(node.expressions[0])
        return node

    return rewrite


def _substring_regexp(node: exp.Expression) -> exp.Expression:
    """regexp_extract(text, pattern, 1) as PostgreSQL's SUBSTRING(text FROM pattern), which
    returns the pattern's first group (PostgreSQL has no regexp_extract)."""
    group = node.args.get("group") if isinstance(node, exp.RegexpExtract) else None
    if group is not None and group.name == "1":
        return exp.Substring(this=node.this, start=node.expression)
    return node


# what neither sqlglot nor `model.dialects` carries to an engine: tree rewrites per dialect
_REWRITES: dict[str, tuple[Rewrite, ...]] = {
    "duckdb": (_json_keys(lambda col: exp.Unnest(expressions=[call("json_keys", col)])),),
    "postgres": (_json_keys(lambda col: call("jsonb_object_keys", col)), _substring_regexp),
    "spark": (_json_keys(lambda col: exp.Explode(this=call("json_object_keys", col))),),
}


def _sql(engine: Engine, template: str, values: Sequence[Any] = ()) -> str:
    """`template` (DuckDB dialect, `LR_` placeholders, `?` for `values`) in `engine`'s dialect.
    Values become literals in the tree, so no engine's placeholder style matters."""
    tree = exp.replace_placeholders(parse_ours(template), *values)
    for rewrite in _REWRITES[engine.dialect]:
        tree = tree.transform(rewrite, copy=False)
    return render(cast(exp.Expression, tree), engine.dialect, pretty=False)


def _marks(values: Sequence[Any]) -> str:
    """`(?, ?, …)` for an IN list of `values`; `(NULL)` (matches nothing) when empty."""
    return "(" + (", ".join("?" for _ in values) or "NULL") + ")"


@dataclass
class FeatureSpec:
    """The vocabulary of a feature frame, learned once from training data and saved with it."""

    events: list[str] = field(default_factory=list)
    pages: list[str] = field(default_factory=list)
    traits: dict[str, str] = field(default_factory=dict)  # key -> "numeric" | "categorical"
    account_traits: dict[str, str] = field(default_factory=dict)
    rule_categories: list[str] = field(default_factory=list)
    use_rule_scores: bool = True
    exclude_events: list[str] = field(default_factory=list)  # conversion events

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        return cls(**d)

    @classmethod
    def learn(
        cls,
        engine: Engine,
        examples: pd.DataFrame,
        *,
        exclude_events: Sequence[str] = (),
        max_events: int = 40,
        max_pages: int = 30,
    ) -> FeatureSpec:
        """Event names, page groups and traits seen before the examples' as-of times."""
        _register(engine, examples)
        excl = list(exclude_events)
        events = engine.query(
            _sql(
                engine,
                f"""SELECT e.event, count(*) AS n FROM {EXAMPLES} x JOIN events e
                    ON e.person_id = x.person_id AND e.ts < x.as_of
                    WHERE e.type = 'track' AND e.event IS NOT NULL
                        AND NOT coalesce(e.event IN {_marks(excl)}, FALSE)
                    GROUP BY 1 ORDER BY n DESC, 1 LIMIT {int(max_events)}""",
                excl,
            )
        )
        pages = engine.query(
            _sql(
                engine,
                f"""SELECT g, count(*) AS n FROM (
                        SELECT {PAGE_GROUP} AS g FROM {EXAMPLES} x JOIN events e
                            ON e.person_id = x.person_id AND e.ts < x.as_of
                        WHERE e.type = 'page') AS p
                    WHERE g <> '' GROUP BY 1 ORDER BY n DESC, 1 LIMIT {int(max_pages)}""",
            )
        )
        n_people = max(1, int(examples["person_id"].nunique()))
        traits = _learn_traits(engine, "trait_history", "person_id", n_people)
        account_traits = _learn_traits(engine, "account_trait_history", "account_id", None)
        return cls(
            events=[r[0] for r in events],
            pages=[r[0] for r in pages],
            traits=traits,
            account_traits=account_traits,
            exclude_events=excl,
        )


def _learn_traits(engine: Engine, table: str, key_col: str, n_people: int | None) -> dict[str, str]:
    rows = engine.query(
        _sql(
            engine,
            f"""SELECT key, count(DISTINCT owner) AS n, count(DISTINCT value) AS v,
                    CAST(avg(CASE WHEN LR_TO_NUM(value) IS NULL THEN 0 ELSE 1 END) AS DOUBLE)
                        AS numeric_share
                FROM (SELECT key, {key_col} AS owner, LR_JSON_SCALAR(value) AS value
                      FROM {table}) AS t
                GROUP BY key""",
        )
    )
    total = max((r[1] for r in rows), default=1)
    out: dict[str, str] = {}
    for key, n, v, numeric_share in sorted(rows):
        if key.lower() in IDENTIFYING or key.startswith("$") or n < 0.05 * total:
            continue
        if numeric_share > 0.95 and v > 2:
            out[key] = "numeric"
        elif v <= MAX_CATEGORIES:
            out[key] = "categorical"
    return out


def _register(engine: Engine, examples: pd.DataFrame) -> None:
    """The examples as a temporary table of this connection, `ex` numbering them in order."""
    engine.execute(_sql(engine, f"DROP TABLE IF EXISTS {EXAMPLES}"))
    columns = "ex BIGINT, person_id VARCHAR, as_of TIMESTAMP"
    engine.execute(_sql(engine, f"CREATE TEMP TABLE {EXAMPLES} ({columns})"))
    data = pa.table(
        {
            "ex": pa.array(np.arange(len(examples)), pa.int64()),
            "person_id": pa.array(examples["person_id"].astype(str).tolist(), pa.string()),
            "as_of": pa.array(
                pd.to_datetime(examples["as_of"]).dt.tz_localize(None), pa.timestamp("us")
            ),
        }
    )
    engine.append(EXAMPLES, data)


def _slug(text: str) -> str:
    """A feature-name part LightGBM accepts (no JSON punctuation)."""
    return re.sub(r'[,:\[\]{}"]', "_", str(text))


def _newest(
    engine: Engine, columns: dict[str, str], source: str, partition: str, order: str,
    values: Sequence[Any] = (),
) -> pd.DataFrame:
    """`columns` (alias -> expression) of the newest row of `source` in each `partition` by
    `order`: a portable arg_max (PostgreSQL has none), with a deterministic tie-break."""
    inner = ", ".join(f"{expr} AS {alias}" for alias, expr in columns.items())
    return _frame(
        engine.query_arrow(
            _sql(
                engine,
                f"""SELECT {", ".join(columns)} FROM (
                        SELECT {inner},
                            row_number() OVER (PARTITION BY {partition} ORDER BY {order}) AS rn
                        {source}) AS newest
                    WHERE rn = 1""",
                values,
            )
        )
    )


def build_features(engine: Engine, examples: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """One row per example (same order), numeric counts and categorical traits."""
    _register(engine, examples)
    n = len(examples)
    cols: dict[str, Any] = {}
    excl = list(spec.exclude_events)

    # 1. per example: activity summary, all event types but the conversion ones
    summary = _frame(
        engine.query_arrow(
            _sql(
                engine,
                f"""SELECT x.ex,
                    count(*) FILTER (e.ts >= x.as_of - INTERVAL 7 DAY) AS n7,
                    count(*) FILTER (e.ts >= x.as_of - INTERVAL 28 DAY
                                     AND e.ts < x.as_of - INTERVAL 7 DAY) AS prev21,
                    count(*) FILTER (e.ts >= x.as_of - INTERVAL 30 DAY) AS n30,
                    count(*) AS n_all,
                    count(DISTINCT CAST(e.ts AS DATE)) FILTER (e.ts >= x.as_of - INTERVAL 30 DAY)
                        AS active_days_30,
                    CAST(LR_EPOCH_US(x.as_of) - LR_EPOCH_US(max(e.ts)) AS DOUBLE) / {DAY_US}
                        AS days_since_last,
                    CAST(LR_EPOCH_US(x.as_of) - LR_EPOCH_US(min(e.ts)) AS DOUBLE) / {DAY_US}
                        AS days_since_first
                FROM {EXAMPLES} x JOIN events e ON e.person_id = x.person_id AND e.ts < x.as_of
                WHERE NOT (e.type = 'track' AND coalesce(e.event IN {_marks(excl)}, FALSE))
                GROUP BY x.ex, x.as_of""",
                excl,
            )
        )
    )
    for name in ("n7", "prev21", "n30", "n_all", "active_days_30"):
        cols[f"events_{name}"] = _fill(summary, name, n, 0.0)
    cols["days_since_last"] = _fill(summary, "days_since_last", n, np.nan)
    cols["days_since_first"] = _fill(summary, "days_since_first", n, np.nan)
    cols["trend_7_vs_21"] = (cols["events_n7"] + 1.0) / (cols["events_prev21"] / 3.0 + 1.0)

    # 2. counts per event name / page group and window
    for kind, names, expr, where in (
        ("track", spec.events, "e.event", "e.type = 'track'"),
        ("page", spec.pages, PAGE_GROUP, "e.type = 'page'"),
    ):
        if not names:
            continue
        windows = ", ".join(
            f"count(*) FILTER (e.ts >= x.as_of - INTERVAL {w} DAY) AS c{w}" for w in WINDOWS
        )
        counts = _frame(
            engine.query_arrow(
                _sql(
                    engine,
                    f"""SELECT x.ex, {expr} AS name, {windows}
                    FROM {EXAMPLES} x JOIN events e ON e.person_id = x.person_id
                        AND e.ts < x.as_of AND e.ts >= x.as_of - INTERVAL {max(WINDOWS)} DAY
                    WHERE {where} AND {expr} IN {_marks(names)}
                    GROUP BY 1, 2""",
                    list(names),
                )
            )
        )
        for name in names:
            sub = counts[counts["name"] == name] if len(counts) else counts
            for w in WINDOWS:
                col = f"{kind}_{w}d.{_slug(name)}"
                cols[col] = _fill(sub, f"c{w}", n, 0.0)

    # 3. person traits as of then, and the webmail flag of the e-mail as of then
    keys = [*spec.traits, "email"]
    trait_rows = _newest(
        engine,
        {"ex": "x.ex", "key": "t.key", "value": "LR_JSON_SCALAR(t.value)"},
        f"""FROM {EXAMPLES} x JOIN trait_history t
                ON t.person_id = x.person_id AND t.ts < x.as_of
            WHERE t.key IN {_marks(keys)}""",
        "x.ex, t.key",
        "t.ts DESC, t.message_id DESC",
        keys,
    )
    for key, kind in spec.traits.items():
        cols[f"trait.{_slug(key)}"] = _trait(trait_rows, key, n, kind)
    emails = _trait(trait_rows, "email", n, "categorical")
    cols["webmail"] = _webmail(engine, emails)

    # 4. account traits as of then (the person's account as the store knows it)
    if spec.account_traits:
        akeys = list(spec.account_traits)
        acct_rows = _newest(
            engine,
            {"ex": "x.ex", "key": "t.key", "value": "LR_JSON_SCALAR(t.value)"},
            f"""FROM {EXAMPLES} x JOIN people p ON p.person_id = x.person_id
                JOIN account_trait_history t ON t.account_id = p.account_id AND t.ts < x.as_of
                WHERE t.key IN {_marks(akeys)}""",
            "x.ex, t.key",
            "t.ts DESC, t.message_id DESC",
            akeys,
        )
        for key, kind in spec.account_traits.items():
            cols[f"account.{_slug(key)}"] = _trait(acct_rows, key, n, kind)

    # 5. the rule model's view, from the newest snapshot not newer than as_of
    if spec.use_rule_scores:
        rule = _newest(
            engine,
            {
                "ex": "x.ex",
                "score": "s.score",
                "stage_rank": "s.stage_rank",
                "categories": "CAST(s.categories AS VARCHAR)",
            },
            f"""FROM {EXAMPLES} x JOIN scores s
                ON s.person_id = x.person_id AND s.as_of <= x.as_of""",
            "x.ex",
            "s.as_of DESC, s.run_id DESC",
        )
        cols["rule_score"] = _fill(rule, "score", n, np.nan)
        cols["rule_stage_rank"] = _fill(rule, "stage_rank", n, np.nan)
        cats: dict[str, np.ndarray] = {c: np.full(n, np.nan) for c in spec.rule_categories}
        if len(rule):
            for ex, text in zip(rule["ex"], rule["categories"], strict=True):
                for k, v in (json.loads(text) if text else {}).items():
                    if k in cats and isinstance(v, int | float):
                        cats[k][int(ex)] = float(v)
        for k, arr in cats.items():
            cols[f"rule.{_slug(k)}"] = arr
    return pd.DataFrame(cols, index=examples.index)


def rule_categories(engine: Engine) -> list[str]:
    rows = engine.query(
        _sql(
            engine,
            "SELECT DISTINCT LR_JSON_KEYS(categories) FROM latest_scores"
            " WHERE categories IS NOT NULL",
        )
    )
    return sorted(r[0] for r in rows)


def _frame(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas()


def _fill(frame: pd.DataFrame, col: str, n: int, default: float) -> np.ndarray:
    out = np.full(n, default, dtype=float)
    if len(frame):
        vals = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
        out[frame["ex"].to_numpy(dtype=int)] = vals
    return out


def _trait(rows: pd.DataFrame, key: str, n: int, kind: str) -> Any:
    sub = rows[rows["key"] == key] if len(rows) else rows
    if kind == "numeric":
        out = np.full(n, np.nan)
        if len(sub):
            out[sub["ex"].to_numpy(dtype=int)] = pd.to_numeric(sub["value"], errors="coerce")
        return out
    values = np.full(n, None, dtype=object)
    if len(sub):
        values[sub["ex"].to_numpy(dtype=int)] = sub["value"].astype(object).to_numpy()
    return pd.Categorical(values)


def _webmail(engine: Engine, emails: Any) -> np.ndarray:
    from ..ingest.webmail import WEBMAIL_DOMAINS

    out = np.full(len(emails), np.nan)
    for i, e in enumerate(np.asarray(emails, dtype=object)):
        if isinstance(e, str) and "@" in e:
            out[i] = float(e.rsplit("@", 1)[1].strip().lower() in WEBMAIL_DOMAINS)
    return out


def describer_for(columns: Sequence[str]) -> FeatureDescriber:
    """Plain-words templates for the feature names `build_features` makes."""
    labels: dict[str, Any] = {
        "events_n7": "{value:g} events in the last 7 days",
        "events_prev21": "{value:g} events in the 21 days before",
        "events_n30": "{value:g} events in the last 30 days",
        "events_n_all": "{value:g} events in all",
        "events_active_days_30": "active on {value:g} days of the last 30",
        "days_since_last": "last seen {value:.0f} days ago",
        "days_since_first": "first seen {value:.0f} days ago",
        "trend_7_vs_21": "activity this week {value:.1f}x the previous three",
        "webmail": {1: "webmail address", 0: "company email address"},
        "rule_score": "rule score {value:.0f}",
        "rule_stage_rank": "journey stage {value:g}",
    }
    for c in columns:
        if "." not in c:
            continue
        head, name = c.split(".", 1)
        if head.startswith("track_"):
            days = head[len("track_"):-1]
            labels[c] = f"{{value:g}} x {name} in the last {days} days"
        elif head.startswith("page_"):
            days = head[len("page_"):-1]
            labels[c] = f"{{value:g}} views of {name} in the last {days} days"
        elif head in ("trait", "account"):
            who = "" if head == "trait" else "account "
            labels[c] = f"{who}{name}: {{value}}"
        elif head == "rule":
            labels[c] = f"rule {name} score {{value:.0f}}"
    return FeatureDescriber(labels)
