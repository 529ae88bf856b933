"""Nurture sequences: timed, personalised mail for leads that are not ready for sales.

A sequence is a YAML (or TOML) file under `sequences/` (`[nurture].files`):

    sequence: trial
    enroll: { event: "Signed Up", within_days: 30 }    # who starts it, from when (day 0)
    category: product_news                             # default content category of steps
    exit: { on_conversion: true, events: ["Trial Cancelled"] }
    fast_track: { events: ["Pricing Requested"] }      # + [nurture].fast_track_events
    branches:
      - { when: { clicked: tools }, goto: builders }   # clicked a link in step `tools`
    steps:
      - { id: welcome, day: 0, window: false, subject: "Welcome, {{ person.first_name }}",
          body: "..." }
      - { id: tools, day: 3, subject: "...", template: tools.txt.j2 }
      - { id: talk-to-sales, day: 25, category: sales, subject: "...", body: "..." }
    tracks:
      builders: { then: resume, steps: [ { id: builders-1, day: 1, subject: ..., body: ... } ] }

`tick(now)` does everything due at `now` (the clock is injectable; see act/clock.py):

1. **enrol** people whose `enroll.event` happened within `within_days` (once per sequence; not
   people already converted or routed), anchored at the event's time;
2. for each active enrolment, in this order: **exit on conversion**; **fast-track** on a
   buy-readiness event (leaves the sequence and is routed at once: `trigger = fast_track`);
   exit on an `exit.events` event; exit when routed to a rep; exit when unsubscribed from all;
   **branch** when a branch's behaviour is seen (`clicked`/`opened` a step's mail — Segment
   `Email Clicked`/`Email Opened` with `properties.sequence` and `properties.step` — or any
   `event`), which switches to the branch's track, anchored at that moment, and at the end of
   the track resumes the main track (`then: resume`) or completes it;
3. **send** each step that is due: at anchor + `day` days, moved to the next opening of the
   send window (local hours and weekdays in the person's time zone: the `timezone` trait, else
   the country's, else `[nurture].default_timezone`). A step more than `max_late_hours` overdue
   is skipped rather than sent late. A message is suppressed (kept, with why) when the person
   has no email, unsubscribed from its category or from everything, or is a community member
   and the category is a sales one.

Messages are Jinja2 templates (sandboxed) rendered with `person` (profile fields and
`person.traits`), `account`, `sequence`, `step`, `unsubscribe_url` and
`unsubscribe_all_url`; every message carries a one-click unsubscribe link (RFC 8058 headers,
and a footer when the template has none). Tokens are HMAC-signed with the project's
unsubscribe secret (LEADREFINERY_UNSUBSCRIBE_SECRET or `[nurture] unsubscribe_secret` in
secrets.toml) so a link cannot be forged for someone else. Preferences are checked when a
message is made *and again* when it is sent: an unsubscribe in between is honoured.

Sending: `deliver(now, sender)` sends queued messages through a `Sender` — `SmtpSender` uses
the `[alerts.smtp]` server (the alerts outbox's email channel renders alerts only, so nurture
mail has this small sender of its own). Every step has a stable `send_id` (Message-ID), so a
re-run never mails twice.
"""

from __future__ import annotations

import base64
import glob as globlib
import hashlib
import hmac
import os
import smtplib
import ssl
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
import orjson
import pyarrow as pa
import yaml
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..config import SendWindow, Settings, SmtpSection, load_secrets
from ..errors import AuthError, ConfigError, LeadRefineryError, NotFound
from ..store.engine import Engine
from .clock import Clock, resolve_now
from .routing import RoutingPlan, as_segments, parse_json, route

MAIN = "main"
ACTIVE, COMPLETED, EXITED, FAST_TRACKED = "active", "completed", "exited", "fast_tracked"
OPENED, CLICKED = "Email Opened", "Email Clicked"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL = "*"  # the preference category meaning "every category"

# country -> the time zone most of its people live in (for send windows); extend with a
# `timezone` trait per person
COUNTRY_TZ = {
    "US": "America/New_York", "CA": "America/Toronto", "MX": "America/Mexico_City",
    "BR": "America/Sao_Paulo", "AR": "America/Argentina/Buenos_Aires", "CL": "America/Santiago",
    "CO": "America/Bogota", "PE": "America/Lima", "GB": "Europe/London", "IE": "Europe/Dublin",
    "DE": "Europe/Berlin", "FR": "Europe/Paris", "NL": "Europe/Amsterdam", "BE": "Europe/Brussels",
    "ES": "Europe/Madrid", "PT": "Europe/Lisbon", "IT": "Europe/Rome", "CH": "Europe/Zurich",
    "AT": "Europe/Vienna", "SE": "Europe/Stockholm", "NO": "Europe/Oslo", "DK": "Europe/Copenhagen",
    "FI": "Europe/Helsinki", "PL": "Europe/Warsaw", "CZ": "Europe/Prague", "RO": "Europe/Bucharest",
    "GR": "Europe/Athens", "TR": "Europe/Istanbul", "UA": "Europe/Kyiv", "IL": "Asia/Jerusalem",
    "AE": "Asia/Dubai", "SA": "Asia/Riyadh", "EG": "Africa/Cairo", "ZA": "Africa/Johannesburg",
    "NG": "Africa/Lagos", "KE": "Africa/Nairobi", "IN": "Asia/Kolkata", "PK": "Asia/Karachi",
    "BD": "Asia/Dhaka", "LK": "Asia/Colombo", "CN": "Asia/Shanghai", "HK": "Asia/Hong_Kong",
    "TW": "Asia/Taipei", "JP": "Asia/Tokyo", "KR": "Asia/Seoul", "SG": "Asia/Singapore",
    "MY": "Asia/Kuala_Lumpur", "TH": "Asia/Bangkok", "VN": "Asia/Ho_Chi_Minh",
    "ID": "Asia/Jakarta", "PH": "Asia/Manila", "AU": "Australia/Sydney", "NZ": "Pacific/Auckland",
}


# -- sequence definitions -----------------------------------------------------------------------


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StepSpec(_Spec):
    id: str
    day: float = Field(default=0, ge=0)  # days after the track's anchor
    subject: str
    body: str | None = None  # text template (or `template`: a file beside the sequence)
    template: str | None = None
    html: str | None = None  # optional HTML alternative (template text)
    html_template: str | None = None
    category: str | None = None  # default: the sequence's
    window: bool = True  # false: send as soon as due, ignoring the send window

    @model_validator(mode="after")
    def _one_body(self) -> StepSpec:
        if (self.body is None) == (self.template is None):
            raise ValueError("give exactly one of `body` (text) or `template` (a file)")
        return self


class TrackSpec(_Spec):
    steps: list[StepSpec]
    then: Literal["resume", "complete"] = "resume"


class BranchWhen(_Spec):
    clicked: str | None = None  # step id, or "any": an `Email Clicked` for it
    opened: str | None = None  # step id, or "any": an `Email Opened` for it
    event: str | None = None  # any track event of the person
    link: str | None = None  # with clicked: only clicks whose url contains this

    @model_validator(mode="after")
    def _one(self) -> BranchWhen:
        if sum(x is not None for x in (self.clicked, self.opened, self.event)) != 1:
            raise ValueError("a branch needs exactly one of `clicked`, `opened` or `event`")
        return self


class BranchSpec(_Spec):
    name: str | None = None
    when: BranchWhen
    goto: str  # a track name


class EnrollSpec(_Spec):
    event: str | None = None  # None: enrolment only through `enroll()`
    grades: list[str] = Field(default_factory=list)  # only these latest grades ([] = any)
    within_days: float = Field(default=30, gt=0)  # older trigger events do not enrol


class ExitSpec(_Spec):
    on_conversion: bool = True
    events: list[str] = Field(default_factory=list)


class FastTrackSpec(_Spec):
    events: list[str] = Field(default_factory=list)


class SequenceSpec(_Spec):
    sequence: str
    description: str = ""
    enroll: EnrollSpec = Field(default_factory=EnrollSpec)
    category: str = "product_news"
    window: SendWindow | None = None  # default: [nurture].window
    exit: ExitSpec = Field(default_factory=ExitSpec)
    fast_track: FastTrackSpec = Field(default_factory=FastTrackSpec)
    branches: list[BranchSpec] = Field(default_factory=list)
    steps: list[StepSpec]
    tracks: dict[str, TrackSpec] = Field(default_factory=dict)

    def track(self, name: str) -> list[StepSpec]:
        return self.steps if name == MAIN else self.tracks[name].steps

    def branch_name(self, i: int) -> str:
        return self.branches[i].name or f"branch-{i}-{self.branches[i].goto}"

    def all_steps(self) -> Iterable[tuple[str, int, StepSpec]]:
        for i, s in enumerate(self.steps):
            yield MAIN, i, s
        for name, t in self.tracks.items():
            for i, s in enumerate(t.steps):
                yield name, i, s

    @property
    def version(self) -> str:
        return hashlib.sha1(orjson.dumps(self.model_dump(mode="json"),
                                         option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]


def _text_env() -> SandboxedEnvironment:
    return SandboxedEnvironment(undefined=jinja2.ChainableUndefined, autoescape=False,
                                keep_trailing_newline=True)


def _html_env() -> SandboxedEnvironment:
    return SandboxedEnvironment(undefined=jinja2.ChainableUndefined, autoescape=True)


def check_sequence(spec: SequenceSpec, settings: Settings, where: str,
                   base: Path | None = None) -> SequenceSpec:
    """Cross-checks pydantic cannot do; inlines template files. Errors name the step."""
    names = [MAIN, *spec.tracks]
    if MAIN in spec.tracks:
        raise ConfigError(f"a track may not be called {MAIN!r}", file=where, key="tracks.main")
    ids: dict[str, str] = {}
    text_env, html_env = _text_env(), _html_env()
    for track, i, step in spec.all_steps():
        key = f"steps[{i}]" if track == MAIN else f"tracks.{track}.steps[{i}]"
        if step.id in ids:
            raise ConfigError(f"step id {step.id!r} is used twice (also at {ids[step.id]})",
                              file=where, key=f"{key}.id")
        ids[step.id] = key
        category = step.category or spec.category
        if category not in settings.nurture.categories:
            raise ConfigError(f"step {step.id!r}: unknown category {category!r}; use one of "
                              f"{', '.join(settings.nurture.categories)} ([nurture].categories)",
                              file=where, key=f"{key}.category")
        for attr, fattr in (("body", "template"), ("html", "html_template")):
            fname = getattr(step, fattr)
            if fname is not None:
                path = (base / fname) if base else Path(fname)
                try:
                    setattr(step, attr, path.read_text(encoding="utf-8"))
                except OSError as exc:
                    raise ConfigError(f"step {step.id!r}: cannot read template {path}: "
                                      f"{exc.strerror}", file=where, key=f"{key}.{fattr}") from exc
                setattr(step, fattr, None)
        for attr, env in (("subject", text_env), ("body", text_env), ("html", html_env)):
            source = getattr(step, attr)
            if source is None:
                continue
            try:
                env.parse(source)
            except jinja2.TemplateSyntaxError as exc:
                raise ConfigError(f"step {step.id!r}: template {attr} line {exc.lineno}: "
                                  f"{exc.message}", file=where, key=f"{key}.{attr}") from exc
    for i, b in enumerate(spec.branches):
        if b.goto not in spec.tracks:
            raise ConfigError(f"branch goes to track {b.goto!r}, which is not under `tracks` "
                              f"(have: {', '.join(names[1:]) or 'none'})", file=where,
                              key=f"branches[{i}].goto")
        for ref in (b.when.clicked, b.when.opened):
            if ref not in (None, "any") and ref not in ids:
                raise ConfigError(f"branch refers to step {ref!r}, which does not exist",
                                  file=where, key=f"branches[{i}].when")
    return spec


def parse_sequence(data: Mapping[str, Any], settings: Settings, where: str = "<sequence>",
                   base: Path | None = None, lines: Any = None) -> SequenceSpec:
    try:
        spec = SequenceSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        key = ".".join(str(p) for p in loc)
        line = lines.line(loc) if lines is not None else None
        raise ConfigError(f"{first['msg']} ({len(exc.errors())} problem(s) in all)",
                          file=f"{where}:{line}" if line else where, key=key) from exc
    return check_sequence(spec, settings, where, base)


def load_sequence_file(path: Path, settings: Settings) -> SequenceSpec:
    text = path.read_text(encoding="utf-8")
    lines = None
    if path.suffix in (".toml",):
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not valid TOML: {exc}", file=str(path)) from exc
    else:
        try:
            from ..model.yamlload import load_yaml

            data, lines = load_yaml(text, str(path))
        except ImportError:  # pragma: no cover - the model package is always there
            data = yaml.safe_load(text)
        except LeadRefineryError as exc:
            raise ConfigError(exc.message, file=str(path)) from exc
    if not isinstance(data, Mapping):
        raise ConfigError("a sequence file holds one mapping (sequence:, steps:, ...)",
                          file=str(path))
    return parse_sequence(data, settings, str(path), path.parent, lines)


def load_sequences(settings: Settings, root: Path | None) -> dict[str, SequenceSpec]:
    """Every sequence the project declares ([nurture].files globs, relative to the project)."""
    out: dict[str, SequenceSpec] = {}
    where: dict[str, Path] = {}
    for pattern in settings.nurture.files:
        full = pattern if Path(pattern).is_absolute() or root is None else str(root / pattern)
        for name in sorted(globlib.glob(full)):
            path = Path(name)
            spec = load_sequence_file(path, settings)
            if spec.sequence in out:
                raise ConfigError(f"sequence {spec.sequence!r} is also defined in "
                                  f"{where[spec.sequence]}", file=str(path), key="sequence")
            out[spec.sequence], where[spec.sequence] = spec, path
    return out


# -- unsubscribe tokens and preferences --------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def unsubscribe_token(secret: str, person_id: str, category: str = ALL) -> str:
    """A one-click unsubscribe token: who and from what, signed (HMAC-SHA256)."""
    payload = _b64(orjson.dumps([person_id, category]))
    sig = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()[:18]
    return f"{payload}.{_b64(sig)}"


def read_unsubscribe_token(secret: str, token: str) -> tuple[str, str]:
    """-> (person_id, category); AuthError if the token was not made with this secret."""
    payload, _, sig = (token or "").strip().partition(".")
    good = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()[:18]
    try:
        ok = hmac.compare_digest(_unb64(sig), good)
        person_id, category = orjson.loads(_unb64(payload)) if ok else (None, None)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        ok = False
    if not ok or not isinstance(person_id, str) or not isinstance(category, str):
        raise AuthError("this unsubscribe link is not valid (it was changed or cut short); "
                        "use the link from the email as it is")
    return person_id, category


def unsubscribe_secret(root: Path | None) -> str:
    """LEADREFINERY_UNSUBSCRIBE_SECRET, else `[nurture] unsubscribe_secret` in secrets.toml."""
    value = os.environ.get("LEADREFINERY_UNSUBSCRIBE_SECRET")
    if not value and root is not None:
        value = (load_secrets(root).get("nurture") or {}).get("unsubscribe_secret")
    if not value:
        raise ConfigError(
            "no unsubscribe secret: set LEADREFINERY_UNSUBSCRIBE_SECRET or add "
            "`[nurture]\nunsubscribe_secret = \"<a long random string>\"` to secrets.toml",
            key="nurture.unsubscribe_secret")
    return str(value)


def set_preference(engine: Engine, person_id: str, category: str, subscribed: bool, *,
                   now: datetime, source: str = "api") -> None:
    """Record a preference (`category` '*' = everything); the newest row wins."""
    engine.execute(
        "INSERT INTO preferences (person_id, category, subscribed, ts, source) "
        "VALUES (?, ?, ?, ?, ?)", [person_id, category, subscribed, now, source])


def unsubscribe(engine: Engine, secret: str, token: str, *, now: datetime | None = None,
                clock: Clock | None = None) -> tuple[str, str]:
    """Honour a one-click unsubscribe link (what `POST /v1/unsubscribe` calls)."""
    person_id, category = read_unsubscribe_token(secret, token)
    set_preference(engine, person_id, category, False, now=resolve_now(now, clock),
                   source="unsubscribe_link")
    return person_id, category


def preferences(engine: Engine, person_ids: Sequence[str]) -> dict[str, dict[str, bool]]:
    """person_id -> {category: subscribed} (only categories with a recorded choice)."""
    if not person_ids:
        return {}
    out: dict[str, dict[str, bool]] = {}
    for pid, cat, sub in engine.query(
        "SELECT person_id, category, subscribed FROM preferences WHERE person_id = ANY(?) "
        "ORDER BY ts, category", [list(person_ids)],
    ):
        out.setdefault(pid, {})[cat] = bool(sub)
        if cat == ALL:  # a newer "everything" choice overrides older per-category ones
            out[pid] = {ALL: bool(sub)}
    return out


def may_send(person: Mapping[str, Any], category: str, prefs: Mapping[str, bool],
             settings: Settings) -> str | None:
    """None if this person may get mail of this category, else why not."""
    if not person.get("email"):
        return "no email address"
    if category in prefs:
        if not prefs[category]:
            return f"unsubscribed from {category}"
    elif prefs.get(ALL) is False:
        return "unsubscribed from all mail"
    cfg = settings.nurture
    segments = list(person.get("segments") or ())
    if category in cfg.sales_categories and cfg.community_segment in segments:
        return f"{cfg.community_segment} member: no sales mail"
    return None


# -- send windows --------------------------------------------------------------------------------


def window_bounds(window: SendWindow, key: str = "nurture.window") -> tuple[time, time, set[int]]:
    """(opens, closes, weekdays) of a send window; ConfigError when it can never open."""
    bounds = []
    for name in ("start", "end"):
        text = getattr(window, name)
        try:
            bounds.append(time.fromisoformat(text))
        except ValueError as exc:
            raise ConfigError(f"{text!r} is not a time of day (HH:MM)",
                              key=f"{key}.{name}") from exc
    days = {WEEKDAYS.index(d) for d in window.days}
    if not days or bounds[0] >= bounds[1]:
        raise ConfigError("the send window never opens: it needs at least one day and a start "
                          "before its end", key=key)
    return bounds[0], bounds[1], days


def next_opening(due: datetime, tz: ZoneInfo, window: SendWindow) -> datetime:
    """The first moment at or after `due` (naive UTC) inside the window, as naive UTC."""
    start, end, days = window_bounds(window)
    local = due.replace(tzinfo=UTC).astimezone(tz)
    for i in range(8):
        day: date = local.date() + timedelta(days=i)
        if day.weekday() not in days:
            continue
        opens = datetime.combine(day, start, tzinfo=tz)
        closes = datetime.combine(day, end, tzinfo=tz)
        at = max(local, opens)
        if at < closes:
            return at.astimezone(UTC).replace(tzinfo=None)
    return due  # pragma: no cover - some weekday always opens


def person_tz(person: Mapping[str, Any], settings: Settings) -> ZoneInfo:
    traits = person.get("traits") or {}
    names = [traits.get(k) for k in ("timezone", "time_zone", "tz")]
    names.append(COUNTRY_TZ.get(str(person.get("country") or "").upper()))
    names.append(settings.nurture.default_timezone)
    for name in names:
        if name:
            try:
                return ZoneInfo(str(name))
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


# -- sending -------------------------------------------------------------------------------------


@dataclass
class OutgoingEmail:
    send_id: str
    sender: str
    to: str
    subject: str
    body: str
    html: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    date: datetime | None = None

    def message(self, domain: str = "leadrefinery") -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = self.subject
        msg["From"] = self.sender
        msg["To"] = self.to
        msg["Message-ID"] = f"<{self.send_id}@{domain}>"
        if self.date is not None:
            msg["Date"] = format_datetime(self.date.replace(tzinfo=UTC), usegmt=True)
        for k, v in self.headers.items():
            msg[k] = v
        msg.set_content(self.body)
        if self.html:
            msg.add_alternative(self.html, subtype="html")
        return msg


class Sender(Protocol):
    """Delivers one message or raises (any exception = failed; retried on a later deliver)."""

    def send(self, email: OutgoingEmail) -> None: ...


class SmtpSender:
    """Plain SMTP (optionally STARTTLS / SSL and login) to the `[alerts.smtp]` server."""

    def __init__(self, smtp: SmtpSection, *, password: str | None = None) -> None:
        self.smtp = smtp
        self.password = password
        addr = parseaddr(smtp.from_address)[1]
        self.domain = smtp.message_id_domain or (addr.rpartition("@")[2] or "leadrefinery")

    @classmethod
    def from_settings(cls, settings: Settings, root: Path | None = None) -> SmtpSender:
        tree = load_secrets(root) if root else {}
        password = os.environ.get("LEADREFINERY_SMTP_PASSWORD") or (
            (tree.get("alerts") or {}).get("smtp") or {}).get("password")
        return cls(settings.alerts.smtp, password=password)

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.smtp.ca_file)
        if not self.smtp.verify_tls:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def send(self, email: OutgoingEmail) -> None:
        cfg = self.smtp
        msg = email.message(self.domain)
        if cfg.security == "ssl":
            conn: smtplib.SMTP = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout_seconds,
                                                  context=self._context())
        else:
            conn = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_seconds)
        with conn as s:
            if cfg.security == "starttls":
                s.starttls(context=self._context())
            if cfg.user:
                s.login(cfg.user, self.password or "")
            s.send_message(msg)


# -- results -------------------------------------------------------------------------------------


@dataclass
class DeliveryReport:
    sent: list[str] = field(default_factory=list)  # send ids
    failed: dict[str, str] = field(default_factory=dict)  # send id -> error
    suppressed: dict[str, str] = field(default_factory=dict)  # send id -> why (late unsubscribe)


@dataclass
class TickResult:
    at: datetime
    enrolled: list[tuple[str, str]] = field(default_factory=list)  # (person, sequence)
    queued: list[dict[str, Any]] = field(default_factory=list)  # messages made, to send
    suppressed: list[dict[str, Any]] = field(default_factory=list)  # with `why`
    skipped: list[dict[str, Any]] = field(default_factory=list)  # too late
    branched: list[tuple[str, str, str]] = field(default_factory=list)  # (person, seq, track)
    exited: list[tuple[str, str, str]] = field(default_factory=list)  # (person, seq, reason)
    completed: list[tuple[str, str]] = field(default_factory=list)
    fast_tracked: list[str] = field(default_factory=list)
    routing: RoutingPlan | None = None
    delivery: DeliveryReport | None = None

    def summary(self) -> dict[str, int]:
        return {"enrolled": len(self.enrolled), "queued": len(self.queued),
                "suppressed": len(self.suppressed), "skipped": len(self.skipped),
                "branched": len(self.branched), "exited": len(self.exited),
                "completed": len(self.completed), "fast_tracked": len(self.fast_tracked),
                "sent": len(self.delivery.sent) if self.delivery else 0,
                "failed": len(self.delivery.failed) if self.delivery else 0}


# -- the engine ----------------------------------------------------------------------------------

ENROLLMENT_COLUMNS = (
    "enrollment_id", "person_id", "sequence", "track", "step", "anchor_at", "resume_step",
    "fired", "status", "exit_reason", "enrolled_at", "next_at", "updated_at",
)
SEND_COLUMNS = (
    "send_id", "enrollment_id", "person_id", "sequence", "track", "step", "category", "to_email",
    "subject", "body", "due_at", "status", "why", "attempts", "sent_at", "opened_at", "clicked_at",
)
_TS = pa.timestamp("us")
_TYPES = {"resume_step": pa.int64(), "attempts": pa.int64(),
          "anchor_at": _TS, "enrolled_at": _TS, "next_at": _TS, "updated_at": _TS,
          "due_at": _TS, "sent_at": _TS, "opened_at": _TS, "clicked_at": _TS}


def _hash(*parts: object) -> str:
    return hashlib.sha1("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:20]


def _table(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    types = {**_TYPES, "step": pa.int64()} if columns is ENROLLMENT_COLUMNS else _TYPES
    return pa.table({c: pa.array([r.get(c) for r in rows], types.get(c, pa.string()))
                     for c in columns})


class Nurture:
    """Sequences over one store. `tick(now)` enrols, branches, exits and makes messages;
    `deliver(now)` sends them. See the module docstring."""

    def __init__(self, engine: Engine, settings: Settings, *, root: Path | None = None,
                 sequences: Iterable[SequenceSpec | Mapping[str, Any]] | None = None,
                 secret: str | None = None, sender: Sender | None = None,
                 clock: Clock | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.root = root
        self.clock = clock
        self.sender = sender
        if sequences is None:
            self.sequences = load_sequences(settings, root)
        else:
            self.sequences = {}
            for s in sequences:
                spec = s if isinstance(s, SequenceSpec) else parse_sequence(s, settings, base=root)
                self.sequences[spec.sequence] = spec
        self.secret = secret or unsubscribe_secret(root)
        self.text_env, self.html_env = _text_env(), _html_env()
        self._synced = False
        cfg = settings.nurture
        self.from_address = cfg.sender or settings.alerts.smtp.from_address
        base = cfg.unsubscribe_url or (
            (settings.server.public_url or f"http://{settings.server.host}:{settings.server.port}")
            .rstrip("/") + "/v1/unsubscribe?token={token}")
        self.unsubscribe_template = base
        window_bounds(cfg.window)  # a bad window fails here, not at the first send
        for spec in self.sequences.values():
            if spec.window:
                window_bounds(spec.window, f"sequence {spec.sequence}: window")

    # -- small reads --

    def unsubscribe_url(self, person_id: str, category: str = ALL) -> str:
        return self.unsubscribe_template.replace(
            "{token}", unsubscribe_token(self.secret, person_id, category))

    def _profiles(self, person_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not person_ids:
            return {}
        cols = ["person_id", "email", "first_name", "last_name", "name", "company", "title",
                "country", "phone", "traits", "account_id", "account_name", "domain", "size",
                "industry"]
        rows = self.engine.query(
            """
            SELECT p.person_id, p.email, p.first_name, p.last_name, p.name, p.company, p.title,
                   p.country, p.phone, p.traits, p.account_id, a.name, a.domain, a.size,
                   a.industry
            FROM people p LEFT JOIN accounts a ON a.account_id = p.account_id
            WHERE p.person_id = ANY(?)
            """, [list(person_ids)])
        out = {}
        from .routing import latest_scores

        scores = latest_scores(self.engine, person_ids, model=self.settings.routing.model)
        for r in rows:
            d = dict(zip(cols, r, strict=True))
            d["traits"] = parse_json(d["traits"]) or {}
            traits = d["traits"]
            segs = as_segments(traits.get("segment")) + as_segments(traits.get("segments"))
            segs += (scores.get(d["person_id"]) or {}).get("segments", [])
            d["segments"] = sorted(set(segs))
            d["grade"] = (scores.get(d["person_id"]) or {}).get("grade")
            out[d["person_id"]] = d
        return out

    def _enrollments(self, status: str | None = ACTIVE) -> list[dict[str, Any]]:
        where = "WHERE status = ?" if status else ""
        rows = self.engine.query(
            f"SELECT {', '.join(ENROLLMENT_COLUMNS)} FROM enrollments {where} "
            "ORDER BY enrolled_at, enrollment_id", [status] if status else None)
        out = []
        for r in rows:
            d = dict(zip(ENROLLMENT_COLUMNS, r, strict=True))
            d["fired"] = parse_json(d["fired"]) or []
            out.append(d)
        return out

    # -- enrolment --

    def enroll(self, person_id: str, sequence: str, *, at: datetime | None = None,
               now: datetime | None = None) -> str:
        """Enrol one person by hand (anchored at `at`, default now); -> enrollment id."""
        now = resolve_now(now, self.clock)
        if sequence not in self.sequences:
            raise NotFound(f"no sequence {sequence!r} (have: {', '.join(self.sequences)})")
        row = self._new_enrollment(person_id, sequence, at or now, now)
        with self.engine.transaction():
            self.engine.execute("DELETE FROM enrollments WHERE enrollment_id = ? AND status = ?",
                                [row["enrollment_id"], ACTIVE])
            self.engine.append("enrollments", _table(ENROLLMENT_COLUMNS, [row]))
        return row["enrollment_id"]

    def _new_enrollment(self, person_id: str, sequence: str, anchor: datetime,
                        now: datetime) -> dict[str, Any]:
        return {"enrollment_id": _hash("enr", sequence, person_id), "person_id": person_id,
                "sequence": sequence, "track": MAIN, "step": 0, "anchor_at": anchor,
                "resume_step": None, "fired": "[]", "status": ACTIVE, "exit_reason": None,
                "enrolled_at": anchor, "next_at": anchor, "updated_at": now}

    def _to_enroll(self, now: datetime) -> list[dict[str, Any]]:
        e = self.engine
        out = []
        for name, spec in self.sequences.items():
            if not spec.enroll.event:
                continue
            rows = e.query(
                """
                SELECT person_id, min(ts) FROM events
                WHERE type = 'track' AND event = ? AND ts <= ? AND ts >= ?
                  AND person_id IS NOT NULL
                  AND person_id NOT IN (SELECT person_id FROM enrollments WHERE sequence = ?)
                  AND person_id NOT IN (SELECT person_id FROM outcomes
                                        WHERE kind = 'conversion' AND person_id IS NOT NULL
                                          AND created_at <= ?)
                GROUP BY person_id ORDER BY 2, 1
                """,
                [spec.enroll.event, now, now - timedelta(days=spec.enroll.within_days), name, now],
            )
            routed: set[str] = set()
            if self.settings.nurture.exit_when_routed and rows:
                routed = {r[0] for r in e.query(
                    "SELECT DISTINCT person_id FROM assignments WHERE person_id = ANY(?) "
                    "AND assigned_at <= ?", [[r[0] for r in rows], now])}
            grades: dict[str, Any] = {}
            if spec.enroll.grades and rows:
                from .routing import latest_scores

                grades = latest_scores(e, [r[0] for r in rows], model=self.settings.routing.model)
            for pid, ts in rows:
                if pid in routed:
                    continue
                if spec.enroll.grades and (grades.get(pid) or {}).get("grade") \
                        not in spec.enroll.grades:
                    continue
                out.append(self._new_enrollment(pid, name, ts, now))
        return out

    # -- behaviour --

    def _behaviour(self, person_ids: Sequence[str], since: datetime,
                   now: datetime) -> dict[str, list[tuple[str, datetime, dict]]]:
        names = {OPENED, CLICKED, *self.settings.nurture.fast_track_events}
        for spec in self.sequences.values():
            names |= set(spec.exit.events) | set(spec.fast_track.events)
            names |= {b.when.event for b in spec.branches if b.when.event}
        out: dict[str, list[tuple[str, datetime, dict]]] = {}
        if not person_ids:
            return out
        for pid, event, ts, props in self.engine.query(
            "SELECT person_id, event, ts, properties FROM events WHERE type = 'track' "
            "AND person_id = ANY(?) AND event = ANY(?) AND ts >= ? AND ts <= ? "
            "ORDER BY ts, message_id", [list(person_ids), sorted(names), since, now],
        ):
            props = parse_json(props)
            out.setdefault(pid, []).append((event, ts, props if isinstance(props, dict) else {}))
        return out

    def _conversions(self, person_ids: Sequence[str], now: datetime) -> set[str]:
        if not person_ids:
            return set()
        return {r[0] for r in self.engine.query(
            "SELECT DISTINCT person_id FROM outcomes WHERE kind = 'conversion' "
            "AND person_id = ANY(?) AND created_at <= ?", [list(person_ids), now])}

    def _routed(self, person_ids: Sequence[str], now: datetime) -> set[str]:
        if not person_ids:
            return set()
        return {r[0] for r in self.engine.query(
            "SELECT DISTINCT person_id FROM assignments WHERE person_id = ANY(?) "
            "AND assigned_at <= ?", [list(person_ids), now])}

    @staticmethod
    def _branch_hit(spec: SequenceSpec, when: BranchWhen, seen: list[tuple[str, datetime, dict]],
                    since: datetime) -> datetime | None:
        for event, ts, props in seen:
            if ts < since:
                continue
            if when.event is not None and event == when.event:
                return ts
            for ref, name in ((when.clicked, CLICKED), (when.opened, OPENED)):
                if ref is None or event != name or props.get("sequence") != spec.sequence:
                    continue
                if ref != "any" and str(props.get("step")) != ref:
                    continue
                url = str(props.get("url") or props.get("link") or "")
                if name == CLICKED and when.link and when.link not in url:
                    continue
                return ts
        return None

    # -- the tick --

    def tick(self, now: datetime | None = None, *, route_fast_tracked: bool = True,
             deliver: bool | None = None) -> TickResult:
        """Do everything due at `now`. Delivers at once when a sender is set (or `deliver`)."""
        now = resolve_now(now, self.clock)
        result = TickResult(at=now)
        cfg = self.settings.nurture
        new = self._to_enroll(now)
        result.enrolled = [(r["person_id"], r["sequence"]) for r in new]
        active = [e for e in self._enrollments() if e["sequence"] in self.sequences] + new
        pids = sorted({e["person_id"] for e in active})
        since = min((e["enrolled_at"] for e in active), default=now)
        seen = self._behaviour(pids, since, now)
        converted = self._conversions(pids, now)
        routed = self._routed(pids, now) if cfg.exit_when_routed else set()
        profiles = self._profiles(pids)
        prefs = preferences(self.engine, pids)
        known_sends = self._existing_sends([e["enrollment_id"] for e in active])
        sends: list[dict[str, Any]] = []
        for enr in active:
            self._advance(enr, now, seen.get(enr["person_id"], []), converted, routed,
                          profiles.get(enr["person_id"], {"person_id": enr["person_id"]}),
                          prefs.get(enr["person_id"], {}), known_sends, sends, result)
        self._record_opens(now)
        with self.engine.transaction():
            ids = [e["enrollment_id"] for e in active]
            if ids:
                self.engine.execute("DELETE FROM enrollments WHERE enrollment_id = ANY(?)", [ids])
                rows = [{**e, "fired": orjson.dumps(e["fired"]).decode()} for e in active]
                self.engine.append("enrollments", _table(ENROLLMENT_COLUMNS, rows))
            if sends:
                self.engine.append("sends", _table(SEND_COLUMNS, sends))
            self._sync_definitions(now)
        if result.fast_tracked and route_fast_tracked:
            result.routing = route(
                self.engine, self.settings,
                [{"person_id": p, "trigger": "fast_track"} for p in result.fast_tracked],
                trigger="fast_track", now=now)
        if deliver or (deliver is None and self.sender is not None):
            result.delivery = self.deliver(now)
        return result

    def _existing_sends(self, enrollment_ids: Sequence[str]) -> set[str]:
        if not enrollment_ids:
            return set()
        return {r[0] for r in self.engine.query(
            "SELECT send_id FROM sends WHERE enrollment_id = ANY(?)", [list(enrollment_ids)])}

    def _advance(self, enr: dict[str, Any], now: datetime,
                 seen: list[tuple[str, datetime, dict]], converted: set[str], routed: set[str],
                 person: dict[str, Any], prefs: Mapping[str, bool], known: set[str],
                 sends: list[dict[str, Any]], result: TickResult) -> None:
        spec = self.sequences[enr["sequence"]]
        pid, name = enr["person_id"], spec.sequence
        enr["updated_at"] = now

        def leave(status: str, reason: str) -> None:
            enr.update(status=status, exit_reason=reason, next_at=None)
            if status == FAST_TRACKED:
                result.fast_tracked.append(pid)
            else:
                result.exited.append((pid, name, reason))

        after = [(ev, ts, p) for ev, ts, p in seen if ts >= enr["enrolled_at"]]
        fast = set(self.settings.nurture.fast_track_events) | set(spec.fast_track.events)
        if spec.exit.on_conversion and pid in converted:
            return leave(EXITED, "converted")
        hit = next((ev for ev, _, _ in after if ev in fast), None)
        if hit:
            return leave(FAST_TRACKED, f"fast_track: {hit}")
        hit = next((ev for ev, _, _ in after if ev in spec.exit.events), None)
        if hit:
            return leave(EXITED, f"event: {hit}")
        if pid in routed:
            return leave(EXITED, "routed to a rep")
        if prefs.get(ALL) is False and len(prefs) == 1:
            return leave(EXITED, "unsubscribed from all mail")
        for i, b in enumerate(spec.branches):
            bname = spec.branch_name(i)
            if bname in enr["fired"]:
                continue
            at = self._branch_hit(spec, b.when, after, enr["enrolled_at"])
            if at is None:
                continue
            enr["fired"] = [*enr["fired"], bname]
            if enr["track"] == MAIN:
                enr["resume_step"] = enr["step"]
            enr.update(track=b.goto, step=0, anchor_at=at)
            result.branched.append((pid, name, b.goto))
            break

        cfg = self.settings.nurture
        window = spec.window or cfg.window
        tz = person_tz(person, self.settings)
        while True:
            steps = spec.track(enr["track"])
            if enr["step"] >= len(steps):
                if enr["track"] != MAIN and spec.tracks[enr["track"]].then == "resume" \
                        and (enr["resume_step"] or 0) < len(spec.steps):
                    enr.update(track=MAIN, step=enr["resume_step"] or 0,
                               anchor_at=enr["enrolled_at"], resume_step=None)
                    continue
                enr.update(status=COMPLETED, exit_reason="completed", next_at=None)
                result.completed.append((pid, name))
                return None
            step = steps[enr["step"]]
            due = enr["anchor_at"] + timedelta(days=step.day)
            send_at = next_opening(due, tz, window) if step.window else due
            if send_at > now:
                enr["next_at"] = send_at
                return None
            enr["step"] += 1
            send_id = _hash("send", enr["enrollment_id"], enr["track"], step.id)
            if send_id in known:
                continue
            known.add(send_id)
            category = step.category or spec.category
            row = {"send_id": send_id, "enrollment_id": enr["enrollment_id"], "person_id": pid,
                   "sequence": name, "track": enr["track"], "step": step.id,
                   "category": category, "to_email": person.get("email"), "due_at": send_at,
                   "attempts": 0}
            if now - send_at > timedelta(hours=cfg.max_late_hours):
                row.update(status="skipped", why=f"late: due {send_at:%Y-%m-%d %H:%M} UTC")
                result.skipped.append(row)
            elif why := may_send(person, category, prefs, self.settings):
                row.update(status="suppressed", why=why)
                result.suppressed.append(row)
            else:
                try:
                    row.update(self._render(spec, step, person, category), status="queued")
                    result.queued.append(row)
                except jinja2.TemplateError as exc:
                    row.update(status="failed", why=f"template: {exc}")
                    result.suppressed.append(row)
            sends.append(row)

    def _render(self, spec: SequenceSpec, step: StepSpec, person: Mapping[str, Any],
                category: str) -> dict[str, str | None]:
        pid = person["person_id"]
        ctx: dict[str, Any] = {  # absent values are left out so `default(...)` filters apply
            "person": {k: v for k, v in person.items() if v is not None},
            "account": {"id": person.get("account_id"), "name": person.get("account_name"),
                        "domain": person.get("domain"), "size": person.get("size"),
                        "industry": person.get("industry")},
            "sequence": spec.sequence, "step": step.id, "category": category,
            "unsubscribe_url": self.unsubscribe_url(pid, category),
            "unsubscribe_all_url": self.unsubscribe_url(pid, ALL),
        }
        subject = self.text_env.from_string(step.subject).render(ctx).strip()
        body = self.text_env.from_string(step.body or "").render(ctx)
        if ctx["unsubscribe_url"] not in body and ctx["unsubscribe_all_url"] not in body:
            body = (body.rstrip("\n") + "\n\n--\nNo more of these emails: "
                    f"{ctx['unsubscribe_url']}\nNo more email from us at all: "
                    f"{ctx['unsubscribe_all_url']}\n")
        html = self.html_env.from_string(step.html).render(ctx) if step.html else None
        return {"subject": subject, "body": body, "html": html}

    def _record_opens(self, now: datetime) -> None:
        """Opens and clicks (Segment events) onto the sends they answer."""
        rows = self.engine.query(
            "SELECT send_id, person_id, sequence, step, opened_at IS NULL, clicked_at IS NULL "
            "FROM sends WHERE status = 'sent' AND (opened_at IS NULL OR clicked_at IS NULL) "
            "AND sent_at <= ?", [now])
        if not rows:
            return
        waiting: dict[tuple[str, str, str], tuple[str, bool, bool]] = {
            (pid, seq, step): (sid, o, c) for sid, pid, seq, step, o, c in rows}
        found: dict[tuple[str, str], datetime] = {}
        for pid, event, ts, props in self.engine.query(
            "SELECT person_id, event, ts, properties FROM events WHERE type = 'track' "
            "AND event = ANY(?) AND person_id = ANY(?) AND ts <= ? ORDER BY ts",
            [[OPENED, CLICKED], sorted({r[1] for r in rows}), now],
        ):
            p = parse_json(props)
            if not isinstance(p, dict):
                continue
            hit = waiting.get((pid, str(p.get("sequence")), str(p.get("step"))))
            if hit is None:
                continue
            sid, open_missing, click_missing = hit
            if event == OPENED and open_missing:
                found.setdefault((sid, "opened_at"), ts)
            elif event == CLICKED and click_missing:
                found.setdefault((sid, "clicked_at"), ts)
                if open_missing:  # a click implies the mail was opened
                    found.setdefault((sid, "opened_at"), ts)
        for (sid, column), ts in found.items():
            self.engine.execute(f"UPDATE sends SET {column} = ? WHERE send_id = ?", [ts, sid])

    def _sync_definitions(self, now: datetime) -> None:
        if self._synced:
            return
        self._synced = True
        have = set(self.engine.query("SELECT sequence, version FROM sequences"))
        for name, spec in self.sequences.items():
            if (name, spec.version) not in have:
                self.engine.execute(
                    "INSERT INTO sequences (sequence, version, definition, file, loaded_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [name, spec.version, orjson.dumps(spec.model_dump(mode="json")).decode(),
                     None, now])

    # -- delivery --

    def deliver(self, now: datetime | None = None, *, sender: Sender | None = None,
                limit: int = 1000) -> DeliveryReport:
        """Send queued (and earlier failed) messages that are due, re-checking preferences."""
        now = resolve_now(now, self.clock)
        sender = sender or self.sender
        if sender is None:
            sender = self.sender = SmtpSender.from_settings(self.settings, self.root)
        report = DeliveryReport()
        rows = self.engine.query(
            "SELECT s.send_id, s.person_id, s.category, s.to_email, s.subject, s.body, s.attempts, "
            "s.due_at, s.sequence, s.step FROM sends s WHERE s.status IN ('queued', 'failed') "
            "AND s.attempts < ? AND s.due_at <= ? ORDER BY s.due_at, s.send_id LIMIT ?",
            [self.settings.nurture.max_attempts, now, limit])
        if not rows:
            return report
        pids = sorted({r[1] for r in rows})
        prefs = preferences(self.engine, pids)
        profiles = self._profiles(pids)
        for sid, pid, category, to, subject, body, _attempts, _due, seq, step in rows:
            person = profiles.get(pid) or {"person_id": pid, "email": to}
            person = {**person, "email": to}
            why = may_send(person, category, prefs.get(pid, {}), self.settings)
            if why:
                self.engine.execute("UPDATE sends SET status = 'suppressed', why = ? "
                                    "WHERE send_id = ?", [why, sid])
                report.suppressed[sid] = why
                continue
            spec = self.sequences.get(seq)
            html = None
            if spec is not None:
                st = next((s for _, _, s in spec.all_steps() if s.id == step), None)
                if st is not None and st.html:
                    try:
                        html = self._render(spec, st, person, category)["html"]
                    except jinja2.TemplateError:
                        html = None
            url = self.unsubscribe_url(pid, category)
            email = OutgoingEmail(
                send_id=sid, sender=self.from_address, to=to, subject=subject, body=body,
                html=html, date=now,
                headers={"List-Unsubscribe": f"<{url}>",
                         "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                         "X-LeadRefinery-Send-Id": sid,
                         "X-LeadRefinery-Sequence": f"{seq}/{step}"})
            try:
                sender.send(email)
            except Exception as exc:  # noqa: BLE001 - any failure is recorded and retried
                error = f"{type(exc).__name__}: {exc}"[:500]
                self.engine.execute("UPDATE sends SET status = 'failed', why = ?, "
                                    "attempts = attempts + 1 WHERE send_id = ?", [error, sid])
                report.failed[sid] = error
                continue
            self.engine.execute("UPDATE sends SET status = 'sent', sent_at = ?, why = NULL, "
                                "attempts = attempts + 1 WHERE send_id = ?", [now, sid])
            report.sent.append(sid)
        return report

    # -- reading --

    def next_due(self) -> datetime | None:
        """When the earliest active enrolment has its next step (a scheduler can sleep until
        then, or until new events arrive)."""
        return self.engine.scalar("SELECT min(next_at) FROM enrollments WHERE status = ?",
                                  [ACTIVE])

    def sends(self, person_id: str | None = None) -> list[dict[str, Any]]:
        where = "WHERE person_id = ? " if person_id is not None else ""
        rows = self.engine.query(
            f"SELECT {', '.join(SEND_COLUMNS)} FROM sends {where}ORDER BY due_at, send_id",
            [person_id] if person_id is not None else None)
        return [dict(zip(SEND_COLUMNS, r, strict=True)) for r in rows]

    def enrollments(self, status: str | None = None) -> list[dict[str, Any]]:
        return self._enrollments(status)


def tick(engine: Engine, settings: Settings, *, now: datetime | None = None,
         clock: Clock | None = None, root: Path | None = None,
         sequences: Iterable[SequenceSpec | Mapping[str, Any]] | None = None,
         secret: str | None = None, sender: Sender | None = None,
         route_fast_tracked: bool = True) -> TickResult:
    """One nurture tick (see `Nurture.tick`)."""
    n = Nurture(engine, settings, root=root, sequences=sequences, secret=secret, sender=sender,
                clock=clock)
    return n.tick(now, route_fast_tracked=route_fast_tracked)
