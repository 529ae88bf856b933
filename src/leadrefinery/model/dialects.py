"""What differs between the engines' SQL, as a table.

The compiler builds one sqlglot AST. Where sqlglot cannot carry a meaning across dialects by
itself (JSON access, exact epoch microseconds, a cast that must not fail, escaping text into
JSON), the AST holds a placeholder call `LR_<NAME>(...)`, and `render` replaces each with the
engine's spelling from `DIALECTS` before sqlglot writes the SQL. Everything else (LIKE, CASE,
windows, casts, string functions) is transpiled by sqlglot.

Placeholders:
    LR_JSON_TEXT(col, 'a', 'b')  text at path a.b of a JSON column (NULL when absent)
    LR_JSON_SCALAR(col)          the text of a JSON scalar ('"x"' -> x, 'true' -> true)
    LR_EPOCH_US(ts)              microseconds since 1970 as BIGINT (exact, so ages agree)
    LR_TO_NUM(text)              DOUBLE or NULL when the text is not a number (never fails)
    LR_JSON_STRING(text)         a JSON string literal ("..." with escapes) of text
    LR_STRIP_NONALNUM(text)      text without any character other than a-z, A-Z, 0-9
    LR_PERSON_KEY(person_id)     a key per person that is cheaper to group by than the id:
                                 its rank (BIGINT); the id itself on Spark (a rank would
                                 sort all people in one partition)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

ENGINES = ("duckdb", "postgres", "spark")
NUMBER_RE = r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"


def call(name: str, *args: exp.Expression) -> exp.Expression:
    """A placeholder (or plain function) call node."""
    return exp.Anonymous(this=name, expressions=list(args))


def s(text: str) -> exp.Literal:
    return exp.Literal.string(text)


def _json_path_dollar(parts: list[str], *, brackets: bool) -> str:
    out = "$"
    for p in parts:
        if p.replace("_", "").isalnum():
            out += f".{p}"
        elif brackets:
            out += f"['{p}']"
        else:
            out += f'."{p}"'
    return out


def _parts(args: list[exp.Expression]) -> list[str]:
    return [a.name for a in args]


@dataclass(frozen=True)
class Dialect:
    name: str
    sqlglot: str
    json_text: Callable[[exp.Expression, list[str]], exp.Expression]
    json_scalar: Callable[[exp.Expression], exp.Expression]
    epoch_us: Callable[[exp.Expression], exp.Expression]
    to_num: Callable[[exp.Expression], exp.Expression]
    json_string: Callable[[exp.Expression], exp.Expression]
    strip_nonalnum: Callable[[exp.Expression], exp.Expression]
    person_key: Callable[[exp.Expression], exp.Expression] = lambda pid: exp.Window(
        this=exp.RowNumber(), order=exp.Order(expressions=[exp.Ordered(this=pid)])
    )
    # `WITH x AS MATERIALIZED (...)`: computed once however often it is read (Spark has no such
    # hint; the Spark engine persists shared CTEs itself)
    materialized_ctes: bool = True


def _double(e: exp.Expression) -> exp.Expression:
    return exp.cast(e, exp.DataType.build("DOUBLE"))


def _regexp_like(e: exp.Expression, pattern: str) -> exp.Expression:
    return exp.RegexpLike(this=e, expression=s(pattern))


def _safe_num_by_regex(e: exp.Expression) -> exp.Expression:
    return exp.Case(ifs=[exp.If(this=_regexp_like(e, NUMBER_RE), true=_double(e))])


DIALECTS: dict[str, Dialect] = {
    "duckdb": Dialect(
        name="duckdb",
        sqlglot="duckdb",
        json_text=lambda col, parts: call(
            "json_extract_string", col, s(_json_path_dollar(parts, brackets=False))
        ),
        json_scalar=lambda col: call("json_extract_string", col, s("$")),
        epoch_us=lambda ts: call("epoch_us", ts),
        to_num=lambda e: exp.TryCast(this=e, to=exp.DataType.build("DOUBLE"), safe=True),
        json_string=lambda e: exp.cast(call("to_json", e), exp.DataType.build("VARCHAR")),
        strip_nonalnum=lambda e: call("regexp_replace", e, s("[^A-Za-z0-9]"), s(""), s("g")),
    ),
    "postgres": Dialect(
        name="postgres",
        sqlglot="postgres",
        # `#>>` reads a path of json and jsonb alike
        json_text=lambda col, parts: exp.JSONBExtractScalar(
            this=col, expression=s("{" + ",".join(parts) + "}")
        ),
        json_scalar=lambda col: exp.JSONBExtractScalar(this=col, expression=s("{}")),
        epoch_us=lambda ts: exp.cast(
            exp.Mul(
                this=exp.Extract(this=exp.var("EPOCH"), expression=ts),
                expression=exp.Literal.number(1000000),
            ),
            exp.DataType.build("BIGINT"),
        ),
        to_num=_safe_num_by_regex,
        json_string=lambda e: exp.cast(
            call("to_json", exp.cast(e, exp.DataType.build("TEXT"))), exp.DataType.build("TEXT")
        ),
        strip_nonalnum=lambda e: call("regexp_replace", e, s("[^A-Za-z0-9]"), s(""), s("g")),
    ),
    "spark": Dialect(
        name="spark",
        sqlglot="spark",
        json_text=lambda col, parts: call(
            "get_json_object", col, s(_json_path_dollar(parts, brackets=True))
        ),
        json_scalar=lambda col: call(
            "get_json_object", exp.Concat(expressions=[s('{"v":'), col, s("}")]), s("$.v")
        ),
        epoch_us=lambda ts: call("unix_micros", ts),
        to_num=lambda e: exp.TryCast(this=e, to=exp.DataType.build("DOUBLE"), safe=True),
        # to_json of a one-element array, without its brackets: a JSON string of the text
        json_string=lambda e: call(
            "regexp_extract",
            call("to_json", call("array", e)),
            s(r"^\[(.*)\]$"),
            exp.Literal.number(1),
        ),
        strip_nonalnum=lambda e: call("regexp_replace", e, s("[^A-Za-z0-9]"), s("")),
        person_key=lambda pid: pid,
        materialized_ctes=False,
    ),
}


def _replace(node: exp.Expression, d: Dialect) -> exp.Expression:
    if not isinstance(node, exp.Anonymous):
        return node
    name = str(node.this)
    if not name.startswith("LR_"):
        return node
    # its arguments first: `transform` does not visit what a replacement returns
    args = [a.transform(lambda n: _replace(n, d), copy=False) for a in node.expressions]
    if name == "LR_JSON_TEXT":
        return d.json_text(args[0], _parts(args[1:]))
    if name == "LR_JSON_SCALAR":
        return d.json_scalar(args[0])
    if name == "LR_EPOCH_US":
        return d.epoch_us(args[0])
    if name == "LR_TO_NUM":
        return d.to_num(args[0])
    if name == "LR_JSON_STRING":
        return d.json_string(args[0])
    if name == "LR_STRIP_NONALNUM":
        return d.strip_nonalnum(args[0])
    if name == "LR_PERSON_KEY":
        return d.person_key(args[0])
    raise ValueError(f"unknown placeholder {name}")  # pragma: no cover - compiler bug


def lower(tree: exp.Expression, engine: str) -> exp.Expression:
    """The AST with every placeholder replaced by `engine`'s spelling."""
    d = DIALECTS[engine]
    out = tree.copy().transform(lambda n: _replace(n, d), copy=False)
    if not d.materialized_ctes:
        for cte in out.find_all(exp.CTE):
            cte.set("materialized", None)
    return out


def render(tree: exp.Expression, engine: str, *, pretty: bool = True) -> str:
    if engine not in DIALECTS:
        raise ValueError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    return lower(tree, engine).sql(dialect=DIALECTS[engine].sqlglot, pretty=pretty)


def parse_ours(sql: str) -> exp.Expression:
    """Parse SQL text *we* wrote (constant templates), never user text."""
    return sqlglot.parse_one(sql, read="duckdb")
