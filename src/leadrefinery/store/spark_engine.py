"""Apache Spark: the engine for event histories that outgrow one machine (pyspark).

    SparkEngine(warehouse, database=None, session=None)
      tables        Parquet tables at `warehouse/<database>/<table>` (explicit LOCATION, so the
                    files outlive the session and a new session re-attaches them on ensure_schema)
      execute       spark.sql with `?` positional parameters; DELETE is emulated (below)
      query_arrow   DataFrame.toArrow(); timestamps come back naive UTC, like DuckDB's
      append        Arrow -> DataFrame (Arrow-enabled) -> columns aligned and cast -> insertInto
      transaction   a no-op block (`transactional = False`): Parquet tables have no rollback
      shared CTEs   a compiled query's CTE read more than once (the events-per-person step)
                    is computed first, persisted, as a temporary view: Spark would otherwise
                    recompute it at every reference

Session settings, chosen on purpose (they are what make Spark agree with DuckDB and PostgreSQL):

- `spark.sql.session.timeZone=UTC`: TIMESTAMP values are UTC wall-clock times, as in the other
  engines' TIMESTAMP (without time zone).
- `spark.sql.ansi.enabled=true` (Spark 4's default, set explicitly): integer overflow, an invalid
  CAST and division by zero raise errors, as in PostgreSQL, instead of silently returning NULL.
  The SQL compiler must therefore guard divisions (`x / NULLIF(y, 0)`) on every engine.
- `local[2]`, a small driver memory, no UI, few shuffle partitions: a 2-core machine.

The literal rule for SQL that must give the same answer on every engine (for the compiler):
a non-integer literal such as `0.1` is an exact DECIMAL in Spark (and in DuckDB and PostgreSQL),
and decimal arithmetic types, precision and rounding differ per engine; `/` between integers
is integer division in PostgreSQL but not in Spark or DuckDB; `1e0` is DOUBLE in Spark but
NUMERIC in PostgreSQL. So every number in a scoring expression is emitted as
`CAST(<literal> AS DOUBLE)`, division has DOUBLE operands, and result columns are cast to their
logical type (DOUBLE / BIGINT). `tests/engines/test_engine_contract.py::test_literal_rule`
holds the proof.

Spark's Parquet tables cannot DELETE or UPDATE rows. `DELETE FROM t [WHERE c]` is emulated by
rewriting the table with the rows that do not match (materialised first with a local
checkpoint); UPDATE and MERGE are not supported. Each `append` writes new Parquet files, so many
tiny appends make many tiny files: batch writes.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import uuid
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlglot
from sqlglot import exp

from ..errors import MissingExtra, StoreError
from .copy import prepare_arrow_for_load
from .engine import Engine
from .schema import Table

_PANDAS_WARNING = ".*does not yet fully support pandas.*"


@contextmanager
def _quiet() -> Iterator[None]:
    """PySpark warns that it does not fully support pandas >= 3; we hand it Arrow, not pandas."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_PANDAS_WARNING, category=FutureWarning)
        yield


with _quiet():
    try:
        from py4j.protocol import Py4JError
        from pyspark.errors import PySparkException
        from pyspark.sql import DataFrame, SparkSession
        from pyspark.sql import functions as F
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingExtra("pyspark", "spark") from exc

_LOG4J = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
"""

DEFAULT_CONF: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.ansi.enabled": "true",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.sql.catalogImplementation": "in-memory",
    "spark.sql.sources.default": "parquet",
}


def start_session(
    warehouse: str | Path,
    *,
    master: str = "local[2]",
    driver_memory: str = "1g",
    conf: dict[str, str] | None = None,
) -> tuple[SparkSession, bool]:
    """Start (or join) the process's Spark session. Returns (session, started_here)."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    started = SparkSession.getActiveSession() is None
    log4j = Path(warehouse) / "log4j2.properties"
    log4j.parent.mkdir(parents=True, exist_ok=True)
    log4j.write_text(_LOG4J, encoding="utf-8")
    builder = (
        SparkSession.builder.master(master)
        .appName("leadrefinery")
        .config("spark.driver.memory", driver_memory)
        .config("spark.sql.warehouse.dir", str(Path(warehouse).resolve()))
        .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile=file:{log4j}")
    )
    for key, value in {**DEFAULT_CONF, **(conf or {})}.items():
        builder = builder.config(key, value)
    try:
        with _quiet():
            session = builder.getOrCreate()
    except Exception as exc:  # the JVM did not start: no java, no memory, ...
        raise StoreError(
            f"cannot start Spark ({master}): {exc}. Spark needs a Java 17+ runtime on PATH "
            "(Debian: apt-get install default-jre-headless)."
        ) from exc
    session.sparkContext.setLogLevel("ERROR")
    # PySpark logs every SQL error with its JVM stack before raising it; we raise StoreError.
    from pyspark.logger import PySparkLogger

    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        PySparkLogger.getLogger(name).setLevel(logging.CRITICAL)
    return session, started


def _quote_path(path: Path) -> str:
    return "'" + path.as_posix().replace("\\", "\\\\").replace("'", "\\'") + "'"


class SparkEngine(Engine):
    name = "spark"
    dialect = "spark"
    transactional = False
    type_names = {
        "text": "STRING",
        "double": "DOUBLE",
        "bigint": "BIGINT",
        "boolean": "BOOLEAN",
        "timestamp": "TIMESTAMP",
        "json": "STRING",
    }

    def __init__(
        self,
        warehouse: str | Path | None = None,
        *,
        database: str | None = None,
        session: SparkSession | None = None,
        master: str = "local[2]",
        driver_memory: str = "1g",
        conf: dict[str, str] | None = None,
    ) -> None:
        """Tables live in `warehouse/<database>/` (a temp dir, removed on close, if None).

        Pass `session` to share one JVM between engines (e.g. `root.newSession()`, which has
        its own current database and settings); otherwise the process's session is started or
        joined, and stopped on close only if this engine started it.
        """
        self._tmp: str | None = None
        if warehouse is None:
            warehouse = self._tmp = tempfile.mkdtemp(prefix="leadrefinery-spark-")
        self.warehouse = Path(warehouse).resolve()
        self.warehouse.mkdir(parents=True, exist_ok=True)
        if session is None:
            session, self._owns_session = start_session(
                self.warehouse, master=master, driver_memory=driver_memory, conf=conf
            )
        else:
            self._owns_session = False
        self.spark = session
        self.database = database or "default"
        if database:
            self._sql(f"CREATE DATABASE IF NOT EXISTS `{database}`")
            self.spark.catalog.setCurrentDatabase(database)

    # -- running SQL ------------------------------------------------------------------------

    def _wrap(self, exc: BaseException, sql: str) -> StoreError:
        text = exc.getMessage() if isinstance(exc, PySparkException) else str(exc)
        return StoreError(
            f"{type(exc).__name__}: {text.strip()[:2000]}\n-- while running:\n{sql[:2000]}"
        )

    def _sql(self, sql: str, params: Sequence[Any] | None = None) -> DataFrame:
        try:
            with _quiet():
                return self.spark.sql(sql, args=list(params) if params else None)
        except (PySparkException, Py4JError) as exc:
            raise self._wrap(exc, sql) from exc

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        stmt = self._parse_delete(sql)
        if stmt is not None:
            self._delete(stmt, sql, params)
            return
        with self._shared_ctes_cached(sql, params) as staged:
            self._sql(staged, params)

    def query_arrow(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        with self._shared_ctes_cached(sql, params) as staged:
            df = self._sql(staged, params)
            try:
                with _quiet():
                    table = df.toArrow()
            except (PySparkException, Py4JError) as exc:
                raise self._wrap(exc, sql) from exc
        return _naive_utc(table)

    # -- CTEs read more than once, computed once ------------------------------------------------

    @contextmanager
    def _shared_ctes_cached(self, sql: str, params: Sequence[Any] | None) -> Iterator[str]:
        """`sql` with each CTE that is read more than once computed first, persisted, as a
        temporary view. Spark inlines a CTE at every reference, so a scoring query would
        otherwise recompute its events-per-person step once per rule group and abuse rule."""
        tree = None
        if not params and "lr_" in sql and "WITH" in sql.upper():
            try:
                tree = sqlglot.parse_one(sql, read="spark")
            except sqlglot.errors.ParseError:
                tree = None  # let Spark report it
        with_ = tree.find(exp.With) if tree is not None else None
        if tree is None or with_ is None:
            yield sql
            return
        cached: list[tuple[str, DataFrame]] = []
        try:
            for cte in list(with_.expressions):
                name = cte.alias
                refs = [t for t in tree.find_all(exp.Table) if t.name == name and not t.db]
                if len(refs) < 2 or not name.startswith("lr_"):  # only the compiler's own
                    continue
                view = f"lr_cached_{uuid.uuid4().hex[:12]}_{name}"
                upto = with_.expressions[: with_.expressions.index(cte) + 1]
                query = exp.Select(expressions=[exp.Star()]).from_(name)
                query.set("with_", exp.With(expressions=[c.copy() for c in upto]))
                df = self._sql(query.sql(dialect="spark")).persist()
                df.count()  # computed now, once
                df.createOrReplaceTempView(view)
                cached.append((view, df))
                for t in refs:
                    t.set("this", exp.to_identifier(view))
                    if not t.alias:
                        t.set("alias", exp.TableAlias(this=exp.to_identifier(name)))
                cte.pop()
            if not cached:
                yield sql
                return
            if not with_.expressions:
                with_.pop()
            yield tree.sql(dialect="spark")
        finally:
            for view, df in cached:
                self.spark.catalog.dropTempView(view)
                df.unpersist()

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        # through Arrow, so timestamps are naive UTC (collect() would use the local time zone)
        table = self.query_arrow(sql, params)
        if table.num_columns == 0:
            return []
        return list(zip(*(col.to_pylist() for col in table.columns), strict=True))

    # -- DELETE, which Parquet tables do not have ---------------------------------------------

    @staticmethod
    def _parse_delete(sql: str) -> exp.Delete | None:
        if sql.lstrip()[:6].upper() != "DELETE":
            return None
        try:
            stmt = sqlglot.parse_one(sql, read="spark")
        except sqlglot.errors.ParseError:
            return None  # let Spark report it
        return stmt if isinstance(stmt, exp.Delete) and not stmt.args.get("using") else None

    def _delete(self, stmt: exp.Delete, sql: str, params: Sequence[Any] | None) -> None:
        table = stmt.this.sql(dialect="spark")
        where = stmt.args.get("where")
        schema = self._table_schema(table, sql)
        if where is None:
            keep = self.spark.createDataFrame([], schema)
        else:
            cond = where.this.sql(dialect="spark")
            keep = self._sql(f"SELECT * FROM {table} WHERE NOT COALESCE(({cond}), FALSE)", params)
        try:
            # materialise the survivors, so the rewrite does not read the files it replaces
            keep.localCheckpoint(eager=True).write.insertInto(table, overwrite=True)
        except (PySparkException, Py4JError) as exc:
            raise self._wrap(exc, sql) from exc

    # -- tables -----------------------------------------------------------------------------

    def location(self, table: str) -> Path:
        return self.warehouse / self.database / table

    def create_table_sql(self, table: Table) -> str:
        cols = ", ".join(f"{c} {self.type_names[t]}" for c, t in table.columns)
        return (
            f"CREATE TABLE IF NOT EXISTS {table.name} ({cols}) "
            f"USING parquet LOCATION {_quote_path(self.location(table.name))}"
        )

    def _table_schema(self, table: str, sql: str = ""):
        try:
            return self.spark.table(table).schema
        except (PySparkException, Py4JError) as exc:
            raise self._wrap(exc, sql or f"-- the table {table}") from exc

    def existing_columns(self, table: str) -> list[str]:
        try:
            if not self.spark.catalog.tableExists(table):
                return []
        except (PySparkException, Py4JError) as exc:
            raise self._wrap(exc, f"-- looking up {table}") from exc
        return [f.name for f in self._table_schema(table)]

    def append(self, table: str, data: pa.Table) -> None:
        if data.num_rows == 0:
            return
        schema = self._table_schema(table, f"-- append to {table}")
        data = prepare_arrow_for_load(data)
        known = {f.name.lower() for f in schema}
        unknown = [c for c in data.column_names if c.lower() not in known]
        if unknown:
            raise StoreError(f"the table {table} has no column(s) {', '.join(unknown)}")
        # an all-null column has Arrow type null, which Spark cannot read from Arrow
        data = pa.table(
            [c.cast(pa.string()) if pa.types.is_null(c.type) else c for c in data.columns],
            names=data.column_names,
        )
        given = {c.lower(): c for c in data.column_names}
        try:
            with _quiet():
                df = self.spark.createDataFrame(data)
                cols = [
                    (
                        F.col(f"`{given[f.name.lower()]}`")
                        if f.name.lower() in given
                        else F.lit(None)
                    )
                    .cast(f.dataType)
                    .alias(f.name)
                    for f in schema
                ]
                df.select(*cols).write.insertInto(table)
        except (PySparkException, Py4JError, pa.ArrowException) as exc:
            raise self._wrap(exc, f"-- append {data.num_rows} rows to {table}") from exc

    @contextmanager
    def transaction(self) -> Iterator[None]:
        yield  # Parquet tables: no transactions (see `transactional`)

    def close(self) -> None:
        if self._owns_session:
            self.spark.stop()
            self._owns_session = False
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def _naive_utc(table: pa.Table) -> pa.Table:
    """Spark's TIMESTAMP arrives as timestamp[us, tz=UTC]; the store's timestamps are naive UTC."""
    cols = []
    changed = False
    for col in table.columns:
        t = col.type
        if pa.types.is_timestamp(t) and t.tz is not None:
            col = col.cast(pa.timestamp(t.unit, "UTC")).cast(pa.timestamp(t.unit))
            changed = True
        cols.append(col)
    return pa.table(cols, names=table.column_names) if changed else table
