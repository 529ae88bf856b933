"""The Segment message spec, as data, and the Python validator the HTTP API uses.

The same table (`REQUIRED`, `OBJECT_FIELDS`) also drives the SQL validation of file ingestion
(`normalize.py`), so the server and the file path reject exactly the same messages.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..errors import MessageError

TYPES = ("identify", "track", "page", "screen", "group", "alias")

# Field required per message type, beyond userId/anonymousId.
REQUIRED: dict[str, tuple[str, ...]] = {
    "track": ("event",),
    "group": ("groupId",),
    "alias": ("previousId",),
}
# Fields that must be JSON objects when present.
OBJECT_FIELDS = ("properties", "traits", "context", "integrations")
# Fields that must be ISO-8601 times when present.
TIME_FIELDS = ("timestamp", "originalTimestamp", "sentAt")
# Every known top-level field; unknown ones are kept (inside the message) but not interpreted.
KNOWN_FIELDS = {
    "type", "messageId", "userId", "anonymousId", "event", "name", "category", "properties",
    "traits", "context", "integrations", "timestamp", "originalTimestamp", "sentAt", "receivedAt",
    "groupId", "previousId", "writeKey", "version", "channel", "_metadata", "options", "library",
}


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def validate(msg: Any, *, default_type: str | None = None) -> dict[str, Any]:
    """Check one message; return it (with `type` filled in) or raise MessageError naming the field."""
    if not isinstance(msg, dict):
        raise MessageError("a message must be a JSON object", field="")
    mid = msg.get("messageId")
    mid = str(mid) if mid is not None else None
    mtype = msg.get("type") or default_type
    if mtype not in TYPES:
        raise MessageError(
            f"field 'type' must be one of {', '.join(TYPES)} (got {mtype!r})",
            field="type",
            message_id=mid,
        )
    if msg.get("userId") in (None, "") and msg.get("anonymousId") in (None, ""):
        raise MessageError(
            "one of 'userId' or 'anonymousId' is required", field="userId", message_id=mid
        )
    for f in REQUIRED.get(mtype, ()):
        if msg.get(f) in (None, ""):
            raise MessageError(f"field '{f}' is required for {mtype}", field=f, message_id=mid)
    if mtype == "track" and not isinstance(msg["event"], str):
        raise MessageError("field 'event' must be a string", field="event", message_id=mid)
    for f in OBJECT_FIELDS:
        if f in msg and msg[f] is not None and not isinstance(msg[f], dict):
            raise MessageError(f"field '{f}' must be an object", field=f, message_id=mid)
    for f in TIME_FIELDS:
        if msg.get(f) is not None and parse_time(msg[f]) is None:
            raise MessageError(
                f"field '{f}' must be an ISO-8601 time (got {msg[f]!r})", field=f, message_id=mid
            )
    if msg.get("type") != mtype:
        msg = {**msg, "type": mtype}
    return msg
