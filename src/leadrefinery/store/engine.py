"""The engine interface every store backend implements.

An engine knows how to run SQL, fetch results as Arrow, bulk-append Arrow tables and which
sqlglot dialect it speaks. Differences between engines live in the small mappings each
implementation declares (`type_names`, `dialect`), not in `if engine == ...` elsewhere.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pyarrow as pa

from .schema import SCHEMA_VERSION, TABLES, Table


class Engine(ABC):
    name: str
    dialect: str  # sqlglot dialect name
    type_names: dict[str, str]  # logical type -> engine type
    # capabilities
    transactional: bool = True  # transaction() rolls back on error (False: a no-op block)
    # events can be loaded (files, `serve`): the loader's identity and profile SQL is DuckDB's
    ingests: bool = False

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None: ...

    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]: ...

    @abstractmethod
    def query_arrow(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table: ...

    @abstractmethod
    def append(self, table: str, data: pa.Table) -> None:
        """Bulk-append rows (columns matched by name; missing columns are NULL)."""

    @abstractmethod
    def existing_columns(self, table: str) -> list[str]: ...

    @abstractmethod
    @contextmanager
    def transaction(self) -> Iterator[None]: ...

    @abstractmethod
    def close(self) -> None: ...

    # -- shared behaviour -------------------------------------------------------------------

    def parse(self, sql: str) -> Any:
        """`sql` parsed once, for `query` and `execute` to run many times (with parameters);
        an engine that cannot keep a parsed statement gives the text back."""
        return sql

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        rows = self.query(sql, params)
        return rows[0][0] if rows else None

    def create_table_sql(self, table: Table) -> str:
        cols = ", ".join(f"{c} {self.type_names[t]}" for c, t in table.columns)
        return f"CREATE TABLE IF NOT EXISTS {table.name} ({cols})"

    def ensure_schema(self, tables: dict[str, Table] = TABLES) -> None:
        """Create missing tables and add missing columns (additive migrations)."""
        with self.transaction():
            for table in tables.values():
                self.execute(self.create_table_sql(table))
                have = set(self.existing_columns(table.name))
                for col, typ in table.columns:
                    if col not in have:
                        self.execute(
                            f"ALTER TABLE {table.name} ADD COLUMN {col} {self.type_names[typ]}"
                        )
            self.execute("DELETE FROM meta WHERE key = 'schema_version'")
            self.execute(
                "INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
            )
