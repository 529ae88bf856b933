"""Moving rows between engines through Arrow, and the Arrow conventions every engine shares.

    copy_tables(src, dst, tables)   SELECT from `src` as Arrow -> logical Arrow types -> dst.append
    to_logical(data, table)         cast an Arrow table to the logical types of a schema `Table`
    prepare_arrow_for_load(data)    what every engine's `append` does to its input first

The logical types travel as these Arrow types (what DuckDB returns, and what every engine's
`query_arrow` returns for a stored column):

    text -> string   double -> float64   bigint -> int64   boolean -> bool
    timestamp -> timestamp[us] (naive, UTC)   json -> string (JSON text)

JSON therefore arrives as text, and each engine's `append` stores it in its own JSON type: JSONB in
PostgreSQL, JSON in DuckDB, STRING in Spark (which has no JSON type; query it with
`get_json_object` / `from_json`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import orjson
import pyarrow as pa

from ..errors import StoreError
from .schema import BIGINT, BOOLEAN, DOUBLE, JSON, TABLES, TEXT, TIMESTAMP, Table

if TYPE_CHECKING:
    from .engine import Engine

ARROW_TYPES: dict[str, pa.DataType] = {
    TEXT: pa.string(),
    DOUBLE: pa.float64(),
    BIGINT: pa.int64(),
    BOOLEAN: pa.bool_(),
    TIMESTAMP: pa.timestamp("us"),
    JSON: pa.string(),
}


def _json_text(column: pa.ChunkedArray) -> pa.Array:
    def dump(v: object) -> str | None:
        return None if v is None else orjson.dumps(v, default=str).decode()

    return pa.array([dump(v) for v in column.to_pylist()], pa.string())


def _is_nested(t: pa.DataType) -> bool:
    return (
        pa.types.is_struct(t)
        or pa.types.is_map(t)
        or pa.types.is_list(t)
        or pa.types.is_large_list(t)
        or pa.types.is_fixed_size_list(t)
        or pa.types.is_list_view(t)
        or pa.types.is_large_list_view(t)
    )


def _normalize_column(col: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    t = col.type
    if isinstance(t, pa.BaseExtensionType):
        col = pa.chunked_array([c.storage for c in col.chunks], t.storage_type)
        t = col.type
    if pa.types.is_dictionary(t):
        col = col.cast(t.value_type)
        t = col.type
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return col.cast(pa.string())
    if pa.types.is_timestamp(t):
        if t.tz is not None:  # the instant, as a naive UTC wall-clock time
            col = col.cast(pa.timestamp(t.unit, "UTC")).cast(pa.timestamp(t.unit))
        return col.cast(pa.timestamp("us"), safe=False) if t.unit != "us" else col
    if _is_nested(t):
        return _json_text(col)
    return col


def prepare_arrow_for_load(data: pa.Table) -> pa.Table:
    """Normalise an Arrow table before an engine loads it: dictionaries decoded, extension
    types (such as `arrow.json`) to their storage, timestamps to naive UTC microseconds, nested
    values (structs, lists, maps) to JSON text."""
    cols = [_normalize_column(c) for c in data.columns]
    return pa.table(cols, names=data.column_names)


def to_logical(data: pa.Table, table: Table) -> pa.Table:
    """Cast the columns of `data` that `table` declares to their logical Arrow types."""
    data = prepare_arrow_for_load(data)
    types = dict(table.columns)
    cols = []
    for name, col in zip(data.column_names, data.columns, strict=True):
        logical = types.get(name)
        if logical is None:
            cols.append(col)
            continue
        want = ARROW_TYPES[logical]
        if col.type == want:
            cols.append(col)
        elif logical == JSON:
            cols.append(_json_text(col) if not pa.types.is_string(col.type) else col)
        else:
            try:
                cols.append(col.cast(want))
            except pa.ArrowException as exc:
                raise StoreError(
                    f"column {table.name}.{name} holds {col.type}, which does not cast to "
                    f"{logical} ({want}): {exc}"
                ) from exc
    return pa.table(cols, names=data.column_names)


def copy_tables(
    src: Engine,
    dst: Engine,
    tables: Iterable[str] | None = None,
    *,
    replace: bool = False,
) -> dict[str, int]:
    """Copy the rows of `tables` (default: every table of the schema but `meta`) from `src` to
    `dst` through Arrow, returning the number of rows copied per table.

    `dst` must already have the tables (`dst.ensure_schema()`). Columns are matched by name;
    columns `src` lacks arrive as NULL, columns `dst` lacks are an error. With `replace`, `dst`'s
    rows are deleted first (in the same transaction where the engine has them).
    Each table is read whole into memory: fine for test and sample data, not for a 10 M event
    history (move that with the engines' own bulk tools, e.g. Parquet files).
    """
    names = list(tables) if tables is not None else [t for t in TABLES if t != "meta"]
    copied: dict[str, int] = {}
    for name in names:
        have = src.existing_columns(name)
        if not have:
            raise StoreError(f"the source store ({src.name}) has no table {name!r}")
        if not dst.existing_columns(name):
            raise StoreError(
                f"the destination store ({dst.name}) has no table {name!r}: "
                "run ensure_schema() first"
            )
        schema = TABLES.get(name)
        cols = [c for c in (schema.column_names if schema else have) if c in have]
        data = src.query_arrow(f"SELECT {', '.join(cols)} FROM {name}")
        if schema is not None:
            data = to_logical(data, schema)
        with dst.transaction():
            if replace:
                dst.execute(f"DELETE FROM {name}")
            dst.append(name, data)
        copied[name] = data.num_rows
    return copied
