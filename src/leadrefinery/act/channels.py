"""Alert channels: webhook (JSON POST, HMAC-signed, Slack-compatible), email (SMTP), feed.

A channel sends one rendered alert (`AlertMessage`) and either returns (delivered) or raises
`DeliveryError` — `permanent=True` when retrying cannot help (an unknown webhook name, HTTP 404,
an SMTP 5xx refusal), optionally with `retry_after` seconds (HTTP 429/503 `Retry-After`). The
deliverer (delivery.py) owns retries; channels never retry on their own.

Webhook payload (schema `leadrefinery.alert.v1`; also in docs/webhooks.md)
--------------------------------------------------------------------------
`POST <url>` with `Content-Type: application/json` and the body::

    {
      "schema": "leadrefinery.alert.v1",
      "alert_id": "al_...",             # stable; de-duplicate by it (delivery is at least once)
      "created_at": "2026-03-02T09:00:00.123456Z",
      "project": "acme",
      "trigger": {"id": "hot-lead", "kind": "grade_reached"},
      "severity": "info" | "warning" | "critical",
      "title": "Ann Lee (Acme) reached grade 1",
      "text": "Slack mrkdwn summary (Slack incoming webhooks show this field)",
      "person": {"id": "p_1", "email": "...", "name": "...", "company": "...", ...} | null,
      "account": {"id": "a_1", "name": "...", "domain": "...", ...} | null,
      "change": {"field": "grade", "from": 3, "to": 1, "score": 87.5, ...},
      "reasons": [{"rule": "pricing_page", "points": 20, "detail": "visited /pricing 3 times"}],
      "evidence": [{"kind": "guests_over_limit", "detail": "...", ...}],
      "links": {"person": "https://refinery.example.com/people/p_1"},
      "recipient": {"channel": "webhook", "address": "sales"},
      "data": {...}                      # anything else the trigger attached
    }

Headers: `X-LeadRefinery-Alert-Id` and `Idempotency-Key` (both the alert id),
`X-LeadRefinery-Attempt` (1, 2, ...), `X-LeadRefinery-Signature: sha256=<hex>` — the HMAC-SHA256
of the exact body bytes with the receiver's shared secret (absent when no secret is set). The
body of an alert is the same on every attempt. A 2xx response is success; anything else, a
timeout or a connection error is a failure and is retried (4xx other than 408/409/425/429 is
permanent: the alert goes dead at once, to be re-queued after fixing the receiver).

Email: `multipart/alternative` (plain text + HTML from the Jinja2 templates `alert.txt.j2`,
`alert.html.j2`), `Message-ID: <alert_id@domain>` so a re-sent alert is the same message.

Feed: a row in `alert_feed` (at most one per alert id), which the dashboard reads.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import smtplib
import ssl
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, parseaddr
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
import jinja2

from .. import __version__
from ..config import SmtpSection, WebhookEndpoint, load_secrets
from ..errors import LeadRefineryError
from ..store.engine import Engine
from .outbox import AlertRow, utcnow

SCHEMA = "leadrefinery.alert.v1"
SIGNATURE_HEADER = "X-LeadRefinery-Signature"
ALERT_ID_HEADER = "X-LeadRefinery-Alert-Id"
ATTEMPT_HEADER = "X-LeadRefinery-Attempt"
USER_AGENT = f"LeadRefinery/{__version__}"
TEMPLATES = Path(__file__).parent / "templates"


class DeliveryError(LeadRefineryError):
    """A channel could not deliver an alert (this attempt)."""

    def __init__(self, message: str, *, permanent: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


# -- rendering ------------------------------------------------------------------------------

SEVERITY_EMOJI = {"info": ":information_source:", "warning": ":warning:",
                  "critical": ":rotating_light:"}
SEVERITY_SUBJECT = {"info": "", "warning": "[warning] ", "critical": "[critical] "}
MAX_LINES = 5  # reasons / evidence shown in text and email (all of them are in the JSON)


def _first(d: Mapping[str, Any], *keys: str) -> Any:
    return next((d[k] for k in keys if d.get(k) not in (None, "")), None)


def _reason_line(r: Mapping[str, Any]) -> str:
    label = _first(r, "label", "rule", "name", "kind") or "reason"
    pts = r.get("points")
    head = f"{label} {pts:+g}" if isinstance(pts, int | float) else str(label)
    detail = _first(r, "detail", "description", "why")
    return f"{head}: {detail}" if detail else head


def _evidence_line(e: Mapping[str, Any]) -> str:
    detail = _first(e, "detail", "description")
    label = _first(e, "label", "rule", "kind", "feature")
    named = {"detail", "description", "label", "rule", "kind"}
    rest = {k: v for k, v in e.items() if k not in named}
    text = detail or ", ".join(f"{k}={v}" for k, v in rest.items())
    return f"{label}: {text}" if label and text else str(label or text)


def _change_line(c: Mapping[str, Any]) -> str:
    if not c:
        return ""
    what = _first(c, "field", "what")
    parts = []
    if what is not None and ("from" in c or "to" in c):
        parts.append(f"{what} {c.get('from', '—')} → {c.get('to', '—')}")
    skip = {"field", "what", "from", "to"}
    parts += [f"{k} {v}" for k, v in c.items() if k not in skip and v is not None]
    return " · ".join(parts)


def _who(p: Mapping[str, Any]) -> str:
    name, email = _first(p, "name"), p.get("email")
    head = f"{name} ({email})" if name and email else (name or email or p.get("id") or "")
    tail = [x for x in (p.get("title"), p.get("company")) if x]
    return " · ".join([head, *tail]) if head else ""


def slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass(frozen=True)
class RenderContext:
    project: str = "lead-refinery"
    base_url: str = "http://127.0.0.1:8321"
    person_url: str = "{base_url}/people/{person_id}"

    @classmethod
    def from_settings(cls, settings) -> RenderContext:
        srv = settings.server
        base = (srv.public_url or f"http://{srv.host}:{srv.port}").rstrip("/")
        return cls(settings.project.name, base, settings.alerts.person_url)


@dataclass(frozen=True)
class AlertMessage:
    """One alert ready to send: the JSON body and the human-readable parts."""

    row: AlertRow
    body: dict[str, Any]
    link: str | None
    who: str
    account_line: str
    change_line: str
    reasons: list[str]
    evidence: list[str]
    text: str

    # templates read the row's fields through the message: `m.title`, `m.alert_id`, ...
    def __getattr__(self, name: str) -> Any:
        if name == "row":
            raise AttributeError(name)
        return getattr(self.row, name)

    @property
    def attempt(self) -> int:
        return max(1, self.row.attempts)

    @property
    def created_iso(self) -> str:
        return self.row.created_at.isoformat() + "Z"

    @property
    def project(self) -> str:
        return self.body["project"]

    @property
    def body_bytes(self) -> bytes:
        return json.dumps(self.body, ensure_ascii=False, separators=(",", ":"),
                          default=str).encode()


def render(row: AlertRow, ctx: RenderContext) -> AlertMessage:
    p = row.payload
    person = dict(p.get("person") or {})
    if row.person_id:
        person = {"id": row.person_id, **person}
    account = dict(p.get("account") or {})
    if row.account_id:
        account = {"id": row.account_id, **account}
    link = p.get("link")
    if not link and row.person_id:
        link = ctx.person_url.format(base_url=ctx.base_url, person_id=quote(row.person_id, safe=""))
    reasons = [_reason_line(r) for r in p.get("reasons") or []]
    evidence = [_evidence_line(e) for e in p.get("evidence") or []]
    who = _who(person)
    account_line = " · ".join(str(x) for x in (account.get("name"), account.get("domain")) if x)
    change_line = _change_line(p.get("change") or {})

    lines = [f"{SEVERITY_EMOJI.get(row.severity, '')} *{slack_escape(row.title)}*".strip()]
    lines += [slack_escape(x) for x in (who, change_line) if x]
    if reasons:
        lines.append("Why: " + "; ".join(slack_escape(r) for r in reasons[:MAX_LINES]))
    if evidence:
        lines.append("Evidence: " + "; ".join(slack_escape(e) for e in evidence[:MAX_LINES]))
    if link:
        lines.append(f"<{link}|Open in Lead Refinery>")
    text = "\n".join(lines)

    body = {
        "schema": SCHEMA,
        "alert_id": row.alert_id,
        "created_at": row.created_at.isoformat() + "Z",
        "project": ctx.project,
        "trigger": {"id": row.trigger_id, "kind": row.trigger_kind},
        "severity": row.severity,
        "title": row.title,
        "text": text,
        "person": person or None,
        "account": account or None,
        "change": p.get("change") or {},
        "reasons": p.get("reasons") or [],
        "evidence": p.get("evidence") or [],
        "links": {"person": link},
        "recipient": {"channel": row.channel, "address": row.recipient},
        "data": p.get("data") or {},
    }
    return AlertMessage(row, body, link, who, account_line, change_line, reasons, evidence, text)


# -- signatures -----------------------------------------------------------------------------


def sign(body: bytes, secret: str) -> str:
    """The `X-LeadRefinery-Signature` value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header: str | None, secret: str) -> bool:
    """For receivers: does `header` sign `body` with `secret`? (constant-time compare)"""
    if not header:
        return False
    return hmac.compare_digest(sign(body, secret), header.strip())


# -- secrets --------------------------------------------------------------------------------


@dataclass
class Secrets:
    """Channel secrets from the environment (first) or `secrets.toml` — never refinery.toml."""

    tree: dict[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    @classmethod
    def load(cls, root: Path | None) -> Secrets:
        return cls(load_secrets(root) if root else {})

    def _alerts(self) -> dict[str, Any]:
        return self.tree.get("alerts") or {}

    def webhook(self, name: str) -> dict[str, Any]:
        return (self._alerts().get("webhooks") or {}).get(name) or {}

    def webhook_secret(self, name: str) -> str | None:
        var = "LEADREFINERY_WEBHOOK_SECRET_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()
        return (self.env.get(var) or self.webhook(name).get("secret")
                or self.env.get("LEADREFINERY_WEBHOOK_SECRET")
                or self._alerts().get("webhook_secret"))

    def webhook_url(self, name: str) -> str | None:
        return self.webhook(name).get("url")

    def smtp_password(self) -> str | None:
        return (self.env.get("LEADREFINERY_SMTP_PASSWORD")
                or (self._alerts().get("smtp") or {}).get("password"))


# -- channels -------------------------------------------------------------------------------


class Channel(ABC):
    name: ClassVar[str]

    @abstractmethod
    def send(self, message: AlertMessage) -> None:
        """Deliver one alert, or raise `DeliveryError`."""

    def close(self) -> None:  # noqa: B027 - optional
        pass


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str | None
    secret: str | None
    timeout: float
    headers: Mapping[str, str]


# HTTP status -> retrying can help? (2xx never gets here)
TRANSIENT_STATUS = frozenset({408, 409, 425, 429})


def _permanent_status(status: int) -> bool:
    return 300 <= status < 500 and status not in TRANSIENT_STATUS


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: ignore, our back-off applies


class WebhookChannel(Channel):
    """JSON POST to a named receiver of `[alerts.webhooks]`; see the module docstring."""

    name = "webhook"

    def __init__(self, endpoints: Mapping[str, Endpoint], *,
                 client: httpx.Client | None = None) -> None:
        self.endpoints = dict(endpoints)
        self.client = client or httpx.Client(
            follow_redirects=False, headers={"User-Agent": USER_AGENT}, trust_env=False)

    @classmethod
    def from_settings(cls, webhooks: Mapping[str, WebhookEndpoint], secrets: Secrets,
                      **kw: Any) -> WebhookChannel:
        names = set(webhooks) | set(secrets._alerts().get("webhooks") or {})
        eps = {}
        for n in names:
            cfg = webhooks.get(n) or WebhookEndpoint.model_validate({})
            eps[n] = Endpoint(n, secrets.webhook_url(n) or cfg.url, secrets.webhook_secret(n),
                              cfg.timeout_seconds, cfg.headers)
        return cls(eps, **kw)

    def send(self, message: AlertMessage) -> None:
        name = message.row.recipient
        ep = self.endpoints.get(name)
        if ep is None or not ep.url:
            known = ", ".join(sorted(self.endpoints)) or "none"
            raise DeliveryError(
                f"no webhook named {name!r} with a url in [alerts.webhooks] (known: {known}); "
                "add it to refinery.toml (or its url to secrets.toml) and re-queue",
                permanent=True)
        body = message.body_bytes
        headers = {
            **ep.headers,
            "Content-Type": "application/json",
            ALERT_ID_HEADER: message.row.alert_id,
            "Idempotency-Key": message.row.alert_id,
            ATTEMPT_HEADER: str(message.attempt),
        }
        if ep.secret:
            headers[SIGNATURE_HEADER] = sign(body, ep.secret)
        try:
            r = self.client.post(ep.url, content=body, headers=headers, timeout=ep.timeout)
        except httpx.TimeoutException as exc:
            raise DeliveryError(f"webhook {name}: no answer within {ep.timeout:g}s "
                                f"({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise DeliveryError(f"webhook {name}: {type(exc).__name__}: {exc}") from exc
        if 200 <= r.status_code < 300:
            return
        raise DeliveryError(
            f"webhook {name}: HTTP {r.status_code} {r.text[:200].strip()}".rstrip(),
            permanent=_permanent_status(r.status_code),
            retry_after=_retry_after(r.headers.get("Retry-After")),
        )

    def close(self) -> None:
        self.client.close()


# security mode -> (client class, upgrade with STARTTLS?)
SMTP_MODES: dict[str, tuple[type[smtplib.SMTP], bool]] = {
    "none": (smtplib.SMTP, False),
    "starttls": (smtplib.SMTP, True),
    "ssl": (smtplib.SMTP_SSL, False),
}


def template_env(folder: str | Path | None = None) -> jinja2.Environment:
    """Built-in templates, overridden by same-named files in `folder` if given."""
    loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(str(TEMPLATES))]
    if folder:
        loaders.insert(0, jinja2.FileSystemLoader(str(folder)))
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


class EmailChannel(Channel):
    """Plain text + HTML email through one SMTP server (one connection per alert)."""

    name = "email"

    def __init__(self, smtp: SmtpSection, *, password: str | None = None,
                 templates: jinja2.Environment | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.smtp = smtp
        self.password = password
        self.templates = templates or template_env()
        self.ssl_context = ssl_context or self._ssl_context(smtp)
        addr = parseaddr(smtp.from_address)[1]
        self.domain = smtp.message_id_domain or (addr.rpartition("@")[2] or "leadrefinery")

    @staticmethod
    def _ssl_context(smtp: SmtpSection) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=smtp.ca_file)
        if not smtp.verify_tls:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def build(self, message: AlertMessage) -> EmailMessage:
        row = message.row
        to = [a for _, a in getaddresses([row.recipient]) if "@" in a]
        if not to:
            raise DeliveryError(f"email: {row.recipient!r} holds no address", permanent=True)
        msg = EmailMessage()
        msg["Subject"] = f"{SEVERITY_SUBJECT.get(row.severity, '')}{row.title}"
        msg["From"] = self.smtp.from_address
        msg["To"] = ", ".join(to)
        msg["Date"] = format_datetime(row.created_at.replace(tzinfo=UTC), usegmt=True)
        msg["Message-ID"] = f"<{row.alert_id}@{self.domain}>"
        msg[ALERT_ID_HEADER] = row.alert_id
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(self.templates.get_template("alert.txt.j2").render(m=message))
        msg.add_alternative(self.templates.get_template("alert.html.j2").render(m=message),
                            subtype="html")
        return msg

    def send(self, message: AlertMessage) -> None:
        msg = self.build(message)
        cfg = self.smtp
        cls, starttls = SMTP_MODES[cfg.security]
        kw: dict[str, Any] = {"timeout": cfg.timeout_seconds}
        if cls is smtplib.SMTP_SSL:
            kw["context"] = self.ssl_context
        try:
            with cls(cfg.host, cfg.port, **kw) as s:
                if starttls:
                    s.starttls(context=self.ssl_context)
                if cfg.user:
                    s.login(cfg.user, self.password or "")
                s.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [c for c, _ in exc.recipients.values()]
            raise DeliveryError(f"email: recipients refused: {exc.recipients}",
                                permanent=all(c >= 500 for c in codes)) from exc
        except smtplib.SMTPResponseException as exc:
            text = exc.smtp_error.decode(errors="replace") if isinstance(
                exc.smtp_error, bytes) else str(exc.smtp_error)
            raise DeliveryError(f"email: {cfg.host}:{cfg.port} said {exc.smtp_code} {text}",
                                permanent=exc.smtp_code >= 500) from exc
        except smtplib.SMTPNotSupportedError as exc:  # e.g. no AUTH: settings must change
            raise DeliveryError(f"email: {cfg.host}:{cfg.port}: {exc}", permanent=True) from exc
        except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            raise DeliveryError(
                f"email: {cfg.host}:{cfg.port}: {type(exc).__name__}: {exc}") from exc


class FeedChannel(Channel):
    """Into `alert_feed`, which the dashboard reads; at most one row per alert id."""

    name = "feed"

    def __init__(self, engine: Engine, *, now: Callable[[], Any] = utcnow) -> None:
        self.engine = engine
        self.now = now

    def send(self, message: AlertMessage) -> None:
        row = message.row
        e = self.engine
        with e.transaction():
            if e.scalar("SELECT count(*) FROM alert_feed WHERE alert_id = ?", [row.alert_id]):
                return  # sent before (a crash between sending and recording): once is enough
            e.execute(
                "INSERT INTO alert_feed (alert_id, created_at, delivered_at, recipient, person_id, "
                "account_id, trigger_id, severity, title, text, payload) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [row.alert_id, row.created_at, self.now(), row.recipient, row.person_id,
                 row.account_id, row.trigger_id, row.severity, row.title, message.text,
                 message.body_bytes.decode()],
            )


def build_channels(settings, engine: Engine, secrets: Secrets | None = None,
                   *, root: Path | None = None) -> dict[str, Channel]:
    """One instance of each channel, configured from settings and secrets."""
    secrets = secrets or Secrets.load(root)
    cfg = settings.alerts
    folder = cfg.email_templates
    if folder and root and not Path(folder).is_absolute():
        folder = str(root / folder)
    return {
        "webhook": WebhookChannel.from_settings(cfg.webhooks, secrets),
        "email": EmailChannel(cfg.smtp, password=secrets.smtp_password(),
                              templates=template_env(folder)),
        "feed": FeedChannel(engine),
    }
