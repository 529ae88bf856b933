"""Reading files as numbered lines, in chunks, without parsing them (gzip transparently).

Parsing happens set-wise in the store (`normalize.py`); here we only split bytes into lines,
count blank ones, and set aside lines that are not UTF-8 so they can be quarantined by number.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa


@dataclass
class LineChunk:
    table: pa.Table  # (line_no int64, line string)
    blank: int = 0
    rejects: list[tuple[int, str, str]] = field(default_factory=list)  # (line_no, raw, reason)
    lines: int = 0  # lines in the chunk, of every kind


def open_bytes(path: Path):
    with open(path, "rb") as probe:
        gz = probe.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def _chunk(data: bytes, first_line: int) -> LineChunk:
    """Lines of `data` as an Arrow string array that shares `data`'s memory.

    Each line keeps its trailing newline (JSON ignores it; quarantine strips it), which is what
    lets the array be built from offsets alone: one pass in numpy, no Python object per line.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    starts = np.concatenate(([0], np.flatnonzero(buf == 10) + 1)).astype(np.int32)
    offsets = np.append(starts, np.int32(len(data)))  # int32: chunks stay < 2 GiB
    n = len(starts)
    col = pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))
    numbers = np.arange(first_line, first_line + n, dtype=np.int64)
    lengths = np.diff(offsets)
    # blank = only white space; only short lines can be blank in practice, so check those
    short = np.flatnonzero(lengths <= 16)
    blank = np.zeros(n, dtype=bool)
    for i in short:
        blank[i] = not data[offsets[i] : offsets[i + 1]].strip()
    rejects: list[tuple[int, str, str]] = []
    try:
        col.validate(full=True)  # UTF-8 check
    except pa.ArrowInvalid:
        keep = np.ones(n, dtype=bool)
        for i in range(n):
            raw = data[offsets[i] : offsets[i + 1]]
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                keep[i] = False
                text = raw.rstrip(b"\r\n").decode("utf-8", errors="backslashreplace")
                rejects.append((int(numbers[i]), text, "line is not valid UTF-8"))
        blank &= keep
        mask = keep & ~blank
    else:
        mask = ~blank
    table = pa.table({"line_no": numbers, "line": col})
    if not mask.all():
        table = table.filter(pa.array(mask))
    return LineChunk(table, int(blank.sum()), rejects, n)


def read_line_chunks(path: Path, chunk_bytes: int = 64 * 1024 * 1024) -> Iterator[LineChunk]:
    """Yield the file's lines in chunks of about `chunk_bytes`, numbered from 1."""
    line_no = 1
    rest = b""
    with open_bytes(path) as f:
        while True:
            block = f.read(chunk_bytes)
            if not block:
                break
            if rest:
                block = rest + block
            cut = block.rfind(b"\n")
            if cut < 0:
                rest = block
                continue
            data, rest = block[:cut], block[cut + 1 :]
            chunk = _chunk(data, line_no)
            yield chunk
            line_no += chunk.lines
    if rest:
        yield _chunk(rest, line_no)
