"""Reading files as numbered lines, in chunks, without parsing them (gzip transparently).

Parsing happens set-wise in the store (`normalize.py`); here we only split bytes into lines,
count blank ones, and set aside lines that are not UTF-8 so they can be quarantined by number.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa


@dataclass
class LineChunk:
    table: pa.Table  # (line_no int64, line string)
    blank: int = 0
    rejects: list[tuple[int, str, str]] = field(default_factory=list)  # (line_no, raw, reason)


def open_bytes(path: Path):
    with open(path, "rb") as probe:
        gz = probe.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def _chunk(data: bytes, first_line: int) -> LineChunk:
    raw = data.split(b"\n")
    numbers, lines, bad = [], [], []
    blank = 0
    for i, line in enumerate(raw, first_line):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line.strip():
            blank += 1
            continue
        numbers.append(i)
        lines.append(line)
    try:
        col = pa.array(lines, type=pa.binary()).cast(pa.string())
    except pa.ArrowInvalid:  # some line is not UTF-8: find it, keep the rest
        good_n, good_l = [], []
        for n, line in zip(numbers, lines, strict=True):
            try:
                good_l.append(line.decode("utf-8"))
                good_n.append(n)
            except UnicodeDecodeError:
                bad.append((n, line.decode("utf-8", errors="backslashreplace"), "line is not valid UTF-8"))
        numbers, col = good_n, pa.array(good_l, type=pa.string())
    table = pa.table({"line_no": pa.array(numbers, type=pa.int64()), "line": col})
    return LineChunk(table, blank, bad)


def read_line_chunks(path: Path, chunk_bytes: int = 64 * 1024 * 1024) -> Iterator[LineChunk]:
    """Yield the file's lines in chunks of about `chunk_bytes`, numbered from 1."""
    line_no = 1
    rest = b""
    with open_bytes(path) as f:
        while True:
            block = f.read(chunk_bytes)
            if not block:
                break
            block = rest + block
            cut = block.rfind(b"\n")
            if cut < 0:
                rest = block
                continue
            data, rest = block[:cut], block[cut + 1 :]
            yield _chunk(data, line_no)
            line_no += data.count(b"\n") + 1
    if rest:
        yield _chunk(rest, line_no)
