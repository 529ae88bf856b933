"""Conditions in the model (`when:`), parsed with sqlglot, checked against a whitelist, rewritten.

A condition is SQL-like text: `path LIKE '/pricing%' AND properties.guests > 5`,
`traits.phoneCountry IN @risky_countries`, `facts.logins >= 2`. It is

1. parsed by sqlglot into an AST (never evaluated with Python, never pasted into SQL);
2. checked node by node: only the operators and functions listed here, only names the
   `Scope` knows (each scope lists what a condition in that place may refer to), `@set`
   references only to declared sets; anything else is an `ExprError` saying what to write;
3. typed and rewritten: JSON fields (`properties.*`, `traits.*`, `context.*`) become the
   engine's JSON access, coerced to what they are compared with (a number, text, true/false);
   number literals become `CAST(n AS DOUBLE)` so every engine does float arithmetic (Spark would
   read `1.5` as a decimal, PostgreSQL would divide integers); division never fails.

The result is a sqlglot expression with `LR_*` placeholders that `dialects.render` spells per
engine.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from .dialects import call

TEXT, NUM, BOOL, TS, JSON, NULL = "text", "number", "true/false", "time", "json", "null"
JSON_KEY = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
MAX_LENGTH = 4000
MAX_DEPTH = 60


class ExprError(Exception):
    """A condition is invalid: `message` says what and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class Typed:
    node: exp.Expression
    type: str


def suggest(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" — did you mean {close[0]!r}?" if close else ""


def double(value: float | int) -> exp.Expression:
    """A number literal every engine reads as a double."""
    v = float(value)
    text = repr(v) if v != int(v) or abs(v) >= 1e15 else str(int(v))
    return exp.cast(exp.Literal.number(text), exp.DataType.build("DOUBLE"))


def paren(e: exp.Expression) -> exp.Expression:
    """Parenthesise a compound operand (sqlglot prints a built tree without adding any)."""
    atomic = (
        exp.Column,
        exp.Literal,
        exp.Cast,
        exp.Func,
        exp.Paren,
        exp.Case,
        exp.Null,
        exp.Boolean,
    )
    return e if isinstance(e, atomic) else exp.Paren(this=e)


def text_literal(value: str) -> exp.Literal:
    return exp.Literal.string(value)


# -- coercions ----------------------------------------------------------------------------------


def to_num(t: Typed, what: str) -> exp.Expression:
    if t.type == NUM:
        return t.node
    if t.type == JSON:
        return call("LR_TO_NUM", t.node)
    if t.type == NULL:
        return exp.cast(exp.Null(), exp.DataType.build("DOUBLE"))
    raise ExprError(f"{what} is {t.type}, not a number")


def to_text(t: Typed, what: str) -> exp.Expression:
    if t.type in (TEXT, JSON):
        return t.node
    if t.type == NULL:
        return exp.cast(exp.Null(), exp.DataType.build("VARCHAR"))
    raise ExprError(f"{what} is {t.type}, not text")


def to_bool(t: Typed, what: str) -> exp.Expression:
    if t.type == BOOL:
        return t.node
    if t.type == JSON:
        # a JSON true/"true"/1/"yes" is true; anything else, or absent, is false
        return exp.func(
            "COALESCE",
            exp.In(
                this=exp.Lower(this=t.node),
                expressions=[text_literal(v) for v in ("true", "1", "yes")],
            ),
            exp.false(),
        )
    if t.type == NULL:
        return exp.cast(exp.Null(), exp.DataType.build("BOOLEAN"))
    raise ExprError(f"{what} is {t.type}, not a condition (compare it: `... = 'x'`, `... > 3`)")


def coerce(t: Typed, to: str, what: str) -> exp.Expression:
    if to == NUM:
        return to_num(t, what)
    if to == TEXT:
        return to_text(t, what)
    if to == BOOL:
        return to_bool(t, what)
    if to == TS:
        if t.type == TS:
            return t.node
        if isinstance(t.node, exp.Literal) and t.node.is_string:
            return exp.cast(t.node, exp.DataType.build("TIMESTAMP"))
        raise ExprError(f"{what} is {t.type}, not a time (write a time as '2024-05-01 12:00:00')")
    raise AssertionError(to)  # pragma: no cover


def unify(a: Typed, b: Typed, what: str) -> tuple[exp.Expression, exp.Expression, str]:
    """Bring two operands to one type for a comparison."""
    ta, tb = a.type, b.type
    if ta == tb:
        return a.node, b.node, ta
    if NULL in (ta, tb):
        return a.node, b.node, tb if ta == NULL else ta
    if ta == JSON:
        return coerce(a, tb, what), b.node, tb
    if tb == JSON:
        return a.node, coerce(b, ta, what), ta
    if TS in (ta, tb):
        return coerce(a, TS, what), coerce(b, TS, what), TS
    raise ExprError(f"{what} compares {ta} with {tb}")


# -- scopes -------------------------------------------------------------------------------------


class Scope:
    """What names a condition may use in one place of the model, and what they compile to.

    `fields` are plain names (`path`, `email`, `score`); `namespaces` are prefixes
    (`properties.x`, `facts.x`). A resolver returns a `Typed` node and may record what the
    compiler must provide (which traits, facts, ... the query needs).
    """

    def __init__(
        self,
        where: str,
        fields: dict[str, Callable[[], Typed]],
        namespaces: dict[str, Callable[[list[str]], Typed]],
        *,
        namespace_help: dict[str, str] | None = None,
        as_of_us: exp.Expression | None = None,
    ) -> None:
        self.where = where
        self.fields = fields
        self.namespaces = namespaces
        self.namespace_help = namespace_help or {}
        self.as_of_us = as_of_us

    def known(self) -> list[str]:
        return sorted(self.fields) + [f"{n}.…" for n in sorted(self.namespaces)]

    def resolve(self, parts: list[str], quoted_single: bool = False) -> Typed:
        head, rest = parts[0], parts[1:]
        if not rest:
            if head in self.fields:
                return self.fields[head]()
            if quoted_single:
                raise ExprError(
                    f"\"{head}\" is read as a field name; write text in single quotes: '{head}'"
                )
            if head in self.namespaces:
                raise ExprError(
                    f"{head!r} needs a name after it: {self.namespace_help.get(head, head + '.x')}"
                )
            raise ExprError(
                f"unknown field {head!r} in {self.where}{suggest(head, list(self.fields))} "
                f"(known here: {', '.join(self.known())})"
            )
        if head in self.namespaces:
            return self.namespaces[head](rest)
        dotted = ".".join(parts)
        hint = suggest(head, list(self.namespaces))
        raise ExprError(
            f"unknown field {dotted!r} in {self.where}{hint} "
            f"(known here: {', '.join(self.known())})"
        )


def json_field(column: exp.Expression, rest: list[str], what: str) -> Typed:
    for part in rest:
        if not JSON_KEY.match(part):
            raise ExprError(
                f"{what}.{'.'.join(rest)}: a key may hold only letters, digits, _ and -"
            )
    return Typed(call("LR_JSON_TEXT", column, *[text_literal(p) for p in rest]), JSON)


# -- the checker/compiler -----------------------------------------------------------------------

COMPARISONS: dict[type[exp.Expression], type[exp.Expression]] = {
    exp.EQ: exp.EQ,
    exp.NEQ: exp.NEQ,
    exp.GT: exp.GT,
    exp.GTE: exp.GTE,
    exp.LT: exp.LT,
    exp.LTE: exp.LTE,
}
ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Div)

# user-facing function name -> (argument types, result type, builder)
Fn = tuple[tuple[str, ...], str, Callable[..., exp.Expression]]


def _contains(a: exp.Expression, b: exp.Expression) -> exp.Expression:
    return exp.GT(this=exp.StrPosition(this=a, substr=b), expression=exp.Literal.number(0))


def _ends_with(a: exp.Expression, b: exp.Expression) -> exp.Expression:
    return exp.EQ(this=exp.Right(this=a, expression=exp.Length(this=b)), expression=b)


FUNCTIONS: dict[str, Fn] = {
    "lower": ((TEXT,), TEXT, lambda a: exp.Lower(this=a)),
    "upper": ((TEXT,), TEXT, lambda a: exp.Upper(this=a)),
    "trim": ((TEXT,), TEXT, lambda a: exp.Trim(this=a)),
    "length": ((TEXT,), NUM, lambda a: exp.cast(exp.Length(this=a), exp.DataType.build("DOUBLE"))),
    "starts_with": ((TEXT, TEXT), BOOL, lambda a, b: exp.StartsWith(this=a, expression=b)),
    "ends_with": ((TEXT, TEXT), BOOL, _ends_with),
    "contains": ((TEXT, TEXT), BOOL, _contains),
    "matches": ((TEXT, TEXT), BOOL, lambda a, b: exp.RegexpLike(this=a, expression=b)),
    "regexp_matches": ((TEXT, TEXT), BOOL, lambda a, b: exp.RegexpLike(this=a, expression=b)),
    "replace": (
        (TEXT, TEXT, TEXT),
        TEXT,
        lambda a, b, c: exp.Replace(this=a, expression=b, replacement=c),
    ),
    "split_part": (
        (TEXT, TEXT, "int"),
        TEXT,
        lambda a, b, c: exp.SplitPart(this=a, delimiter=b, part_index=c),
    ),
    "number": ((NUM,), NUM, lambda a: a),
    "text": ((TEXT,), TEXT, lambda a: a),
    "abs": ((NUM,), NUM, lambda a: exp.Abs(this=a)),
    "floor": ((NUM,), NUM, lambda a: exp.cast(exp.Floor(this=a), exp.DataType.build("DOUBLE"))),
    "ceil": ((NUM,), NUM, lambda a: exp.cast(exp.Ceil(this=a), exp.DataType.build("DOUBLE"))),
    "least": ((NUM, NUM), NUM, lambda a, b: exp.func("LEAST", a, b)),
    "greatest": ((NUM, NUM), NUM, lambda a, b: exp.func("GREATEST", a, b)),
}
# variable-arity functions handled in the compiler: coalesce(a, b, ...), days_since(time)
SPECIAL = ("coalesce", "days_since")
ALL_FUNCTIONS = sorted([*FUNCTIONS, *SPECIAL])


def _func_name(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.this).lower()
    return node.sql_name().lower() if isinstance(node, exp.Func) else type(node).__name__


def _column_parts(node: exp.Expression) -> tuple[list[str], bool]:
    """Names of a dotted reference (`a.b.c.d...`) and whether a single name was quoted."""
    if isinstance(node, exp.Column):
        idents = [p for p in node.parts]
        quoted = len(idents) == 1 and bool(idents[0].args.get("quoted"))
        return [i.name for i in idents], quoted
    if isinstance(node, exp.Dot):
        left, _ = _column_parts(node.this)
        return [*left, node.expression.name], False
    raise ExprError(f"not a field name: {node.sql()}")


class Compiler:
    """Compiles one condition in one scope. `sets` maps set names to their values."""

    def __init__(self, scope: Scope, sets: dict[str, list]) -> None:
        self.scope = scope
        self.sets = sets

    # entry points
    def condition(self, text: str) -> exp.Expression:
        return to_bool(self.value(text), "the condition")

    def value(self, text: str) -> Typed:
        return self.c(parse(text), 0)

    # recursion
    def c(self, n: exp.Expression, depth: int) -> Typed:
        if depth > MAX_DEPTH:
            raise ExprError("the condition is nested too deeply")
        d = depth + 1
        if isinstance(n, exp.Paren):
            inner = self.c(n.this, d)
            return Typed(exp.Paren(this=inner.node), inner.type)
        if isinstance(n, exp.Literal):
            if n.is_string:
                return Typed(text_literal(n.this), TEXT)
            try:
                return Typed(double(float(n.this)), NUM)
            except ValueError as exc:
                raise ExprError(f"{n.this!r} is not a number") from exc
        if isinstance(n, exp.Boolean):
            return Typed(exp.true() if n.this else exp.false(), BOOL)
        if isinstance(n, exp.Null):
            return Typed(exp.Null(), NULL)
        if isinstance(n, exp.Column | exp.Dot):
            parts, quoted = _column_parts(n)
            return self.scope.resolve(parts, quoted)
        if isinstance(n, exp.And | exp.Or):
            a = to_bool(self.c(n.this, d), f"the left side of {n.key.upper()}")
            b = to_bool(self.c(n.expression, d), f"the right side of {n.key.upper()}")
            return Typed(type(n)(this=a, expression=b), BOOL)
        if isinstance(n, exp.Not):
            return Typed(exp.Not(this=to_bool(self.c(n.this, d), "what NOT applies to")), BOOL)
        if type(n) in COMPARISONS:
            what = f"`{n.sql()}`"
            a, b, _ = unify(self.c(n.this, d), self.c(n.expression, d), what)
            return Typed(COMPARISONS[type(n)](this=a, expression=b), BOOL)
        if isinstance(n, exp.Neg):
            return Typed(exp.Neg(this=paren(to_num(self.c(n.this, d), "what - applies to"))), NUM)
        if isinstance(n, ARITHMETIC):
            what = f"`{n.sql()}`"
            a = to_num(self.c(n.this, d), what)
            b = to_num(self.c(n.expression, d), what)
            if isinstance(n, exp.Div):  # x / 0 is NULL on every engine, never an error
                b = exp.func("NULLIF", b, double(0))
                return Typed(exp.Div(this=paren(a), expression=b, typed=False, safe=False), NUM)
            return Typed(type(n)(this=paren(a), expression=paren(b)), NUM)
        if isinstance(n, exp.DPipe):
            what = "`||`"
            a = to_text(self.c(n.this, d), what)
            b = to_text(self.c(n.expression, d), what)
            return Typed(exp.DPipe(this=paren(a), expression=paren(b), safe=False), TEXT)
        if isinstance(n, exp.Like | exp.ILike):
            what = f"`{n.sql()}`"
            a = to_text(self.c(n.this, d), what)
            b = to_text(self.c(n.expression, d), what)
            out: exp.Expression = type(n)(this=a, expression=b)
            if n.args.get("negate"):
                out = exp.Not(this=out)
            if n.args.get("escape") is not None:
                raise ExprError("LIKE ... ESCAPE is not supported; use matches(x, 'regex')")
            return Typed(out, BOOL)
        if isinstance(n, exp.Escape):
            raise ExprError("LIKE ... ESCAPE is not supported; use matches(x, 'regex')")
        if isinstance(n, exp.Is):
            if not isinstance(n.expression, exp.Null):
                raise ExprError("only `IS NULL` / `IS NOT NULL` are supported after IS")
            a = self.c(n.this, d)
            return Typed(exp.Is(this=a.node, expression=exp.Null()), BOOL)
        if isinstance(n, exp.In):
            return self._in(n, d)
        if isinstance(n, exp.Between):
            what = f"`{n.sql()}`"
            v = self.c(n.this, d)
            lo, hi = self.c(n.args["low"], d), self.c(n.args["high"], d)
            a, lo_n, t = unify(v, lo, what)
            a2, hi_n, _ = unify(Typed(a, t), hi, what)
            return Typed(exp.Between(this=a2, low=lo_n, high=hi_n), BOOL)
        if isinstance(n, exp.Case):
            return self._case(n, d)
        if isinstance(n, exp.If) and not isinstance(n.parent, exp.Case):
            cond = to_bool(self.c(n.this, d), "the condition of if()")
            a, b = self.c(n.args["true"], d), self.c(n.args.get("false") or exp.Null(), d)
            an, bn, t = unify(a, b, "the two results of if()")
            return Typed(exp.Case(ifs=[exp.If(this=cond, true=an)], default=bn), t)
        if isinstance(n, exp.Parameter):
            raise ExprError("a @set can only be used after IN: `x IN @set`")
        if isinstance(n, exp.Cast | exp.TryCast):
            raise ExprError("CAST is not allowed; use number(x) or text(x)")
        if isinstance(n, exp.Func):
            return self._func(n, d)
        raise ExprError(self._not_allowed(n))

    def _not_allowed(self, n: exp.Expression) -> str:
        if isinstance(n, exp.Subquery | exp.Select | exp.Query):
            return "sub-queries are not allowed in a condition; use facts: for aggregates"
        if isinstance(n, exp.Star):
            return "`*` is not allowed in a condition"
        if isinstance(n, exp.Cast):
            return "CAST is not allowed; use number(x) or text(x)"
        return f"`{n.sql()}` is not allowed in a condition ({n.key})"

    def _set_values(self, name: str) -> list:
        if name not in self.sets:
            raise ExprError(
                f"unknown set @{name}{suggest(name, list(self.sets))} "
                f"(declared sets: {', '.join('@' + s for s in sorted(self.sets)) or 'none'}) "
                "— declare it under `sets:`"
            )
        return self.sets[name]

    def _in(self, n: exp.In, d: int) -> Typed:
        if n.args.get("query") is not None:
            raise ExprError("IN (SELECT ...) is not allowed; list the values or use a @set")
        if n.args.get("unnest") is not None:
            raise ExprError("IN UNNEST is not allowed")
        items: list = []
        field = n.args.get("field")
        sources = list(n.expressions) + ([field] if field is not None else [])
        for e in sources:
            if isinstance(e, exp.Parameter):
                items.extend(self._set_values(e.name))
            elif isinstance(e, exp.Literal):
                items.append(e.this if e.is_string else float(e.this))
            elif (
                isinstance(e, exp.Neg) and isinstance(e.this, exp.Literal) and not e.this.is_string
            ):
                items.append(-float(e.this.this))
            elif isinstance(e, exp.Boolean):
                items.append(bool(e.this))
            else:
                raise ExprError("IN takes a list of fixed values or a @set: x IN ('a', 'b')")
        if not items:
            raise ExprError("IN needs at least one value")
        kinds = {type(v) for v in items}
        what = f"`{n.sql()}`"
        lhs = self.c(n.this, d)
        if kinds <= {str}:
            node = to_text(lhs, what)
            lits: list[exp.Expression] = [text_literal(v) for v in items]
        elif kinds <= {int, float}:
            node = to_num(lhs, what)
            lits = [double(v) for v in items]
        elif kinds <= {bool}:
            node = to_bool(lhs, what)
            lits = [exp.true() if v else exp.false() for v in items]
        else:
            raise ExprError(f"{what} mixes text and numbers in its list")
        # keep the list short and stable: duplicates removed, order kept
        seen: set = set()
        uniq = []
        for lit, v in zip(lits, items, strict=True):
            if v not in seen:
                seen.add(v)
                uniq.append(lit)
        return Typed(exp.In(this=node, expressions=uniq), BOOL)

    def _case(self, n: exp.Case, d: int) -> Typed:
        if n.this is not None:
            raise ExprError("write CASE WHEN cond THEN ... (CASE x WHEN ... is not supported)")
        results: list[Typed] = []
        conds = []
        for i in n.args.get("ifs") or []:
            conds.append(to_bool(self.c(i.this, d), "a WHEN of CASE"))
            results.append(self.c(i.args["true"], d))
        default = n.args.get("default")
        if default is not None:
            results.append(self.c(default, d))
        types = {r.type for r in results} - {NULL, JSON}
        if len(types) > 1:
            raise ExprError(f"the results of CASE mix {' and '.join(sorted(types))}")
        t = types.pop() if types else (JSON if any(r.type == JSON for r in results) else NULL)
        nodes = [
            coerce(r, t, "a CASE result") if r.type == JSON and t != JSON else r.node
            for r in results
        ]
        ifs = [exp.If(this=c, true=v) for c, v in zip(conds, nodes, strict=False)]
        return Typed(exp.Case(ifs=ifs, default=nodes[-1] if default is not None else None), t)

    def _func(self, n: exp.Func, d: int) -> Typed:
        name = _func_name(n)
        if isinstance(n, exp.Anonymous):
            args = list(n.expressions)
        else:  # a function sqlglot knows: its arguments in declaration order
            args = [v for k in n.arg_types for v in _as_list(n.args.get(k))]
        if name == "coalesce":
            if len(args) < 2:
                raise ExprError("coalesce needs at least two values")
            typed = [self.c(a, d) for a in args]
            types = {t.type for t in typed} - {NULL, JSON}
            if len(types) > 1:
                raise ExprError(f"coalesce mixes {' and '.join(sorted(types))}")
            t = types.pop() if types else JSON
            nodes = [
                coerce(x, t, "a coalesce value") if x.type == JSON and t != JSON else x.node
                for x in typed
            ]
            return Typed(exp.Coalesce(this=nodes[0], expressions=nodes[1:]), t)
        if name == "days_since":
            if len(args) != 1 or self.scope.as_of_us is None:
                raise ExprError("days_since(time) takes one time value")
            ts = coerce(self.c(args[0], d), TS, "the argument of days_since")
            diff = exp.Sub(this=self.scope.as_of_us, expression=call("LR_EPOCH_US", ts))
            return Typed(
                exp.Div(
                    this=exp.cast(diff, exp.DataType.build("DOUBLE")),
                    expression=double(86_400_000_000),
                ),
                NUM,
            )
        if name not in FUNCTIONS:
            raise ExprError(
                f"function {name}() is not allowed{suggest(name, ALL_FUNCTIONS)} "
                f"(allowed: {', '.join(ALL_FUNCTIONS)})"
            )
        want, result, build = FUNCTIONS[name]
        if len(args) != len(want):
            raise ExprError(f"{name}() takes {len(want)} argument(s), got {len(args)}")
        built = []
        for i, (a, w) in enumerate(zip(args, want, strict=True)):
            if w == "int":
                if not (isinstance(a, exp.Literal) and not a.is_string and a.this.isdigit()):
                    raise ExprError(f"argument {i + 1} of {name}() must be a whole number")
                built.append(exp.Literal.number(int(a.this)))
            else:
                built.append(coerce(self.c(a, d), w, f"argument {i + 1} of {name}()"))
        return Typed(build(*built), result)


def _as_list(v: object) -> list:
    if v is None or isinstance(v, bool | str):
        return []
    if isinstance(v, list):
        return [x for x in v if isinstance(x, exp.Expression)]
    return [v] if isinstance(v, exp.Expression) else []


def parse(text: str) -> exp.Expression:
    """Parse one condition; anything but one plain expression is an ExprError."""
    if not isinstance(text, str) or not text.strip():
        raise ExprError("the condition is empty")
    if len(text) > MAX_LENGTH:
        raise ExprError(f"the condition is longer than {MAX_LENGTH} characters")
    try:
        trees = sqlglot.parse(text, read=None)
    except (ParseError, TokenError) as exc:
        msg = str(exc).splitlines()[0]
        raise ExprError(f"cannot parse the condition: {msg}") from None
    except (RecursionError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise ExprError("cannot parse the condition") from None
    trees = [t for t in trees if t is not None]
    if len(trees) != 1:
        raise ExprError("write one condition (no `;`)")
    tree = trees[0]
    if isinstance(tree, exp.Alias):
        raise ExprError("AS is not allowed in a condition")
    if not isinstance(tree, exp.Condition) or isinstance(tree, exp.Query):
        raise ExprError(f"not a condition: {tree.key.upper()} statements are not allowed")
    return tree
