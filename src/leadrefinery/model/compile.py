"""The model compiled to one SQL query, built as a sqlglot AST and rendered per engine.

Shape of the query (CTEs, each a set-based step; nothing is row-by-row):

    lr_pop     the people who exist at the as-of time (optionally only those in a
               restriction table: the real-time path rescores a micro-batch's people), each
               with a key `pk` the event steps carry instead of the id: 10 M copies of a
               24-character id made the per-event step spill and every grouping and window
               compare strings (the full rescore at 200 k people: 25 s -> 20 s)
    lr_th      their trait history up to the as-of time, newest value per key
    lr_person  the profile as of then: email, domain, webmail, company, ..., traits.x
    lr_acct    their account as of then: name, size, industry, ..., traits.x
    lr_ev0     their events up to the as-of time that some rule/fact/stage/abuse rule can match,
               with every field a condition reads extracted once (JSON -> columns), and only
               for the events whose type/name some matcher reading it can select
    lr_evm     one boolean per matcher, per-occurrence values that are not constants; kept
               (materialised) for the readers below, so only what they need: no message id,
               times derived again on read (lr_ev), identical values stored once
    lr_ev      lr_evm with the derived times (ts_us, age_d, day): read by lr_agg alone
    lr_evs     lr_evm's rows and columns that the windowed readers (lr_fq_*, lr_ab_*) use;
    lr_evw     lr_evs with the derived times
    lr_agg     per person: occurrences, raw and decayed points per rule, facts, stage evidence
    lr_fq_*    per rule with a frequency limit (max_per_day / max_total): the occurrences kept
    lr_ab_*    abuse rules on intervals (sessions, resumed sessions, concurrency) and gaps
    lr_comp    per person and rule: final points after frequency, min_count and rule caps
    lr_cat     category scores with category caps; lr_tot the total in the score range
    lr_grade   grade, MQL, stage; the final SELECT adds segments

Every output column has a fixed name (`r_<rule>`, `cat_<category>`, `ab_<rule>`,
`seg_<segment>`, ...), see `Plan.columns`. `snapshot_query` wraps the result into the JSON
columns stored in `scores`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlglot import exp

from ..errors import ModelError
from ..ingest.webmail import WEBMAIL_DOMAINS
from . import spec as S
from .dialects import call, render
from .expr import (
    BOOL,
    JSON,
    NUM,
    TEXT,
    TS,
    Compiler,
    ExprError,
    Scope,
    Typed,
    coerce,
    double,
    json_field,
    suggest,
    text_literal,
    to_text,
)
from .load import Loc, Model

DAY_US = 86_400_000_000
MINUTE_US = 60_000_000

# person fields: name -> (type, trait keys (normalised: lower-case, no _ - or space))
PERSON_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "email": (TEXT, ("email", "emailaddress")),
    "first_name": (TEXT, ("firstname",)),
    "last_name": (TEXT, ("lastname", "surname")),
    "name": (TEXT, ("name", "fullname")),
    "company": (TEXT, ("company", "companyname", "organization", "organisation")),
    "title": (TEXT, ("title", "jobtitle", "role", "position")),
    "phone": (TEXT, ("phone", "phonenumber", "mobile")),
    "country": (TEXT, ("country", "countrycode")),
    "owner": (TEXT, ("owner", "leadowner", "owneremail")),
    "source": (TEXT, ("source", "leadsource", "referralsource", "signupsource", "utmsource")),
    "campaign": (TEXT, ("campaign", "referralcode", "utmcampaign")),
}
DERIVED_FIELDS: dict[str, str] = {
    "domain": TEXT,  # the email's domain, lower-case
    "webmail": BOOL,  # domain in @webmail
    "account_id": TEXT,  # from a group call, else 'domain:' + company domain
    "domain_matches_company": BOOL,  # company name and email domain agree
    "first_seen": TS,
}
ACCOUNT_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "name": (TEXT, ("name", "company", "companyname")),
    "domain": (TEXT, ("domain", "website")),
    "size": (NUM, ("employees", "size", "companysize", "numberofemployees")),
    "industry": (TEXT, ("industry", "sector")),
    "owner": (TEXT, ("owner", "accountowner")),
}
FIRST_TOUCH = {"source": "$first_source", "campaign": "$first_name"}


# -- small AST helpers ----------------------------------------------------------------------


def _p(e: exp.Expression) -> exp.Expression:
    """Parenthesise a compound operand: sqlglot prints the tree as built, without adding any."""
    atomic = (
        exp.Column,
        exp.Literal,
        exp.Cast,
        exp.Func,
        exp.Paren,
        exp.Case,
        exp.Window,
        exp.Null,
    )
    return e if isinstance(e, atomic) else exp.Paren(this=e)


def _add(this: exp.Expression, expression: exp.Expression) -> exp.Expression:
    return exp.Add(this=_p(this), expression=_p(expression))


def _sub(this: exp.Expression, expression: exp.Expression) -> exp.Expression:
    return exp.Sub(this=_p(this), expression=_p(expression))


def _mul(this: exp.Expression, expression: exp.Expression) -> exp.Expression:
    return exp.Mul(this=_p(this), expression=_p(expression))


def _div(this: exp.Expression, expression: exp.Expression) -> exp.Expression:
    return exp.Div(this=_p(this), expression=_p(expression), typed=False, safe=False)


def col(name: str, table: str | None = None) -> exp.Column:
    return exp.column(name, table=table)


def on_key(key: str, a: str, b: str) -> exp.EQ:
    """`a.key = b.key`: a join on one column."""
    return exp.EQ(this=col(key, a), expression=col(key, b))


def alias(e: exp.Expression, name: str) -> exp.Expression:
    return exp.alias_(e, name)


def case(
    cond: exp.Expression, then: exp.Expression, default: exp.Expression | None = None
) -> exp.Case:
    return exp.Case(ifs=[exp.If(this=cond, true=then)], default=default)


def row_number(partition: list[exp.Expression], order: list[exp.Expression]) -> exp.Window:
    """ROW_NUMBER() OVER (PARTITION BY … ORDER BY …): how one row per group is picked."""
    return exp.Window(
        this=fn("ROW_NUMBER"), partition_by=partition, order=exp.Order(expressions=order)
    )


def fn(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.func(name, *args)


def and_(*conds: exp.Expression | None) -> exp.Expression:
    cs = [c for c in conds if c is not None]
    if not cs:
        return exp.true()
    return exp.and_(*cs) if len(cs) > 1 else cs[0]


def or_(*conds: exp.Expression) -> exp.Expression:
    return exp.or_(*conds) if len(conds) > 1 else conds[0]


def int_lit(v: int) -> exp.Literal:
    return exp.Literal.number(int(v))


def as_double(e: exp.Expression) -> exp.Expression:
    return exp.cast(e, exp.DataType.build("DOUBLE"))


def count_if(cond: exp.Expression) -> exp.Expression:
    return exp.cast(fn("SUM", case(cond, int_lit(1), int_lit(0))), exp.DataType.build("BIGINT"))


def coalesce(*args: exp.Expression) -> exp.Expression:
    return exp.Coalesce(this=args[0], expressions=list(args[1:]))


def clamp(e: exp.Expression, lo: float | None, hi: float | None) -> exp.Expression:
    if hi is not None:
        e = fn("LEAST", e, double(hi))
    if lo is not None:
        e = fn("GREATEST", e, double(lo))
    return e


def round6(e: exp.Expression) -> exp.Expression:
    """Round to 1e-6 the same way on every engine (so grades do not flip on the last bit)."""
    scaled = _add(this=_mul(this=e, expression=double(1e6)), expression=double(0.5))
    return _div(this=as_double(exp.Floor(this=scaled)), expression=double(1e6))


def select(*cols: exp.Expression) -> exp.Select:
    return exp.Select(expressions=list(cols))


def in_list(e: exp.Expression, values: Iterable[str]) -> exp.Expression:
    return exp.In(this=e, expressions=[text_literal(v) for v in values])


def norm_key(e: exp.Expression) -> exp.Expression:
    """camelCase / snake_case / 'Job Title' -> jobtitle (lower case, no _ - or space)."""
    for ch in ("_", " ", "-"):
        e = exp.Replace(this=e, expression=text_literal(ch), replacement=text_literal(""))
    return exp.Lower(this=e)


def glob_regex(pattern: str) -> str:
    out = ["^"]
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch.isalnum() or ch in " _-/:@,'\"&!=<>~%#;":
            out.append(ch)
        else:
            out.append(f"[{ch}]" if ch not in "\\^]" else "\\" + ch)
    out.append("$")
    return "".join(out)


def time_text(t: datetime) -> str:
    """How the compiled SQL spells a time (`ts_literal`'s string)."""
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")


def ts_literal(t: datetime) -> exp.Expression:
    return exp.cast(exp.Literal.string(time_text(t)), exp.DataType.build("TIMESTAMP"))


def naive_utc(t: datetime) -> datetime:
    if t.tzinfo is not None:
        t = t.astimezone(UTC).replace(tzinfo=None)
    return t


def epoch_us(t: datetime) -> int:
    t = naive_utc(t)
    delta = t - datetime(1970, 1, 1)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


# -- the plan -------------------------------------------------------------------------------


@dataclass
class RuleInfo:
    id: str
    category: str
    on: str
    loc: Loc


@dataclass
class Plan:
    """A compiled model: the per-person query (wide columns) and what its columns mean."""

    model: Model
    as_of: datetime
    query: exp.Select
    rules: list[RuleInfo]
    categories: list[str]
    stages: list[str]
    abuse: dict[str, str]  # id -> kind
    abuse_evidence: dict[str, list[tuple[str, str]]]  # id -> [(json key, column)]
    segments: list[str]
    grades: list[str]
    restricted: bool = False

    def sql(self, engine: str = "duckdb", *, snapshot: bool = True, pretty: bool = True) -> str:
        tree = snapshot_query(self) if snapshot else self.query
        return render(tree, engine, pretty=pretty)


# -- scopes ---------------------------------------------------------------------------------


@dataclass
class Needs:
    """What the query must provide, collected while conditions compile."""

    ev_cols: dict[str, tuple[str, exp.Expression, str]] = field(default_factory=dict)
    person: set[str] = field(default_factory=set)  # person fields (incl. derived)
    traits: dict[str, str] = field(default_factory=dict)  # trait key -> column
    account: set[str] = field(default_factory=set)
    account_traits: dict[str, str] = field(default_factory=dict)
    facts: set[str] = field(default_factory=set)
    person_in_events: bool = False


# computed once however often read; the views adding derived times are inlined instead
_MATERIALIZE = {"lr_evm": True, "lr_evs": True, "lr_ev": False, "lr_evw": False}


class Builder:
    def __init__(
        self,
        model: Model,
        as_of: datetime,
        restrict: str | list[str] | None = None,
        volume_cutoffs: dict[str, float] | None = None,
        events: str = "events",
    ) -> None:
        self.model = model
        self.events = events
        self.spec = model.spec
        self.as_of = naive_utc(as_of)
        self.as_of_lit = ts_literal(self.as_of)
        self.as_of_us = int_lit(epoch_us(self.as_of))
        self.ids: list[str] | None = None
        if isinstance(restrict, list | tuple):
            self.ids = [str(i) for i in restrict] or [""]
            restrict = "lr_ids"
        elif restrict is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]{0,126}", restrict):
            raise ValueError(f"not a table name: {restrict!r}")
        self.restrict = restrict
        self.volume_cutoffs = volume_cutoffs
        self.needs = Needs()
        self.sets: dict[str, list] = {"webmail": sorted(WEBMAIL_DOMAINS), **self.spec.sets}
        self.ctes: list[tuple[str, exp.Expression]] = []
        # event matchers: column name -> (match expr over lr_ev0, loc)
        self.matchers: dict[str, exp.Expression] = {}
        self.prefilter: list[exp.Expression | None] = []
        self.ev_values: dict[str, exp.Expression] = {}  # extra per-event columns in lr_ev
        self._pending_abuse: list[tuple[str, exp.Expression]] = []
        self._limited: list[str] = []  # rules with a frequency limit (their own CTE)
        self._matcher_keys: dict[str, str] = {}
        self._ab_m: dict[str, tuple[str, str]] = {}  # abuse rule -> its matcher columns
        self._acct_cols: list[str] = []
        # which raw events each extracted field is read for (None: all of them), so JSON is
        # parsed only for the events a matcher can select, not for every event in the log
        self._raw_guard: dict[str, exp.Expression | None] = {}  # matcher -> its type/name test
        self._guard: exp.Expression | None = None  # the test in force while compiling
        self._field_guards: dict[str, list[exp.Expression | None]] = {}

    # errors -----------------------------------------------------------------------------
    def fail(self, loc: Loc, message: str) -> Exception:
        return self.model.error(loc, message)

    def compile_condition(self, text: str, scope: Scope, loc: Loc) -> exp.Expression:
        try:
            return Compiler(scope, self.sets).condition(text)
        except ExprError as e:
            raise self.fail(loc, e.message) from None

    def compile_value(self, text: str, scope: Scope, loc: Loc) -> Typed:
        try:
            return Compiler(scope, self.sets).value(text)
        except ExprError as e:
            raise self.fail(loc, e.message) from None

    # scopes -----------------------------------------------------------------------------
    @contextmanager
    def _reading_for(self, *matchers: str) -> Iterator[None]:
        """Fields compiled in this block are read only for events one of `matchers` selects."""
        guards = [self._raw_guard[m] for m in matchers]
        saved = self._guard
        self._guard = None if any(g is None for g in guards) else or_(*guards)  # type: ignore[arg-type]
        try:
            yield
        finally:
            self._guard = saved

    def _ev_col(self, key: str, build: Callable[[], exp.Expression], typ: str) -> Typed:
        if key not in ("type", "event"):
            self._field_guards.setdefault(key, []).append(self._guard)
        if key not in self.needs.ev_cols:
            name = f"ev_{key}" if key in ("type", "event") else f"x{len(self.needs.ev_cols)}"
            self.needs.ev_cols[key] = (name, build(), typ)
        name, _, typ = self.needs.ev_cols[key]
        return Typed(col(name), typ)

    def _ev_json(self, column: str, rest: list[str], what: str) -> Typed:
        node = json_field(col(column, "e"), rest, what)  # validates the keys
        return self._ev_col(f"{column}:{'.'.join(rest)}", lambda: node.node, JSON)

    def _person_field(self, name: str, in_events: bool) -> Typed:
        self.needs.person.add(name)
        if in_events:
            self.needs.person_in_events = True
        typ = PERSON_FIELDS[name][0] if name in PERSON_FIELDS else DERIVED_FIELDS[name]
        return Typed(col(f"p_{name}"), typ)

    def _trait(self, rest: list[str], in_events: bool) -> Typed:
        if len(rest) != 1:
            raise ExprError("traits.x takes one name (nested trait values are not supported)")
        json_field(col("x"), rest, "traits")  # validates the key
        key = rest[0]
        if key not in self.needs.traits:
            self.needs.traits[key] = f"tr{len(self.needs.traits)}"
        if in_events:
            self.needs.person_in_events = True
        return Typed(col(self.needs.traits[key]), JSON)

    def _account(self, rest: list[str], in_events: bool) -> Typed:
        if in_events:
            self.needs.person_in_events = True
        if rest[0] == "traits":
            if len(rest) != 2:
                raise ExprError("account.traits.x takes one name")
            json_field(col("x"), rest[1:], "account.traits")
            key = rest[1]
            if key not in self.needs.account_traits:
                self.needs.account_traits[key] = f"at{len(self.needs.account_traits)}"
            self.needs.person.add("account_id")
            return Typed(col(self.needs.account_traits[key]), JSON)
        if len(rest) != 1 or rest[0] not in ACCOUNT_FIELDS:
            known = [*ACCOUNT_FIELDS, "traits.x"]
            raise ExprError(
                f"unknown account field {'.'.join(rest)!r}{suggest(rest[0], known)} "
                f"(known: {', '.join('account.' + k for k in known)})"
            )
        self.needs.account.add(rest[0])
        self.needs.person.add("account_id")
        return Typed(col(f"a_{rest[0]}"), ACCOUNT_FIELDS[rest[0]][0])

    def _fact(self, rest: list[str]) -> Typed:
        name = rest[0]
        if len(rest) != 1 or name not in self.spec.facts:
            raise ExprError(
                f"unknown fact {'.'.join(rest)!r}{suggest(name, list(self.spec.facts))} "
                f"(declared facts: {', '.join(sorted(self.spec.facts)) or 'none'}) "
                "— declare it under `facts:`"
            )
        self.needs.facts.add(name)
        if self.spec.facts[name].agg in ("count", "count_distinct", "active_days", "sum"):
            return Typed(coalesce(col(f"f_{name}"), double(0)), NUM)
        return Typed(col(f"f_{name}"), NUM)

    def person_fields(self, in_events: bool) -> dict[str, Callable[[], Typed]]:
        names = [*PERSON_FIELDS, *DERIVED_FIELDS]
        if in_events:
            names = [n for n in names if n != "name"]  # `name` is the event's name there
        return {n: (lambda n=n: self._person_field(n, in_events)) for n in names}

    def event_scope(self, where: str) -> Scope:
        def path_field(key: str) -> Callable[[], Typed]:
            def build() -> Typed:
                return self._ev_col(
                    f"path:{key}",
                    lambda: coalesce(
                        json_field(col("properties", "e"), [key], "properties").node,
                        json_field(col("context", "e"), ["page", key], "context").node,
                    ),
                    JSON,
                )

            return build

        fields: dict[str, Callable[[], Typed]] = {
            **self.person_fields(True),
            "event": lambda: self._ev_col("event", lambda: col("event", "e"), TEXT),
            "name": lambda: self._ev_col("event", lambda: col("event", "e"), TEXT),
            "type": lambda: self._ev_col("type", lambda: col("type", "e"), TEXT),
            "ts": lambda: Typed(col("ts"), TS),
            "path": path_field("path"),
            "url": path_field("url"),
            "referrer": path_field("referrer"),
        }
        namespaces = {
            "properties": lambda rest: self._ev_json("properties", rest, "properties"),
            "context": lambda rest: self._ev_json("context", rest, "context"),
            "traits": lambda rest: self._ev_json("traits", rest, "traits"),
            "person": lambda rest: self._person_ns(rest, True),
            "account": lambda rest: self._account(rest, True),
        }
        return Scope(
            where,
            fields,
            namespaces,
            as_of_us=self.as_of_us,
            namespace_help={
                "properties": "properties.guests",
                "context": "context.page.path",
                "traits": "traits.plan (the event's own traits)",
                "person": "person.title or person.traits.plan",
            },
        )

    def _person_ns(self, rest: list[str], in_events: bool) -> Typed:
        if rest[0] == "traits":
            return self._trait(rest[1:], in_events)
        fields = [*PERSON_FIELDS, *DERIVED_FIELDS]
        if len(rest) == 1 and rest[0] in fields:
            return self._person_field(rest[0], in_events)
        raise ExprError(
            f"unknown person field {'.'.join(rest)!r}{suggest(rest[0], fields)} "
            f"(known: {', '.join(fields)}, traits.x)"
        )

    def person_scope(self, where: str) -> Scope:
        namespaces: dict[str, Callable[[list[str]], Typed]] = {
            "traits": lambda rest: self._trait(rest, False),
            "account": lambda rest: self._account(rest, False),
            "facts": self._fact,
            "person": lambda rest: self._person_ns(rest, False),
        }
        return Scope(
            where,
            self.person_fields(False),
            namespaces,
            as_of_us=self.as_of_us,
            namespace_help={
                "traits": "traits.emailVerified",
                "account": "account.size",
                "facts": "facts.logins",
            },
        )

    def segment_scope(self, where: str) -> Scope:
        base = self.person_scope(where)
        cats = self.categories()

        def category(rest: list[str]) -> Typed:
            if len(rest) != 1 or rest[0] not in cats:
                raise ExprError(
                    f"unknown category {'.'.join(rest)!r}{suggest(rest[0], cats)} "
                    f"(categories: {', '.join(cats)})"
                )
            return Typed(col(f"cat_{rest[0]}"), NUM)

        abuse_ids = [a.id for a in self.spec.abuse]

        def abuse(rest: list[str]) -> Typed:
            if rest == ["any"]:
                return Typed(col("flagged"), BOOL)
            if len(rest) != 1 or rest[0] not in abuse_ids:
                raise ExprError(
                    f"unknown abuse rule {'.'.join(rest)!r}{suggest(rest[0], abuse_ids)} "
                    f"(abuse rules: {', '.join(abuse_ids) or 'none'}; abuse.any = any flag)"
                )
            return Typed(col(f"ab_{rest[0]}"), BOOL)

        rule_ids = [r.id for r in self.spec.rules if r.enabled]

        def rules(rest: list[str]) -> Typed:
            if len(rest) != 1 or rest[0] not in rule_ids:
                raise ExprError(f"unknown rule {'.'.join(rest)!r}{suggest(rest[0], rule_ids)}")
            return Typed(col(f"r_{rest[0]}"), NUM)

        base.fields.update(
            {
                "score": lambda: Typed(col("score"), NUM),
                "grade": lambda: Typed(col("grade"), TEXT),
                "mql": lambda: Typed(col("mql"), BOOL),
                "stage": lambda: Typed(col("stage"), TEXT),
                "stage_rank": lambda: Typed(col("stage_rank"), NUM),
            }
        )
        base.namespaces.update({"category": category, "abuse": abuse, "rules": rules})
        base.namespace_help.update(
            {"category": "category.fit", "abuse": "abuse.any", "rules": "rules.pricing_page"}
        )
        return base

    # pieces -----------------------------------------------------------------------------
    def categories(self) -> list[str]:
        out = list(self.spec.categories)
        for r in self.spec.rules:
            if r.enabled and r.category not in out:
                out.append(r.category)  # type: ignore[arg-type]
        for a in self.spec.abuse:
            if a.points and a.category not in out:
                out.append(a.category)
        return out

    def restricted(self, column: exp.Expression) -> exp.Expression | None:
        if not self.restrict:
            return None
        sub = select(col("person_id")).from_(self.restrict, copy=False)
        return exp.In(this=column, query=exp.Subquery(this=sub))

    def _ids_cte(self, ids: list[str]) -> None:
        """The restriction as a CTE of literal ids (no table needed: works read-only)."""
        parts = [
            select(alias(exp.cast(text_literal(i), exp.DataType.build("VARCHAR")), "person_id"))
            for i in ids
        ]
        q: exp.Expression = parts[0]
        for p in parts[1:]:
            q = exp.union(q, p, distinct=False)
        self.ctes.append(("lr_ids", q))

    def match(
        self,
        m: S.Match | S.Rule | S.Fact | Any,
        loc: Loc,
        name: str,
        *,
        window: float | None = None,
        extra: exp.Expression | None = None,
    ) -> str:
        """Register an event matcher as boolean column `name` of lr_ev."""
        preds: list[exp.Expression | None] = []
        type_pred: exp.Expression | None = None
        if m.on != "any":
            type_pred = exp.EQ(this=col("ev_type"), expression=text_literal(m.on))
            self._ev_col("type", lambda: col("type", "e"), TEXT)
        names_pred: exp.Expression | None = None
        if m.event:
            exact = [n for n in m.event if not any(c in n for c in "*?")]
            globs = [n for n in m.event if any(c in n for c in "*?")]
            parts: list[exp.Expression] = []
            if exact:
                parts.append(in_list(col("ev_event"), exact))
            for g in globs:
                parts.append(
                    exp.RegexpLike(this=col("ev_event"), expression=text_literal(glob_regex(g)))
                )
            names_pred = or_(*parts)
        preds += [type_pred, names_pred]
        # the prefilter on raw events: the same type/name test, on the events table
        raw = []
        if m.on != "any":
            raw.append(exp.EQ(this=col("type", "e"), expression=text_literal(m.on)))
        if names_pred is not None:
            raw.append(
                names_pred.transform(
                    lambda n: (
                        col("event", "e")
                        if isinstance(n, exp.Column) and n.name == "ev_event"
                        else n
                    )
                )
            )
        raw_guard = and_(*raw) if raw else None
        self.prefilter.append(raw_guard)
        self._raw_guard[name] = raw_guard
        if m.when:
            with self._reading_for(name):
                cond = self.compile_condition(
                    m.when, self.event_scope(f"the `when` of {_where(loc)}"), (*loc, "when")
                )
            preds.append(exp.Paren(this=cond))
        if window is not None:
            preds.append(exp.LTE(this=col("age_d"), expression=double(window)))
        if extra is not None:
            preds.append(extra)
        if any(p is not None for p in (type_pred, names_pred)):
            self._ev_col("event", lambda: col("event", "e"), TEXT)
        expr = coalesce(and_(*preds), exp.false())
        key = expr.sql()
        if key in self._matcher_keys:  # the same test twice (a fact and a rule): compute it once
            return self._matcher_keys[key]
        self._matcher_keys[key] = name
        self.matchers[name] = expr
        return name

    # the query ------------------------------------------------------------------------------
    def build(self) -> Plan:
        spec = self.spec
        rules = [r for r in spec.rules if r.enabled]
        rule_locs = {r.id: ("rules", i) for i, r in enumerate(spec.rules)}
        self._check_names(rules)
        cats = self.categories()

        # 1. event matchers, points per occurrence, facts, stages, event abuse --------------
        agg: list[exp.Expression] = []
        for r in rules:
            loc = rule_locs[r.id]
            if not r.on_events:
                continue
            m = self.match(r, loc, f"m_{r.id}", window=r.window)
            with self._reading_for(m):
                pts = self._points(r, loc, self.event_scope(f"rule {r.id!r}"))
            pts = self._per_event(f"pt_{r.id}", pts)
            decay: exp.Expression = double(1)
            if r.half_life is not None:
                decay = fn(
                    "POWER", double(0.5), _div(this=col("age_d"), expression=double(r.half_life))
                )
            agg.append(alias(count_if(col(m)), f"r_{r.id}_n"))
            if isinstance(r.frequency, S.Limit):
                self._limited_cte(r, m, pts, decay)
                continue
            decayed = _mul(this=pts.copy(), expression=decay)
            if r.frequency == "once":
                best = "MIN" if self._negative(r) else "MAX"
                agg.append(alias(fn(best, case(col(m), pts.copy())), f"r_{r.id}_raw"))
                agg.append(alias(fn(best, case(col(m), decayed)), f"r_{r.id}_dec"))
            else:
                agg.append(alias(fn("SUM", case(col(m), pts.copy())), f"r_{r.id}_raw"))
                agg.append(alias(fn("SUM", case(col(m), decayed)), f"r_{r.id}_dec"))
        for name, f in spec.facts.items():
            agg.append(alias(self._fact_agg(name, f), f"f_{name}"))
        stage_names: list[str] = []
        if spec.stages:
            st = spec.stages
            stage_names = list(st.order)
            for sname in stage_names:
                ev = st.evidence.get(sname)
                if ev is None:
                    continue
                expires = ev.expires or st.expires
                items = []
                for j, mm in enumerate(ev.any):
                    items.append(
                        self.match(
                            mm,
                            ("stages", "evidence", sname, j),
                            f"m_st{stage_names.index(sname)}_{j}",
                        )
                    )
                fresh = and_(
                    or_(*[col(i) for i in items]),
                    exp.LTE(this=col("age_d"), expression=double(expires)),
                )
                k = stage_names.index(sname)
                agg.append(alias(count_if(fresh), f"st{k}_n"))
                agg.append(alias(fn("MAX", case(fresh, col("ts"))), f"st{k}_last"))
                agg.append(alias(fn("MIN", case(fresh, col("ts"))), f"st{k}_first"))
        abuse_kinds: dict[str, str] = {}
        abuse_evidence: dict[str, list[tuple[str, str]]] = {}
        for i, a in enumerate(spec.abuse):
            loc = ("abuse", i)
            abuse_kinds[a.id] = a.kind
            if isinstance(a, S.EventAbuse):
                m = self.match(a, loc, f"m_ab_{a.id}", window=a.window)
                agg.append(alias(count_if(col(m)), f"ab_{a.id}_n"))
                agg.append(alias(fn("MIN", case(col(m), col("ts"))), f"ab_{a.id}_first"))
                agg.append(alias(fn("MAX", case(col(m), col("ts"))), f"ab_{a.id}_last"))
                ev = [
                    ("count", f"ab_{a.id}_n"),
                    ("first", f"ab_{a.id}_first"),
                    ("last", f"ab_{a.id}_last"),
                ]
                if a.measure:
                    with self._reading_for(m):
                        v = self.compile_value(
                            a.measure,
                            self.event_scope(f"the measure of {a.id!r}"),
                            (*loc, "measure"),
                        )
                    try:
                        num = coerce(v, NUM, "the measure")
                    except ExprError as e:
                        raise self.fail((*loc, "measure"), e.message) from None
                    self.ev_values[f"mv_ab_{a.id}"] = num
                    agg.append(
                        alias(fn("MAX", case(col(m), col(f"mv_ab_{a.id}"))), f"ab_{a.id}_max")
                    )
                    ev.append(("max", f"ab_{a.id}_max"))
                abuse_evidence[a.id] = ev
            elif isinstance(a, S.SessionAbuse):
                self._ab_m[a.id] = (
                    self.match(a.start, (*loc, "start"), f"m_ab_{a.id}_start", window=a.window),
                    self.match(a.stop, (*loc, "stop"), f"m_ab_{a.id}_stop"),
                )
                with self._reading_for(*self._ab_m[a.id]):
                    key = self._key(a.key, (*loc, "key"), a.id)
                self.ev_values[f"k_ab_{a.id}"] = key
                if a.limit:
                    with self._reading_for(self._ab_m[a.id][0]):
                        lim = self.compile_value(
                            a.limit, self.event_scope(f"the limit of {a.id!r}"), (*loc, "limit")
                        )
                    try:
                        self.ev_values[f"lim_ab_{a.id}"] = coerce(lim, NUM, "the limit")
                    except ExprError as e:
                        raise self.fail((*loc, "limit"), e.message) from None
                abuse_evidence[a.id] = self._session_ctes(a)
            else:
                assert isinstance(a, S.RegularAbuse)
                self._ab_m[a.id] = (self.match(a, loc, f"m_ab_{a.id}", window=a.window), "")
                if a.key:
                    with self._reading_for(self._ab_m[a.id][0]):
                        self.ev_values[f"k_ab_{a.id}"] = self._key(a.key, (*loc, "key"), a.id)
                abuse_evidence[a.id] = self._regular_ctes(a)

        # 2. person/account rules, segments: compiled now so their needs are known ---------
        person_points: dict[str, exp.Expression] = {}
        for r in rules:
            if r.on_events:
                continue
            loc = rule_locs[r.id]
            scope = self.person_scope(f"rule {r.id!r}")
            if r.on == "account":
                scope.fields = {k: v for k, v in scope.fields.items() if k in ("account_id",)}
                scope.namespaces = {k: v for k, v in scope.namespaces.items() if k == "account"}
            person_points[r.id] = self._points(r, loc, scope)
        segs: dict[str, exp.Expression] = {}
        for name, seg in spec.segments.items():
            segs[name] = self.compile_condition(
                seg.when, self.segment_scope(f"segment {name!r}"), ("segments", name, "when")
            )
        if spec.accounts.engaged:
            engaged = self.compile_condition(
                spec.accounts.engaged,
                self.segment_scope("accounts.engaged"),
                ("accounts", "engaged"),
            )
        elif "engagement" in cats:
            engaged = exp.GT(this=col("cat_engagement"), expression=double(0))
        else:
            engaged = exp.GT(this=col("score"), expression=double(0))

        # 3. assemble -------------------------------------------------------------------
        self.needs.person.add("account_id")  # every row names its account (for the roll-up)
        if self.ids is not None:
            self._ids_cte(self.ids)
        self._pop_cte()
        if (
            self.needs.person
            or self.needs.traits
            or self.needs.account
            or self.needs.account_traits
        ):
            self.needs.person.add("account_id") if (
                self.needs.account or self.needs.account_traits
            ) else None
            self._person_ctes()
        self._events_ctes()
        self.ctes.append(("lr_agg", self._agg_select(agg)))
        # lr_fq_*/lr_ab_* were queued by _limited_cte/_session_ctes/_regular_ctes
        if self._pending_abuse:
            self._slice_ctes([q for _, q in self._pending_abuse])
        self.ctes += self._pending_abuse
        comp = self._comp_select(rules, person_points, stage_names)
        self.ctes.append(("lr_comp", comp))
        self.ctes.append(("lr_cat", self._cat_select(rules, cats)))
        self.ctes.append(("lr_tot", self._tot_select(cats)))
        grade_sel, grade_names = self._grade_select(cats)
        self.ctes.append(("lr_grade", grade_sel))
        final = select(
            exp.Star(),
            *[alias(coalesce(c, exp.false()), f"seg_{n}") for n, c in segs.items()],
            alias(coalesce(engaged, exp.false()), "engaged"),
        ).from_("lr_grade", copy=False)
        for name, q in self.ctes:
            # the per-event CTEs are computed once (not a scan of the events' JSON per reader:
            # 48 s -> 38 s at 10 M events); their views with derived times are inlined
            final = final.with_(name, as_=q, copy=False, materialized=_MATERIALIZE.get(name))
        return Plan(
            model=self.model,
            as_of=self.as_of,
            query=final,
            rules=[RuleInfo(r.id, r.category or "", r.on, rule_locs[r.id]) for r in rules],  # type: ignore[arg-type]
            categories=cats,
            stages=stage_names,
            abuse=abuse_kinds,
            abuse_evidence=abuse_evidence,
            segments=list(segs),
            grades=grade_names,
            restricted=self.restrict is not None,
        )

    # checks ---------------------------------------------------------------------------------
    def _check_names(self, rules: list[S.Rule]) -> None:
        seen: dict[str, Loc] = {}
        for i, r in enumerate(self.spec.rules):
            if r.id in seen:
                raise self.fail(
                    ("rules", i, "id"),
                    f"rule id {r.id!r} is used twice — give each rule its own id",
                )
            seen[r.id] = ("rules", i)
        ab: set[str] = set()
        for i, a in enumerate(self.spec.abuse):
            if a.id in ab:
                raise self.fail(("abuse", i, "id"), f"abuse rule id {a.id!r} is used twice")
            ab.add(a.id)
        cats = self.categories()
        if self.spec.grades:
            g = self.spec.grades
            if g.method != "matrix" and g.by != "score" and g.by not in cats:
                raise self.fail(
                    ("grades", "by"),
                    f"grades.by {g.by!r} is neither `score` nor a "
                    f"category{suggest(g.by, cats)} (categories: {', '.join(cats)})",
                )
            for axis in ("fit", "engagement"):
                a = getattr(g, axis)
                if a is not None and a.category not in cats:
                    raise self.fail(
                        ("grades", axis, "category"),
                        f"unknown category {a.category!r}{suggest(a.category, cats)} "
                        f"(categories: {', '.join(cats)})",
                    )
                if a is not None:
                    *head, last = a.levels
                    if last.min is not None or any(lv.min is None for lv in head):
                        raise self.fail(
                            ("grades", axis, "levels"),
                            "every level but the last needs `min`; "
                            "the last has none (it takes everyone else)",
                        )
            names = g.names()
            if len(set(names)) != len(names):
                raise self.fail(("grades",), "two grade levels have the same name")
            for i, m in enumerate(g.mql):
                if m not in names:
                    raise self.fail(
                        ("grades", "mql", i),
                        f"mql names grade {m!r}, which is not a grade"
                        f"{suggest(m, names)} (grades: {', '.join(names)})",
                    )
        if self.spec.stages:
            st = self.spec.stages
            for name in st.evidence:
                if name not in st.order:
                    raise self.fail(
                        ("stages", "evidence", name),
                        f"unknown stage {name!r}"
                        f"{suggest(name, st.order)} (stages in order: {', '.join(st.order)}; "
                        "add it to `order:` if it is a new stage)",
                    )
            if st.default is not None and st.default not in st.order:
                raise self.fail(
                    ("stages", "default"),
                    f"default stage {st.default!r} is not in the order"
                    f"{suggest(st.default, st.order)}",
                )
        for name in self.spec.categories:
            used = any(r.category == name for r in rules) or any(
                a.category == name for a in self.spec.abuse
            )
            if not used and not (self.spec.grades and name in (self.spec.grades.by,)):
                pass  # declared but unused categories are allowed (a category may be filled later)
        for r in rules:
            if r.category not in cats:  # pragma: no cover - categories() includes them
                raise self.fail(("rules",), f"unknown category {r.category}")

    @staticmethod
    def _negative(r: S.Rule) -> bool:
        if r.points is not None:
            return r.points < 0
        return all(c.points <= 0 for c in r.cases or [])

    def _points(self, r: S.Rule, loc: Loc, scope: Scope) -> exp.Expression:
        """Points of one occurrence (event rules) or of the person (person/account rules)."""
        if r.cases:
            ifs = []
            default: exp.Expression = double(0)
            base_cond = None
            if r.when and not r.on_events:
                base_cond = self.compile_condition(r.when, scope, (*loc, "when"))
            for j, c in enumerate(r.cases):
                if c.when is None:
                    default = double(c.points)
                    continue
                cond = self.compile_condition(c.when, scope, (*loc, "cases", j, "when"))
                ifs.append(exp.If(this=cond, true=double(c.points)))
            e: exp.Expression = exp.Case(ifs=ifs, default=default) if ifs else default
            if base_cond is not None:
                e = case(base_cond, e, double(0))
            return e
        assert r.points is not None
        if r.on_events:
            return double(r.points)
        cond = self.compile_condition(r.when or "TRUE", scope, (*loc, "when"))
        return case(cond, double(r.points), double(0))

    def _key(self, text: str, loc: Loc, rid: str) -> exp.Expression:
        v = self.compile_value(text, self.event_scope(f"the key of {rid!r}"), loc)
        try:
            return to_text(v, "the key")
        except ExprError as e:
            raise self.fail(
                loc, e.message + " — a key names the thing, e.g. properties.environment_id"
            ) from None

    def _fact_agg(self, name: str, f: S.Fact) -> exp.Expression:
        loc: Loc = ("facts", name)
        matcher = self.match(f, loc, f"m_f_{name}", window=f.window)
        m = col(matcher)
        if f.of:
            with self._reading_for(matcher):
                v = self.compile_value(f.of, self.event_scope(f"fact {name!r}"), (*loc, "of"))
            want = TEXT if f.agg == "count_distinct" else NUM
            try:
                self.ev_values[f"fv_{name}"] = (
                    coerce(v, want, f"the `of` of fact {name!r}") if v.type != want else v.node
                )
            except ExprError as e:
                raise self.fail((*loc, "of"), e.message) from None
        fv = col(f"fv_{name}")
        days = double(DAY_US)
        if f.agg == "count":
            return as_double(count_if(m))
        if f.agg == "count_distinct":
            return as_double(exp.Count(this=exp.Distinct(expressions=[case(m, fv)])))
        if f.agg == "active_days":
            return as_double(exp.Count(this=exp.Distinct(expressions=[case(m, col("day"))])))
        if f.agg == "sum":
            return fn("SUM", case(m, fv, double(0)))
        if f.agg in ("min", "max", "avg"):
            return fn(f.agg.upper(), case(m, fv))
        agg_name = "MIN" if f.agg == "days_since_first" else "MAX"
        last = fn(agg_name, case(m, col("ts_us")))
        return _div(this=as_double(_sub(this=self.as_of_us, expression=last)), expression=days)

    # CTE builders -----------------------------------------------------------------------------
    def _pop_cte(self) -> None:
        q = (
            select(
                col("person_id"),
                col("first_seen"),
                alias(call("LR_PERSON_KEY", col("person_id")), "pk"),
            )
            .from_("people", copy=False)
            .where(
                and_(
                    exp.LTE(this=col("first_seen"), expression=self.as_of_lit),
                    self.restricted(col("person_id")),
                ),
                copy=False,
            )
        )
        self.ctes.append(("lr_pop", q))

    def _person_ctes(self) -> None:
        n = self.needs
        fields = set(n.person)
        if "webmail" in fields or "account_id" in fields or "domain_matches_company" in fields:
            fields |= {"domain"}
        if "domain_matches_company" in fields:
            fields |= {"company", "webmail"}
        if "account_id" in fields:
            fields |= {"webmail"}
        if "domain" in fields:
            fields.add("email")
        n.person = fields  # what the profile provides, all carried to the output
        trait_keys = set(n.traits)
        norm_keys: set[str] = set()
        for f in fields:
            if f in PERSON_FIELDS:
                norm_keys |= set(PERSON_FIELDS[f][1])
        raw_keys = set(trait_keys)
        first_touch = [f for f in ("source", "campaign") if f in fields]
        raw_keys |= {FIRST_TOUCH[f] for f in first_touch}
        if "account_id" in fields:
            raw_keys.add("$account_id")
        # lr_th: trait history up to the as-of time, ranked per person and key
        nk = norm_key(col("key"))
        key_pred = (
            or_(
                *(
                    p
                    for p in (
                        in_list(col("key"), sorted(raw_keys)) if raw_keys else None,
                        exp.In(this=nk, expressions=[text_literal(k) for k in sorted(norm_keys)])
                        if norm_keys
                        else None,
                    )
                    if p is not None
                )
            )
            if (raw_keys or norm_keys)
            else exp.false()
        )
        inner = (
            select(
                col("person_id"),
                col("key"),
                alias(nk, "nk"),
                col("ts"),
                col("message_id"),
                col("value"),
            )
            .from_("trait_history", copy=False)
            .where(
                and_(
                    exp.LTE(this=col("ts"), expression=self.as_of_lit),
                    key_pred,
                    self.restricted(col("person_id")),
                ),
                copy=False,
            )
        )
        # one ranking per (person, key): newest first, except first-touch keys, oldest first
        ft_keys = sorted(FIRST_TOUCH[f] for f in first_touch)
        if ft_keys:
            is_ft = in_list(col("key"), ft_keys)
            order = [
                exp.Ordered(this=case(is_ft, col("ts"))),
                exp.Ordered(this=case(is_ft.copy(), col("message_id"))),
                exp.Ordered(this=col("ts"), desc=True),
                exp.Ordered(this=col("message_id"), desc=True),
            ]
        else:
            order = [
                exp.Ordered(this=col("ts"), desc=True),
                exp.Ordered(this=col("message_id"), desc=True),
            ]
        ranked = select(
            col("person_id"),
            col("key"),
            col("nk"),
            col("value"),
            alias(row_number([col("person_id"), col("key")], order), "rn"),
        ).from_(
            exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier("t"))), copy=False
        )
        # only the value in force per key is parsed and reaches the profile's pivot
        current = (
            select(
                col("person_id"),
                col("key"),
                col("nk"),
                alias(call("LR_JSON_SCALAR", col("value")), "v"),
            )
            .from_(
                exp.Subquery(this=ranked, alias=exp.TableAlias(this=exp.to_identifier("t"))),
                copy=False,
            )
            .where(exp.EQ(this=col("rn"), expression=int_lit(1)), copy=False)
        )
        self.ctes.append(("lr_th", current))

        def latest(pred: exp.Expression) -> exp.Expression:
            return fn("MAX", case(pred, col("v", "th")))

        def first(key: str) -> exp.Expression:
            return latest(exp.EQ(this=col("key", "th"), expression=text_literal(key)))

        cols: list[exp.Expression] = [
            col("person_id", "pop"),
            alias(col("first_seen", "pop"), "p_first_seen"),
        ]
        for f in sorted(fields):
            if f in PERSON_FIELDS:
                variants = [
                    latest(exp.EQ(this=col("nk", "th"), expression=text_literal(k)))
                    for k in PERSON_FIELDS[f][1]
                ]
                if f in FIRST_TOUCH:
                    variants.append(first(FIRST_TOUCH[f]))
                e = coalesce(*variants) if len(variants) > 1 else variants[0]
                e = fn("NULLIF", exp.Trim(this=e), text_literal(""))
                if f == "email":
                    e = exp.Lower(this=e)
                cols.append(alias(e, f"p_{f}"))
        if "account_id" in fields:
            cols.append(
                alias(
                    latest(exp.EQ(this=col("key", "th"), expression=text_literal("$account_id"))),
                    "p_group_account",
                )
            )
        for key, c in sorted(n.traits.items()):
            cols.append(
                alias(latest(exp.EQ(this=col("key", "th"), expression=text_literal(key))), c)
            )
        prof = (
            select(*cols)
            .from_(exp.to_table("lr_pop").as_("pop"), copy=False)
            .join(
                exp.to_table("lr_th").as_("th"),
                on=on_key("person_id", "th", "pop"),
                join_type="LEFT",
                copy=False,
            )
            .group_by(col("person_id", "pop"), col("first_seen", "pop"), copy=False)
        )
        self.ctes.append(("lr_prof", prof))
        # derived fields, in steps so each is written once
        src = "lr_prof"
        if "domain" in fields:
            domain = fn(
                "NULLIF",
                exp.Lower(
                    this=exp.SplitPart(
                        this=col("p_email"), delimiter=text_literal("@"), part_index=int_lit(2)
                    )
                ),
                text_literal(""),
            )
            self.ctes.append(
                ("lr_pd", select(exp.Star(), alias(domain, "p_domain")).from_(src, copy=False))
            )
            src = "lr_pd"
        if "webmail" in fields:
            wm = self.sets["webmail"]
            webmail = coalesce(in_list(col("p_domain"), wm), exp.false()) if wm else exp.false()
            self.ctes.append(
                ("lr_pw", select(exp.Star(), alias(webmail, "p_webmail")).from_(src, copy=False))
            )
            src = "lr_pw"
        out: list[exp.Expression] = [exp.Star()]
        domain, webmail = col("p_domain"), col("p_webmail")
        if "account_id" in fields:
            out.append(
                alias(
                    coalesce(
                        col("p_group_account"),
                        case(
                            and_(
                                exp.Not(this=exp.Is(this=domain, expression=exp.Null())),
                                exp.Not(this=webmail),
                            ),
                            exp.DPipe(this=text_literal("domain:"), expression=domain, safe=False),
                        ),
                    ),
                    "p_account_id",
                )
            )
        if "domain_matches_company" in fields:
            cn = exp.Lower(this=call("LR_STRIP_NONALNUM", col("p_company")))
            dn = exp.Lower(
                this=call(
                    "LR_STRIP_NONALNUM",
                    exp.SplitPart(this=domain, delimiter=text_literal("."), part_index=int_lit(1)),
                )
            )
            three = int_lit(3)
            match = or_(
                and_(
                    exp.GTE(this=exp.Length(this=cn), expression=three),
                    exp.GT(this=exp.StrPosition(this=dn, substr=cn), expression=int_lit(0)),
                ),
                and_(
                    exp.GTE(this=exp.Length(this=dn), expression=three),
                    exp.GT(this=exp.StrPosition(this=cn, substr=dn), expression=int_lit(0)),
                ),
            )
            out.append(
                alias(
                    coalesce(and_(exp.Not(this=webmail), exp.Paren(this=match)), exp.false()),
                    "p_domain_matches_company",
                )
            )
        person = select(*out).from_(src, copy=False)
        if n.account or n.account_traits:
            self.ctes.append(("lr_person0", person))
            self._account_ctes()
            person = (
                select(
                    exp.Column(this=exp.Star(), table=exp.to_identifier("p")),
                    *[col(c, "a") for c in self._acct_cols],
                )
                .from_(exp.to_table("lr_person0").as_("p"), copy=False)
                .join(
                    exp.to_table("lr_acct").as_("a"),
                    on=exp.EQ(this=col("account_id", "a"), expression=col("p_account_id", "p")),
                    join_type="LEFT",
                    copy=False,
                )
            )
        self.ctes.append(("lr_person", person))

    def _account_ctes(self) -> None:
        n = self.needs
        norm_keys: set[str] = set()
        for f in n.account:
            norm_keys |= set(ACCOUNT_FIELDS[f][1])
        raw = set(n.account_traits)
        nk = norm_key(col("key"))
        preds = []
        if raw:
            preds.append(in_list(col("key"), sorted(raw)))
        if norm_keys:
            preds.append(exp.In(this=nk, expressions=[text_literal(k) for k in sorted(norm_keys)]))
        inner = (
            select(
                col("account_id"),
                col("key"),
                alias(nk, "nk"),
                col("ts"),
                col("message_id"),
                alias(call("LR_JSON_SCALAR", col("value")), "v"),
            )
            .from_("account_trait_history", copy=False)
            .where(
                and_(
                    exp.LTE(this=col("ts"), expression=self.as_of_lit),
                    or_(*preds) if preds else exp.false(),
                    # restricted: only the accounts of the people rescored
                    exp.In(
                        this=col("account_id"),
                        query=exp.Subquery(
                            this=select(col("p_account_id")).from_("lr_person0", copy=False)
                        ),
                    )
                    if self.restrict
                    else None,
                ),
                copy=False,
            )
        )
        ranked = select(
            col("account_id"),
            col("key"),
            col("nk"),
            col("v"),
            alias(
                row_number(
                    [col("account_id"), col("key")],
                    [
                        exp.Ordered(this=col("ts"), desc=True),
                        exp.Ordered(this=col("message_id"), desc=True),
                    ],
                ),
                "rn",
            ),
        ).from_(
            exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier("t"))), copy=False
        )
        self.ctes.append(("lr_ath", ranked))

        def latest(pred: exp.Expression) -> exp.Expression:
            return fn(
                "MAX", case(and_(exp.EQ(this=col("rn"), expression=int_lit(1)), pred), col("v"))
            )

        cols: list[exp.Expression] = [col("account_id")]
        for f in sorted(n.account):
            e = coalesce(
                *[
                    latest(exp.EQ(this=col("nk"), expression=text_literal(k)))
                    for k in ACCOUNT_FIELDS[f][1]
                ]
            )
            if ACCOUNT_FIELDS[f][0] == NUM:
                e = call("LR_TO_NUM", e)
            cols.append(alias(e, f"a_{f}"))
            self._acct_cols.append(f"a_{f}")
        for key, c in sorted(n.account_traits.items()):
            cols.append(alias(latest(exp.EQ(this=col("key"), expression=text_literal(key))), c))
            self._acct_cols.append(c)
        self.ctes.append(
            (
                "lr_acct",
                select(*cols).from_("lr_ath", copy=False).group_by(col("account_id"), copy=False),
            )
        )

    def _age_days(self, ts: exp.Expression) -> exp.Expression:
        """How many days before the as-of time `ts` is (exact µs, so engines agree)."""
        ts_us = call("LR_EPOCH_US", ts)
        return _div(
            this=as_double(_sub(this=self.as_of_us, expression=ts_us)), expression=double(DAY_US)
        )

    def _events_ctes(self) -> None:
        n = self.needs
        cols: list[exp.Expression] = [
            col("pk", "kp"),
            col("ts", "e"),
            alias(self._age_days(col("ts", "e")), "age_d"),  # matchers with a `window:` read it
        ]
        for key, (name, node, _) in n.ev_cols.items():
            if key == "type":
                cols.append(alias(col("type", "e"), "ev_type"))
            elif key == "event":
                cols.append(alias(col("event", "e"), "ev_event"))
            else:
                cols.append(alias(self._guarded(key, node), name))
        person_cols = [f"p_{f}" for f in sorted(n.person)] + sorted(n.traits.values())
        person_cols += [f"a_{f}" for f in sorted(n.account)] + sorted(n.account_traits.values())
        if n.person_in_events:
            cols += [col(c, "p") for c in person_cols]
        pre = None
        if self.prefilter and all(p is not None for p in self.prefilter):
            pre = or_(*[exp.Paren(this=p) for p in self.prefilter])  # type: ignore[misc]
        if not self.prefilter:
            pre = exp.false()
        q = (
            select(*cols)
            .from_(exp.to_table(self.events).as_("e"), copy=False)
            .join(
                exp.to_table("lr_pop").as_("kp"),
                on=on_key("person_id", "kp", "e"),
                copy=False,
            )
        )
        if n.person_in_events:
            q = q.join(
                exp.to_table("lr_person").as_("p"),
                on=on_key("person_id", "p", "e"),
                join_type="LEFT",
                copy=False,
            )
        q = q.where(
            and_(
                exp.LTE(this=col("ts", "e"), expression=self.as_of_lit),
                pre,
                self.restricted(col("person_id", "e")),
            ),
            copy=False,
        )
        self.ctes.append(("lr_ev0", q))
        # stored once: a value spelled like an earlier one (two abuse rules keyed by the same
        # field) is that column again in the views
        stored: dict[str, str] = {}
        self._same: dict[str, str] = {}
        for name, v in self.ev_values.items():
            self._same[name] = stored.setdefault(v.sql(), name)
        ev_cols = [col("pk"), col("ts")]
        ev_cols += [alias(m, name) for name, m in self.matchers.items()]
        ev_cols += [alias(v, n) for n, v in self.ev_values.items() if self._same[n] == n]
        self.ctes.append(("lr_evm", select(*ev_cols).from_("lr_ev0", copy=False)))
        self.ctes.append(("lr_ev", self._with_times("lr_evm", list(self.ev_values))))

    def _slice_ctes(self, readers: list[exp.Expression]) -> None:
        """lr_evs/lr_evw: the rows and columns of lr_evm the windowed readers use.

        Each reader keeps only rows where one of its matchers holds, so the slice is the rows
        where any of them does. DuckDB feeds its grouping readers (lr_agg) while lr_evm is
        computed, but keeps all of lr_evm (spilled to disk at 10 M events under a 1.5 GB limit)
        for the others: ~10 windowed readers each rescanning every wide row of it took the query
        to 43 s; reading this narrow slice, 26 s."""
        used = {c.name for q in readers for c in q.find_all(exp.Column)}
        ms = [m for m in self.matchers if m in used]
        values = [n for n in self.ev_values if n in used]
        kept = sorted({self._same[n] for n in values}, key=list(self.ev_values).index)
        q = (
            select(col("pk"), col("ts"), *[col(c) for c in ms + kept])
            .from_("lr_evm", copy=False)
            .where(or_(*[col(m) for m in ms]) if ms else exp.false(), copy=False)
        )
        self.ctes.append(("lr_evs", q))
        self.ctes.append(("lr_evw", self._with_times("lr_evs", values)))

    def _with_times(self, source: str, values: list[str]) -> exp.Select:
        """`source` with the event's time in µs, its age in days and its day: cheaper derived
        on read than stored for millions of events; and duplicate values under their names."""
        return select(
            exp.Star(),
            alias(call("LR_EPOCH_US", col("ts")), "ts_us"),
            alias(self._age_days(col("ts")), "age_d"),
            alias(exp.cast(col("ts"), exp.DataType.build("DATE")), "day"),
            *[alias(col(self._same[n]), n) for n in values if self._same[n] != n],
        ).from_(source, copy=False)

    def _per_event(self, name: str, value: exp.Expression) -> exp.Expression:
        """A per-event value: a column of lr_ev, unless it is a constant (then it stays inline,
        not a column copied for every event)."""
        if not any(isinstance(n, exp.Column) for n in value.walk()):
            return value
        self.ev_values[name] = value
        return col(name)

    def _guarded(self, key: str, node: exp.Expression) -> exp.Expression:
        """A field read only for the events some matcher that uses it can select."""
        guards = self._field_guards.get(key, [None])
        if any(g is None for g in guards):
            return node
        unique = {g.sql(): g for g in guards if g is not None}
        return case(or_(*[exp.Paren(this=g.copy()) for g in unique.values()]), node)

    def _agg_select(self, agg: list[exp.Expression]) -> exp.Select:
        if not agg:
            agg = [alias(int_lit(0), "lr_none")]
        return select(col("pk"), *agg).from_("lr_ev", copy=False).group_by(col("pk"), copy=False)

    def _limited_cte(self, r: S.Rule, m: str, pts: exp.Expression, decay: exp.Expression) -> None:
        """max_per_day / max_total: the N most recent occurrences (per day) of this rule.

        One small window per rule, over only its occurrences: measured at 10 M events, one
        window over all limited rules' occurrences together (a UNION ALL) is twice as slow."""
        assert isinstance(r.frequency, S.Limit)
        part = [col("pk")]
        if r.frequency.max_per_day is not None:
            part.append(col("day"))
            n = r.frequency.max_per_day
        else:
            n = r.frequency.max_total or 1
        # occurrences at the same instant: the larger points first — which of two equal ones
        # is kept changes nothing, so the result does not depend on storage order or ids
        newest = [exp.Ordered(this=col("ts"), desc=True)]
        if isinstance(pts, exp.Column):
            newest.append(exp.Ordered(this=pts.copy(), desc=True))
        ranked = (
            select(
                col("pk"),
                alias(pts.copy(), "pt"),
                col("age_d"),
                alias(row_number(part, newest), "rk"),
            )
            .from_("lr_evw", copy=False)
            .where(col(m), copy=False)
        )
        kept = exp.LTE(this=col("rk"), expression=int_lit(n))
        q = (
            select(
                col("pk"),
                alias(fn("SUM", case(kept, col("pt"))), "raw"),
                alias(fn("SUM", case(kept.copy(), _mul(this=col("pt"), expression=decay))), "dec"),
            )
            .from_(
                exp.Subquery(this=ranked, alias=exp.TableAlias(this=exp.to_identifier("t"))),
                copy=False,
            )
            .group_by(col("pk"), copy=False)
        )
        self._queue(f"lr_fq_{r.id}", q)
        self._limited.append(r.id)

    # abuse on intervals and gaps --------------------------------------------------------------
    def _queue(self, name: str, q: exp.Expression) -> None:
        self._pending_abuse.append((name, q))

    def _session_ctes(self, a: S.SessionAbuse) -> list[tuple[str, str]]:
        i = a.id

        # each start's interval ends at the first stop of the same key at or after it: a
        # running MIN over the following rows (a sort), not a join of starts with stops
        def events(matcher: str, is_stop: int, lim: exp.Expression) -> exp.Select:
            return (
                select(
                    col("pk"),
                    alias(col(f"k_ab_{i}"), "k"),
                    col("ts"),
                    col("ts_us"),
                    alias(lim, "lim"),
                    alias(int_lit(is_stop), "is_stop"),
                )
                .from_("lr_evw", copy=False)
                .where(
                    and_(
                        col(matcher),
                        exp.Not(this=exp.Is(this=col(f"k_ab_{i}"), expression=exp.Null())),
                    ),
                    copy=False,
                )
            )

        no_limit = exp.cast(exp.Null(), exp.DataType.build("DOUBLE"))
        start_m, stop_m = self._ab_m[i]
        both = exp.union(
            events(start_m, 0, col(f"lim_ab_{i}") if a.limit else no_limit),
            events(stop_m, 1, no_limit.copy()),
            distinct=False,
        )
        next_stop = exp.Window(
            this=fn("MIN", case(exp.EQ(this=col("is_stop"), expression=int_lit(1)), col("ts_us"))),
            partition_by=[col("pk"), col("k")],
            order=exp.Order(
                expressions=[exp.Ordered(this=col("ts_us")), exp.Ordered(this=col("is_stop"))]
            ),
            spec=exp.WindowSpec(
                kind="ROWS", start="CURRENT ROW", end="UNBOUNDED", end_side="FOLLOWING"
            ),
        )
        paired = select(
            col("pk"),
            col("k"),
            col("ts"),
            col("ts_us"),
            col("lim"),
            col("is_stop"),
            alias(next_stop, "t1_us"),
        ).from_(exp.Subquery(this=both, alias=exp.TableAlias(this=exp.to_identifier("t"))))
        iv = (
            select(
                col("pk"),
                col("k"),
                alias(col("ts"), "t0"),
                alias(col("ts_us"), "t0_us"),
                col("lim"),
                alias(coalesce(col("t1_us"), self.as_of_us), "t1_us"),
            )
            .from_(exp.Subquery(this=paired, alias=exp.TableAlias(this=exp.to_identifier("t"))))
            .where(exp.EQ(this=col("is_stop"), expression=int_lit(0)), copy=False)
        )
        self._queue(f"lr_ab_{i}_iv", iv)
        intervals = f"lr_ab_{i}_iv"
        if a.resume_within is not None:
            intervals = f"lr_ab_{i}_ss"
            self._queue(intervals, self._resumed_sessions(f"lr_ab_{i}_iv", a.resume_within))
        minutes = _div(
            this=as_double(_sub(this=col("t1_us"), expression=col("t0_us"))),
            expression=double(MINUTE_US),
        )
        if a.kind == "session":
            allowed = (
                coalesce(col("lim"), double(a.max_minutes))
                if a.max_minutes is not None
                else col("lim")
            )
            scored = select(
                col("pk"),
                col("k"),
                col("t0"),
                alias(minutes, "minutes"),
                alias(allowed, "allowed"),
            ).from_(intervals, copy=False)
            over = _sub(this=col("minutes"), expression=col("allowed"))
            ranked = select(
                col("pk"),
                col("k"),
                col("t0"),
                col("minutes"),
                col("allowed"),
                alias(over, "over"),
                alias(
                    exp.Window(
                        this=fn(
                            "SUM",
                            case(exp.GT(this=over, expression=double(0)), int_lit(1), int_lit(0)),
                        ),
                        partition_by=[col("pk")],
                    ),
                    "n_over",
                ),
                alias(
                    row_number(
                        [col("pk")],
                        [
                            exp.Ordered(this=over, desc=True, nulls_first=False),
                            exp.Ordered(this=col("t0")),
                            exp.Ordered(this=col("k")),
                        ],
                    ),
                    "rn",
                ),
            ).from_(
                exp.Subquery(this=scored, alias=exp.TableAlias(this=exp.to_identifier("t"))),
                copy=False,
            )
            worst = (
                select(
                    col("pk"),
                    alias(col("n_over"), f"ab_{i}_n"),
                    alias(col("k"), f"ab_{i}_key"),
                    alias(col("t0"), f"ab_{i}_start"),
                    alias(col("minutes"), f"ab_{i}_minutes"),
                    alias(col("allowed"), f"ab_{i}_allowed"),
                    alias(col("over"), f"ab_{i}_over"),
                )
                .from_(
                    exp.Subquery(this=ranked, alias=exp.TableAlias(this=exp.to_identifier("t"))),
                    copy=False,
                )
                .where(
                    and_(
                        exp.EQ(this=col("rn"), expression=int_lit(1)),
                        exp.GT(this=col("n_over"), expression=int_lit(0)),
                    ),
                    copy=False,
                )
            )
            self._queue(f"lr_ab_{i}", worst)
            return [
                ("sessions_over", f"ab_{i}_n"),
                ("key", f"ab_{i}_key"),
                ("start", f"ab_{i}_start"),
                ("minutes", f"ab_{i}_minutes"),
                ("allowed_minutes", f"ab_{i}_allowed"),
                ("over_minutes", f"ab_{i}_over"),
            ]
        # concurrent: sweep +1 at each start, -1 at each end; ends sort before starts
        ends = select(
            col("pk"), alias(col("t1_us"), "t_us"), alias(int_lit(-1), "d"), col("k")
        ).from_(intervals, copy=False)
        sweep_in = exp.union(
            select(col("pk"), alias(col("t0_us"), "t_us"), alias(int_lit(1), "d"), col("k")).from_(
                intervals, copy=False
            ),
            ends,
            distinct=False,
        )

        def sweep_order() -> exp.Order:
            return exp.Order(
                expressions=[
                    exp.Ordered(this=col("t_us")),
                    exp.Ordered(this=col("d")),
                    exp.Ordered(this=col("k")),
                ]
            )

        running = select(
            col("pk"),
            col("t_us"),
            col("k"),
            col("d"),
            alias(
                exp.Window(
                    this=fn("SUM", col("d")),
                    partition_by=[col("pk")],
                    order=sweep_order(),
                    spec=exp.WindowSpec(
                        kind="ROWS", start="UNBOUNDED", start_side="PRECEDING", end="CURRENT ROW"
                    ),
                ),
                "open_n",
            ),
            alias(
                exp.Window(
                    this=fn("LEAD", col("t_us")),
                    partition_by=[col("pk")],
                    order=sweep_order(),
                ),
                "t_next",
            ),
        ).from_(
            exp.Subquery(this=sweep_in, alias=exp.TableAlias(this=exp.to_identifier("t"))),
            copy=False,
        )
        too_many = exp.GT(this=col("open_n"), expression=int_lit(a.max_concurrent or 1))
        # the longest stretch with more than max_concurrent open: an island of consecutive
        # sweep points over the limit, each lasting until the next point
        islands = select(
            exp.Star(),
            alias(
                exp.Window(
                    this=fn("SUM", case(too_many, int_lit(0), int_lit(1))),
                    partition_by=[col("pk")],
                    order=sweep_order(),
                    spec=exp.WindowSpec(
                        kind="ROWS", start="UNBOUNDED", start_side="PRECEDING", end="CURRENT ROW"
                    ),
                ),
                "isl",
            ),
        ).from_(exp.Subquery(this=running, alias=exp.TableAlias(this=exp.to_identifier("t"))))
        stretch = exp.Window(
            this=fn(
                "SUM",
                case(
                    too_many.copy(),
                    coalesce(_sub(this=col("t_next"), expression=col("t_us")), int_lit(0)),
                    int_lit(0),
                ),
            ),
            partition_by=[col("pk"), col("isl")],
        )
        stretches = select(
            col("pk"), col("t_us"), col("k"), col("open_n"), alias(stretch, "stretch_us")
        ).from_(exp.Subquery(this=islands, alias=exp.TableAlias(this=exp.to_identifier("t"))))
        ranked = select(
            col("pk"),
            col("t_us"),
            col("k"),
            col("open_n"),
            alias(
                exp.Window(this=fn("MAX", col("stretch_us")), partition_by=[col("pk")]),
                "over_us",
            ),
            alias(
                row_number(
                    [col("pk")],
                    [
                        exp.Ordered(this=col("open_n"), desc=True),
                        exp.Ordered(this=col("t_us")),
                        exp.Ordered(this=col("k")),
                    ],
                ),
                "rn",
            ),
        ).from_(
            exp.Subquery(this=stretches, alias=exp.TableAlias(this=exp.to_identifier("t"))),
            copy=False,
        )
        over_minutes = _div(this=as_double(col("over_us")), expression=double(MINUTE_US))
        worst = (
            select(
                col("pk"),
                alias(col("open_n"), f"ab_{i}_n"),
                alias(col("k"), f"ab_{i}_key"),
                alias(
                    _div(
                        this=as_double(_sub(this=self.as_of_us, expression=col("t_us"))),
                        expression=double(DAY_US),
                    ),
                    f"ab_{i}_days_ago",
                ),
                alias(over_minutes, f"ab_{i}_minutes"),
            )
            .from_(
                exp.Subquery(this=ranked, alias=exp.TableAlias(this=exp.to_identifier("t"))),
                copy=False,
            )
            .where(
                and_(
                    exp.EQ(this=col("rn"), expression=int_lit(1)),
                    too_many.copy(),
                    exp.GTE(this=over_minutes.copy(), expression=double(a.min_minutes))
                    if a.min_minutes is not None
                    else None,
                ),
                copy=False,
            )
        )
        self._queue(f"lr_ab_{i}", worst)
        return [
            ("max_open", f"ab_{i}_n"),
            ("key", f"ab_{i}_key"),
            ("days_ago", f"ab_{i}_days_ago"),
            ("minutes_over_limit", f"ab_{i}_minutes"),
        ]

    def _resumed_sessions(self, intervals: str, within: float) -> exp.Select:
        """Intervals chained into sessions: a start within `within` days of the previous stop
        of the same key continues the session (resumed after an auto-suspend)."""
        order = exp.Order(
            expressions=[exp.Ordered(this=col("t0_us")), exp.Ordered(this=col("t1_us"))]
        )
        gap = _sub(
            this=col("t0_us"),
            expression=exp.Window(
                this=fn("LAG", col("t1_us")),
                partition_by=[col("pk"), col("k")],
                order=order,
            ),
        )
        starts_new = case(
            exp.LTE(this=gap, expression=int_lit(round(within * DAY_US))), int_lit(0), int_lit(1)
        )
        flagged = select(
            col("pk"),
            col("k"),
            col("t0"),
            col("t0_us"),
            col("t1_us"),
            col("lim"),
            alias(starts_new, "new_s"),
        ).from_(intervals, copy=False)
        numbered = select(
            exp.Star(),
            alias(
                exp.Window(
                    this=fn("SUM", col("new_s")),
                    partition_by=[col("pk"), col("k")],
                    order=order.copy(),
                    spec=exp.WindowSpec(
                        kind="ROWS", start="UNBOUNDED", start_side="PRECEDING", end="CURRENT ROW"
                    ),
                ),
                "sid",
            ),
        ).from_(exp.Subquery(this=flagged, alias=exp.TableAlias(this=exp.to_identifier("t"))))
        return (
            select(
                col("pk"),
                col("k"),
                alias(fn("MIN", col("t0")), "t0"),
                alias(fn("MIN", col("t0_us")), "t0_us"),
                alias(fn("MAX", col("lim")), "lim"),
                alias(fn("MAX", col("t1_us")), "t1_us"),
            )
            .from_(exp.Subquery(this=numbered, alias=exp.TableAlias(this=exp.to_identifier("t"))))
            .group_by(col("pk"), col("k"), col("sid"), copy=False)
        )

    def _regular_ctes(self, a: S.RegularAbuse) -> list[tuple[str, str]]:
        i = a.id
        key = col(f"k_ab_{i}") if a.key else exp.cast(exp.Null(), exp.DataType.build("VARCHAR"))
        gaps = (
            select(
                col("pk"),
                alias(key, "k"),
                alias(
                    _sub(
                        this=col("ts_us"),
                        expression=exp.Window(
                            this=fn("LAG", col("ts_us")),
                            partition_by=[col("pk"), key],
                            # ties in time make a zero gap whichever comes first
                            order=exp.Order(expressions=[exp.Ordered(this=col("ts"))]),
                        ),
                    ),
                    "gap_us",
                ),
                col("ts"),
            )
            .from_("lr_evw", copy=False)
            .where(col(self._ab_m[i][0]), copy=False)
        )
        gap_min = _div(this=as_double(col("gap_us")), expression=double(MINUTE_US))
        stats = (
            select(
                col("pk"),
                col("k"),
                alias(
                    fn(
                        "SUM",
                        case(
                            exp.Not(this=exp.Is(this=col("gap_us"), expression=exp.Null())),
                            int_lit(1),
                            int_lit(0),
                        ),
                    ),
                    "n_gaps",
                ),
                alias(fn("AVG", gap_min), "mean_min"),
                alias(fn("STDDEV_POP", gap_min), "sd_min"),
                alias(fn("MAX", col("ts")), "last_ts"),
            )
            .from_(
                exp.Subquery(this=gaps, alias=exp.TableAlias(this=exp.to_identifier("t"))),
                copy=False,
            )
            .group_by(col("pk"), col("k"), copy=False)
        )
        cv = _div(this=col("sd_min"), expression=fn("NULLIF", col("mean_min"), double(0)))
        flagged = and_(
            exp.GTE(
                this=_add(this=col("n_gaps"), expression=int_lit(1)),
                expression=int_lit(a.min_events),
            ),
            exp.LTE(this=cv, expression=double(a.max_cv)),
            *(
                [
                    exp.Between(
                        this=col("mean_min"),
                        low=double(a.gap[0] * 1440),
                        high=double(a.gap[1] * 1440),
                    )
                ]
                if a.gap
                else []
            ),
        )
        ranked = select(
            exp.Star(),
            alias(cv, "cv"),
            alias(coalesce(flagged, exp.false()), "hit"),
        ).from_(
            exp.Subquery(this=stats, alias=exp.TableAlias(this=exp.to_identifier("t"))), copy=False
        )
        best = (
            select(
                exp.Star(),
                alias(
                    row_number(
                        [col("pk")],
                        [
                            exp.Ordered(this=col("n_gaps"), desc=True),
                            exp.Ordered(this=col("k")),
                        ],
                    ),
                    "rn",
                ),
            )
            .from_(
                exp.Subquery(this=ranked, alias=exp.TableAlias(this=exp.to_identifier("t"))),
                copy=False,
            )
            .where(col("hit"), copy=False)
        )
        out = (
            select(
                col("pk"),
                alias(_add(this=col("n_gaps"), expression=int_lit(1)), f"ab_{i}_n"),
                alias(col("k"), f"ab_{i}_key"),
                alias(col("mean_min"), f"ab_{i}_mean_gap_minutes"),
                alias(col("cv"), f"ab_{i}_cv"),
                alias(col("last_ts"), f"ab_{i}_last"),
            )
            .from_(
                exp.Subquery(this=best, alias=exp.TableAlias(this=exp.to_identifier("t"))),
                copy=False,
            )
            .where(exp.EQ(this=col("rn"), expression=int_lit(1)), copy=False)
        )
        self._queue(f"lr_ab_{i}", out)
        return [
            ("events", f"ab_{i}_n"),
            ("key", f"ab_{i}_key"),
            ("mean_gap_minutes", f"ab_{i}_mean_gap_minutes"),
            ("cv", f"ab_{i}_cv"),
            ("last", f"ab_{i}_last"),
        ]

    # per person -------------------------------------------------------------------------------
    def _comp_select(
        self, rules: list[S.Rule], person_points: dict[str, exp.Expression], stage_names: list[str]
    ) -> exp.Select:
        cols: list[exp.Expression] = [col("person_id", "pop")]
        n = self.needs
        has_person = bool(n.person or n.traits or n.account or n.account_traits)
        if has_person:
            person_cols = [f"p_{f}" for f in sorted(n.person)] + sorted(n.traits.values())
            person_cols += [f"a_{f}" for f in sorted(n.account)] + sorted(n.account_traits.values())
            cols += [col(c, "p") for c in person_cols]
            acct = col("p_account_id", "p") if "account_id" in n.person else None
        else:
            acct = None
        cols.append(
            alias(
                acct if acct is not None else exp.cast(exp.Null(), exp.DataType.build("VARCHAR")),
                "account_id",
            )
        )
        for r in rules:
            if r.on_events:
                nn = coalesce(col(f"r_{r.id}_n", "g"), int_lit(0))
                fire = exp.GTE(this=nn, expression=int_lit(r.min_count or 1))
                if r.id in self._limited:
                    raw_c, dec_c = col("raw", f"fq_{r.id}"), col("dec", f"fq_{r.id}")
                else:
                    raw_c, dec_c = col(f"r_{r.id}_raw", "g"), col(f"r_{r.id}_dec", "g")
                raw = case(fire, coalesce(raw_c, double(0)), double(0))
                dec = case(fire, coalesce(dec_c, double(0)), double(0))
                cols += [
                    alias(nn, f"r_{r.id}_n"),
                    alias(raw, f"r_{r.id}_raw"),
                    alias(dec, f"r_{r.id}_dec"),
                ]
                final = dec
            else:
                pts = person_points[r.id]
                cols += [
                    alias(
                        case(exp.NEQ(this=pts, expression=double(0)), int_lit(1), int_lit(0)),
                        f"r_{r.id}_n",
                    ),
                    alias(pts, f"r_{r.id}_raw"),
                    alias(pts, f"r_{r.id}_dec"),
                ]
                final = pts
            if r.cap is not None:
                final = clamp(final, -r.cap, r.cap)
            cols.append(alias(final, f"r_{r.id}"))
        for name in self.spec.facts:
            f = self.spec.facts[name]
            v = col(f"f_{name}", "g")
            if f.agg in ("count", "count_distinct", "active_days", "sum"):
                v = coalesce(v, double(0))
            cols.append(alias(v, f"f_{name}"))
        for k, _ in enumerate(stage_names):
            if self.spec.stages and stage_names[k] in self.spec.stages.evidence:
                cols += [
                    alias(coalesce(col(f"st{k}_n", "g"), int_lit(0)), f"st{k}_n"),
                    col(f"st{k}_last", "g"),
                    col(f"st{k}_first", "g"),
                ]
        for a in self.spec.abuse:
            if isinstance(a, S.EventAbuse):
                nn = coalesce(col(f"ab_{a.id}_n", "g"), int_lit(0))
                cols.append(alias(exp.GTE(this=nn, expression=int_lit(a.min_count)), f"ab_{a.id}"))
                cols += [
                    alias(nn, f"ab_{a.id}_n"),
                    col(f"ab_{a.id}_first", "g"),
                    col(f"ab_{a.id}_last", "g"),
                ]
                if a.measure:
                    cols.append(col(f"ab_{a.id}_max", "g"))
            else:
                src = f"ab_{a.id}"
                cols.append(
                    alias(
                        exp.Not(this=exp.Is(this=col(f"ab_{a.id}_n", src), expression=exp.Null())),
                        f"ab_{a.id}",
                    )
                )
                names = [c for _, c in self._abuse_cols(a)]
                cols += [col(c, src) for c in names]
        # everything per person, left-joined to the population: (CTE, alias, key)
        joins = [("lr_agg", "g", "pk")]
        if has_person:
            joins.append(("lr_person", "p", "person_id"))
        joins += [(f"lr_fq_{rid}", f"fq_{rid}", "pk") for rid in self._limited]
        joins += [
            (f"lr_ab_{a.id}", f"ab_{a.id}", "pk")
            for a in self.spec.abuse
            if not isinstance(a, S.EventAbuse)
        ]
        q = select(*cols).from_(exp.to_table("lr_pop").as_("pop"), copy=False)
        for table, name, key in joins:
            q = q.join(
                exp.to_table(table).as_(name),
                on=on_key(key, name, "pop"),
                join_type="LEFT",
                copy=False,
            )
        return q

    def _abuse_cols(self, a: Any) -> list[tuple[str, str]]:
        i = a.id
        if a.kind == "session":
            return [
                ("", f"ab_{i}_n"),
                ("", f"ab_{i}_key"),
                ("", f"ab_{i}_start"),
                ("", f"ab_{i}_minutes"),
                ("", f"ab_{i}_allowed"),
                ("", f"ab_{i}_over"),
            ]
        if a.kind == "concurrent":
            return [
                ("", f"ab_{i}_n"),
                ("", f"ab_{i}_key"),
                ("", f"ab_{i}_days_ago"),
                ("", f"ab_{i}_minutes"),
            ]
        return [
            ("", f"ab_{i}_n"),
            ("", f"ab_{i}_key"),
            ("", f"ab_{i}_mean_gap_minutes"),
            ("", f"ab_{i}_cv"),
            ("", f"ab_{i}_last"),
        ]

    def _cat_select(self, rules: list[S.Rule], cats: list[str]) -> exp.Select:
        cols: list[exp.Expression] = [exp.Star()]
        for c in cats:
            terms: list[exp.Expression] = [col(f"r_{r.id}") for r in rules if r.category == c]
            for a in self.spec.abuse:
                if a.points and a.category == c:
                    terms.append(case(col(f"ab_{a.id}"), double(a.points), double(0)))
            total: exp.Expression = double(0)
            for t in terms:
                total = t if total is None else _add(this=total, expression=t)
            decl = self.spec.categories.get(c)
            raw_sum = total
            if decl is not None:
                total = clamp(total, decl.min, decl.cap)
            cols.append(alias(round6(raw_sum), f"cat_{c}_raw"))
            cols.append(alias(round6(total), f"cat_{c}"))
        flags = [col(f"ab_{a.id}") for a in self.spec.abuse]
        cols.append(alias(coalesce(or_(*flags), exp.false()) if flags else exp.false(), "flagged"))
        return select(*cols).from_("lr_comp", copy=False)

    def _tot_select(self, cats: list[str]) -> exp.Select:
        total: exp.Expression = double(0)
        for c in cats:
            total = _add(this=total, expression=col(f"cat_{c}"))
        total = clamp(total, self.spec.score.min, self.spec.score.max)
        return select(exp.Star(), alias(round6(total), "score")).from_("lr_cat", copy=False)

    def _grade_select(self, cats: list[str]) -> tuple[exp.Select, list[str]]:
        g = self.spec.grades
        cols: list[exp.Expression] = [exp.Star()]
        names: list[str] = []
        if g is None:
            grade: exp.Expression = exp.cast(exp.Null(), exp.DataType.build("VARCHAR"))
        elif g.method == "thresholds":
            by = col("score") if g.by == "score" else col(f"cat_{g.by}")
            levels = g.levels or []
            names = [lv.grade for lv in levels]
            grade = exp.Case(
                ifs=[
                    exp.If(
                        this=exp.GTE(this=by, expression=double(lv.min)),
                        true=text_literal(lv.grade),
                    )
                    for lv in levels[:-1]
                ],
                default=text_literal(levels[-1].grade),
            )
        elif g.method == "volume":
            by = col("score") if g.by == "score" else col(f"cat_{g.by}")
            levels = g.levels or []
            names = [lv.grade for lv in levels]
            if self.volume_cutoffs is not None:
                ifs = []
                for lv in levels[:-1]:
                    cut = self.volume_cutoffs.get(lv.grade)
                    if cut is not None:
                        ifs.append(
                            exp.If(
                                this=exp.GTE(this=by, expression=double(cut)),
                                true=text_literal(lv.grade),
                            )
                        )
                grade = (
                    exp.Case(ifs=ifs, default=text_literal(levels[-1].grade))
                    if ifs
                    else text_literal(levels[-1].grade)
                )
            else:
                cd = exp.Window(
                    this=fn("CUME_DIST"),
                    order=exp.Order(expressions=[exp.Ordered(this=by, desc=True)]),
                )
                grade = exp.Case(
                    ifs=[
                        exp.If(
                            this=exp.LTE(this=cd, expression=double(lv.top)),
                            true=text_literal(lv.grade),
                        )
                        for lv in levels[:-1]
                    ],
                    default=text_literal(levels[-1].grade),
                )
        else:
            assert g.fit and g.engagement

            def axis(a: S.Axis) -> exp.Expression:
                by = col(f"cat_{a.category}")
                return exp.Case(
                    ifs=[
                        exp.If(
                            this=exp.GTE(this=by, expression=double(lv.min)),
                            true=text_literal(lv.label),
                        )
                        for lv in a.levels[:-1]
                    ],
                    default=text_literal(a.levels[-1].label),
                )

            names = g.names()
            grade = exp.DPipe(this=axis(g.fit), expression=axis(g.engagement), safe=False)
        cols.append(alias(grade, "grade"))
        # stage: the furthest stage with enough fresh evidence
        st = self.spec.stages
        if st is not None:
            order = list(st.order)
            ifs, rank_ifs, last_ifs, n_ifs, first_ifs = [], [], [], [], []
            for k in reversed(range(len(order))):
                name = order[k]
                if name not in st.evidence:
                    continue
                reached = exp.GTE(
                    this=col(f"st{k}_n"), expression=int_lit(st.evidence[name].min_count)
                )
                ifs.append(exp.If(this=reached, true=text_literal(name)))
                rank_ifs.append(exp.If(this=reached.copy(), true=int_lit(k + 1)))
                last_ifs.append(exp.If(this=reached.copy(), true=col(f"st{k}_last")))
                first_ifs.append(exp.If(this=reached.copy(), true=col(f"st{k}_first")))
                n_ifs.append(exp.If(this=reached.copy(), true=col(f"st{k}_n")))
            default = (
                text_literal(st.default)
                if st.default
                else exp.cast(exp.Null(), exp.DataType.build("VARCHAR"))
            )
            drank = int_lit(order.index(st.default) + 1) if st.default else int_lit(0)
            null_ts = exp.cast(exp.Null(), exp.DataType.build("TIMESTAMP"))
            if ifs:
                cols += [
                    alias(exp.Case(ifs=ifs, default=default), "stage"),
                    alias(exp.Case(ifs=rank_ifs, default=drank), "stage_rank"),
                    alias(exp.Case(ifs=n_ifs, default=int_lit(0)), "stage_n"),
                    alias(exp.Case(ifs=first_ifs, default=null_ts), "stage_first"),
                    alias(exp.Case(ifs=last_ifs, default=null_ts), "stage_last"),
                ]
            else:
                cols += [
                    alias(default, "stage"),
                    alias(drank, "stage_rank"),
                    alias(int_lit(0), "stage_n"),
                    alias(null_ts, "stage_first"),
                    alias(null_ts.copy(), "stage_last"),
                ]
        else:
            cols += [
                alias(exp.cast(exp.Null(), exp.DataType.build("VARCHAR")), "stage"),
                alias(int_lit(0), "stage_rank"),
                alias(int_lit(0), "stage_n"),
                alias(exp.cast(exp.Null(), exp.DataType.build("TIMESTAMP")), "stage_first"),
                alias(exp.cast(exp.Null(), exp.DataType.build("TIMESTAMP")), "stage_last"),
            ]
        inner = select(*cols).from_("lr_tot", copy=False)
        mql = g.mql if g else []
        out = select(
            exp.Star(),
            alias(coalesce(in_list(col("grade"), mql), exp.false()) if mql else exp.false(), "mql"),
        ).from_(
            exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier("t"))), copy=False
        )
        return out, names


def _where(loc: Loc) -> str:
    if loc and loc[0] == "rules":
        return "this rule"
    if loc and loc[0] == "stages":
        return f"stage {loc[2]!r}"
    if loc and loc[0] == "facts":
        return f"fact {loc[1]!r}"
    return "this block"


# -- snapshot: the JSON columns stored in `scores` ------------------------------------------


def _num_text(e: exp.Expression) -> exp.Expression:
    return coalesce(exp.cast(e, exp.DataType.build("VARCHAR")), text_literal("null"))


def _concat(*parts: exp.Expression) -> exp.Expression:
    out = parts[0]
    for p in parts[1:]:
        out = exp.DPipe(this=out, expression=p, safe=False)
    return out


def _concat_ws(items: list[exp.Expression]) -> exp.Expression:
    """CONCAT_WS(',', ...) of items (NULL items skipped), in chunks PostgreSQL accepts."""
    if not items:
        return text_literal("")
    chunks = [items[i : i + 90] for i in range(0, len(items), 90)]
    parts = [call("CONCAT_WS", text_literal(","), *c) for c in chunks]
    if len(parts) == 1:
        return parts[0]
    return call("CONCAT_WS", text_literal(","), *[fn("NULLIF", p, text_literal("")) for p in parts])


def _obj(pairs: list[tuple[str, exp.Expression]]) -> exp.Expression:
    """A JSON object text from (our own key, value text) pairs."""
    parts: list[exp.Expression] = [text_literal("{")]
    for j, (k, v) in enumerate(pairs):
        parts.append(text_literal(("," if j else "") + f'"{k}":'))
        parts.append(v)
    parts.append(text_literal("}"))
    return _concat(*parts)


def _ts_text(e: exp.Expression) -> exp.Expression:
    return coalesce(
        call("LR_JSON_STRING", exp.cast(e, exp.DataType.build("VARCHAR"))), text_literal("null")
    )


def _str_text(e: exp.Expression) -> exp.Expression:
    return coalesce(
        call("LR_JSON_STRING", exp.cast(e, exp.DataType.build("VARCHAR"))), text_literal("null")
    )


SNAPSHOT_COLUMNS = (
    "person_id",
    "account_id",
    "score",
    "grade",
    "mql",
    "stage",
    "stage_rank",
    "flagged",
    "engaged",
    "categories",
    "segments",
    "abuse",
    "components",
    "stage_evidence",
)


def snapshot_query(plan: Plan) -> exp.Select:
    """Per person: score, grade, stage and the JSON columns (categories, segments, abuse,
    components, stage evidence) of a `scores` row, from the wide per-person query."""
    cats = _obj([(c, _num_text(col(f"cat_{c}"))) for c in plan.categories])
    segs = _concat(
        text_literal("["),
        _concat_ws([case(col(f"seg_{s}"), text_literal(f'"{s}"')) for s in plan.segments]),
        text_literal("]"),
    )
    comps = []
    for r in plan.rules:
        entry = _concat(
            text_literal(f'"{r.id}":'),
            _obj(
                [
                    ("n", _num_text(col(f"r_{r.id}_n"))),
                    ("raw", _num_text(col(f"r_{r.id}_raw"))),
                    ("decayed", _num_text(col(f"r_{r.id}_dec"))),
                    ("points", _num_text(col(f"r_{r.id}"))),
                ]
            ),
        )
        comps.append(case(exp.GT(this=col(f"r_{r.id}_n"), expression=int_lit(0)), entry))
    components = _concat(text_literal("{"), _concat_ws(comps), text_literal("}"))
    abuses = []
    for aid, evidence in plan.abuse_evidence.items():
        pairs = []
        for key, c in evidence:
            if key in ("key",):
                pairs.append((key, _str_text(col(c))))
            elif key in ("first", "last", "start"):
                pairs.append((key, _ts_text(col(c))))
            else:
                pairs.append((key, _num_text(col(c))))
        abuses.append(case(col(f"ab_{aid}"), _concat(text_literal(f'"{aid}":'), _obj(pairs))))
    abuse = _concat(text_literal("{"), _concat_ws(abuses), text_literal("}"))
    stage_ev = _obj(
        [
            ("n", _num_text(col("stage_n"))),
            ("first", _ts_text(col("stage_first"))),
            ("last", _ts_text(col("stage_last"))),
        ]
    )
    return select(
        col("person_id"),
        col("account_id"),
        col("score"),
        col("grade"),
        col("mql"),
        col("stage"),
        col("stage_rank"),
        col("flagged"),
        col("engaged"),
        alias(cats, "categories"),
        alias(segs, "segments"),
        alias(abuse, "abuse"),
        alias(components, "components"),
        alias(stage_ev, "stage_evidence"),
    ).from_(
        exp.Subquery(this=plan.query, alias=exp.TableAlias(this=exp.to_identifier("q"))), copy=False
    )


# -- entry points -------------------------------------------------------------------------------


def build_plan(
    model: Model,
    *,
    as_of: datetime | None = None,
    restrict: str | list[str] | None = None,
    volume_cutoffs: dict[str, float] | None = None,
    events: str = "events",
) -> Plan:
    """The model's scoring plan; `events` names the table (or view) of events it reads (the
    real-time warm lane's: the stored events and those received, not yet stored)."""
    return Builder(model, as_of or datetime.now(UTC), restrict, volume_cutoffs, events).build()


def event_abuse_query(model: Model, rule: S.EventAbuse, source: str,
                      as_of: datetime) -> exp.Select | None:
    """The events of `source` (a table shaped like `events`, aliased `e`) that raise the event
    abuse rule `rule` on their own, as of `as_of`: person_id, message_id, ts, event, properties
    and the rule's `measure` — the rule's own matcher, compiled as in the scoring query. None
    when one event cannot tell (`min_count` > 1) or the test reads more than the event (the
    person, the account, facts): only a rescore can tell then."""
    if rule.min_count > 1:
        return None
    b = Builder(model, as_of)
    loc = ("abuse", [a.id for a in model.spec.abuse].index(rule.id))
    try:
        cond = b.matchers[b.match(rule, loc, "m", window=rule.window)]
        measure: exp.Expression = exp.null()
        if rule.measure:
            measure = coerce(b.compile_value(rule.measure, b.event_scope(rule.id), loc),
                             NUM, "the measure")
    except (ExprError, ModelError):
        return None  # (the model's check reported it at load)
    n = b.needs
    if n.person or n.traits or n.account or n.account_traits or n.facts:
        return None
    # the matcher reads lr_ev0's columns: put back the expressions on `e` they stand for
    columns = {name: node for name, node, _ in n.ev_cols.values()}
    columns |= {"age_d": b._age_days(col("ts", "e")), "ts": col("ts", "e")}

    def on_event(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and not node.table and node.name in columns:
            return columns[node.name].copy()
        return node

    cond, measure = (x.transform(on_event) for x in (cond, measure))
    if any(c.table != "e" for x in (cond, measure) for c in x.find_all(exp.Column)):
        return None  # something only the scoring query has
    return (select(*(col(c, "e") for c in ("person_id", "message_id", "ts", "event",
                                          "properties")), alias(measure, "measure"))
            .from_(exp.to_table(source).as_("e")).where(cond))


CHECK_AS_OF = datetime(2024, 1, 1)


def check_model(model: Model) -> None:
    """Compile the model once: every condition, name and reference is checked here, at load."""
    plan = build_plan(model, as_of=CHECK_AS_OF)
    plan.sql("duckdb")
