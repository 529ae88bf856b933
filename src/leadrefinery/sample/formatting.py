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


def _second_tail() -> np.ndarray:
    """`:SS.mmmZ` for each millisecond of a minute, as one uint64 per value."""
    ms = np.arange(60_000)
    tail = np.empty((60_000, 8), dtype=np.uint8)
    tail[:, 0] = ord(":")
    tail[:, 1:3] = _PAIRS[ms // 1000]
    tail[:, 3] = ord(".")
    tail[:, 4] = 48 + ms % 1000 // 100
    tail[:, 5:7] = _PAIRS[ms % 100]
    tail[:, 7] = ord("Z")
    return tail.view(np.uint64).ravel()


_TAIL = _second_tail()


def iso_ms(ts_ms: np.ndarray) -> np.ndarray:
    """`YYYY-MM-DDTHH:MM:SS.mmmZ` for int64 milliseconds since the epoch (UTC).

    The 24 bytes are three 8-byte words looked up in tables: `YYYY-MM-` per day, `DDTHH:MM` per
    minute of the covered days, `:SS.mmmZ` per millisecond of a minute. Chunks of time-sorted
    events cover few days, so the tables are small; wide spans fall back to digit arithmetic.
    """
    ts_ms = np.asarray(ts_ms, dtype=np.int64)
    n = len(ts_ms)
    if n == 0:
        return np.empty((0, ISO_WIDTH), dtype=np.uint8)
    days = ts_ms // _DAY_MS
    in_day = ts_ms - days * _DAY_MS
    first = int(days.min())
    span = int(days.max()) - first + 1
    day_idx = days - first
    dates = np.frombuffer(
        "".join(
            np.datetime_as_string(np.arange(first, first + span).astype("datetime64[D]"))
        ).encode(),
        dtype=np.uint8,
    ).reshape(span, 10)
    if span * 1440 > 4 * n + 100_000:
        return _iso_wide(dates, day_idx, in_day)
    head = np.ascontiguousarray(dates[:, :8]).view(np.uint64).ravel()
    minute = np.arange(1440)
    mid = np.empty((span, 1440, 8), dtype=np.uint8)
    mid[:, :, 0:2] = dates[:, None, 8:10]
    mid[:, :, 2] = ord("T")
    mid[:, :, 3:5] = _PAIRS[minute // 60]
    mid[:, :, 5] = ord(":")
    mid[:, :, 6:8] = _PAIRS[minute % 60]
    mid64 = mid.view(np.uint64).ravel()
    out = np.empty((n, 3), dtype=np.uint64)
    out[:, 0] = head[day_idx]
    out[:, 1] = mid64[day_idx * 1440 + in_day // 60_000]
    out[:, 2] = _TAIL[in_day % 60_000]
    return out.view(np.uint8).reshape(n, ISO_WIDTH)


def _iso_wide(dates: np.ndarray, day_idx: np.ndarray, in_day: np.ndarray) -> np.ndarray:
    out = np.empty((len(day_idx), ISO_WIDTH), dtype=np.uint8)
    out[:, 0:10] = dates[day_idx]
    out[:, 10] = ord("T")
    out[:, 11:13] = _PAIRS[in_day // 3_600_000]
    out[:, 13] = out[:, 16] = ord(":")
    out[:, 14:16] = _PAIRS[in_day // 60_000 % 60]
    out[:, 16:24] = _TAIL[in_day % 60_000].view(np.uint8).reshape(-1, 8)
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
