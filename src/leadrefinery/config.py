"""Project settings: `refinery.toml`, validated at load.

Precedence: explicit argument > environment variable (`LEADREFINERY_*`) > project file > default.
Secrets (SMTP password, webhook secrets, PostgreSQL DSN) come from the environment or from a
separate `secrets.toml` beside the project file, never from `refinery.toml` itself.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError

PROJECT_FILE = "refinery.toml"
SECRETS_FILE = "secrets.toml"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectSection(Section):
    name: str = "lead-refinery"


class StoreSection(Section):
    engine: Literal["duckdb", "postgres", "spark"] = "duckdb"
    path: str = "store.duckdb"
    # PostgreSQL DSN: prefer LEADREFINERY_PG_DSN (a secret); allowed here for local set-ups.
    dsn: str | None = None
    memory_limit: str = "2GB"
    threads: int = 2


class ServerSection(Section):
    host: str = "127.0.0.1"
    port: int = 8321
    # write key -> source name; events arriving with that key are tagged with the source.
    write_keys: dict[str, str] = Field(default_factory=lambda: {"demo-write-key": "web"})
    max_message_bytes: int = 32 * 1024
    max_batch_bytes: int = 500 * 1024
    # how often the ingestion log is loaded into the store (micro-batches)
    load_interval_ms: int = 200
    # while `serve` runs, DuckDB moves its write-ahead log into the store file once the log
    # reaches this size (DuckDB's default is 16). That checkpoint runs inside whichever commit
    # crosses the line — a micro-batch, the fast lane, the alert deliverer — and at 20 k
    # events/s a 16 MB log fills every second or two, each checkpoint pausing that commit for up
    # to a second. Larger: rarer (and cheaper in all) pauses; a restart replays a longer log.
    checkpoint_mb: int = Field(256, ge=1)
    public_url: str | None = None


class CsvMapping(Section):
    """How the columns of a CSV map to our fields: `field = "Column header"`.

    Unmapped columns are kept as traits under their header name.
    """

    kind: Literal[
        "people", "accounts", "conversions", "opportunities", "campaigns", "activities"
    ] = "people"
    columns: dict[str, str] = Field(default_factory=dict)
    delimiter: str = ","
    time_format: str | None = None


class KeyValueMapping(Section):
    """How `key=value` log lines become Segment messages.

    Each line becomes an `identify` (all keys as traits) and, when `event` is set, also a `track`
    with the keys as properties.
    """

    user_id: str = "Email"
    email: str | None = "Email"
    timestamp: str | None = None
    event: str | None = None
    traits: list[str] | None = None  # None = every key
    rename: dict[str, str] = Field(default_factory=dict)


class IngestSection(Section):
    webmail_domains_extra: list[str] = Field(default_factory=list)
    # a `track` event with one of these names records a conversion outcome
    conversion_events: list[str] = Field(default_factory=list)
    csv: dict[str, CsvMapping] = Field(default_factory=dict)
    kv: dict[str, KeyValueMapping] = Field(default_factory=dict)
    chunk_bytes: int = 64 * 1024 * 1024
    # a messageId is a duplicate if the store holds it within this many days of the chunk's own
    # times (Segment's retries come within hours); bounding it keeps each load from scanning the
    # whole history. 0: compare with the whole history.
    dedupe_window_days: float = Field(7.0, ge=0)


class ModelSection(Section):
    files: list[str] = Field(default_factory=lambda: ["model.yaml"])
    published: str = "model.yaml"


class WebhookEndpoint(Section):
    """One named webhook receiver (`[alerts.webhooks.NAME]`).

    Its HMAC secret never lives here: LEADREFINERY_WEBHOOK_SECRET_<NAME>, then secrets.toml
    `[alerts.webhooks.NAME] secret`, then LEADREFINERY_WEBHOOK_SECRET. A Slack URL is itself a
    secret: it may be left out here and given as `url` in secrets.toml instead.
    """

    url: str | None = None
    timeout_seconds: float = Field(5.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)


class SmtpSection(Section):
    """The SMTP server alert emails go through. The password: LEADREFINERY_SMTP_PASSWORD or
    secrets.toml `[alerts.smtp] password`."""

    host: str = "localhost"
    port: int = 587
    security: Literal["none", "starttls", "ssl"] = "starttls"
    user: str | None = None
    from_address: str = "Lead Refinery <alerts@localhost>"
    timeout_seconds: float = Field(10.0, gt=0)
    verify_tls: bool = True
    ca_file: str | None = None  # extra CA bundle, e.g. for an internal relay
    message_id_domain: str | None = None  # default: the domain of from_address


class AlertsSection(Section):
    """The alerts outbox and its channels (act/outbox.py, act/channels.py, act/delivery.py).

    Addresses are `email:ann@acme.com` (or a bare address), `webhook:NAME` or `feed[:NAME]`.
    """

    enabled: bool = True  # run a deliverer inside `serve`
    default_recipient: str = "feed"  # when neither the person nor the account has an owner
    # owner name as found in the CRM (people.owner / accounts.owner) -> address
    recipients: dict[str, str] = Field(default_factory=dict)
    webhooks: dict[str, WebhookEndpoint] = Field(default_factory=dict)
    smtp: SmtpSection = Field(default_factory=SmtpSection)
    email_templates: str | None = None  # folder with alert.txt.j2 / alert.html.j2 overrides
    person_url: str = "{base_url}/people/{person_id}"
    # retries: delay = min(retry_max_seconds, retry_base_seconds * retry_factor**(n-1)),
    # less up to retry_jitter of it at random; `dead` after max_attempts attempts
    max_attempts: int = Field(12, ge=1)
    retry_base_seconds: float = Field(2.0, gt=0)
    retry_factor: float = Field(2.0, ge=1)
    retry_max_seconds: float = Field(900.0, gt=0)
    retry_jitter: float = Field(0.2, ge=0, le=1)
    poll_seconds: float = Field(1.0, gt=0)
    workers: int = Field(4, ge=1)  # alerts sent in parallel (one slow receiver blocks no other)
    # an alert claimed by a process that died is sent again after this long (on a shared
    # PostgreSQL store; with DuckDB, which one process owns, at once on the next start)
    claim_timeout_seconds: float = Field(120.0, gt=0)

    @field_validator("person_url")
    @classmethod
    def _person_url_fields(cls, v: str) -> str:
        try:
            v.format(base_url="", person_id="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"person_url may use only {{base_url}} and {{person_id}}, not {exc}") from None
        return v


# -- acting on scores (act/): reps and teams, routing, SLAs, nurture, progressive profiling ---

# sales regions -> ISO country codes; a rep's or rule's territory may name either
DEFAULT_REGIONS: dict[str, list[str]] = {
    "NA": ["US", "CA"],
    "LATAM": ["MX", "BR", "AR", "CL", "CO", "PE", "UY", "EC", "VE", "CR", "PA", "GT", "DO"],
    "EMEA": ["GB", "IE", "DE", "FR", "NL", "BE", "LU", "ES", "PT", "IT", "CH", "AT", "SE", "NO",
             "DK", "FI", "IS", "PL", "CZ", "SK", "HU", "RO", "BG", "GR", "HR", "SI", "RS", "UA",
             "EE", "LV", "LT", "TR", "IL", "AE", "SA", "QA", "EG", "MA", "ZA", "NG", "KE", "GH"],
    "APAC": ["IN", "PK", "BD", "LK", "NP", "CN", "HK", "TW", "JP", "KR", "SG", "MY", "TH", "VN",
             "ID", "PH", "AU", "NZ"],
}


class RepConfig(Section):
    """One sales rep, `[[reps]]`. Empty lists inherit the team's, and then mean "any"."""

    email: str
    name: str | None = None
    team: str
    territory: list[str] = Field(default_factory=list)  # country codes or region names
    sizes: list[str] = Field(default_factory=list)  # size bands served ([routing].size_bands)
    types: list[str] = Field(default_factory=list)  # customer types served, e.g. "oem", "direct"
    per_day: int | None = Field(default=None, ge=0)  # capacity: new leads per day / per week
    per_week: int | None = Field(default=None, ge=0)
    active: bool = True  # false = away (skipped by routing; `leadrefinery reps away` also works)
    weight: float = Field(default=1.0, gt=0)  # share of A/B leads relative to teammates


class TeamConfig(Section):
    """`[teams.NAME]`: defaults for the team's reps, and where its overflow goes."""

    territory: list[str] = Field(default_factory=list)
    sizes: list[str] = Field(default_factory=list)
    types: list[str] = Field(default_factory=list)
    overflow: str | None = None  # a team to try when nobody here can take the lead


class RangeCondition(Section):
    min: float | None = None
    max: float | None = None


Condition = str | int | float | bool | list[str | int | float] | RangeCondition


class RoutingRule(Section):
    """`[[routing.rules]]`, tried in order; the first whose `when` all hold picks the team.

    `when` keys are lead fields: country, region, size, size_band, type, source, campaign,
    industry, grade, score, webmail, segment, trigger, domain, title, or `traits.KEY`. A value
    matches equal (case-insensitive), a list matches any of its items, `{ min, max }` a range.
    """

    name: str
    team: str
    when: dict[str, Condition] = Field(default_factory=dict)


class RoutingSection(Section):
    rules: list[RoutingRule] = Field(default_factory=list)
    default_team: str | None = None  # when no rule matches (else the lead waits in the queue)
    qualify_grades: list[str] = Field(default_factory=lambda: ["A", "B"])
    min_score: float | None = None  # also qualifies: score >= this (latest_scores)
    model: str | None = None  # whose latest_scores to read (default: each person's newest)
    parity_grades: list[str] = Field(default_factory=lambda: ["A", "B"])
    parity_window_days: int = Field(default=7, ge=1)
    # within a team, over the window, the weighted counts of parity-grade leads of any two reps
    # that could take them differ by at most this many leads
    parity_tolerance: float = Field(default=1.0, ge=0)
    # band name -> smallest company size (employees) in it; a size falls in the band with the
    # largest bound at or below it
    size_bands: dict[str, int] = Field(default_factory=lambda: {"smb": 0, "mid": 200, "ent": 1000})
    unknown_size_band: str | None = None  # band of a lead whose company size is not known
    type_trait: str = "customer_type"  # person or account trait holding the customer type
    default_type: str | None = None  # type of a lead whose customer type is not known
    regions: dict[str, list[str]] = Field(default_factory=lambda: dict(DEFAULT_REGIONS))
    timezone: str = "UTC"  # where the capacity day and week begin
    account_owner: bool = True  # people of an account that has an owner stay with that owner
    seed: int = 0  # breaks exact ties between reps, reproducibly


class SlaSection(Section):
    # grade -> hours from assignment to the rep's first touch
    first_touch_hours: dict[str, float] = Field(
        default_factory=lambda: {"A": 4, "B": 24, "C": 72, "D": 168}
    )
    default_first_touch_hours: float = 72
    never_touched_days: float = 7  # assigned this long ago with no touch at all
    lost_after_handoff_days: float = 30  # an opportunity lost this soon after handoff
    too_loose_rate: float = Field(default=0.3, ge=0, le=1)  # share of opportunities lost that soon
    too_strict_win_rate: float = Field(default=0.5, ge=0, le=1)  # win rate of routed leads above
    min_sample: int = Field(default=20, ge=1)  # fewer decided leads: no rate finding
    window_days: int = Field(default=90, ge=1)  # leads routed this recently are judged
    # rejections for these reasons say nothing about the lead's quality: no label
    label_ignore_reasons: list[str] = Field(
        default_factory=lambda: ["duplicate", "existing customer", "wrong territory", "test"]
    )
    # `serve` checks the SLAs and puts new findings in the alerts outbox this often; 0 = never
    check_seconds: float = Field(default=3600.0, ge=0)


class SendWindow(Section):
    """Local hours and weekdays in which nurture mail may go out (the person's time zone)."""

    start: str = "09:00"
    end: str = "17:00"
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=lambda: ["mon", "tue", "wed", "thu", "fri"]
    )


class NurtureSection(Section):
    files: list[str] = Field(default_factory=lambda: ["sequences/*.yaml", "sequences/*.toml"])
    # From: address of nurture mail (default: [alerts.smtp].from_address; mail goes through
    # the [alerts.smtp] server)
    sender: str | None = None
    categories: list[str] = Field(
        default_factory=lambda: ["newsletter", "events", "product_news", "sales"]
    )
    sales_categories: list[str] = Field(default_factory=lambda: ["sales"])
    community_segment: str = "community"  # never receives sales_categories
    default_timezone: str = "UTC"  # when neither a `timezone` trait nor the country tells
    window: SendWindow = Field(default_factory=SendWindow)
    max_late_hours: float = 48  # a step this overdue is skipped, not sent late
    # one-click unsubscribe link; {token} is replaced.
    # Default: [server].public_url + /v1/unsubscribe?token={token}
    unsubscribe_url: str | None = None
    exit_when_routed: bool = True  # a lead handed to a rep leaves nurture
    # buy-readiness events: leave every sequence and go to routing (a sequence may add more)
    fast_track_events: list[str] = Field(
        default_factory=lambda: ["Documentation Purchased", "Training Registered",
                                 "Contact Sales Requested"]
    )
    max_attempts: int = Field(default=5, ge=1)  # delivery attempts of one message
    # `serve` runs a nurture tick (enrol, branch, send what is due) this often; 0 = never
    tick_seconds: float = Field(default=300.0, ge=0)


class ProfileFieldConfig(Section):
    label: str
    type: Literal["text", "email", "tel", "number", "select"] = "text"
    options: list[str] = Field(default_factory=list)
    # where the answer is already known: people columns, `account.COLUMN`, `traits.KEY`
    sources: list[str] = Field(default_factory=list)


class ProfileTier(Section):
    min_value: float = 0  # assets worth at least this unlock these questions
    fields: list[str]


class FormConfig(Section):
    asset_value: float | str = 0  # a number or a name from [profiling].values
    max_questions: int | None = None
    always: list[str] = Field(default_factory=list)  # asked even when known (e.g. consent)


class ProfilingSection(Section):
    tiers: list[ProfileTier] = Field(
        default_factory=lambda: [
            ProfileTier(min_value=0, fields=["email", "first_name", "last_name"]),
            ProfileTier(min_value=20, fields=["country", "company", "title"]),
            ProfileTier(min_value=50, fields=["company_size", "project_status"]),
        ]
    )
    values: dict[str, float] = Field(
        default_factory=lambda: {"entry": 0, "standard": 20, "premium": 50}
    )
    max_questions: int = Field(default=4, ge=1)  # new questions on one form at most
    # added to (or replacing) the built-in fields of act/profiling.py
    fields: dict[str, ProfileFieldConfig] = Field(default_factory=dict)
    forms: dict[str, FormConfig] = Field(default_factory=dict)


# -- the dashboard and REST API: users, roles, sessions (api/auth.py) -------------------------


class UserConfig(Section):
    """`[users.NAME]`: one login of the dashboard and REST API.

    `password_hash` is a salted scrypt hash written by `leadrefinery users add NAME` (never a
    password). A `rep` sees only their own leads: people whose owner, account owner or routing
    assignment is `rep` (their reps.email) or one of `owners` (CRM owner names) — unless
    `see_all` is true. `admin` and `analyst` see everything; only `admin` manages users.
    """

    role: Literal["admin", "analyst", "rep"] = "rep"
    password_hash: str | None = None
    name: str | None = None
    rep: str | None = None
    owners: list[str] = Field(default_factory=list)
    see_all: bool = False
    # sha256 hashes of API tokens (`leadrefinery users token NAME`), for scripts
    token_hashes: list[str] = Field(default_factory=list)


class DashboardSection(Section):
    """`[dashboard]`: sessions and what the pages count as a good lead."""

    session_hours: float = Field(8.0, gt=0)  # a login lasts this long
    secure_cookies: bool = False  # set true behind HTTPS
    # the signing key: LEADREFINERY_SESSION_SECRET, else secrets.toml [dashboard] session_secret,
    # else a random key kept in .session_key in the project folder
    good_grades: list[str] | None = None  # default: the model's MQL grades
    good_buckets: list[str] = Field(default_factory=lambda: ["A", "B"])
    page_size: int = Field(50, ge=5, le=500)
    active_minutes: float = Field(30.0, gt=0)  # "logged in now": an event this recently


class TriggersSection(Section):
    """`[triggers]`: real-time rescoring and triggers inside `serve` (act/realtime.py).

    The triggers themselves are declared in `file` (YAML beside the model, see act/triggers.py);
    this section says how often the sweeps run. Durations are in seconds.
    """

    enabled: bool = True  # rescore live in `serve` (when the model and trigger files exist)
    file: str = "triggers.yaml"  # relative to the project folder
    model: str | None = None  # the scoring model whose state is compared (default: published)
    # every person is rescored this often (decay, expiring stages and windows); 0 = never
    sweep_seconds: float = Field(900.0, ge=0)
    # people who may have a session running past its limit are re-checked this often; 0 = never
    abuse_sweep_seconds: float = Field(60.0, ge=0)
    # the unusual-usage detector is refitted on the population and run this often; 0 = never
    unusual_seconds: float = Field(3600.0, ge=0)
    # how far back the abuse sweep looks for sessions that may still be open (when a session
    # rule's limit is an expression, so the longest allowed session is not known)
    abuse_lookback_hours: float = Field(24.0, gt=0)
    # the sweep stores (and compares) a person whose score moved at least this much, or whose
    # grade, stage, segments, abuse flags or predictive bucket changed
    min_score_change: float = Field(1.0, ge=0)
    # the first evaluation of a trigger (an empty store, or a trigger just added) records who
    # is already in its condition without alerting: "silent"; or alerts them all: "fire"
    first_run: Literal["silent", "fire"] = "silent"
    # buy-readiness actions older than this (e.g. from an imported history) do not alert
    action_recent_hours: float = Field(48.0, gt=0)
    # when rescoring falls behind, at most this many people per transaction, those waiting
    # longest first (buy-readiness needs no rescoring: see the fast and hot lanes)
    max_batch_people: int = Field(20000, ge=1)
    # in `serve`, the rescoring thread's niceness (Linux: per thread): below the loader and the
    # fast lane (10), which are below the request loop (0) — rescoring is the work that can wait
    rescore_nice: int = Field(19, ge=0, le=19)
    # before a rescoring batch, wait at most this long while ingestion is behind or the fast
    # lane has work
    yield_seconds: float = Field(5.0, ge=0)
    # in `serve`, evaluate buy-readiness as soon as a request is durable, before the loader
    # stores it (act/realtime.py, the hot lane): alerts within a fraction of a second, for
    # about a tenth of a core at 5 such requests a second; false: with the loader (a second
    # or two later under load)
    hot_lane: bool = True
    # people whose last score is this close below a line an alert fires on (a score trigger's
    # threshold, the lowest score of a grade a grade trigger watches) are rescored as soon as
    # their events are loaded, ahead of the rest and without yielding: their alert may be due;
    # 0: no such lane
    urgent_points: float = Field(10.0, ge=0)
    # at most this many of them per transaction (more than that is a flood, not a few leads
    # about to turn hot: the rest wait their turn in the ordinary batches)
    urgent_batch_people: int = Field(200, ge=1)
    # in `serve`, score those people as soon as a request of theirs is durable, with its events
    # not stored yet (act/realtime.py, the warm lane): a lead turning hot is announced before
    # the loader stores the event, for one restricted scoring query per such request; false:
    # after the load (the urgent lane). Needs `hot_lane` and `urgent_points` > 0
    warm_lane: bool = True


class Settings(Section):
    project: ProjectSection = Field(default_factory=ProjectSection)
    store: StoreSection = Field(default_factory=StoreSection)
    server: ServerSection = Field(default_factory=ServerSection)
    ingest: IngestSection = Field(default_factory=IngestSection)
    model: ModelSection = Field(default_factory=ModelSection)
    reps: list[RepConfig] = Field(default_factory=list)
    teams: dict[str, TeamConfig] = Field(default_factory=dict)
    routing: RoutingSection = Field(default_factory=RoutingSection)
    sla: SlaSection = Field(default_factory=SlaSection)
    nurture: NurtureSection = Field(default_factory=NurtureSection)
    profiling: ProfilingSection = Field(default_factory=ProfilingSection)
    alerts: AlertsSection = Field(default_factory=AlertsSection)
    users: dict[str, UserConfig] = Field(default_factory=dict)
    dashboard: DashboardSection = Field(default_factory=DashboardSection)
    triggers: TriggersSection = Field(default_factory=TriggersSection)


# environment variable -> dotted settings key
ENVIRONMENT = {
    "LEADREFINERY_STORE_ENGINE": "store.engine",
    "LEADREFINERY_STORE_PATH": "store.path",
    "LEADREFINERY_PG_DSN": "store.dsn",
    "LEADREFINERY_HOST": "server.host",
    "LEADREFINERY_PORT": "server.port",
}


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        tree = tree.setdefault(p, {})
    tree[leaf] = value


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=str(path)) from exc


def load_settings(root: Path, overrides: dict[str, Any] | None = None) -> Settings:
    """Read `root/refinery.toml`, apply environment variables, then explicit overrides."""
    path = root / PROJECT_FILE
    data = _read_toml(path) if path.exists() else {}
    for var, key in ENVIRONMENT.items():
        if var in os.environ:
            _set(data, key, os.environ[var])
    for key, value in (overrides or {}).items():
        _set(data, key, value)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"{first['msg']} ({len(exc.errors())} problem(s) in all)", file=str(path), key=key
        ) from exc


def load_secrets(root: Path) -> dict[str, Any]:
    path = root / SECRETS_FILE
    return _read_toml(path) if path.exists() else {}


DEFAULT_PROJECT_FILE = """\
# Lead Refinery project settings. Secrets (SMTP password, webhook secrets, PostgreSQL DSN)
# belong in the environment or in secrets.toml, not here.

[project]
name = "{name}"

[store]
engine = "duckdb"          # duckdb (embedded, default) | postgres (set LEADREFINERY_PG_DSN)
path = "store.duckdb"

[server]
host = "127.0.0.1"
port = 8321
# write key -> source name. Segment clients send the key as HTTP Basic user name.
write_keys = {{ "{write_key}" = "web" }}

[ingest]
# `track` events with these names are recorded as conversions
conversion_events = ["Subscription Started"]

# A CSV column mapping, used with `leadrefinery ingest FILE.csv --mapping crm_people`
# [ingest.csv.crm_people]
# kind = "people"
# columns = {{ email = "Email", company = "Company", title = "Job Title" }}

# A key=value log mapping, used with `leadrefinery ingest FILE.log --mapping weblog`
# [ingest.kv.weblog]
# user_id = "Email"
# timestamp = "LastLoginTime"

[model]
files = ["model.yaml"]
published = "model.yaml"
"""
