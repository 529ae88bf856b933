"""PostgreSQL: the shared-server engine (psycopg 3).

    PostgresEngine(dsn, schema=None)
      execute / query        one connection per thread, autocommit outside `transaction()`
      query_arrow            COPY (query) TO STDOUT as CSV, parsed by pyarrow with the column
                             types the server describes — no Python object per value
      append                 the Arrow table written as CSV by pyarrow, loaded with COPY FROM STDIN
      transaction            BEGIN/COMMIT on the thread's connection; nested blocks are savepoints

Placeholders are `?` as on every engine; they are turned into psycopg's `%s` outside string
literals, quoted identifiers and comments. Because `?` is a placeholder, PostgreSQL's JSONB
operators `?`, `?|` and `?&` cannot appear in SQL run with parameters: use `jsonb_exists()`,
`jsonb_exists_any()` and `jsonb_exists_all()`.

Every connection runs with `TimeZone=UTC` and `DateStyle=ISO`; JSON and JSONB come back as text,
as they do from DuckDB (JSONB normalises spacing and key order, so compare parsed values).
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
import psycopg.errors
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import ClientCursor, pq
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.string import TextLoader

from ..errors import StoreError
from .copy import prepare_arrow_for_load
from .engine import Engine

# PostgreSQL type OID -> the Arrow type its CSV text is parsed into. Anything not listed
# (uuid, interval, arrays, bytea, ...) arrives as its text form.
_ARROW_BY_OID: dict[int, pa.DataType] = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int16(),
    23: pa.int32(),
    26: pa.int64(),  # oid
    700: pa.float32(),
    701: pa.float64(),
    1082: pa.date32(),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us", tz="UTC"),
}
_NUMERIC_OID = 1700
_COPY_CHUNK_ROWS = 64 * 1024


def redact(dsn: str) -> str:
    """The DSN without its password, for messages."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparsable DSN>"
    parts.pop("password", None)
    host = parts.get("host", "localhost")
    port = parts.get("port", "5432")
    return f"{parts.get('user', '')}@{host}:{port}/{parts.get('dbname', '')}".lstrip("@")


def with_dbname(dsn: str, dbname: str) -> str:
    """The same server and credentials, another database."""
    return make_conninfo(dsn, dbname=dbname)


@lru_cache(maxsize=512)
def qmark_to_format(sql: str) -> str:
    """Turn `?` placeholders into `%s` (and a literal `%` into `%%`), leaving alone string
    literals ('…', E'…', $tag$…$tag$), quoted identifiers and comments."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c == "'":
            escapes = (
                i > 0
                and sql[i - 1] in "eE"
                and (i < 2 or not (sql[i - 2].isalnum() or sql[i - 2] == "_"))
            )
            j = i + 1
            while j < n:
                if escapes and sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == "'":
                    if j + 1 < n and sql[j + 1] == "'":
                        j += 2
                        continue
                    break
                j += 1
            out.append(sql[i : j + 1].replace("%", "%%"))
            i = j + 1
        elif c == '"':
            j = sql.find('"', i + 1)
            j = n - 1 if j < 0 else j
            out.append(sql[i : j + 1].replace("%", "%%"))
            i = j + 1
        elif c == "-" and sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out.append(sql[i:j].replace("%", "%%"))
            i = j
        elif c == "/" and sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(sql[i:j].replace("%", "%%"))
            i = j
        elif (
            c == "$"
            and (m := re.match(r"\$([A-Za-z_][A-Za-z_0-9]*)?\$", sql[i:]))
            and not (i > 0 and (sql[i - 1].isalnum() or sql[i - 1] == "_"))
        ):
            tag = m.group(0)
            j = sql.find(tag, i + len(tag))
            j = n if j < 0 else j + len(tag)
            out.append(sql[i:j].replace("%", "%%"))
            i = j
        elif c == "?":
            out.append("%s")
            i += 1
        elif c == "%":
            out.append("%%")
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


class PostgresEngine(Engine):
    name = "postgres"
    dialect = "postgres"
    transactional = True
    type_names = {
        "text": "TEXT",
        "double": "DOUBLE PRECISION",
        "bigint": "BIGINT",
        "boolean": "BOOLEAN",
        "timestamp": "TIMESTAMP",
        "json": "JSONB",
    }

    def __init__(self, dsn: str, *, schema: str | None = None, connect_timeout: int = 10) -> None:
        """Connect to `dsn`; with `schema`, work in that schema (created if missing)."""
        self.dsn = dsn
        self.schema = schema
        self.connect_timeout = connect_timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[psycopg.Connection] = []
        self.conn  # noqa: B018 - connect now, so a wrong DSN fails at open, not at first use

    # -- connections ------------------------------------------------------------------------

    @property
    def conn(self) -> psycopg.Connection:
        """This thread's connection (psycopg connections must not be shared by concurrent
        transactions, so each thread gets its own, like DuckDB cursors)."""
        c = getattr(self._local, "conn", None)
        if c is None or c.closed:
            c = self._local.conn = self._connect()
        return c

    def _connect(self) -> psycopg.Connection:
        try:
            conn = psycopg.connect(
                self.dsn,
                autocommit=True,
                connect_timeout=self.connect_timeout,
                application_name="leadrefinery",
            )
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to PostgreSQL at {redact(self.dsn)}: {str(exc).strip()}. "
                "Check LEADREFINERY_PG_DSN and that the server is running."
            ) from exc
        for name in ("json", "jsonb"):  # JSON as text, as DuckDB returns it
            conn.adapters.register_loader(name, TextLoader)
        try:
            conn.execute("SET TIME ZONE 'UTC'")
            conn.execute("SET DateStyle TO ISO, YMD")
            if self.schema:
                ident = pgsql.Identifier(self.schema)
                conn.execute(pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
                conn.execute(pgsql.SQL("SET search_path TO {}").format(ident))
        except psycopg.Error as exc:
            conn.close()
            raise StoreError(f"cannot set up the PostgreSQL session: {exc}") from exc
        with self._lock:
            self._connections.append(conn)
        return conn

    # -- running SQL ------------------------------------------------------------------------

    def _error(self, exc: psycopg.Error, sql: str) -> StoreError:
        return StoreError(
            f"{type(exc).__name__}: {str(exc).strip()}\n-- while running:\n{sql[:2000]}"
        )

    def _cursor_run(self, sql: str, params: Sequence[Any] | None) -> psycopg.Cursor:
        cur = self.conn.cursor()
        try:
            if params is None:
                cur.execute(sql.encode())  # bytes: sent as is, no placeholder parsing
            else:
                cur.execute(qmark_to_format(sql), list(params))
        except psycopg.Error as exc:
            cur.close()
            raise self._error(exc, sql) from exc
        return cur

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        self._cursor_run(sql, params).close()

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        cur = self._cursor_run(sql, params)
        try:
            return cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            raise self._error(exc, sql) from exc
        finally:
            cur.close()

    def _bind(self, sql: str, params: Sequence[Any] | None) -> str:
        """The statement with its parameters as literals (for COPY, which takes none)."""
        sql = sql.strip().rstrip(";")
        if params is None:
            return sql
        with ClientCursor(self.conn) as cur:
            try:
                return cur.mogrify(qmark_to_format(sql), list(params))
            except psycopg.Error as exc:
                raise self._error(exc, sql) from exc

    def _describe(self, sql: str) -> list[tuple[str, int, int]]:
        """(name, type oid, type modifier) of each result column, without running the query."""
        pgconn = self.conn.pgconn
        with self.conn.lock:
            res = pgconn.prepare(b"", sql.encode())
            if res.status != pq.ExecStatus.COMMAND_OK:
                error = psycopg.errors.error_from_result(res, encoding=self.conn.info.encoding)
                raise self._error(error, sql) from error
            res = pgconn.describe_prepared(b"")
            if res.status != pq.ExecStatus.COMMAND_OK:  # pragma: no cover - after a good prepare
                raise StoreError(f"cannot describe the query\n-- while running:\n{sql[:2000]}")
            return [
                ((res.fname(i) or b"").decode(), res.ftype(i), res.fmod(i))
                for i in range(res.nfields)
            ]

    @staticmethod
    def _arrow_type(oid: int, fmod: int) -> pa.DataType:
        if oid == _NUMERIC_OID:
            if fmod >= 4:  # NUMERIC(p, s): keep it exact
                precision, scale = ((fmod - 4) >> 16) & 0xFFFF, (fmod - 4) & 0xFFFF
                if precision <= 38:
                    return pa.decimal128(precision, scale)
            return (
                pa.float64()
            )  # unconstrained NUMERIC (e.g. SUM(bigint)): cast in SQL if exactness matters
        return _ARROW_BY_OID.get(oid, pa.string())

    def query_arrow(self, sql: str, params: Sequence[Any] | None = None) -> pa.Table:
        bound = self._bind(sql, params)
        fields = self._describe(bound)
        if not fields:
            return pa.table({})
        names = [f"c{i}" for i in range(len(fields))]
        types = {
            n: self._arrow_type(oid, mod) for n, (_, oid, mod) in zip(names, fields, strict=True)
        }
        buf = io.BytesIO()
        try:
            with (
                self.conn.cursor() as cur,
                cur.copy(f"COPY ({bound}\n) TO STDOUT (FORMAT csv)") as copy,
            ):
                for chunk in copy:
                    buf.write(chunk)
        except psycopg.Error as exc:
            raise self._error(exc, sql) from exc
        schema = pa.schema([(n, types[n]) for n in names])
        if buf.tell() == 0:
            table = schema.empty_table()
        else:
            buf.seek(0)
            table = pacsv.read_csv(
                buf,
                read_options=pacsv.ReadOptions(column_names=names, block_size=16 << 20),
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    column_types=types,
                    null_values=[""],
                    true_values=["t"],
                    false_values=["f"],
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=False,  # "" is an empty string, bare is NULL
                ),
            )
        return table.rename_columns([name for name, _, _ in fields])

    # -- loading ----------------------------------------------------------------------------

    def append(self, table: str, data: pa.Table) -> None:
        if data.num_rows == 0:
            return
        data = prepare_arrow_for_load(data)
        cols = ", ".join(data.column_names)
        sql = f"COPY {table} ({cols}) FROM STDIN (FORMAT csv)"
        options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
        try:
            with self.conn.cursor() as cur, cur.copy(sql) as copy:
                for batch in data.to_batches(max_chunksize=_COPY_CHUNK_ROWS):
                    out = io.BytesIO()
                    pacsv.write_csv(batch, out, options)
                    copy.write(out.getbuffer())
        except psycopg.Error as exc:
            raise self._error(exc, sql) from exc
        except pa.ArrowException as exc:
            raise StoreError(f"cannot write these columns to {table}: {exc}") from exc

    def existing_columns(self, table: str) -> list[str]:
        rows = self.query(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
            [table],
        )
        return [r[0] for r in rows]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        try:
            with self.conn.transaction():
                yield
        except psycopg.Error as exc:  # raised by COMMIT itself
            raise StoreError(f"{type(exc).__name__}: {exc} (at commit)") from exc

    def close(self) -> None:
        with self._lock:
            conns, self._connections = self._connections, []
        for c in conns:
            c.close()
        self._local = threading.local()
