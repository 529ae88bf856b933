"""The scoring model language: a pydantic schema of `model.yaml`.

Shape of a model file (see `sample/model.yaml` for a complete one, and docs in
`model/__init__.py`):

    version: 3                     # required; bumped by whoever edits the model
    sets:      {name: [values]}    # reusable lists, referenced as @name (built in: @webmail)
    facts:     {name: aggregate}   # named per-person aggregates over events: facts.name
    categories:{name: {cap, min}}  # e.g. fit, engagement
    score:     {min, max}          # the range of the total
    rules:     [rule]              # points: on events (track/page/...) or on the person/account
    grades:    thresholds | volume | matrix
    stages:    journey stages with evidence that expires
    abuse:     [abuse rule]        # event | session | concurrent | regular
    segments:  {name: condition}
    accounts:  {engaged: condition}

Only the shape is checked here; expressions, names of sets/facts/categories and the like are
checked by the compiler (`compile.py`), which knows what each expression may refer to.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

IDENT = r"^[a-z][a-z0-9_]{0,62}$"
EVENT_TYPES = ("track", "page", "screen", "identify", "group")
DEFAULT_STAGES = ("Recognize", "Evaluate", "Sample", "Integrate", "Test", "Deploy")

_UNITS = {"s": 1 / 86400, "m": 1 / 1440, "min": 1 / 1440, "h": 1 / 24, "d": 1.0, "w": 7.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|min|m|h|d|w)\s*$")


def parse_duration(value: Any) -> float:
    """'14d' | '12h' | '90m' | '2w' | '30s' -> days (float). A bare number is days."""
    if isinstance(value, bool):
        raise ValueError("a duration looks like 14d, 12h, 90m or 2w")
    if isinstance(value, int | float):
        if value <= 0:
            raise ValueError("a duration must be positive")
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a duration — write it like 14d, 12h, 90m or 2w")
    days = float(m.group(1)) * _UNITS[m.group(2)]
    if days <= 0:
        raise ValueError("a duration must be positive")
    return days


Duration = Annotated[float, BeforeValidator(parse_duration)]
Ident = Annotated[str, Field(pattern=IDENT)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _names(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


Names = Annotated[list[Annotated[str, Field(min_length=1)]], BeforeValidator(_names)]


class Match(Strict):
    """Which events: a type, optional names (exact or glob with * and ?) and a condition."""

    on: Literal["track", "page", "screen", "identify", "group", "any"]
    event: Names | None = None
    when: str | None = None


class Case(Strict):
    when: str | None = None  # omitted on the last case = everything else
    points: float


class Limit(Strict):
    max_per_day: int | None = Field(default=None, ge=1)
    max_total: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one(self) -> Limit:
        if (self.max_per_day is None) == (self.max_total is None):
            raise ValueError("give exactly one of max_per_day or max_total")
        return self


Frequency = Literal["once", "each"] | Limit


class Rule(Strict):
    """One source of points.

    On events (`on: track|page|screen|identify|group|any`): every matching event is an
    occurrence; `frequency` says which occurrences count, `half_life`/`window` age them.
    On the person or account (`on: person|account`): a condition on the profile, facts and
    account fields, worth its points once.
    """

    id: Ident
    description: str | None = None
    on: Literal["track", "page", "screen", "identify", "group", "any", "person", "account"]
    event: Names | None = None
    when: str | None = None
    points: float | None = None
    cases: list[Case] | None = None
    category: Ident | None = None
    half_life: Duration | None = None
    window: Duration | None = None
    frequency: Frequency = "each"
    min_count: int | None = Field(default=None, ge=1)
    cap: float | None = Field(default=None, gt=0)
    enabled: bool = True

    @property
    def on_events(self) -> bool:
        return self.on not in ("person", "account")

    @model_validator(mode="after")
    def _check(self) -> Rule:
        if (self.points is None) == (self.cases is None):
            raise ValueError("give `points` (one value) or `cases` (a list of when/points)")
        if self.cases:
            for c in self.cases[:-1]:
                if c.when is None:
                    raise ValueError("only the last case may omit `when` (it means: otherwise)")
        if not self.on_events:
            extra = [
                k
                for k in ("event", "half_life", "window", "min_count")
                if getattr(self, k) is not None
            ]
            if self.frequency != "each" and "frequency" in self.model_fields_set:
                extra.append("frequency")
            if extra:
                raise ValueError(
                    f"{', '.join(extra)} only apply to rules on events; a rule `on: {self.on}` "
                    "is a condition on the profile worth its points once"
                )
            if self.when is None and self.cases is None:
                raise ValueError(f"a rule `on: {self.on}` needs a `when` condition")
        if self.category is None:
            self.category = "engagement" if self.on_events else "fit"
        return self


class Fact(Strict):
    """A named per-person aggregate over events, usable as `facts.NAME` in conditions."""

    on: Literal["track", "page", "screen", "identify", "group", "any"]
    event: Names | None = None
    when: str | None = None
    agg: Literal[
        "count",
        "count_distinct",
        "sum",
        "min",
        "max",
        "avg",
        "days_since_first",
        "days_since_last",
        "active_days",
    ] = "count"
    of: str | None = None
    window: Duration | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Fact:
        needs_of = self.agg in ("count_distinct", "sum", "min", "max", "avg")
        if needs_of and not self.of:
            raise ValueError(f"agg: {self.agg} needs `of:` (the value to aggregate)")
        if not needs_of and self.of:
            raise ValueError(f"agg: {self.agg} takes no `of:`")
        return self


class Category(Strict):
    cap: float | None = None
    min: float | None = None
    description: str | None = None


class Range(Strict):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _order(self) -> Range:
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError("min must be below max")
        return self


class Level(Strict):
    grade: Annotated[str, Field(min_length=1, max_length=16)]
    min: float | None = None  # thresholds: score >= min
    top: float | None = Field(default=None, gt=0, le=1)  # volume: within the top share
    description: str | None = None


class AxisLevel(Strict):
    label: Annotated[str, Field(min_length=1, max_length=8)]
    min: float | None = None


class Axis(Strict):
    category: Ident
    levels: list[AxisLevel] = Field(min_length=1)


class Grades(Strict):
    """How a score becomes a grade.

    thresholds: the first level whose `min` the score reaches (the last has no min).
    volume:     the first level whose cumulative `top` share the person is within
                (A top 10 %, B top 25 %, ... the last level has no top).
    matrix:     fit letter × engagement digit from two category axes (A1 ... D4).
    """

    method: Literal["thresholds", "volume", "matrix"] = "thresholds"
    by: Ident = "score"
    levels: list[Level] | None = None
    fit: Axis | None = None
    engagement: Axis | None = None
    mql: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Grades:
        if self.method in ("thresholds", "volume"):
            if not self.levels:
                raise ValueError(f"method: {self.method} needs `levels`")
            key = "min" if self.method == "thresholds" else "top"
            other = "top" if key == "min" else "min"
            for lv in self.levels:
                if getattr(lv, other) is not None:
                    raise ValueError(f"levels of method: {self.method} use `{key}`, not `{other}`")
            *head, last = self.levels
            if getattr(last, key) is not None:
                raise ValueError(f"the last level must have no `{key}`: it takes everyone else")
            for lv in head:
                if getattr(lv, key) is None:
                    raise ValueError(
                        f"grade {lv.grade!r} needs `{key}` (only the last level may omit it)"
                    )
            vals = [getattr(lv, key) for lv in head]
            ordered = sorted(vals, reverse=(key == "min"))
            if vals != ordered:
                word = (
                    "from the highest min down"
                    if key == "min"
                    else "from the smallest top share up"
                )
                raise ValueError(f"list the levels {word}")
            if self.fit or self.engagement:
                raise ValueError("`fit`/`engagement` axes belong to method: matrix")
        else:
            if not (self.fit and self.engagement):
                raise ValueError("method: matrix needs a `fit` axis and an `engagement` axis")
            if self.levels:
                raise ValueError("method: matrix takes axes, not `levels`")
        return self

    def names(self) -> list[str]:
        if self.method == "matrix":
            assert self.fit and self.engagement
            return [f.label + e.label for f in self.fit.levels for e in self.engagement.levels]
        return [lv.grade for lv in self.levels or []]


class StageEvidence(Strict):
    """What shows a stage: any of the `any` event matches, seen at least `min_count` times
    within `expires` (default: the stages' `expires`) before the as-of time."""

    any: list[Match] = Field(min_length=1)
    min_count: int = Field(default=1, ge=1)
    expires: Duration | None = None


def _evidence(v: Any) -> Any:
    return {"any": v} if isinstance(v, list) else v


class Stages(Strict):
    """Buyer-journey stages, in journey order. A person is at the furthest stage that has fresh
    evidence (seen within `expires`), so a stage only goes back when its evidence expires."""

    order: list[Annotated[str, Field(min_length=1, max_length=40)]] = Field(
        default_factory=lambda: list(DEFAULT_STAGES)
    )
    expires: Duration = 90.0
    default: str | None = None
    evidence: dict[str, Annotated[StageEvidence, BeforeValidator(_evidence)]]

    @model_validator(mode="after")
    def _check(self) -> Stages:
        if len(set(self.order)) != len(self.order):
            raise ValueError("a stage is listed twice in `order`")
        return self


class AbuseBase(Strict):
    id: Ident
    description: str | None = None
    points: float = 0.0
    category: Ident = "abuse"
    window: Duration | None = None  # only activity this recent (default: all history)


class EventAbuse(AbuseBase):
    """Flag when at least `min_count` matching events happened (e.g. guests > 10)."""

    kind: Literal["event"]
    on: Literal["track", "page", "screen", "identify", "group", "any"]
    event: Names | None = None
    when: str | None = None
    min_count: int = Field(default=1, ge=1)
    measure: str | None = None  # reported: its largest value among the matching events


class SessionAbuse(AbuseBase):
    """Intervals from a start event to the next stop event with the same key.

    session:    flag an interval longer than `max_minutes` (or than `limit`, an expression on
                the start event such as properties.max_duration_minutes); an interval still
                open at the as-of time counts up to it.
    concurrent: flag more than `max_concurrent` intervals open at the same moment (for at
                least `min_minutes` in one stretch, when given).

    `resume_within` (e.g. 5m): a start this soon after the previous stop of the same key
    continues that session (an environment resumed right after an auto-suspend is one
    session, from its first start to its last stop; its limit is the largest of its starts').
    """

    kind: Literal["session", "concurrent"]
    start: Match
    stop: Match
    key: str
    max_minutes: float | None = Field(default=None, gt=0)
    limit: str | None = None
    max_concurrent: int | None = Field(default=None, ge=1)
    min_minutes: float | None = Field(default=None, gt=0)
    resume_within: Duration | None = None

    @model_validator(mode="after")
    def _check(self) -> SessionAbuse:
        if self.kind == "session":
            if self.max_minutes is None and self.limit is None:
                raise ValueError("kind: session needs max_minutes (or limit)")
            if self.max_concurrent is not None or self.min_minutes is not None:
                raise ValueError("max_concurrent/min_minutes belong to kind: concurrent")
        else:
            if self.max_concurrent is None:
                self.max_concurrent = 1
            if self.max_minutes is not None or self.limit is not None:
                raise ValueError("max_minutes/limit belong to kind: session")
        return self


class RegularAbuse(AbuseBase):
    """Machine-regular activity: at least `min_events` matching events (per `key`, if given)
    whose gaps vary little (coefficient of variation = stddev/mean of gaps <= max_cv), with the
    mean gap inside `gap` when given (e.g. [25m, 35m] around a 30-minute auto-suspend)."""

    kind: Literal["regular"]
    on: Literal["track", "page", "screen", "identify", "group", "any"]
    event: Names | None = None
    when: str | None = None
    key: str | None = None
    min_events: int = Field(default=5, ge=3)
    max_cv: float = Field(default=0.1, gt=0)
    gap: tuple[Duration, Duration] | None = None

    @field_validator("gap")
    @classmethod
    def _gap(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and v[0] >= v[1]:
            raise ValueError("gap is [shortest, longest], shortest first")
        return v


AbuseRule = Annotated[EventAbuse | SessionAbuse | RegularAbuse, Field(discriminator="kind")]


class Segment(Strict):
    when: str
    description: str | None = None


def _segment(v: Any) -> Any:
    return {"when": v} if isinstance(v, str) else v


class Accounts(Strict):
    engaged: str | None = None  # condition on a person; default: engagement points > 0


SetValue = str | int | float | bool


class ModelSpec(Strict):
    version: int | str
    name: str | None = None
    description: str | None = None
    sets: dict[Ident, list[SetValue]] = Field(default_factory=dict)
    facts: dict[Ident, Fact] = Field(default_factory=dict)
    categories: dict[Ident, Category] = Field(default_factory=dict)
    score: Range = Field(default_factory=Range)
    rules: list[Rule] = Field(default_factory=list)
    grades: Grades | None = None
    stages: Stages | None = None
    abuse: list[AbuseRule] = Field(default_factory=list)
    segments: dict[Ident, Annotated[Segment, BeforeValidator(_segment)]] = Field(
        default_factory=dict
    )
    accounts: Accounts = Field(default_factory=Accounts)

    @field_validator("sets")
    @classmethod
    def _sets(cls, v: dict[str, list]) -> dict[str, list]:
        for name, values in v.items():
            if not values:
                raise ValueError(f"set {name!r} is empty")
            kinds = {isinstance(x, str) for x in values}
            if len(kinds) > 1:
                raise ValueError(f"set {name!r} mixes text and numbers — quote them all")
        return v
