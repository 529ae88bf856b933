"""Raw Segment JSON lines -> normalised event rows and rejects, in one set-based SQL pass.

The input is a table of `(line_no, line)`; `batch` envelopes are expanded to their messages
(`item` = index in the batch). Each message is parsed once (`json_transform`) and validated by a
CASE built from the same spec the HTTP validator uses (`segment.REQUIRED`, ...), so both paths
reject the same messages with the same reasons. This runs on DuckDB, which does the JSON work in
vectorised C++: that is what makes file ingestion fast.
"""

from __future__ import annotations

from .segment import OBJECT_FIELDS, REQUIRED, TIME_FIELDS, TYPES


def _q(text: str) -> str:
    """A SQL string literal of our own (constant) text."""
    return "'" + text.replace("'", "''") + "'"


_STRUCT = (
    "{"
    + ", ".join(
        f'"{f}": "{t}"'
        for f, t in [
            ("type", "VARCHAR"),
            ("messageId", "VARCHAR"),
            ("userId", "VARCHAR"),
            ("anonymousId", "VARCHAR"),
            ("event", "VARCHAR"),
            ("name", "VARCHAR"),
            ("groupId", "VARCHAR"),
            ("previousId", "VARCHAR"),
            ("timestamp", "VARCHAR"),
            ("originalTimestamp", "VARCHAR"),
            ("sentAt", "VARCHAR"),
            ("receivedAt", "VARCHAR"),
            ("properties", "JSON"),
            ("traits", "JSON"),
            ("context", "JSON"),
            ("integrations", "JSON"),
            ("batch", "JSON"),
        ]
    )
    + "}"
)

def _reason_case(max_bytes: int) -> str:
    """CASE expression giving the rejection reason of a parsed message (NULL = valid)."""
    types = ", ".join(_q(t) for t in TYPES)
    whens = [
        ("m IS NULL", "not valid JSON"),
        ("NOT starts_with(ltrim(msg), '{')", "a message must be a JSON object"),
        (f"nbytes > {int(max_bytes)}", f"message larger than {max_bytes // 1024} KB"),
        (f"m.type IS NULL OR m.type NOT IN ({types})",
         f"field 'type' must be one of {', '.join(TYPES)}"),
        ("coalesce(m.userId, '') = '' AND coalesce(m.anonymousId, '') = ''",
         "one of 'userId' or 'anonymousId' is required"),
    ]
    for mtype, fields in REQUIRED.items():
        for f in fields:
            whens.append(
                (f"m.type = {_q(mtype)} AND coalesce(m.{f}, '') = ''",
                 f"field '{f}' is required for {mtype}")
            )
    for f in OBJECT_FIELDS:
        whens.append(
            # json_transform gives minified JSON: the first character tells its type
            (f"m.{f} IS NOT NULL AND NOT starts_with(m.{f}, '{{')", f"field '{f}' must be an object")
        )
    for f in TIME_FIELDS:
        whens.append(
            (f"m.{f} IS NOT NULL AND try_cast(m.{f} AS TIMESTAMPTZ) IS NULL",
             f"field '{f}' must be an ISO-8601 time")
        )
    body = "\n        ".join(f"WHEN {cond} THEN {_q(reason)}" for cond, reason in whens)
    return f"CASE\n        {body}\n      END"


def normalize_sql(raw: str, *, max_bytes: int, now_param: str = "$1") -> str:
    """SQL selecting every message of table `raw(line_no, line)`, valid or not.

    Columns: line_no, item, raw (the text, kept only for rejects), reason (NULL when valid)
    and the event columns. Each line is parsed once (`try` turns invalid JSON into NULL).
    """
    return f"""
WITH lines AS (
  SELECT line_no, line, try(json_transform(line, '{_STRUCT}')) AS m FROM {raw}
),
msgs AS (
  SELECT line_no, CAST(NULL AS BIGINT) AS item, line AS msg, m FROM lines
  WHERE m IS NULL OR m.batch IS NULL OR NOT starts_with(m.batch, '[')
  UNION ALL
  SELECT l.line_no, CAST(e.key AS BIGINT), CAST(e.value AS VARCHAR),
         json_transform(CAST(e.value AS VARCHAR), '{_STRUCT}')
  FROM lines l, json_each(l.m.batch) e
  WHERE starts_with(l.m.batch, '[')
),
checked AS (
  SELECT line_no, item, msg, m, strlen(msg) AS nbytes FROM msgs
)
SELECT line_no, item,
       {_reason_case(max_bytes)} AS reason,
       CASE WHEN reason IS NOT NULL THEN rtrim(msg, chr(13) || chr(10)) END AS raw,
       CASE WHEN m.messageId IS NULL THEN 'md5-' || md5(rtrim(msg, chr(13) || chr(10)))
            ELSE m.messageId END AS message_id,
       m.type AS type,
       CASE WHEN m.type = 'track' THEN m.event
            WHEN m.type IN ('page', 'screen') THEN m.name END AS event,
       nullif(m.userId, '') AS user_id,
       nullif(m.anonymousId, '') AS anonymous_id,
       m.groupId AS group_id,
       m.previousId AS previous_id,
       CAST(coalesce(try_cast(m.timestamp AS TIMESTAMPTZ),
                     try_cast(m.originalTimestamp AS TIMESTAMPTZ),
                     try_cast(m.receivedAt AS TIMESTAMPTZ),
                     CAST({now_param} AS TIMESTAMPTZ)) AS TIMESTAMP) AS ts,
       CAST(coalesce(try_cast(m.receivedAt AS TIMESTAMPTZ),
                     CAST({now_param} AS TIMESTAMPTZ)) AS TIMESTAMP) AS received_at,
       m.properties AS properties,
       m.traits AS traits,
       m.context AS context
FROM checked
"""
