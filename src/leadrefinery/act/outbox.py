"""The alerts outbox: alert rows written in the caller's transaction, sent later by a deliverer.

    with engine.transaction():                      # the trigger engine's own transaction
        ...write the new lead state...
        enqueue(engine, [AlertIn(...), ...])        # joins it: both commit, or neither

    Deliverer(engine, settings).start()             # act/delivery.py sends pending rows

One row of `alerts` is one alert on one channel to one recipient. Its life:

    pending ──send ok──► delivered
       │  ▲
       │  └── failed, attempts < max: retried after an exponential back-off (with jitter, capped)
       └───── failed attempts == max (or a permanent refusal) ──► dead ──requeue──► pending

Delivery is **at least once**. Over HTTP or SMTP a sender cannot know whether a receiver that
timed out processed the alert, so the same alert may arrive twice after a timeout or a crash
between sending and recording. Every alert therefore carries a stable `alert_id` (in the body,
and as the `X-LeadRefinery-Alert-Id` / `Idempotency-Key` headers, and as the email Message-ID):
receivers de-duplicate by it and so see each alert exactly once. In the normal case — the
receiver acknowledges within the timeout — each alert is sent exactly once.

Because rows are the queue, a restarted process resumes every undelivered alert, and an alert
enqueued in a transaction that rolls back never existed.

Recipients are addresses: `email:ann@acme.com` (or a bare address), `webhook:NAME` (a receiver
named in `[alerts.webhooks]`: alerts never go to a URL taken from data) or `feed[:NAME]`
(the dashboard). `resolve_recipient` picks the person's owner, else the account's owner, else
the trigger's default.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from ..errors import InputError, NotFound
from ..store.engine import Engine

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
STATUSES = (PENDING, DELIVERED, DEAD)
SEVERITIES = ("info", "warning", "critical")
CHANNELS = ("webhook", "email", "feed")
# sent ahead of other due alerts: a lead asking for sales now, a critical one (an abuser at
# work) — not behind a burst of score changes for the same receiver
URGENT = "(trigger_kind = 'buy_readiness' OR severity = 'critical')"

# columns of `alerts`, in the order rows are read back (see `AlertRow`)
COLUMNS = (
    "alert_id", "created_at", "person_id", "account_id", "trigger_id", "trigger_kind",
    "severity", "title", "payload", "channel", "recipient", "status", "attempts",
    "next_attempt_at", "claimed_at", "claimed_by", "last_error", "delivered_at",
)  # fmt: skip


def utcnow() -> datetime:
    """Now, as the store keeps time: naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


# -- recipients -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    channel: str  # webhook | email | feed
    address: str  # webhook name, comma-separated email addresses, or feed name ("" = all)
    via: str = "default"  # person_owner | account_owner | default | fallback

    def __str__(self) -> str:
        return f"{self.channel}:{self.address}" if self.address else self.channel


def parse_address(text: str | None, directory: Mapping[str, str] | None = None) -> Recipient | None:
    """`email:x@y` / `x@y` / `webhook:NAME` / `feed[:NAME]`, or a name from `directory`
    (`[alerts].recipients`: CRM owner name -> address). None when it names nothing usable."""
    text = (text or "").strip()
    if not text:
        return None
    scheme, sep, rest = text.partition(":")
    scheme = scheme.strip().lower()
    if sep and scheme in CHANNELS:
        rest = rest.strip()
        if scheme == "email" and "@" not in rest:
            return None
        if scheme == "webhook" and not rest:
            return None
        return Recipient(scheme, rest)
    if text.lower() == "feed":
        return Recipient("feed", "")
    if directory and text in directory and directory[text] != text:
        return parse_address(directory[text], None)
    if "@" in text and not sep and " " not in text:
        return Recipient("email", text)
    return None


def resolve_recipient(
    person_owner: str | None,
    account_owner: str | None,
    default: str | None,
    *,
    directory: Mapping[str, str] | None = None,
) -> Recipient:
    """Who gets an alert: the person's owner if set (and addressable), else the account's
    owner, else the trigger's default; the dashboard feed if none of them is usable, so an
    alert is never dropped for want of a recipient."""
    for via, text in (("person_owner", person_owner), ("account_owner", account_owner),
                      ("default", default)):
        r = parse_address(text, directory)
        if r is not None:
            return Recipient(r.channel, r.address, via)
    return Recipient("feed", "", "fallback")


def owners(engine: Engine, person_ids: Sequence[str]) -> dict[str, tuple[str | None, str | None]]:
    """person_id -> (person owner, account owner), from `people` and `accounts`."""
    if not person_ids:
        return {}
    marks = ", ".join("?" for _ in person_ids)
    rows = engine.query(
        f"SELECT p.person_id, p.owner, a.owner FROM people p "
        f"LEFT JOIN accounts a ON a.account_id = p.account_id WHERE p.person_id IN ({marks})",
        list(person_ids),
    )
    return {r[0]: (r[1], r[2]) for r in rows}


# -- writing alerts -------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertIn:
    """One alert to enqueue: who, what changed, why, and where it goes.

    `alert_id` is generated unless given. With `key` (e.g. trigger id + person id + episode
    start) the id is derived from key, channel and recipient, so enqueueing the same alert twice
    stores it once.
    """

    trigger_id: str
    trigger_kind: str
    title: str
    channel: str
    recipient: str = ""
    person_id: str | None = None
    account_id: str | None = None
    severity: str = "info"
    person: Mapping[str, Any] = field(default_factory=dict)  # who: email, name, company, title
    account: Mapping[str, Any] = field(default_factory=dict)  # name, domain, size, owner
    change: Mapping[str, Any] = field(default_factory=dict)  # what changed: from/to, score
    reasons: Sequence[Mapping[str, Any]] = ()  # why: score components (rule, points, detail)
    evidence: Sequence[Mapping[str, Any]] = ()  # abuse / unusual-usage evidence
    link: str | None = None  # the person's page (default: from [alerts].person_url)
    data: Mapping[str, Any] = field(default_factory=dict)  # anything else, passed through
    key: str | None = None
    alert_id: str | None = None
    created_at: datetime | None = None

    @classmethod
    def to(cls, recipient: Recipient, **fields: Any) -> AlertIn:
        return cls(channel=recipient.channel, recipient=recipient.address, **fields)

    def make_id(self) -> str:
        if self.alert_id:
            return self.alert_id
        if self.key:
            digest = hashlib.sha256(f"{self.key}\x1f{self.channel}\x1f{self.recipient}".encode())
            return "al_" + digest.hexdigest()[:32]
        # time-ordered, so ids sort roughly by creation
        return f"al_{time.time_ns() // 1000:014x}{secrets.token_hex(9)}"

    def payload(self) -> dict[str, Any]:
        return {
            "person": dict(self.person),
            "account": dict(self.account),
            "change": dict(self.change),
            "reasons": [dict(r) for r in self.reasons],
            "evidence": [dict(e) for e in self.evidence],
            "link": self.link,
            "data": dict(self.data),
        }

    def check(self) -> None:
        if self.channel not in CHANNELS:
            raise InputError(
                f"alert {self.trigger_id!r}: unknown channel {self.channel!r}; "
                f"use one of {', '.join(CHANNELS)}",
                field="channel",
            )
        if self.severity not in SEVERITIES:
            raise InputError(
                f"alert {self.trigger_id!r}: unknown severity {self.severity!r}; "
                f"use one of {', '.join(SEVERITIES)}",
                field="severity",
            )
        if self.channel == "email" and "@" not in self.recipient:
            raise InputError(f"alert {self.trigger_id!r}: email recipient {self.recipient!r} "
                             "is not an address", field="recipient")
        if self.channel == "webhook" and not self.recipient:
            raise InputError(f"alert {self.trigger_id!r}: a webhook alert needs the name of a "
                             "receiver from [alerts.webhooks]", field="recipient")


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


_ARROW_TYPES = {
    "alert_id": pa.string(), "created_at": pa.timestamp("us"), "person_id": pa.string(),
    "account_id": pa.string(), "trigger_id": pa.string(), "trigger_kind": pa.string(),
    "severity": pa.string(), "title": pa.string(), "payload": pa.string(),
    "channel": pa.string(), "recipient": pa.string(), "status": pa.string(),
    "attempts": pa.int64(), "next_attempt_at": pa.timestamp("us"),
}  # fmt: skip


def enqueue(engine: Engine, alerts: Iterable[AlertIn], *, now: datetime | None = None) -> list[str]:
    """Write alerts as `pending` rows; returns their alert ids (existing ones included).

    Run it inside the caller's transaction (`with engine.transaction(): ...`): it joins that
    transaction and never commits on its own, so the alerts become visible together with the
    state change that fired them, or not at all. Called outside a transaction it makes its own.
    Alerts whose id is already stored are skipped (idempotent with `AlertIn.key`).
    """
    alerts = list(alerts)
    for a in alerts:
        a.check()
    if not alerts:
        return []
    now = now or utcnow()
    ids = [a.make_id() for a in alerts]
    with engine.transaction():
        marks = ", ".join("?" for _ in ids)
        have = {r[0] for r in engine.query(
            f"SELECT alert_id FROM alerts WHERE alert_id IN ({marks})", ids)}
        cols: dict[str, list[Any]] = {c: [] for c in _ARROW_TYPES}
        for alert_id, a in zip(ids, alerts, strict=True):
            if alert_id in have:
                continue
            have.add(alert_id)  # the same id twice in one call: keep the first
            created = a.created_at or now
            for c, v in (
                ("alert_id", alert_id), ("created_at", created), ("person_id", a.person_id),
                ("account_id", a.account_id), ("trigger_id", a.trigger_id),
                ("trigger_kind", a.trigger_kind), ("severity", a.severity), ("title", a.title),
                ("payload", _json(a.payload())), ("channel", a.channel),
                ("recipient", a.recipient), ("status", PENDING), ("attempts", 0),
                ("next_attempt_at", now),
            ):
                cols[c].append(v)
        if cols["alert_id"]:
            engine.append(
                "alerts",
                pa.table({c: pa.array(v, type=_ARROW_TYPES[c]) for c, v in cols.items()}),
            )
    return ids


# -- reading and managing alerts ------------------------------------------------------------


@dataclass(frozen=True)
class AlertRow:
    alert_id: str
    created_at: datetime
    person_id: str | None
    account_id: str | None
    trigger_id: str
    trigger_kind: str
    severity: str
    title: str
    payload: dict[str, Any]
    channel: str
    recipient: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    claimed_at: datetime | None
    claimed_by: str | None
    last_error: str | None
    delivered_at: datetime | None

    @classmethod
    def from_tuple(cls, row: Sequence[Any]) -> AlertRow:
        d = dict(zip(COLUMNS, row, strict=True))
        p = d["payload"]
        d["payload"] = json.loads(p) if isinstance(p, str) else (p or {})
        d["recipient"] = d["recipient"] or ""
        d["attempts"] = int(d["attempts"] or 0)
        return cls(**d)

    def as_dict(self) -> dict[str, Any]:
        return {c: getattr(self, c) for c in COLUMNS}


SELECT = f"SELECT {', '.join(COLUMNS)} FROM alerts"


def get_alert(engine: Engine, alert_id: str) -> AlertRow:
    rows = engine.query(f"{SELECT} WHERE alert_id = ?", [alert_id])
    if not rows:
        raise NotFound(f"no alert {alert_id!r}; list them with `leadrefinery alerts --status all`")
    return AlertRow.from_tuple(rows[0])


def list_alerts(
    engine: Engine, *, status: str = "all", limit: int = 100, person_id: str | None = None
) -> list[AlertRow]:
    """Newest first. `status`: pending | delivered | dead | all."""
    if status not in (*STATUSES, "all"):
        raise InputError(f"unknown alert status {status!r}; use pending, delivered, dead or all",
                         field="status")
    where, params = ["1 = 1"], []
    if status != "all":
        where.append("status = ?")
        params.append(status)
    if person_id is not None:
        where.append("person_id = ?")
        params.append(person_id)
    rows = engine.query(
        f"{SELECT} WHERE {' AND '.join(where)} ORDER BY created_at DESC, alert_id DESC LIMIT ?",
        [*params, limit],
    )
    return [AlertRow.from_tuple(r) for r in rows]


def status_counts(engine: Engine) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({s: int(n) for s, n in engine.query(
        "SELECT status, count(*) FROM alerts GROUP BY status")})
    return counts


def requeue(engine: Engine, alert_ids: Sequence[str], *, now: datetime | None = None) -> int:
    """Put dead (or waiting) alerts back to `pending`, due now, with a fresh attempt count.

    An alert being sent right now is left alone. A delivered alert is not re-sent (that would
    be a duplicate on purpose); an unknown id is an error. Returns how many ids were given.
    """
    now = now or utcnow()
    with engine.transaction():
        for alert_id in alert_ids:
            row = get_alert(engine, alert_id)
            if row.status == DELIVERED:
                raise InputError(
                    f"alert {alert_id} was delivered at {row.delivered_at:%Y-%m-%d %H:%M:%S}; "
                    "it is not sent again", field="requeue")
        if not alert_ids:
            return 0
        marks = ", ".join("?" for _ in alert_ids)
        engine.execute(
            f"UPDATE alerts SET status = ?, attempts = 0, next_attempt_at = ? "
            f"WHERE alert_id IN ({marks}) AND status <> ? AND claimed_at IS NULL",
            [PENDING, now, *alert_ids, DELIVERED],
        )
    return len(set(alert_ids))


def requeue_dead(engine: Engine, *, now: datetime | None = None) -> int:
    """Every dead alert back to `pending`, due now. Returns how many."""
    now = now or utcnow()
    with engine.transaction():
        n = int(engine.scalar("SELECT count(*) FROM alerts WHERE status = ?", [DEAD]) or 0)
        engine.execute(
            "UPDATE alerts SET status = ?, attempts = 0, next_attempt_at = ?, claimed_at = NULL, "
            "claimed_by = NULL WHERE status = ?",
            [PENDING, now, DEAD],
        )
    return n


def feed(engine: Engine, *, recipient: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The dashboard feed, newest first (everyone's feed plus `recipient`'s own, if given)."""
    cols = ["alert_id", "created_at", "delivered_at", "recipient", "person_id", "account_id",
            "trigger_id", "severity", "title", "text", "payload", "seen_at"]
    where, params = ("recipient = '' OR recipient = ?", [recipient]) if recipient else ("1 = 1", [])
    rows = engine.query(
        f"SELECT {', '.join(cols)} FROM alert_feed WHERE {where} "
        "ORDER BY created_at DESC, alert_id DESC LIMIT ?",
        [*params, limit],
    )
    out = []
    for r in rows:
        d = dict(zip(cols, r, strict=True))
        if isinstance(d["payload"], str):
            d["payload"] = json.loads(d["payload"])
        out.append(d)
    return out
