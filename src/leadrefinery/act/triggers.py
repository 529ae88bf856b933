"""Triggers: what in a lead's state is worth an alert, declared in `triggers.yaml`.

    ts = load_triggers(path, model, settings)     # validated: errors say file:line (trigger id)
    out = evaluate(ts, person_id, old, new, memo, episodes, now=now, actions=...)
    out.firings, out.opened, out.closed, out.memo  # what act/realtime.py writes, in one tx

The file sits beside the scoring model (`[triggers] file`, default `triggers.yaml`)::

    version: 1
    defaults:
      cooldown: 24h             # not the same alert for the same person again within this
      to: webhook:sales         # the recipient when neither the person nor the account has an owner
      severity: info
    triggers:
      - {id: hot_lead, kind: grade, at_least: "2"}             # reached grade 2 or better
      - {id: cooled_off, kind: grade, grades: ["1", "2"], fire: leave}
      - {id: score_70, kind: score, threshold: 70, hysteresis: 5, direction: both}
      - {id: moved_on, kind: stage, min_stage: Integrate}      # each move forward, from there on
      - {id: developer, kind: segment, segment: developer, fire: both}
      - id: buy_ready                                           # fast-track to sales
        kind: action
        events: [Contact Sales Requested, Documentation Purchased, Training Registered]
        pages: ["/pricing*"]                                    # page paths (globs)
        fast_track: true
        severity: warning
      - {id: abuse, kind: abuse, severity: critical, also: ["email:trust@labcloud.io"]}
      - {id: surge, kind: surge, category: engagement, rise: 15, within: 24h}
      - {id: odd_usage, kind: unusual_usage, contamination: 0.01}
      - {id: bucket_a, kind: bucket, buckets: [A]}              # predictive bucket, if published

Kinds, and what one *episode* is — a trigger alerts once per person per episode, and not again
for the same person (and key) within `cooldown`:

* `grade` / `bucket` / `segment` / `abuse` / `score` are **conditions**: an episode lasts while
  the condition holds (grade in the set; in the segment; the abuse flag raised; for `score`,
  from reaching `threshold` until falling below `threshold - hysteresis`, so a score hovering
  at the line is one episode). `fire: enter | leave | both` (`score`: `direction: up | down |
  both`) says whether entering and/or leaving alerts. `segment` and `abuse` keep one episode
  per segment / abuse rule.
* `stage` / `action` / `surge` / `unusual_usage` are **moments**: a move to a later journey stage
  (at or beyond `min_stage`); new buy-readiness events (track event names or page names in
  `events`, page paths in `pages`); the `category` score rising by `rise` within `within`; the
  unusual-usage detector flagging the person (act/live_abuse.py). Each alert is its own episode;
  `cooldown` keeps a burst to one alert.

Recipients: the person's owner, else the account's owner, else `to` (else `[alerts]
default_recipient`); `also` are copied every time. Addresses as in act/outbox.py.

Evaluation here is pure (no store): `act/realtime.py` reads the old state and episodes, calls
`evaluate` per person, and writes the result with the alerts in one transaction.
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from ..errors import ModelError
from ..model.load import Model, data_path
from ..model.spec import IDENT, Duration
from ..model.yamlload import Lines, load_yaml

SEVERITIES = ("info", "warning", "critical")
LEVEL_KINDS = ("grade", "bucket", "segment", "abuse", "score")
MOMENT_KINDS = ("stage", "action", "surge", "unusual_usage")


class TriggerError(ModelError):
    """The trigger file is invalid: `file:line (trigger 'id'): what is wrong — what to do`."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 trigger: str | None = None) -> None:
        super().__init__(message, file=file, line=line)
        where = ":".join(p for p in (file, str(line) if line else None) if p)
        if trigger:
            where = f"{where} (trigger {trigger!r})" if where else f"trigger {trigger!r}"
        self.message = f"{where}: {message}" if where else message
        self.args = (self.message,)
        self.trigger = trigger
        self.rule = trigger  # the HTTP/CLI error mapping reads `rule`


# -- the file's schema ----------------------------------------------------------------------


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _names(v: Any) -> Any:
    return [v] if isinstance(v, str | int | float) and not isinstance(v, bool) else v


def _text_names(v: Any) -> Any:
    v = _names(v)
    return [str(x) for x in v] if isinstance(v, list) else v


Names = Annotated[list[Annotated[str, Field(min_length=1)]], BeforeValidator(_text_names)]
Fire = Literal["enter", "leave", "both"]


class Defaults(Strict):
    cooldown: Duration = 1.0  # days
    to: str | None = None
    also: list[str] = Field(default_factory=list)
    severity: Literal["info", "warning", "critical"] = "info"


class TriggerBase(Strict):
    id: Annotated[str, Field(pattern=IDENT)]
    description: str | None = None
    severity: Literal["info", "warning", "critical"] | None = None
    cooldown: Duration | None = None
    to: str | None = None
    also: list[str] | None = None
    enabled: bool = True


class GradeTrigger(TriggerBase):
    """Grade in `grades` (or `at_least`: that grade or better, in the model's order)."""

    kind: Literal["grade"]
    grades: Names | None = None
    at_least: Annotated[str, BeforeValidator(str)] | None = None
    fire: Fire = "enter"

    @model_validator(mode="after")
    def _one(self) -> GradeTrigger:
        if (self.grades is None) == (self.at_least is None):
            raise ValueError("give `grades` (a list) or `at_least` (a grade), not both")
        return self


class BucketTrigger(TriggerBase):
    """The published predictive model's bucket in `buckets`."""

    kind: Literal["bucket"]
    buckets: Names
    fire: Fire = "enter"


class ScoreTrigger(TriggerBase):
    """The score reaches `threshold` (up) or falls below `threshold - hysteresis` (down)."""

    kind: Literal["score"]
    threshold: float
    hysteresis: float = Field(default=0.0, ge=0)
    direction: Literal["up", "down", "both"] = "up"


class StageTrigger(TriggerBase):
    """The journey stage moves forward, to `min_stage` or later."""

    kind: Literal["stage"]
    min_stage: str | None = None


class SegmentTrigger(TriggerBase):
    kind: Literal["segment"]
    segment: Names
    fire: Fire = "enter"


class ActionTrigger(TriggerBase):
    """Buy-readiness actions: track events (or page/screen names) in `events`, page paths
    matching `pages` (globs: `/pricing*`). `fast_track` routes the lead to sales at once."""

    kind: Literal["action"]
    events: Names = Field(default_factory=list)
    pages: Names = Field(default_factory=list)
    fast_track: bool = True

    @model_validator(mode="after")
    def _some(self) -> ActionTrigger:
        if not self.events and not self.pages:
            raise ValueError("an action trigger needs `events` (names) and/or `pages` (paths)")
        return self


class AbuseTrigger(TriggerBase):
    """An abuse flag of the model is raised (`rules`: some of them; default every one)."""

    kind: Literal["abuse"]
    rules: Names | None = None


class SurgeTrigger(TriggerBase):
    """The `category` score rises by at least `rise` points within `within`."""

    kind: Literal["surge"]
    category: str = "engagement"
    rise: float = Field(gt=0)
    within: Duration = 1.0


class UnusualTrigger(TriggerBase):
    """The unusual-usage detector (an isolation forest over per-person usage features, fitted
    on the population active within `active_within`) flags the person. `features`: the model's
    `facts.NAME` / `rules.ID` (occurrences of an event rule); default every fact and event rule.
    """

    kind: Literal["unusual_usage"]
    features: Names | None = None
    contamination: float = Field(default=0.02, gt=0, le=0.5)
    active_within: Duration = 30.0
    min_population: int = Field(default=30, ge=5)
    max_reasons: int = Field(default=3, ge=1)
    random_state: int = 0


Trigger = Annotated[
    GradeTrigger | BucketTrigger | ScoreTrigger | StageTrigger | SegmentTrigger | ActionTrigger
    | AbuseTrigger | SurgeTrigger | UnusualTrigger,
    Field(discriminator="kind"),
]


KINDS: dict[str, type[TriggerBase]] = {  # kind -> its schema
    get_args(c.model_fields["kind"].annotation)[0]: c for c in (
        GradeTrigger, BucketTrigger, ScoreTrigger, StageTrigger, SegmentTrigger, ActionTrigger,
        AbuseTrigger, SurgeTrigger, UnusualTrigger)}


class TriggerFile(Strict):
    version: int | str = 1
    defaults: Defaults = Field(default_factory=Defaults)
    triggers: list[Trigger] = Field(default_factory=list)


# -- a loaded, checked set ------------------------------------------------------------------


@dataclass
class TriggerSet:
    """The validated triggers of a project, resolved against its model."""

    spec: TriggerFile
    file: str
    model: Model
    grade_order: list[str]  # best first
    stage_order: list[str]
    default_to: str
    lines: Lines = field(default_factory=Lines)

    @property
    def triggers(self) -> list[Any]:
        return [t for t in self.spec.triggers if t.enabled]

    def of_kind(self, *kinds: str) -> list[Any]:
        return [t for t in self.triggers if t.kind in kinds]

    def by_id(self) -> dict[str, Any]:
        return {t.id: t for t in self.triggers}

    def cooldown(self, t: Any) -> timedelta:
        days = t.cooldown if t.cooldown is not None else self.spec.defaults.cooldown
        return timedelta(days=days)

    def severity(self, t: Any) -> str:
        return t.severity or self.spec.defaults.severity

    def to(self, t: Any) -> str:
        return t.to or self.spec.defaults.to or self.default_to

    def also(self, t: Any) -> list[str]:
        return list(t.also if t.also is not None else self.spec.defaults.also)

    def grades_of(self, t: GradeTrigger) -> frozenset[str]:
        if t.grades is not None:
            return frozenset(t.grades)
        i = self.grade_order.index(str(t.at_least))
        return frozenset(self.grade_order[: i + 1])

    def rising(self) -> list[Any]:
        """The triggers a rising score fires an alert on: grade triggers that fire on
        entering, score triggers that fire going up."""
        return [t for t in self.of_kind("grade", "score")
                if (t.fire if t.kind == "grade" else t.direction) not in ("leave", "down")]

    def rising_lines(self) -> list[float]:
        """The scores at which a rising score fires an alert (`rising`): a score trigger's
        threshold, the lowest score of a grade a grade trigger enters (grades by score
        thresholds; volume and matrix grades have no fixed line)."""
        rising = self.rising()
        lines = {t.threshold for t in rising if t.kind == "score"}
        grades = self.model.spec.grades
        if grades is not None and grades.method == "thresholds" and grades.by == "score":
            mins = {lv.grade: lv.min for lv in grades.levels or [] if lv.min is not None}
            for t in rising:
                if t.kind == "grade":
                    lines |= {mins[g] for g in self.grades_of(t) if g in mins}
        return sorted(lines)

    def stage_rank(self, stage: str | None) -> int:
        return self.stage_order.index(stage) + 1 if stage in self.stage_order else 0

    def max_cooldown(self) -> timedelta:
        return max((self.cooldown(t) for t in self.triggers), default=timedelta(0))

    def describe(self) -> list[dict[str, Any]]:
        """One line of facts per trigger (for `leadrefinery triggers list`)."""
        out = []
        for t in self.spec.triggers:
            d = t.model_dump(exclude_none=True, exclude={"id", "kind", "description", "enabled"})
            out.append({"id": t.id, "kind": t.kind, "enabled": t.enabled,
                        "cooldown_hours": round(self.cooldown(t).total_seconds() / 3600, 2),
                        "to": self.to(t), "severity": self.severity(t),
                        "description": t.description or "", "settings": d})
        return out


def _message(err: Any, path: tuple, data: Any) -> str:
    what = ".".join(str(p) for p in path if not isinstance(p, int)) or "the file"
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(path[-1])
        allowed: list[str] = []
        if path[0] == "defaults":
            allowed = list(Defaults.model_fields)
        elif path[0] == "triggers" and len(path) == 3:
            item = data["triggers"][path[1]]
            cls = KINDS.get(str(item.get("kind"))) if isinstance(item, dict) else None
            allowed = list(cls.model_fields) if cls else []
        else:
            allowed = list(TriggerFile.model_fields)
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"allowed here: {', '.join(allowed)}"
        return f"unknown key {key!r} — {hint}"
    if kind == "missing":
        return f"missing required key {str(path[-1])!r} — add it"
    if kind == "union_tag_invalid":
        ctx = err.get("ctx", {})
        return (f"kind {ctx.get('tag')!r} is not a trigger kind — use one of "
                f"{ctx.get('expected_tags')}")
    if kind == "union_tag_not_found":
        return f"{what}: needs `kind:` ({', '.join(LEVEL_KINDS + MOMENT_KINDS)})"
    if kind == "string_pattern_mismatch":
        return (f"{what}: {err.get('input')!r} is not a valid id — lower-case letters, digits "
                "and _, starting with a letter (like hot_lead)")
    msg = err["msg"].removeprefix("Value error, ")
    got = err.get("input")
    shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
    return f"{what}: {msg}{shown}"


def _trigger_id(data: Any, path: tuple) -> str | None:
    if len(path) > 1 and path[0] == "triggers" and isinstance(path[1], int):
        items = data.get("triggers") if isinstance(data, dict) else None
        if isinstance(items, list) and path[1] < len(items) and isinstance(items[path[1]], dict):
            tid = items[path[1]].get("id")
            return str(tid) if tid is not None else f"triggers[{path[1]}]"
    return None


def parse_triggers(text: str, model: Model, *, file: str = "<triggers>",
                   default_to: str = "feed", webhooks: Iterable[str] | None = None,
                   directory: Mapping[str, str] | None = None) -> TriggerSet:
    """Validate a trigger file against `model`; raise `TriggerError` with file and line."""
    from .outbox import parse_address

    try:
        data, lines = load_yaml(text, file)
    except ModelError as exc:
        raise TriggerError(exc.message.split(": ", 1)[-1], file=file, line=exc.line) from None
    if data in (None, {}):
        data = {}
    if not isinstance(data, dict):
        raise TriggerError("a trigger file is a YAML mapping (version:, defaults:, triggers:)",
                           file=file, line=1)
    try:
        spec = TriggerFile.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()  # a misspelt key first: it usually explains a missing one
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        path = data_path(data, tuple(first["loc"]))
        raise TriggerError(_message(first, path, data), file=file, line=lines.line(path),
                           trigger=_trigger_id(data, path)) from None

    def fail(i: int | None, key: str | None, message: str) -> TriggerError:
        path: tuple = ("triggers", i, key) if i is not None else ("defaults", key)
        path = tuple(p for p in path if p is not None)
        return TriggerError(message, file=file, line=lines.line(path),
                            trigger=_trigger_id(data, path))

    ms = model.spec
    grade_order = ms.grades.names() if ms.grades else []
    stage_order = list(ms.stages.order) if ms.stages else []
    segments = list(ms.segments)
    abuse = [a.id for a in ms.abuse]
    categories = sorted({*ms.categories, *(r.category for r in ms.rules if r.category),
                         *(a.category for a in ms.abuse)})
    features = [f"facts.{f}" for f in ms.facts] + [f"rules.{r.id}" for r in ms.rules
                                                   if r.on_events]
    hooks = set(webhooks or ())

    def check_address(i: int | None, key: str, text: str) -> None:
        r = parse_address(text, directory)
        if r is None:
            raise fail(i, key, f"{text!r} is not an address — write email:ann@acme.com, "
                               "webhook:NAME (a receiver of [alerts.webhooks]) or feed")
        if r.channel == "webhook" and webhooks is not None and r.address not in hooks:
            known = ", ".join(sorted(hooks)) or "none is configured"
            raise fail(i, key, f"no webhook receiver {r.address!r} in [alerts.webhooks] "
                               f"(known: {known})")

    def one_of(i: int, key: str, value: str, allowed: Sequence[str], what: str) -> None:
        if value not in allowed:
            raise fail(i, key, f"{value!r} is not a {what} of model {model.name!r} "
                               f"(its {what}s: {', '.join(allowed) or 'none'})")

    if spec.defaults.to:
        check_address(None, "to", spec.defaults.to)
    for a in spec.defaults.also:
        check_address(None, "also", a)
    seen: dict[str, int] = {}
    for i, t in enumerate(spec.triggers):
        if t.id in seen:
            raise fail(i, "id", f"trigger id {t.id!r} is used twice (first at "
                                f"triggers[{seen[t.id]}]) — ids must be unique")
        seen[t.id] = i
        if t.to:
            check_address(i, "to", t.to)
        for a in t.also or []:
            check_address(i, "also", a)
        if t.kind == "grade":
            if not grade_order:
                raise fail(i, "kind", f"model {model.name!r} has no grades")
            for g in t.grades or [str(t.at_least)]:
                one_of(i, "grades" if t.grades else "at_least", str(g), grade_order, "grade")
        elif t.kind == "stage":
            if not stage_order:
                raise fail(i, "kind", f"model {model.name!r} has no stages")
            if t.min_stage is not None:
                one_of(i, "min_stage", t.min_stage, stage_order, "stage")
        elif t.kind == "segment":
            for s in t.segment:
                one_of(i, "segment", s, segments, "segment")
        elif t.kind == "abuse":
            if not abuse:
                raise fail(i, "kind", f"model {model.name!r} has no abuse rules")
            for r in t.rules or []:
                one_of(i, "rules", r, abuse, "abuse rule")
        elif t.kind == "surge":
            one_of(i, "category", t.category, categories, "category")
        elif t.kind == "unusual_usage":
            for f in t.features or []:
                one_of(i, "features", f, features, "feature (facts.NAME or rules.ID)")
            if not (t.features or features):
                raise fail(i, "kind", f"model {model.name!r} declares no facts or event rules "
                                      "to describe usage with; add facts")
    return TriggerSet(spec, file, model, grade_order, stage_order, default_to, lines)


def load_triggers(path: str | Path, model: Model, *, default_to: str = "feed",
                  webhooks: Iterable[str] | None = None,
                  directory: Mapping[str, str] | None = None) -> TriggerSet | None:
    """The trigger file at `path` checked against `model`; None when there is no such file."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise TriggerError("the trigger file is not UTF-8 text", file=str(p)) from None
    return parse_triggers(text, model, file=str(p), default_to=default_to, webhooks=webhooks,
                          directory=directory)


def for_project(project: Any, model: Model | None = None) -> TriggerSet | None:
    """The project's triggers (`[triggers] file`) against its model; None without a file."""
    cfg = project.settings.triggers
    path = Path(cfg.file)
    if not path.is_absolute():
        path = project.root / path
    if not path.is_file():
        return None
    model = model or project.model(cfg.model)
    alerts = project.settings.alerts
    return load_triggers(path, model, default_to=alerts.default_recipient,
                         webhooks=alerts.webhooks, directory=alerts.recipients)


# -- states ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeadState:
    """What triggers compare: one person's state after an evaluation."""

    score: float | None = None
    grade: str | None = None
    stage: str | None = None
    stage_rank: int = 0
    segments: frozenset[str] = frozenset()
    flags: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # rule -> evidence
    bucket: str | None = None
    categories: Mapping[str, float] = field(default_factory=dict)

    def brief(self) -> dict[str, Any]:
        return {"score": self.score, "grade": self.grade, "stage": self.stage,
                "segments": sorted(self.segments), "flags": sorted(self.flags),
                "bucket": self.bucket}


@dataclass(frozen=True)
class Episode:
    """An open episode (a condition that holds) of one trigger, person and key."""

    episode_id: str
    trigger_id: str
    key: str
    opened_at: datetime
    fired_at: datetime | None = None
    outcome: str = ""


@dataclass(frozen=True)
class Action:
    """One buy-readiness event (from the store)."""

    message_id: str
    ts: datetime
    type: str
    event: str | None
    path: str | None


@dataclass
class Firing:
    """An alert to send: which trigger, why, and the episode it belongs to."""

    trigger: Any
    key: str
    direction: str  # enter | leave | moment
    title: str  # with `{who}` for the person's name, filled in by the caller
    change: dict[str, Any]
    evidence: list[dict[str, Any]] = field(default_factory=list)
    episode_id: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def alert_key(self) -> str:
        return f"{self.trigger.id}:{self.direction}:{self.episode_id}"


@dataclass
class Outcome:
    """What one evaluation of one person decided."""

    firings: list[Firing] = field(default_factory=list)
    opened: list[dict[str, Any]] = field(default_factory=list)  # new trigger_episodes rows
    closed: list[tuple[Episode, dict[str, Any]]] = field(default_factory=list)  # + changes
    memo: dict[str, Any] = field(default_factory=dict)
    suppressed: int = 0  # alerts held back by a cool-down
    fast_track: bool = False


def episode_id(model: str, trigger_id: str, person_id: str, key: str, at: datetime) -> str:
    raw = f"{model}\x1f{trigger_id}\x1f{person_id}\x1f{key}\x1f{at.isoformat()}"
    return "ep_" + hashlib.sha256(raw.encode()).hexdigest()[:24]


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="microseconds")


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _fmt_num(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f}".rstrip("0").rstrip(".")


def glob_match(path: str | None, patterns: Sequence[str]) -> bool:
    return path is not None and any(fnmatch.fnmatchcase(path, p) for p in patterns)


def evaluate(
    ts: TriggerSet,
    person_id: str,
    old: LeadState | None,
    new: LeadState,
    *,
    memo: Mapping[str, Any] | None,
    open_episodes: Mapping[tuple[str, str], Episode],
    last_fired: Mapping[tuple[str, str, str], datetime],
    now: datetime,
    actions: Sequence[Action] = (),
    silent: frozenset[str] = frozenset(),
    recent: timedelta = timedelta(hours=48),
    only: frozenset[str] | None = None,
    unusual: Mapping[str, tuple[float, list[dict[str, Any]]]] | None = None,
    raised: Mapping[str, Mapping[str, Any]] | None = None,
    live_rules: frozenset[str] = frozenset(),
) -> Outcome:
    """Compare `new` with `old` for every trigger (or those in `only`) of one person.

    `open_episodes` maps (trigger id, key) -> its open episode; `last_fired` maps (trigger id,
    key, enter|leave|moment) -> when it last alerted (for the cool-down). Triggers in `silent`
    record their episodes and memory without alerting (a first run). `unusual_usage` triggers
    are evaluated only when `unusual` is given (trigger id -> (anomaly score, reasons) of the
    triggers that flag this person; see act/live_abuse.py): an episode lasts while flagged.

    Abuse rules one event raises are announced by the fast lane as their event is stored:
    there `raised` (rule -> evidence) holds them, and abuse triggers look at those alone; a
    rescore then only ends their episodes (`live_rules`), so the two never open one twice.
    """
    out = Outcome(memo=dict(memo or {}))
    model = ts.model.name

    def cooled(t: Any, key: str, direction: str) -> bool:
        last = last_fired.get((t.id, key, direction))
        return last is not None and now - last < ts.cooldown(t)

    def level(t: Any, key: str, holds: bool, fire_enter: bool, fire_leave: bool,
              enter: Firing | None, leave: Firing | None, *, may_open: bool = True) -> None:
        ep = open_episodes.get((t.id, key))
        if ep is None and holds and may_open:
            eid = episode_id(model, t.id, person_id, key, now)
            outcome, fired = "baseline" if t.id in silent else "open", None
            if t.id not in silent and fire_enter and enter is not None:
                if cooled(t, key, "enter"):
                    outcome = "cooled_down"
                    out.suppressed += 1
                else:
                    enter.episode_id, outcome, fired = eid, "fired", now
                    out.firings.append(enter)
            out.opened.append({"episode_id": eid, "trigger_id": t.id, "key": key,
                               "opened_at": now, "fired_at": fired, "outcome": outcome,
                               "alert_key": enter.alert_key if fired and enter else None,
                               "detail": enter.change if enter is not None else {}})
        elif ep is not None and not holds:
            fired = None
            if t.id not in silent and fire_leave and leave is not None:
                if cooled(t, key, "leave"):
                    out.suppressed += 1
                else:
                    leave.episode_id, fired = ep.episode_id, now
                    out.firings.append(leave)
            out.closed.append((ep, {"closed_at": now, "leave_fired_at": fired,
                                    "alert_key": leave.alert_key if fired and leave else None}))

    def moment(t: Any, key: str, firing: Firing, *, record_held: bool = False) -> None:
        if t.id in silent:
            return
        if cooled(t, key, "moment"):
            out.suppressed += 1
            if record_held:  # remembered, so it is not announced once the cool-down is over
                out.opened.append({
                    "episode_id": episode_id(model, t.id, person_id, key, now),
                    "trigger_id": t.id, "key": key, "opened_at": now, "closed_at": now,
                    "status": "closed", "fired_at": None, "outcome": "cooled_down",
                    "alert_key": None, "detail": firing.change})
            return
        eid = episode_id(model, t.id, person_id, key, now)
        firing.episode_id = eid
        out.firings.append(firing)
        out.opened.append({"episode_id": eid, "trigger_id": t.id, "key": key, "opened_at": now,
                           "closed_at": now, "status": "closed", "fired_at": now,
                           "outcome": "fired", "alert_key": firing.alert_key,
                           "detail": firing.change})

    o = old or LeadState()
    for t in ts.triggers:
        if only is not None and t.id not in only:
            continue
        k = t.kind
        if k == "grade":
            grades = ts.grades_of(t)
            holds = new.grade in grades
            target = f"grade {t.at_least} or better" if t.at_least else "grade " + "/".join(
                sorted(grades))
            change: dict[str, Any] = {"field": "grade", "from": o.grade, "to": new.grade,
                                      "score": new.score}
            level(t, "", holds, t.fire in ("enter", "both"), t.fire in ("leave", "both"),
                  Firing(t, "", "enter", f"{{who}} reached grade {new.grade}",
                         {**change, "condition": target}),
                  Firing(t, "", "leave", f"{{who}} dropped to grade {new.grade or '—'}",
                         {**change, "condition": f"left {target}"}))
        elif k == "bucket":
            holds = new.bucket in set(t.buckets)
            change = {"field": "bucket", "from": o.bucket, "to": new.bucket, "score": new.score}
            level(t, "", holds, t.fire in ("enter", "both"), t.fire in ("leave", "both"),
                  Firing(t, "", "enter", f"{{who}} is now in predictive bucket {new.bucket}",
                         change),
                  Firing(t, "", "leave", f"{{who}} left predictive bucket(s) "
                                         f"{'/'.join(t.buckets)}", change))
        elif k == "score":
            ep = open_episodes.get((t.id, ""))
            line = t.threshold if ep is None else t.threshold - t.hysteresis
            holds = new.score is not None and new.score >= line
            change = {"field": "score", "from": o.score, "to": new.score,
                      "threshold": t.threshold, "hysteresis": t.hysteresis,
                      "grade": new.grade}
            level(t, "", holds, t.direction in ("up", "both"), t.direction in ("down", "both"),
                  Firing(t, "", "enter",
                         f"{{who}} crossed score {_fmt_num(t.threshold)} "
                         f"({_fmt_num(o.score)} → {_fmt_num(new.score)})",
                         {**change, "direction": "up"}),
                  Firing(t, "", "leave",
                         f"{{who}} fell below score {_fmt_num(t.threshold - t.hysteresis)} "
                         f"({_fmt_num(o.score)} → {_fmt_num(new.score)})",
                         {**change, "direction": "down"}))
        elif k == "segment":
            for s in t.segment:
                holds = s in new.segments
                change = {
                    "field": "segment", "segment": s, "from": sorted(o.segments),
                          "to": sorted(new.segments), "score": new.score, "grade": new.grade}
                level(t, s, holds, t.fire in ("enter", "both"), t.fire in ("leave", "both"),
                      Firing(t, s, "enter", f"{{who}} joined segment {s}",
                             {**change, "joined": s}),
                      Firing(t, s, "leave", f"{{who}} left segment {s}", {**change, "left": s}))
        elif k == "abuse":
            rules = t.rules or [a.id for a in ts.model.spec.abuse]
            descriptions = {a.id: a.description for a in ts.model.spec.abuse}
            for r in rules:
                if raised is not None and r not in raised:
                    continue
                flags = new.flags if raised is None else raised
                holds = r in flags
                ev = dict(flags.get(r) or {})
                evidence = [{"rule": r, "detail": descriptions.get(r) or r, **ev}]
                running = " (still running)" if ev.get("still_running") else ""
                change = {"field": "abuse", "to": r, "score": new.score, "grade": new.grade}
                if raised is not None:  # (kept with the episode: see Scorer._keep_unstored)
                    change["message_id"] = ev.get("message_id")
                level(t, r, holds, True, False,
                      Firing(t, r, "enter", f"{{who}}: abuse — {descriptions.get(r) or r}"
                                            f"{running}", change, evidence), None,
                      may_open=raised is not None or r not in live_rules)
        elif k == "unusual_usage":
            if unusual is None:
                continue
            got = unusual.get(t.id)
            anomaly, why = got if got is not None else (None, [])
            top = ", ".join(str(r.get("feature")) for r in why[:3]) or "usage"
            level(t, "", got is not None, True, False,
                  Firing(t, "", "enter", f"{{who}}: unusual usage ({top})",
                         {"field": "unusual_usage", "to": "unusual",
                          "anomaly_score": None if anomaly is None else round(anomaly, 4),
                          "score": new.score, "grade": new.grade},
                         [{"kind": "unusual_usage", **r} for r in why]), None)
        elif k == "stage":
            lo = ts.stage_rank(t.min_stage) if t.min_stage else 1
            if new.stage_rank > o.stage_rank and new.stage_rank >= lo and new.stage:
                moment(t, new.stage, Firing(
                    t, new.stage, "moment", f"{{who}} moved to stage {new.stage}",
                    {"field": "stage", "from": o.stage, "to": new.stage, "score": new.score,
                     "grade": new.grade}))
        elif k == "surge":
            mkey = f"surge:{t.id}"
            v = float(new.categories.get(t.category) or 0.0)
            since = now - timedelta(days=t.within)
            # recorded values, oldest first, rising (a lower later value replaces higher ones);
            # the last one recorded before the window is the value the window started with
            seen = [(_time(a), b) for a, b in out.memo.get(mkey, [])]
            before = [x for x in seen if x[0] < since][-1:]
            samples = before + [x for x in seen if x[0] >= since]
            base = min((x for _, x in samples), default=None)
            if base is not None and v - base >= t.rise:
                first = next((s_t for s_t, x in samples if x == base), now)
                moment(t, "", Firing(
                    t, "", "moment",
                    f"{{who}}: {t.category} surged {_fmt_num(base)} → {_fmt_num(v)}",
                    {"field": f"category.{t.category}", "from": base, "to": v,
                     "rise": round(v - base, 3), "since": _iso(max(first, since)),
                     "score": new.score, "grade": new.grade}))
                samples = []
            while samples and samples[-1][1] >= v:
                samples.pop()
            samples.append((now, v))
            out.memo[mkey] = [[_iso(s_t), x] for s_t, x in samples]
        elif k == "action":
            mkey = f"action:{t.id}"
            since = now - recent
            known = {m: _time(at) for m, at in out.memo.get(mkey, []) if _time(at) >= since}
            mine = [a for a in actions if a.ts >= since and a.ts <= now
                    and ((a.type == "page" and glob_match(a.path, t.pages))
                         or (a.event is not None and a.event in t.events))]
            fresh = sorted((a for a in mine if a.message_id not in known), key=lambda a: a.ts)
            for a in fresh:
                known[a.message_id] = a.ts
            out.memo[mkey] = [[m, _iso(at)] for m, at in sorted(known.items(),
                                                                key=lambda x: x[1])]
            if fresh:
                last = fresh[-1]
                what = last.event if last.type != "page" or not last.path else last.path
                evidence = [{"kind": "action", "event": a.event, "type": a.type, "path": a.path,
                             "at": _iso(a.ts), "message_id": a.message_id,
                             "detail": f"{a.event or a.type}"
                                       + (f" {a.path}" if a.path else "") + f" at {a.ts:%H:%M}"}
                            for a in reversed(fresh[-5:])]  # newest first
                n_before = len(out.firings)
                moment(t, "", Firing(
                    t, "", "moment", f"{{who}} is ready to buy: {what}",
                    {"field": "action", "to": what, "at": _iso(last.ts),
                     "actions": len(fresh), "message_ids": [a.message_id for a in fresh],
                     "score": new.score, "grade": new.grade},
                    evidence, data={"fast_track": t.fast_track}), record_held=True)
                if t.fast_track and len(out.firings) > n_before:
                    out.fast_track = True
    return out
