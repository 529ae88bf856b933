"""The logical data model, as data: tables, their columns and logical types.

Every engine maps the logical types to its own (see `TYPES` in each engine) and
`ensure_schema` creates or migrates the tables, so no DDL is written per engine.
Migrations are additive: a column added here is added to existing stores on open.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_VERSION = 1

# Logical column types. Engines map them (see engine.TYPE_NAMES).
TEXT, DOUBLE, BIGINT, BOOLEAN, TIMESTAMP, JSON = "text", "double", "bigint", "boolean", "timestamp", "json"


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]
    doc: str = ""

    @property
    def column_names(self) -> list[str]:
        return [c for c, _ in self.columns]


def _t(name: str, doc: str, *columns: tuple[str, str]) -> Table:
    return Table(name, tuple(columns), doc)


TABLES: dict[str, Table] = {
    t.name: t
    for t in [
        _t(
            "events",
            "Append-only log of Segment-spec messages; everything else is derived from it.",
            ("message_id", TEXT),
            ("type", TEXT),  # identify | track | page | screen | group | alias
            ("event", TEXT),  # track event name, or page/screen name
            ("user_id", TEXT),
            ("anonymous_id", TEXT),
            ("person_id", TEXT),  # resolved identity (re-pointed when ids merge)
            ("group_id", TEXT),
            ("previous_id", TEXT),
            ("ts", TIMESTAMP),  # when it happened (UTC)
            ("received_at", TIMESTAMP),
            ("properties", JSON),
            ("traits", JSON),
            ("context", JSON),
            ("source", TEXT),  # file path or write-key source name
        ),
        _t(
            "identities",
            "Every known id (anonymous id, alias, user id) -> the person it belongs to.",
            ("alias_id", TEXT),
            ("person_id", TEXT),
            ("kind", TEXT),  # anonymous | alias
            ("first_seen", TIMESTAMP),
        ),
        _t(
            "trait_history",
            "Every trait value ever set on a person (identify, CSV, key=value logs); newest wins.",
            ("person_id", TEXT),
            ("key", TEXT),
            ("value", JSON),
            ("ts", TIMESTAMP),
            ("message_id", TEXT),
        ),
        _t(
            "account_trait_history",
            "Every trait value ever set on an account (group calls, account CSV).",
            ("account_id", TEXT),
            ("key", TEXT),
            ("value", JSON),
            ("ts", TIMESTAMP),
            ("message_id", TEXT),
        ),
        _t(
            "people",
            "Current profile of each person, derived from trait_history and events.",
            ("person_id", TEXT),
            ("email", TEXT),
            ("first_name", TEXT),
            ("last_name", TEXT),
            ("name", TEXT),
            ("company", TEXT),
            ("domain", TEXT),  # email domain
            ("webmail", BOOLEAN),
            ("title", TEXT),
            ("phone", TEXT),
            ("country", TEXT),
            ("source", TEXT),  # first referral / utm source
            ("campaign", TEXT),  # first utm campaign / referral code
            ("owner", TEXT),
            ("account_id", TEXT),
            ("traits", JSON),
            ("first_seen", TIMESTAMP),
            ("last_seen", TIMESTAMP),
        ),
        _t(
            "accounts",
            "Companies: from `group` calls, account CSVs, or the email domain of their people.",
            ("account_id", TEXT),
            ("domain", TEXT),
            ("name", TEXT),
            ("size", BIGINT),
            ("industry", TEXT),
            ("owner", TEXT),
            ("traits", JSON),
            ("first_seen", TIMESTAMP),
        ),
        _t(
            "outcomes",
            "Conversions and opportunities from the CRM or from a configured conversion event.",
            ("outcome_id", TEXT),
            ("kind", TEXT),  # conversion | opportunity
            ("person_id", TEXT),
            ("account_id", TEXT),
            ("created_at", TIMESTAMP),
            ("stage", TEXT),
            ("won", BOOLEAN),
            ("amount", DOUBLE),
            ("closed_at", TIMESTAMP),
            ("owner", TEXT),
            ("source", TEXT),
        ),
        _t(
            "campaigns",
            "Campaign cost per period, for cost per good lead.",
            ("campaign", TEXT),
            ("source", TEXT),
            ("medium", TEXT),
            ("period_start", TIMESTAMP),
            ("period_end", TIMESTAMP),
            ("cost", DOUBLE),
        ),
        _t(
            "quarantine",
            "Input that was rejected, with where it came from and why; can be fixed and retried.",
            ("id", BIGINT),
            ("source", TEXT),
            ("line", BIGINT),
            ("item", BIGINT),  # index inside a batch envelope, else null
            ("message_id", TEXT),
            ("kind", TEXT),  # events | people | accounts | conversions | ...
            ("reason", TEXT),
            ("raw", TEXT),
            ("quarantined_at", TIMESTAMP),
            ("status", TEXT),  # open | resolved
        ),
        _t(
            "ingest_log_offsets",
            "How far each append-only ingestion log has been loaded (exactly-once replay).",
            ("log", TEXT),
            ("loaded_bytes", BIGINT),
        ),
        _t("meta", "Store metadata such as the schema version.", ("key", TEXT), ("value", TEXT)),
    ]
}
