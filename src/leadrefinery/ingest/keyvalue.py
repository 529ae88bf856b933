"""Application logs of `key=value` pairs -> Segment messages, by a declared mapping.

    FirstName=John LoginCount=3 IsEmailVerified=False LastLoginTime="2013-01-24 00:24:22.6"

Each line becomes an `identify` of the person named by `mapping.user_id` (traits = the pairs)
and, when `mapping.event` is set, a `track` of that event with the pairs as properties. Both go
through the same loader as Segment JSON, as a `batch` envelope per line, so line numbers,
quarantine and de-duplication work the same (message ids derive from the line's content, so
re-ingesting the same log is idempotent).
"""

from __future__ import annotations

import hashlib
import re

import orjson
import pyarrow as pa

from ..config import KeyValueMapping
from .lines import LineChunk

PAIR = re.compile(r'([A-Za-z_][\w.\-]*)=("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|\S*)')


def _value(text: str) -> object:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1].replace('\\"', '"').replace("\\'", "'")
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("", "null", "none"):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def parse_pairs(line: str) -> dict[str, object]:
    """Parse one log line; raises ValueError if anything but whitespace is left unparsed."""
    pairs, pos = {}, 0
    for m in PAIR.finditer(line):
        if line[pos : m.start()].strip():
            raise ValueError(f"cannot parse {line[pos:m.start()].strip()!r} as key=value")
        pairs[m.group(1)] = _value(m.group(2))
        pos = m.end()
    if line[pos:].strip():
        raise ValueError(f"cannot parse {line[pos:].strip()!r} as key=value")
    if not pairs:
        raise ValueError("no key=value pairs on the line")
    return pairs


def to_messages(pairs: dict[str, object], mapping: KeyValueMapping, digest: str) -> list[dict]:
    named = {mapping.rename.get(k, k): v for k, v in pairs.items()}
    user = pairs.get(mapping.user_id)
    if user in (None, ""):
        raise ValueError(f"the key {mapping.user_id!r} that names the person is missing")
    keep = mapping.traits
    traits = {k: v for k, v in named.items() if keep is None or k in keep}
    if mapping.email and pairs.get(mapping.email):
        traits["email"] = pairs[mapping.email]
    base: dict[str, object] = {"userId": str(user)}
    if mapping.timestamp and pairs.get(mapping.timestamp) is not None:
        base["timestamp"] = str(pairs[mapping.timestamp])
    msgs = [{**base, "type": "identify", "messageId": f"kv-{digest}-i", "traits": traits}]
    if mapping.event:
        msgs.append(
            {**base, "type": "track", "event": mapping.event, "messageId": f"kv-{digest}-t",
             "properties": named}
        )
    return msgs


def convert_chunk(chunk: LineChunk, mapping: KeyValueMapping) -> LineChunk:
    """Turn a chunk of log lines into a chunk of Segment batch envelopes (same line numbers)."""
    numbers, lines = [], []
    rejects = list(chunk.rejects)
    for n, line in zip(chunk.table["line_no"].to_pylist(), chunk.table["line"].to_pylist(),
                       strict=True):
        digest = hashlib.sha1(line.encode()).hexdigest()[:24]
        try:
            msgs = to_messages(parse_pairs(line), mapping, digest)
        except ValueError as exc:
            rejects.append((n, line, str(exc)))
            continue
        numbers.append(n)
        lines.append(orjson.dumps({"batch": msgs}).decode())
    table = pa.table(
        {"line_no": pa.array(numbers, pa.int64()), "line": pa.array(lines, pa.string())}
    )
    return LineChunk(table, chunk.blank, rejects)
