"""The contract every engine keeps, run against DuckDB, PostgreSQL and Spark alike.

What a caller of `Engine` may rely on whatever the engine: the schema is created and migrated
additively; every logical type survives append -> query_arrow with the same Arrow type; `?`
parameters; DELETE; rollback where the engine is `transactional`; driver errors arrive as
`StoreError` with the driver's error as `__cause__`; and numbers written by the literal rule
compute the same everywhere.
"""

from __future__ import annotations

import datetime as dt
import json
import math

import pyarrow as pa
import pytest
from sqlglot import exp

from leadrefinery.errors import StoreError
from leadrefinery.store.copy import ARROW_TYPES, copy_tables
from leadrefinery.store.duckdb_engine import DuckDBEngine
from leadrefinery.store.engine import Engine
from leadrefinery.store.schema import (
    BIGINT,
    BOOLEAN,
    DOUBLE,
    JSON,
    SCHEMA_VERSION,
    TABLES,
    TEXT,
    TIMESTAMP,
    Table,
)

META = {"meta": TABLES["meta"]}

TYPES_TABLE = Table(
    "lr_types",
    (
        ("id", BIGINT),
        ("t", TEXT),
        ("d", DOUBLE),
        ("b", BOOLEAN),
        ("ts", TIMESTAMP),
        ("j", JSON),
    ),
)

ROWS = [
    # id, text, double, boolean, timestamp, json
    (
        1,
        "plain",
        0.1,
        True,
        dt.datetime(2024, 1, 31, 23, 59, 59, 123456),
        '{"a": 1, "b": [1, 2.5, null]}',
    ),
    (2, "", -0.0, False, dt.datetime(1969, 7, 20, 20, 17, 40), "[]"),
    (3, None, None, None, None, None),
    (
        4,
        'quote " comma , newline \n tab \t back \\ slash',
        1e300,
        True,
        dt.datetime(2100, 1, 1),
        '"just a string"',
    ),
    (
        5,
        "ünïcødé — 漢字 🚀",
        -123456.789,
        False,
        dt.datetime(2000, 2, 29, 12),
        '{"nested": {"x": "é", "y": true}}',
    ),
    (2**62, "NULL", float("inf"), True, dt.datetime(1970, 1, 1), "3.25"),
    (-(2**62), "?", float("-inf"), False, dt.datetime(2024, 6, 1, 0, 0, 0, 1), "{}"),
]


def types_arrow(rows=ROWS) -> pa.Table:
    cols = list(zip(*rows, strict=True))
    return pa.table(
        {
            name: pa.array(list(col), ARROW_TYPES[typ])
            for (name, typ), col in zip(TYPES_TABLE.columns, cols, strict=True)
        }
    )


def ensure(engine: Engine, *tables: Table) -> None:
    engine.ensure_schema({**META, **{t.name: t for t in tables}})


def normalise_json(values: list) -> list:
    return [None if v is None else json.loads(v) for v in values]


# -- schema ---------------------------------------------------------------------------------


def test_ensure_schema_creates_every_table(engine: Engine) -> None:
    engine.ensure_schema()
    for name, table in TABLES.items():
        assert sorted(engine.existing_columns(name)) == sorted(table.column_names), name
    engine.ensure_schema()  # idempotent: nothing to add, one version row
    assert engine.query("SELECT value FROM meta WHERE key = 'schema_version'") == [
        (str(SCHEMA_VERSION),)
    ]


def test_existing_columns_of_a_missing_table_is_empty(engine: Engine) -> None:
    assert engine.existing_columns("lr_no_such_table") == []


def test_additive_migration_adds_a_column(engine: Engine) -> None:
    v1 = Table("lr_migrate", (("id", TEXT), ("n", BIGINT)))
    ensure(engine, v1)
    engine.append("lr_migrate", pa.table({"id": ["old"], "n": pa.array([1], pa.int64())}))

    v2 = Table("lr_migrate", (("id", TEXT), ("n", BIGINT), ("score", DOUBLE), ("extra", JSON)))
    ensure(engine, v2)
    assert engine.existing_columns("lr_migrate") == ["id", "n", "score", "extra"]

    engine.append("lr_migrate", pa.table({"id": ["new"], "score": [2.5], "extra": ['{"k": 1}']}))
    got = engine.query_arrow("SELECT id, n, score, extra FROM lr_migrate ORDER BY id").to_pydict()
    assert got["id"] == ["new", "old"]
    assert got["n"] == [None, 1]  # a column the appended data lacks is NULL
    assert got["score"] == [2.5, None]  # the old row has NULL in the added column
    assert normalise_json(got["extra"]) == [{"k": 1}, None]


# -- data -----------------------------------------------------------------------------------


def test_append_and_query_arrow_round_trip_every_logical_type(engine: Engine) -> None:
    ensure(engine, TYPES_TABLE)
    engine.append("lr_types", types_arrow())
    got = engine.query_arrow("SELECT id, t, d, b, ts, j FROM lr_types ORDER BY id")

    # the same Arrow type for each logical type, on every engine
    assert got.schema.types == [ARROW_TYPES[t] for _, t in TYPES_TABLE.columns]
    want = types_arrow(sorted(ROWS, key=lambda r: r[0])).to_pydict()
    have = got.to_pydict()
    for col in ("id", "t", "b", "ts"):
        assert have[col] == want[col], col
    assert [None if v is None else (v, math.copysign(1, v)) for v in have["d"]] == [
        None if v is None else (v, math.copysign(1, v)) for v in want["d"]
    ]
    # JSON comes back as JSON text; PostgreSQL's JSONB normalises spacing and key order
    assert normalise_json(have["j"]) == normalise_json(want["j"])


def test_query_returns_python_values(engine: Engine) -> None:
    ensure(engine, TYPES_TABLE)
    engine.append("lr_types", types_arrow(ROWS[:2]))
    rows = engine.query("SELECT id, t, d, b, ts FROM lr_types ORDER BY id")
    assert rows == [r[:5] for r in ROWS[:2]]
    assert engine.scalar("SELECT count(*) FROM lr_types") == 2
    assert engine.query("SELECT id FROM lr_types WHERE id < 0") == []


def test_append_matches_columns_by_name(engine: Engine) -> None:
    ensure(engine, TYPES_TABLE)
    utc_plus_2 = dt.timezone(dt.timedelta(hours=2))
    data = pa.table(
        {
            "j": pa.array([{"a": [1, 2]}, None]),  # nested Arrow values become JSON text
            "ts": pa.array(
                [dt.datetime(2024, 5, 1, 12, tzinfo=utc_plus_2), None],
                pa.timestamp("ms", tz="+02:00"),
            ),
            "id": pa.array([10, 11], pa.int32()),
            "t": pa.array(["x", "y"]).dictionary_encode(),
        }
    )
    engine.append("lr_types", data)
    engine.append("lr_types", pa.table({"id": pa.array([], pa.int64())}))  # empty: a no-op
    got = engine.query_arrow("SELECT id, t, d, b, ts, j FROM lr_types ORDER BY id").to_pydict()
    assert got["id"] == [10, 11]
    assert got["t"] == ["x", "y"]
    assert got["d"] == [None, None] and got["b"] == [None, None]
    assert got["ts"] == [dt.datetime(2024, 5, 1, 10), None]  # the instant, as naive UTC
    assert normalise_json(got["j"]) == [{"a": [1, 2]}, None]


def test_parameters(engine: Engine) -> None:
    ensure(engine, TYPES_TABLE)
    engine.append("lr_types", types_arrow())
    assert engine.query("SELECT t FROM lr_types WHERE id = ?", [1]) == [("plain",)]
    # a `?` inside a string literal is not a placeholder
    assert engine.query("SELECT t, '?' FROM lr_types WHERE t = ?", ["?"]) == [("?", "?")]
    got = engine.query_arrow(
        "SELECT id FROM lr_types WHERE ts >= ? AND b = ? ORDER BY id",
        [dt.datetime(2024, 1, 1), True],
    )
    assert got.column("id").to_pylist() == [1, 4]
    engine.execute("INSERT INTO meta VALUES (?, ?)", ["k", "it's 100%"])
    assert engine.query("SELECT value FROM meta WHERE key = ?", ["k"]) == [("it's 100%",)]


def test_delete(engine: Engine) -> None:
    ensure(engine, TYPES_TABLE)
    engine.append("lr_types", types_arrow())
    engine.execute("DELETE FROM lr_types WHERE id > ? OR t IS NULL", [2])
    assert engine.query("SELECT id FROM lr_types ORDER BY id") == [(-(2**62),), (1,), (2,)]
    engine.execute("DELETE FROM lr_types")
    assert engine.scalar("SELECT count(*) FROM lr_types") == 0


# -- transactions ---------------------------------------------------------------------------


def test_transaction_commits_and_rolls_back(engine: Engine) -> None:
    ensure(engine, TYPES_TABLE)
    with engine.transaction():
        engine.append("lr_types", types_arrow(ROWS[:1]))
    assert engine.scalar("SELECT count(*) FROM lr_types") == 1

    with pytest.raises(RuntimeError), engine.transaction():
        engine.append("lr_types", types_arrow(ROWS[1:3]))
        engine.execute("INSERT INTO meta VALUES ('inside', 'tx')")
        raise RuntimeError("boom")

    if engine.transactional:
        assert engine.scalar("SELECT count(*) FROM lr_types") == 1
        assert engine.query("SELECT * FROM meta WHERE key = 'inside'") == []
    else:  # documented: the block is a no-op, the writes stay
        assert engine.scalar("SELECT count(*) FROM lr_types") == 3


def test_failed_statement_inside_a_transaction_rolls_back(engine: Engine) -> None:
    if not engine.transactional:
        pytest.skip(f"{engine.name} has no transactions")
    ensure(engine, TYPES_TABLE)
    with pytest.raises(StoreError), engine.transaction():
        engine.append("lr_types", types_arrow(ROWS[:2]))
        engine.execute("SELECT * FROM lr_no_such_table")
    assert engine.scalar("SELECT count(*) FROM lr_types") == 0
    engine.append("lr_types", types_arrow(ROWS[:1]))  # the engine is usable afterwards
    assert engine.scalar("SELECT count(*) FROM lr_types") == 1


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda e: e.execute("SELEC nonsense"),
        lambda e: e.execute("SELECT * FROM lr_no_such_table"),
        lambda e: e.query("SELECT * FROM lr_no_such_table WHERE x = ?", [1]),
        lambda e: e.query_arrow("SELECT no_such_column FROM meta"),
        lambda e: e.query_arrow("SELECT * FROM lr_no_such_table WHERE x = ?", [1]),
        lambda e: e.append("lr_no_such_table", pa.table({"a": [1]})),
    ],
    ids=[
        "syntax",
        "execute-missing-table",
        "query-missing-table",
        "missing-column",
        "arrow-params",
        "append-missing-table",
    ],
)
def test_driver_errors_wrap_into_store_error(engine: Engine, call) -> None:
    ensure(engine)
    with pytest.raises(StoreError) as info:
        call(engine)
    assert info.value.__cause__ is not None  # the driver's own error, for debugging
    assert "while running" in str(info.value) or "lr_no_such_table" in str(info.value)


def test_append_of_an_unknown_column_is_a_store_error(engine: Engine) -> None:
    ensure(engine, TYPES_TABLE)
    with pytest.raises(StoreError, match="nope"):
        engine.append("lr_types", pa.table({"id": [1], "nope": ["x"]}))


# -- the literal rule -----------------------------------------------------------------------


def _double(value: str) -> exp.Expression:
    return exp.cast(exp.Literal.number(value), exp.DataType.build("DOUBLE"))


def test_literal_rule(engine: Engine) -> None:
    """Numbers cast to DOUBLE compute the same on every engine; bare literals do not."""
    ensure(engine)
    portable = exp.select(
        exp.Mul(this=_double("0.1"), expression=_double("3")).as_("a"),
        exp.Div(this=_double("7"), expression=_double("2")).as_("b"),
        exp.Add(this=_double("0.1"), expression=_double("0.2")).as_("c"),
    )
    got = engine.query_arrow(portable.sql(dialect=engine.dialect))
    assert got.schema.types == [pa.float64()] * 3
    assert got.to_pylist() == [{"a": 0.1 * 3, "b": 3.5, "c": 0.1 + 0.2}]

    # why the rule exists: the same bare text means different things per engine
    naive = engine.query_arrow("SELECT 0.1 * 3 AS a, 7 / 2 AS b")
    if engine.dialect in ("duckdb", "spark"):
        assert pa.types.is_decimal(naive.schema.field("a").type)  # engine-specific precision
    assert naive.column("b").to_pylist() == [
        {"duckdb": 3.5, "spark": 3.5, "postgres": 3}[engine.dialect]
    ]


# -- copying between engines ----------------------------------------------------------------

JSON_TYPE_SQL = {
    "duckdb": "SELECT typeof(properties) FROM events LIMIT 1",
    "postgres": "SELECT pg_typeof(properties)::text FROM events LIMIT 1",
    "spark": "SELECT typeof(properties) FROM events LIMIT 1",
}
JSON_TYPE = {"duckdb": "JSON", "postgres": "jsonb", "spark": "string"}
COPIED = {name: TABLES[name] for name in ("meta", "events", "people")}


def _sample_events() -> pa.Table:
    return pa.table(
        {
            "message_id": ["m1", "m2", "m3"],
            "type": ["track", "identify", "page"],
            "event": ["Signed Up", None, "Pricing"],
            "user_id": ["u1", "u1", None],
            "anonymous_id": ["a1", None, "a2"],
            "ts": pa.array(
                [dt.datetime(2024, 3, 1, 9, 30, 0, 250000), dt.datetime(2024, 3, 1, 9, 31), None],
                pa.timestamp("us"),
            ),
            "properties": ['{"plan": "pro", "seats": 5}', None, '{"path": "/pricing"}'],
            "traits": [None, '{"email": "a@b.co", "tags": ["x"]}', None],
            "source": ["web", "web", "web"],
        }
    )


def test_copy_tables_from_duckdb(engine: Engine) -> None:
    src = DuckDBEngine(None)
    try:
        src.ensure_schema(COPIED)
        src.append("events", _sample_events())
        src.append(
            "people",
            pa.table(
                {
                    "person_id": ["p1"],
                    "webmail": [True],
                    "first_seen": pa.array([dt.datetime(2024, 1, 1)], pa.timestamp("us")),
                }
            ),
        )
        engine.ensure_schema(COPIED)
        copied = copy_tables(src, engine, ["events", "people"])
        assert copied == {"events": 3, "people": 1}
        copy_tables(src, engine, ["events"], replace=True)  # replace: still 3, not 6

        cols = ", ".join(TABLES["events"].column_names)
        want = src.query_arrow(f"SELECT {cols} FROM events ORDER BY message_id")
        have = engine.query_arrow(f"SELECT {cols} FROM events ORDER BY message_id")
        assert have.schema == want.schema
        for name in want.column_names:
            w, h = want.column(name).to_pylist(), have.column(name).to_pylist()
            if dict(TABLES["events"].columns)[name] == JSON:
                w, h = normalise_json(w), normalise_json(h)
            assert h == w, name
        assert engine.scalar(JSON_TYPE_SQL[engine.dialect]) == JSON_TYPE[engine.dialect]
        assert engine.query("SELECT person_id, webmail FROM people") == [("p1", True)]
    finally:
        src.close()


def test_copy_tables_needs_the_destination_schema(engine: Engine) -> None:
    src = DuckDBEngine(None)
    try:
        src.ensure_schema(COPIED)
        with pytest.raises(StoreError, match="ensure_schema"):
            copy_tables(src, engine, ["events"])
    finally:
        src.close()
