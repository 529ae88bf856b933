"""Loading Segment messages into the store: validate, de-duplicate, resolve identity, derive.

One path for every source: JSONL files, key=value logs (turned into messages) and the HTTP
server's append-only log all hand `EventLoader.load_lines` a table of raw JSON lines.
A chunk is loaded in one transaction, so a crash leaves either all of it or none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from ..config import Settings
from ..errors import StoreError
from ..store.engine import Engine
from . import identity
from .lines import LineChunk
from .normalize import normalize_sql
from .webmail import webmail_domains

STORED = "_stored"  # the events a chunk added, with their person (see `_store_normalized`)
EVENT_COLUMNS = (
    "message_id, type, event, user_id, anonymous_id, person_id, group_id, previous_id, ts, "
    "received_at, properties, traits, context, source"
)


@dataclass
class IngestReport:
    """What happened to the input; `read` always equals stored + duplicates + quarantined."""

    read: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    blank_lines: int = 0
    files: list[str] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)

    def __iadd__(self, other: IngestReport) -> IngestReport:
        self.read += other.read
        self.stored += other.stored
        self.duplicates += other.duplicates
        self.quarantined += other.quarantined
        self.blank_lines += other.blank_lines
        self.files += [f for f in other.files if f not in self.files]
        for r, n in other.reasons.items():
            self.reasons[r] = self.reasons.get(r, 0) + n
        return self

    @property
    def balanced(self) -> bool:
        return self.read == self.stored + self.duplicates + self.quarantined

    def as_dict(self) -> dict:
        return {
            "read": self.read,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "quarantined": self.quarantined,
            "blank_lines": self.blank_lines,
            "balanced": self.balanced,
            "reasons": self.reasons,
        }


def quarantine_rows(engine: Engine, select_sql: str, params: list | None = None) -> None:
    """Append rejected input to the quarantine; `select_sql` yields
    (source, line, item, message_id, kind, reason, raw). A row already waiting there (the
    same file ingested twice) is not stored again."""
    engine.execute(
        f"""
        INSERT INTO quarantine
        SELECT coalesce((SELECT max(id) FROM quarantine), 0) + row_number() OVER (),
               source, line, item, message_id, kind, reason, raw, now()::TIMESTAMP, 'open'
        FROM ({select_sql}) r
        WHERE NOT EXISTS (
          SELECT 1 FROM quarantine q
          WHERE q.status = 'open' AND q.source = r.source AND q.raw = r.raw
            AND q.line IS NOT DISTINCT FROM r.line AND q.item IS NOT DISTINCT FROM r.item)
        """,
        params,
    )


def check_ingests(engine: Engine) -> None:
    """A clear error, before anything is read or acknowledged, when `engine` cannot load
    events (see `Engine.ingests`)."""
    if not engine.ingests:
        raise StoreError(
            f"events cannot be loaded into a {engine.name} store yet (the loader's identity and "
            "profile SQL is DuckDB's): ingest and `serve` with the embedded DuckDB store "
            f"([store] engine = \"duckdb\"); a {engine.name} store can score, report and "
            "deliver alerts from tables copied into it (leadrefinery.store.copy.copy_tables)")


class EventLoader:
    """Loads chunks of raw Segment JSON lines into the store."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        check_ingests(engine)
        self.engine = engine
        self.settings = settings
        domains = sorted(webmail_domains(settings.ingest.webmail_domains_extra))
        engine.execute("CREATE OR REPLACE TEMP TABLE _webmail (domain VARCHAR)")
        engine.append("_webmail", pa.table({"domain": domains}))

    def load_chunk(self, chunk: LineChunk, source: str) -> IngestReport:
        """Load one chunk of a file: its lines, plus the lines already found bad."""
        report = self.load_lines(chunk.table, source, rejects=chunk.rejects)
        report.blank_lines += chunk.blank
        return report

    def load_lines(
        self,
        lines: pa.Table,
        source: str,
        *,
        now: datetime | None = None,
        rejects: list[tuple[int, str, str]] | None = None,
        after=None,
    ) -> IngestReport:
        """Load a table `(line_no int64, line string)` of raw JSON lines from `source`.

        `rejects` are lines already found bad before parsing: (line_no, raw, reason).
        `after(engine)` runs inside the same transaction (the server records its log offset
        there, so a chunk and the record of having loaded it commit together).
        """
        e = self.engine
        now = now or datetime.now(UTC)
        max_bytes = self.settings.server.max_message_bytes
        e.register("_raw", lines)
        try:
            with e.transaction():
                e.execute(
                    "CREATE OR REPLACE TEMP TABLE _norm AS "
                    + normalize_sql("_raw", max_bytes=max_bytes),
                    [now.isoformat()],
                )
                report = self._store_normalized(source)
                if rejects:
                    self._quarantine_rejects(source, rejects, report)
                if after is not None:
                    after(e)
        finally:
            e.unregister("_raw")
        return report

    def _quarantine_rejects(
        self, source: str, rejects: list[tuple[int, str, str]], report: IngestReport
    ) -> None:
        table = pa.table(
            {
                "line": [r[0] for r in rejects],
                "raw": [r[1] for r in rejects],
                "reason": [r[2] for r in rejects],
            }
        )
        self.engine.register("_rejects", table)
        try:
            quarantine_rows(
                self.engine,
                "SELECT ? AS source, line, NULL::BIGINT AS item, NULL AS message_id, "
                "'events' AS kind, reason, raw FROM _rejects",
                [source],
            )
        finally:
            self.engine.unregister("_rejects")
        report.read += len(rejects)
        report.quarantined += len(rejects)
        for r in rejects:
            report.reasons[r[2]] = report.reasons.get(r[2], 0) + 1

    def _store_normalized(self, source: str) -> IngestReport:
        e = self.engine
        report = IngestReport(files=[source])
        report.read = e.scalar("SELECT count(*) FROM _norm")
        for reason, n in e.query(
            "SELECT reason, count(*) FROM _norm WHERE reason IS NOT NULL GROUP BY reason"
        ):
            report.reasons[reason] = n
            report.quarantined += n
        if report.quarantined:
            quarantine_rows(
                e,
                "SELECT ? AS source, line_no AS line, item, message_id, 'events' AS kind, "
                "reason, raw FROM _norm WHERE reason IS NOT NULL",
                [source],
            )
        # first occurrence of each message id in the chunk, then only ids the store lacks —
        # looked for among the stored events near the chunk's times (literal bounds, so DuckDB
        # skips the row groups outside them)
        window = self.settings.ingest.dedupe_window_days
        lo, hi = e.query("SELECT min(ts), max(ts) FROM _norm WHERE reason IS NULL")[0]
        near = ""
        if window and lo is not None:
            near = "AND ev.ts BETWEEN ? AND ?"
            bounds = [lo - timedelta(days=window), hi + timedelta(days=window)]
        e.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _new AS
            SELECT * EXCLUDE (line_no, item, raw, reason, rn) FROM (
              SELECT *, row_number() OVER (PARTITION BY message_id ORDER BY line_no, item) AS rn
              FROM _norm WHERE reason IS NULL
            ) c
            WHERE rn = 1 AND NOT EXISTS (
              SELECT 1 FROM events ev WHERE ev.message_id = c.message_id {near})
            """,
            bounds if near else None,
        )
        report.stored = e.scalar("SELECT count(*) FROM _new")
        # the chunk's events with their person (new id links first), resolved once: for the
        # steps below and for code in the same transaction (the server's real-time fast lane)
        identity.link_identities(e)
        e.execute(
            f"CREATE OR REPLACE TEMP TABLE {STORED} AS "
            f"SELECT n.*, {identity.PERSON_ID} AS person_id FROM {identity.RESOLVED_FROM}"
        )
        report.duplicates = report.read - report.quarantined - report.stored
        if report.stored:
            self._apply(source)
        return report

    def _apply(self, source: str) -> None:
        e = self.engine
        cols = ", ".join("?" if c == "source" else c for c in EVENT_COLUMNS.split(", "))
        e.execute(f"INSERT INTO events ({EVENT_COLUMNS}) SELECT {cols} FROM {STORED}", [source])
        # only what the derived tables need travels further: profile-changing messages
        names = list(self.settings.ingest.conversion_events)
        conversions = (
            f"OR (type = 'track' AND event IN ({', '.join('?' for _ in names)}))"
            if names else ""
        )
        e.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _resolved AS
            SELECT * FROM {STORED}
            WHERE type IN ('identify', 'group') OR contains(context, '"campaign"')
            {conversions}
            """,
            names,
        )
        e.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _touched AS
            SELECT person_id, min(ts) AS first_ts, max(ts) AS last_ts FROM (
              SELECT person_id, ts FROM {STORED} UNION ALL SELECT new_id, NULL FROM _moves
            ) GROUP BY person_id
            """
        )
        identity.record_traits(e)
        identity.rebuild_people(e, "_touched", "_webmail", removed="_moves", batch=True)
        self._record_conversions()
        e.execute(
            """
            CREATE OR REPLACE TEMP TABLE _touched_accounts AS
            SELECT DISTINCT account_id FROM people
            WHERE person_id IN (SELECT person_id FROM _people) AND account_id IS NOT NULL
            UNION SELECT account_id FROM _left_accounts
            UNION SELECT DISTINCT group_id FROM _resolved WHERE type = 'group'
            """
        )
        identity.rebuild_accounts(e, "_touched_accounts")

    def _record_conversions(self) -> None:
        names = self.settings.ingest.conversion_events
        if not names:
            return
        marks = ", ".join("?" for _ in names)
        self.engine.execute(
            f"""
            INSERT INTO outcomes BY NAME
            SELECT message_id AS outcome_id, 'conversion' AS kind, person_id,
                   ts AS created_at, 'won' AS stage, TRUE AS won,
                   try_cast(coalesce(json_extract_string(properties, '$.amount'),
                                     json_extract_string(properties, '$.revenue'),
                                     json_extract_string(properties, '$.value')) AS DOUBLE)
                     AS amount,
                   ts AS closed_at, 'event:' || event AS source
            FROM _resolved WHERE type = 'track' AND event IN ({marks})
            """,
            list(names),
        )
