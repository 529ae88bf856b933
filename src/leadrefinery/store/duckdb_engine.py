"""Embedded DuckDB: the default engine (one file in the project, zero set-up)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from ..errors import StoreBusy, StoreError
from .engine import Engine


class DuckDBEngine(Engine):
    name = "duckdb"
    dialect = "duckdb"
    ingests = True
    type_names = {
        "text": "VARCHAR",
        "double": "DOUBLE",
        "bigint": "BIGINT",
        "boolean": "BOOLEAN",
        "timestamp": "TIMESTAMP",
        "json": "JSON",
    }

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        read_only: bool = False,
        memory_limit: str = "2GB",
        threads: int = 2,
        owner_hint: str = "",
    ) -> None:
        self.path = str(path) if path else ":memory:"
        self.read_only = read_only
        try:
            self.con = duckdb.connect(
                self.path,
                read_only=read_only,
                config={
                    "memory_limit": memory_limit,
                    "threads": threads,
                    # we never rely on physical row order; dropping it saves memory and time
                    "preserve_insertion_order": False,
                },
            )
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise StoreBusy(
                    f"the store {self.path} is in use by another process{owner_hint}. "
                    "Stop that process, or send events through the running server's HTTP API."
                ) from exc
            raise StoreError(f"cannot open the store {self.path}: {exc}") from exc
        self._local = threading.local()
        self._lock = threading.RLock()

    # DuckDB connections are not thread-safe; each thread gets its own cursor on the same
    # database, so the server's loader and request handlers can work side by side.
    @property
    def cur(self) -> duckdb.DuckDBPyConnection:
        c = getattr(self._local, "cur", None)
        if c is None:
            c = self._local.cur = self.con.cursor()
        return c

    def _run(self, sql: str, params: Sequence[Any] | None) -> duckdb.DuckDBPyConnection:
        try:
            return self.cur.execute(sql, params) if params is not None else self.cur.execute(sql)
        except duckdb.Error as exc:
            raise _failed(exc, sql) from exc

    def parse(self, sql: str) -> duckdb.Statement:
        # parsing the scoring query's 50 KB takes DuckDB some 30 ms of the 130 it runs in
        (stmt,) = duckdb.extract_statements(sql)
        return stmt

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        self._run(sql, params)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        return self._run(sql, params).fetchall()

    def query_arrow(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        # the relation API streams straight into Arrow (a DB-API result would copy the rows)
        try:
            return self.cur.sql(sql, params=params).to_arrow_table()
        except duckdb.Error as exc:
            raise _failed(exc, sql) from exc

    def query_df(self, sql: str, params: Sequence[Any] | None = None):  # -> pandas.DataFrame
        return self._run(sql, params).df()

    def register(self, name: str, data: pa.Table) -> None:
        self.cur.register(name, data)

    def unregister(self, name: str) -> None:
        self.cur.unregister(name)

    def append(self, table: str, data: pa.Table) -> None:
        view = f"_append_{table}"
        self.register(view, data)
        try:
            cols = ", ".join(data.column_names)
            self.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {view}")
        finally:
            self.unregister(view)

    def existing_columns(self, table: str) -> list[str]:
        rows = self.query(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]
        )
        return [r[0] for r in rows]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if getattr(self._local, "in_tx", False):  # nested: join the outer transaction
            yield
            return
        self._local.in_tx = True
        self.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.execute("ROLLBACK")
            raise
        else:
            self.execute("COMMIT")
        finally:
            self._local.in_tx = False

    def close(self) -> None:
        self.con.close()


def _failed(exc: duckdb.Error, sql: str | duckdb.Statement) -> StoreError:
    text = getattr(sql, "query", sql)  # (a parsed statement: its text)
    return StoreError(f"{type(exc).__name__}: {exc}\n-- while running:\n{text[:2000]}")
