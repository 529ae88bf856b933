"""Vectorised text for millions of events: ISO-8601 times and UUIDs as fixed-width ASCII.

Each function returns an `(n, width)` uint8 matrix; `ascii_column` wraps one as an Arrow string
array without copying, so the writer can join it with the other parts of a JSON line.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

ISO_WIDTH = 24  # 2026-03-01T09:15:22.123Z
UUID_WIDTH = 36
_DAY_MS = 86_400_000
_PAIRS = np.array([[48 + i // 10, 48 + i % 10] for i in range(100)], dtype=np.uint8)
_M64 = 0xFFFFFFFFFFFFFFFF


def iso_ms(ts_ms: np.ndarray) -> np.ndarray:
    """`YYYY-MM-DDTHH:MM:SS.mmmZ` for int64 milliseconds since the epoch (UTC)."""
    ts_ms = np.asarray(ts_ms, dtype=np.int64)
    n = len(ts_ms)
    out = np.empty((n, ISO_WIDTH), dtype=np.uint8)
    if n == 0:
        return out
    days = ts_ms // _DAY_MS
    in_day = (ts_ms - days * _DAY_MS).astype(np.int32)
    first = int(days.min())
    span = np.arange(first, int(days.max()) + 1).astype("datetime64[D]")
    dates = np.frombuffer("".join(np.datetime_as_string(span)).encode(), dtype=np.uint8)
    out[:, 0:10] = dates.reshape(-1, 10)[days - first]
    out[:, 10] = ord("T")
    out[:, 11:13] = _PAIRS[in_day // 3_600_000]
    out[:, 13] = out[:, 16] = ord(":")
    out[:, 14:16] = _PAIRS[in_day // 60_000 % 60]
    out[:, 17:19] = _PAIRS[in_day // 1000 % 60]
    out[:, 19] = ord(".")
    ms = in_day % 1000
    out[:, 20] = 48 + ms // 100
    out[:, 21:23] = _PAIRS[ms % 100]
    out[:, 23] = ord("Z")
    return out


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection of 64-bit integers that looks random."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def message_ids(index: np.ndarray, key: tuple[int, int]) -> np.ndarray:
    """UUID-shaped ids for row numbers `index`, unique by construction for distinct rows.

    The last 64 bits are a keyed bijection of the row number (so two rows never share an id);
    the first 64 bits are another keyed mix, with the version nibble set to 4.
    """
    idx = np.asarray(index, dtype=np.uint64)
    hi = _mix64(idx + np.uint64(key[0] & _M64))
    lo = _mix64(idx ^ np.uint64(key[1] & _M64))
    raw = np.empty((len(idx), 2), dtype=">u8")
    raw[:, 0] = hi
    raw[:, 1] = lo
    raw8 = raw.view(np.uint8).reshape(len(idx), 16)
    raw8[:, 6] = (raw8[:, 6] & 0x0F) | 0x40
    return uuid_text(raw8)


def uuid_text(raw: np.ndarray) -> np.ndarray:
    """8-4-4-4-12 lowercase hex text from an `(n, 16)` uint8 matrix."""
    nib = np.empty((len(raw), 32), dtype=np.uint8)
    nib[:, 0::2] = raw >> 4
    nib[:, 1::2] = raw & 0x0F
    hexd = nib + np.uint8(48)
    hexd += (nib > 9).view(np.uint8) * np.uint8(39)  # a..f
    out = np.empty((len(raw), UUID_WIDTH), dtype=np.uint8)
    for (lo, hi), at in zip(
        ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32)), (0, 9, 14, 19, 24), strict=True
    ):
        out[:, at : at + hi - lo] = hexd[:, lo:hi]
    out[:, [8, 13, 18, 23]] = ord("-")
    return out


def ascii_column(mat: np.ndarray) -> pa.StringArray:
    """An Arrow string array over the rows of a fixed-width ASCII matrix (no copy)."""
    mat = np.ascontiguousarray(mat, dtype=np.uint8)
    n, width = mat.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(mat)])


def to_str(mat: np.ndarray) -> list[str]:
    """Rows of a fixed-width ASCII matrix as Python strings (for small tables)."""
    return ascii_column(mat).to_pylist()
