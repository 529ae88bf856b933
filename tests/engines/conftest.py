"""Engines to test against: DuckDB always, PostgreSQL and Spark where available.

Fixtures
    duckdb_engine     a fresh in-memory DuckDB store (per test)
    postgres_engine   a fresh schema (per test) in a database created for this test session on
                      the server in LEADREFINERY_PG_DSN; skipped when that is not set
    spark_engine      one local Spark engine for the whole session (database `lr_session`);
                      skipped unless LEADREFINERY_SPARK=1 or CI=true (starting Spark is slow)
    engine            parametrised over the three, each fresh per test (marks: postgres, spark)

`scripts/test.sh` starts a throwaway PostgreSQL server and sets LEADREFINERY_PG_DSN; in CI it
also sets LEADREFINERY_SPARK=1. When an engine was asked for (the variable is set) but cannot
be reached, its tests fail instead of skipping: a broken service must not look like a pass.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from leadrefinery.store.duckdb_engine import DuckDBEngine
from leadrefinery.store.engine import Engine

PG_DSN_VAR = "LEADREFINERY_PG_DSN"


def spark_wanted() -> bool:
    """LEADREFINERY_SPARK=1 runs the Spark tests, =0 skips them; unset, they run in CI only."""
    flag = os.environ.get("LEADREFINERY_SPARK")
    if flag is not None:
        return flag == "1"
    return os.environ.get("CI", "").lower() == "true"


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


# -- DuckDB ---------------------------------------------------------------------------------


@pytest.fixture
def duckdb_engine() -> Iterator[DuckDBEngine]:
    engine = DuckDBEngine(None, memory_limit="1GB", threads=2)
    yield engine
    engine.close()


# -- PostgreSQL -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A database of its own for this test session, dropped at the end."""
    dsn = os.environ.get(PG_DSN_VAR)
    if not dsn:
        pytest.skip(
            f"no PostgreSQL server: {PG_DSN_VAR} is not set "
            "(scripts/test.sh starts a throwaway server and sets it)"
        )
    try:
        import psycopg
    except ImportError:
        pytest.fail(
            f"{PG_DSN_VAR} is set but psycopg is missing: pip install 'leadrefinery[postgres]'"
        )
    from leadrefinery.store.postgres_engine import redact, with_dbname

    name = _unique(f"lr_test_{os.getpid()}")
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        pytest.fail(f"{PG_DSN_VAR} is set but PostgreSQL at {redact(dsn)} refused: {exc}")
    yield with_dbname(dsn, name)
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_engine(postgres_dsn: str) -> Iterator[Engine]:
    from leadrefinery.store.postgres_engine import PostgresEngine

    schema = _unique("t")
    engine = PostgresEngine(postgres_dsn, schema=schema)
    yield engine
    try:
        engine.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        engine.close()


# -- Spark ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def spark_root(tmp_path_factory: pytest.TempPathFactory):
    """(session, warehouse dir): one local Spark for the whole test session."""
    if not spark_wanted():
        pytest.skip("Spark tests are slow: set LEADREFINERY_SPARK=1 to run them (CI does)")
    try:
        from leadrefinery.store.spark_engine import start_session
    except ImportError as exc:  # MissingExtra is not an ImportError; pyspark itself missing is
        pytest.fail(f"Spark tests were asked for but cannot import pyspark: {exc}")
    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    session, started = start_session(warehouse, driver_memory="1g")
    yield session, warehouse
    if started:
        session.stop()


@pytest.fixture(scope="session")
def spark_engine(spark_root) -> Iterator[Engine]:
    from leadrefinery.store.spark_engine import SparkEngine

    session, warehouse = spark_root
    engine = SparkEngine(warehouse, database="lr_session", session=session.newSession())
    yield engine
    engine.close()


@pytest.fixture
def fresh_spark_engine(spark_root) -> Iterator[Engine]:
    """A Spark engine with a database of its own, on the session's JVM."""
    from leadrefinery.store.spark_engine import SparkEngine

    session, warehouse = spark_root
    database = _unique("t")
    engine = SparkEngine(warehouse, database=database, session=session.newSession())
    yield engine
    engine.spark.sql(f"DROP DATABASE IF EXISTS `{database}` CASCADE")
    engine.close()


# -- every engine ---------------------------------------------------------------------------

_ENGINE_FIXTURES = {
    "duckdb": "duckdb_engine",
    "postgres": "postgres_engine",
    "spark": "fresh_spark_engine",
}


@pytest.fixture(
    params=[
        pytest.param("duckdb"),
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("spark", marks=pytest.mark.spark),
    ]
)
def engine(request: pytest.FixtureRequest) -> Engine:
    """Each engine in turn, with an empty namespace of its own."""
    return request.getfixturevalue(_ENGINE_FIXTURES[request.param])
