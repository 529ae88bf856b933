"""Routing: qualified leads -> an owner, by declared rules, capacity and parity.

    plan = route(engine, settings, dry_run=True)        # what would happen; writes nothing
    plan = route(engine, settings, leads=df, trigger="fast_track")
    for a in plan.assignments: a.rep, a.rule, a.reason
    for w in plan.waiting: w.why, w.detail             # nobody could take it: it waits, visibly

Which leads: the ones given (a DataFrame, dicts or person ids — the caller has decided they
qualify), else every person of `latest_scores` whose grade is in `[routing].qualify_grades`
(or whose score reaches `min_score`) and who has no owner yet; plus, always, the leads already
waiting in `routing_queue`. Fields a given row lacks come from `people`, `accounts` and
`latest_scores` (when that table exists).

For each lead, highest score first (ties: grade, then a seeded hash of the person id):

1. **Ownership sticks.** A person with an owner (`people.owner`) or whose account has an owner
   (`accounts.owner`) goes to that owner. If the owner is away or full the lead *waits for
   them* (`owner_unavailable`); it is never given to someone else. An owner who is not in the
   roster still gets the lead (capacity untracked). Without a formal owner, a lead whose account
   already had a lead routed goes to that same rep when they can take it (else on to step 2).
2. **Rules pick the team.** `[[routing.rules]]` in order, first match wins; else
   `[routing].default_team`; else the lead waits (`no_rule`).
3. **A rep inside the team.** Reps who are away, full (per day / per week, calendar days in
   `[routing].timezone`), or do not serve the lead's territory, size band or customer type are
   skipped (each with its reason). A team nobody can serve passes the lead to its `overflow`
   team, else the lead waits (`team_unavailable`).
   * A/B leads (`parity_grades`) go to the eligible rep with the fewest A/B leads over the last
     `parity_window_days` (divided by the rep's `weight`), so every rep gets an even share.
   * Other leads go to the eligible rep with the most capacity left (round-robin weighted by
     remaining capacity; unlimited reps by fewest leads today).
   * Remaining exact ties: least recently assigned, then a hash of (seed, person, rep).

**Parity guarantee (the stated tolerance).** Within a team whose reps could all take the same
leads and had capacity left, the weighted A/B counts over the window of any two active reps
differ by at most `[routing].parity_tolerance` (default 1 lead) — the greedy choice above keeps
the spread at most one lead per weight unit. Territory or segment restrictions inside a team,
away days and full reps can push it wider; `parity_report` shows the spread and flags it.

Every assignment records why (rule, rep, why this rep, capacity left, the other candidates,
skipped reps). Given the same store, settings, seed and clock, the plan is the same.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import pyarrow as pa

from ..config import RangeCondition, Settings
from ..errors import ConfigError, InputError
from ..store.engine import Engine
from .clock import Clock, as_utc_naive, resolve_now
from .reps import Rep, roster, sync_config_reps

# lead fields a rule may test (besides `traits.KEY`)
RULE_FIELDS = (
    "country", "region", "size", "size_band", "type", "source", "campaign", "industry", "grade",
    "score", "webmail", "segment", "trigger", "domain", "title", "company", "email",
)
TRIGGERS = ("qualified", "fast_track", "contact_request", "manual")

ASSIGNMENT_COLUMNS = (
    "assignment_id", "person_id", "account_id", "rep", "team", "rule", "trigger", "grade",
    "score", "reason", "assigned_at", "run_id",
)
QUEUE_COLUMNS = (
    "person_id", "team", "rule", "trigger", "grade", "score", "why", "detail", "queued_at",
    "last_tried_at", "run_id",
)


# -- results --------------------------------------------------------------------------------


@dataclass
class Assignment:
    person_id: str
    rep: str
    team: str | None
    rule: str
    trigger: str
    grade: str | None
    score: float | None
    account_id: str | None
    reason: dict[str, Any]
    assigned_at: datetime
    assignment_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ASSIGNMENT_COLUMNS if k != "run_id"}


@dataclass
class Waiting:
    """A qualified lead nobody can take now; it stays in `routing_queue` until someone can."""

    person_id: str
    why: str  # no_rule | team_has_no_reps | team_unavailable | owner_unavailable
    team: str | None
    rule: str | None
    trigger: str
    grade: str | None
    score: float | None
    detail: dict[str, Any]
    queued_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in (
            "person_id", "why", "team", "rule", "trigger", "grade", "score", "detail",
            "queued_at")}


@dataclass
class RoutingPlan:
    run_id: str
    at: datetime
    dry_run: bool
    assignments: list[Assignment] = field(default_factory=list)
    waiting: list[Waiting] = field(default_factory=list)
    already_assigned: list[str] = field(default_factory=list)  # given or queued, owned already
    capacity: dict[str, dict[str, Any]] = field(default_factory=dict)  # rep -> after the plan
    notes: list[str] = field(default_factory=list)

    @property
    def applied(self) -> bool:
        return not self.dry_run

    def by_rep(self) -> dict[str, list[Assignment]]:
        out: dict[str, list[Assignment]] = {}
        for a in self.assignments:
            out.setdefault(a.rep, []).append(a)
        return out

    def alerts(self, *, waiting_to: str = "feed") -> list:  # -> list[act.outbox.AlertIn]
        """Outbox alerts for an applied plan: each new lead to its rep (by email when the rep
        is an address, else the dashboard feed), each waiting lead to `waiting_to` — once per
        lead and reason (stable keys), however often the routing runs."""
        from .outbox import AlertIn, Recipient, parse_address

        feed = Recipient("feed", "")
        out = []
        for a in self.assignments:
            to = parse_address(a.rep) or feed
            out.append(AlertIn.to(
                to, trigger_id="routing.assigned", trigger_kind="assignment",
                title=f"New {a.trigger.replace('_', '-')} lead for you: {a.person_id} "
                      f"(grade {a.grade or '?'})",
                person_id=a.person_id, account_id=a.account_id, severity="info",
                change={"field": "owner", "to": a.rep, "grade": a.grade, "score": a.score},
                reasons=[{"rule": a.rule, "detail": str(a.reason.get("why", ""))}],
                data=orjson.loads(orjson.dumps(a.reason, default=str)),
                key=f"routing.assigned:{a.assignment_id}", created_at=a.assigned_at))
        for w in self.waiting:
            to = parse_address(waiting_to) or feed
            out.append(AlertIn.to(
                to, trigger_id="routing.waiting", trigger_kind="routing_queue",
                title=f"Qualified lead {w.person_id} is waiting: {w.why.replace('_', ' ')}",
                person_id=w.person_id, severity="warning",
                change={"field": "routing", "to": "waiting", "grade": w.grade},
                data=orjson.loads(orjson.dumps(w.detail, default=str)),
                key=f"routing.waiting:{w.person_id}:{w.why}:{w.queued_at:%Y-%m-%d}",
                created_at=self.at))
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "at": self.at, "dry_run": self.dry_run,
            "assignments": [a.as_dict() for a in self.assignments],
            "waiting": [w.as_dict() for w in self.waiting],
            "already_assigned": self.already_assigned, "capacity": self.capacity,
            "notes": self.notes,
        }


# -- small helpers --------------------------------------------------------------------------


def _hash(*parts: object) -> str:
    return hashlib.sha1("\x1f".join(str(p) for p in parts).encode()).hexdigest()


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _num(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def parse_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def as_segments(value: Any) -> list[str]:
    value = parse_json(value)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [str(k) for k, v in value.items() if v]
    try:
        return [str(v) for v in value]
    except TypeError:
        return [str(value)]


def _tz(name: str, key: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown time zone {name!r} (use an IANA name such as "
                          "'Europe/Berlin')", key=key) from exc


def rows_of(leads: Any) -> list[dict[str, Any]]:
    """A DataFrame, Arrow table, dicts or person ids -> a list of dicts (NaN -> None)."""
    if leads is None:
        return []
    if hasattr(leads, "to_dict") and hasattr(leads, "columns"):  # pandas
        records = leads.to_dict("records")
    elif isinstance(leads, pa.Table):
        records = leads.to_pylist()
    else:
        records = [{"person_id": x} if isinstance(x, str) else dict(x) for x in leads]
    out = []
    for i, r in enumerate(records):
        clean = {str(k): (None if isinstance(v, float) and math.isnan(v) else v)
                 for k, v in r.items()}
        if not _text(clean.get("person_id")):
            raise InputError(f"lead #{i} has no person_id", field="person_id")
        clean["person_id"] = str(clean["person_id"])
        out.append(clean)
    return out


# -- reading the store ------------------------------------------------------------------------


def has_table(engine: Engine, table: str) -> bool:
    return bool(engine.existing_columns(table))


def store_leads(engine: Engine, person_ids: Sequence[str], *,
                model: str | None = None) -> dict[str, dict[str, Any]]:
    """person_id -> the fields routing uses, from people, accounts and latest_scores."""
    if not person_ids:
        return {}
    cols = ["person_id", "email", "name", "company", "domain", "webmail", "title", "country",
            "source", "campaign", "person_owner", "account_id", "traits", "size", "industry",
            "account_owner", "account_traits"]
    rows = engine.query(
        """
        SELECT p.person_id, p.email, p.name, p.company, p.domain, p.webmail, p.title, p.country,
               p.source, p.campaign, p.owner, p.account_id, p.traits, a.size, a.industry,
               a.owner, a.traits
        FROM people p LEFT JOIN accounts a ON a.account_id = p.account_id
        WHERE p.person_id = ANY(?)
        """,
        [list(person_ids)],
    )
    out = {r[0]: dict(zip(cols, r, strict=True)) for r in rows}
    for d in out.values():
        d["traits"] = parse_json(d["traits"]) or {}
        d["account_traits"] = parse_json(d["account_traits"]) or {}
    for pid, score in latest_scores(engine, person_ids, model=model).items():
        out.setdefault(pid, {"person_id": pid}).update(score)
    return out


def latest_scores(engine: Engine, person_ids: Sequence[str] | None = None, *,
                  model: str | None = None) -> dict[str, dict]:
    """person_id -> {score, grade, segments, stage} from `latest_scores` (empty if none yet):
    the scoring model `model`'s, else each person's newest score of any model."""
    have = set(engine.existing_columns("latest_scores"))
    if "person_id" not in have:
        return {}
    wanted = [c for c in ("score", "grade", "segments", "stage", "mql") if c in have]
    conds: list[str] = []
    params: list[Any] = []
    if person_ids is not None:
        conds.append("person_id = ANY(?)")
        params.append(list(person_ids))
    if model is not None and "model" in have:
        conds.append("model = ?")
        params.append(model)
    where = f" WHERE {' AND '.join(conds)}" if conds else ""
    order = " ORDER BY as_of" if "as_of" in have else ""
    rows = engine.query(
        f"SELECT person_id, {', '.join(wanted) or 'NULL'} FROM latest_scores{where}{order}",
        params or None,
    )
    out: dict[str, dict] = {}
    for r in rows:  # ordered by as_of: the newest wins
        d = dict(zip(wanted, r[1:], strict=False))
        if "grade" in d:
            d["grade"] = _text(d["grade"])
        if "score" in d:
            d["score"] = _num(d["score"])
        if "segments" in d:
            d["segments"] = as_segments(d["segments"])
        out[r[0]] = d
    return out


def qualified_person_ids(engine: Engine, settings: Settings) -> list[str]:
    """People in `latest_scores` who qualify for routing and have no owner yet."""
    have = set(engine.existing_columns("latest_scores"))
    cfg = settings.routing
    conds: list[str] = []
    params: list[Any] = []
    if "grade" in have and cfg.qualify_grades:
        conds.append("CAST(grade AS TEXT) = ANY(?)")
        params.append(list(cfg.qualify_grades))
    if "score" in have and cfg.min_score is not None:
        conds.append("score >= ?")
        params.append(cfg.min_score)
    if not conds:
        return []
    # judged on each person's newest score (of the configured model)
    newest = latest_scores(engine, model=cfg.model)
    candidates = set(newest)
    rows = engine.query(
        f"""
        SELECT DISTINCT person_id FROM latest_scores
        WHERE ({' OR '.join(conds)})
          AND person_id NOT IN (SELECT person_id FROM assignments)
        ORDER BY person_id
        """,
        params,
    )
    out = []
    for (pid,) in rows:
        d = newest.get(pid) if pid in candidates else None
        if d is None:
            continue
        if (d.get("grade") in cfg.qualify_grades) or (
                cfg.min_score is not None and (d.get("score") or -math.inf) >= cfg.min_score):
            out.append(pid)
    return out


def waiting(engine: Engine) -> list[dict[str, Any]]:
    """The visible queue: leads that qualified and wait for a rep, oldest first."""
    rows = engine.query(
        f"SELECT {', '.join(QUEUE_COLUMNS)} FROM routing_queue ORDER BY queued_at, person_id"
    )
    out = []
    for r in rows:
        d = dict(zip(QUEUE_COLUMNS, r, strict=True))
        d["detail"] = parse_json(d["detail"])
        out.append(d)
    return out


def current_owner(engine: Engine, person_id: str) -> str | None:
    """The rep a person was last routed to, if any."""
    rows = engine.query(
        "SELECT rep FROM assignments WHERE person_id = ? ORDER BY assigned_at DESC LIMIT 1",
        [person_id],
    )
    return rows[0][0] if rows else None


# -- rules ------------------------------------------------------------------------------------


def check_rules(settings: Settings, reps: Iterable[Rep]) -> None:
    """Fail at load with the rule's key when a rule names an unknown field or team."""
    teams = set(settings.teams) | {r.team for r in reps}
    cfg = settings.routing
    for i, rule in enumerate(cfg.rules):
        key = f"routing.rules[{i}]"
        for f in rule.when:
            if f not in RULE_FIELDS and not f.startswith("traits."):
                raise ConfigError(
                    f"rule {rule.name!r}: unknown field {f!r}; use one of "
                    f"{', '.join(RULE_FIELDS)} or traits.KEY", key=f"{key}.when.{f}",
                )
        if rule.team not in teams:
            raise ConfigError(
                f"rule {rule.name!r} routes to team {rule.team!r}, which has no reps and no "
                f"[teams.{rule.team}] section (teams: {', '.join(sorted(teams)) or 'none'})",
                key=f"{key}.team",
            )
    if cfg.default_team and cfg.default_team not in teams:
        raise ConfigError(f"default team {cfg.default_team!r} has no reps and no "
                          f"[teams.{cfg.default_team}] section", key="routing.default_team")
    for name, team in settings.teams.items():
        if team.overflow and team.overflow not in teams:
            raise ConfigError(f"overflow team {team.overflow!r} is unknown",
                              key=f"teams.{name}.overflow")
    for band in [cfg.unknown_size_band, *[s for r in reps for s in r.sizes]]:
        if band is not None and band not in cfg.size_bands:
            raise ConfigError(f"size band {band!r} is not one of [routing].size_bands "
                              f"({', '.join(cfg.size_bands)})", key="routing.size_bands")


def _eq(a: Any, b: Any) -> bool:
    na, nb = _num(a), _num(b)
    if na is not None and nb is not None and not isinstance(a, bool) and not isinstance(b, bool):
        return na == nb
    if isinstance(b, bool) or isinstance(a, bool):
        return bool(a) == bool(b) if a is not None else False
    return str(a).strip().lower() == str(b).strip().lower()


def matches(condition: Any, value: Any) -> bool:
    """Does a lead value satisfy one `when` condition? (None never matches.)"""
    if value is None or value == []:
        return False
    if isinstance(value, list):  # a multi-valued field (segments): any of them
        return any(matches(condition, v) for v in value)
    if isinstance(condition, RangeCondition):
        v = _num(value)
        return v is not None and (condition.min is None or v >= condition.min) and (
            condition.max is None or v <= condition.max)
    if isinstance(condition, list):
        return any(_eq(value, c) for c in condition)
    return _eq(value, condition)


# -- the router -------------------------------------------------------------------------------


@dataclass
class _RepState:
    rep: Rep
    day: int = 0  # leads assigned today / this week
    week: int = 0
    parity: int = 0  # parity-grade leads in the window
    window: int = 0  # all leads in the window
    last: datetime | None = None

    def left(self) -> int | None:
        lefts = [cap - used for cap, used in ((self.rep.per_day, self.day),
                                               (self.rep.per_week, self.week)) if cap is not None]
        return min(lefts) if lefts else None

    def capacity(self) -> dict[str, Any]:
        r = self.rep
        return {
            "day_used": self.day, "day_left": None if r.per_day is None else r.per_day - self.day,
            "week_used": self.week,
            "week_left": None if r.per_week is None else r.per_week - self.week,
            "parity_leads": self.parity, "window_leads": self.window,
        }

    def full(self) -> str | None:
        r = self.rep
        if r.per_day is not None and self.day >= r.per_day:
            return f"full: {self.day} of {r.per_day} leads today"
        if r.per_week is not None and self.week >= r.per_week:
            return f"full: {self.week} of {r.per_week} leads this week"
        return None


class Router:
    """Plans and applies routing runs over one store. See the module docstring."""

    def __init__(self, engine: Engine, settings: Settings, *, clock: Clock | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.cfg = settings.routing
        self.tz = _tz(self.cfg.timezone, "routing.timezone")
        self.region_of: dict[str, str] = {}
        for region, countries in self.cfg.regions.items():
            for c in countries:
                self.region_of.setdefault(c.upper(), region)

    # -- lead fields --

    def size_band(self, size: float | None) -> str | None:
        if size is None:
            return self.cfg.unknown_size_band
        best = None
        for band, lower in sorted(self.cfg.size_bands.items(), key=lambda kv: kv[1]):
            if size >= lower:
                best = band
        return best

    def lead_fields(self, given: dict[str, Any], stored: dict[str, Any] | None,
                    trigger: str) -> dict[str, Any]:
        lead = dict(stored or {})
        lead.update({k: v for k, v in given.items() if v is not None})
        traits: dict[str, Any] = lead["traits"] if isinstance(lead.get("traits"), dict) else {}
        account_traits: dict[str, Any] = lead.get("account_traits") or {}
        country = _text(lead.get("country"))
        lead["country"] = country.upper() if country and len(country) == 2 else country
        lead["region"] = _text(lead.get("region")) or (
            self.region_of.get(lead["country"].upper()) if lead["country"] else None)
        lead["size"] = _num(lead.get("size"))
        lead["size_band"] = _text(lead.get("size_band")) or self.size_band(lead["size"])
        ttype = (_text(lead.get("type")) or _text(traits.get(self.cfg.type_trait))
                 or _text(account_traits.get(self.cfg.type_trait)) or self.cfg.default_type)
        lead["type"] = ttype.lower() if ttype else None
        lead["grade"] = _text(lead.get("grade"))
        lead["score"] = _num(lead.get("score"))
        segs = as_segments(lead.get("segments")) + as_segments(lead.get("segment"))
        if traits.get("segment"):
            segs += as_segments(traits["segment"])
        lead["segment"] = sorted(set(segs))
        lead["trigger"] = _text(lead.get("trigger")) or trigger
        lead["traits"] = traits
        return lead

    def field_value(self, lead: dict[str, Any], name: str) -> Any:
        if name.startswith("traits."):
            key = name[len("traits."):]
            return (lead.get("traits") or {}).get(key, (lead.get("account_traits") or {}).get(key))
        return lead.get(name)

    def pick_rule(self, lead: dict[str, Any]) -> tuple[str, int | None, str] | None:
        for i, rule in enumerate(self.cfg.rules):
            if all(matches(c, self.field_value(lead, f)) for f, c in rule.when.items()):
                return rule.name, i, rule.team
        if self.cfg.default_team:
            return "default", None, self.cfg.default_team
        return None

    # -- reps --

    def covers(self, rep: Rep, lead: dict[str, Any]) -> str | None:
        """None if `rep` serves this lead's territory and segment, else why not."""
        if rep.territory and "*" not in rep.territory:
            country, region = lead.get("country"), lead.get("region")
            allowed = {t.upper() for t in rep.territory}
            if not country or (country.upper() not in allowed
                               and (region or "").upper() not in allowed):
                return (f"territory: {country or 'unknown country'} is outside "
                        f"{', '.join(rep.territory)}")
        if rep.sizes and lead.get("size_band") not in rep.sizes:
            return (f"size: {lead.get('size_band') or 'unknown size'} is not in "
                    f"{', '.join(rep.sizes)}")
        if rep.types and (lead.get("type") or "") not in {t.lower() for t in rep.types}:
            return f"type: {lead.get('type') or 'unknown type'} is not in {', '.join(rep.types)}"
        return None

    def _windows(self, now: datetime) -> tuple[datetime, datetime, datetime]:
        local = now.replace(tzinfo=ZoneInfo("UTC")).astimezone(self.tz)
        day = local.replace(hour=0, minute=0, second=0, microsecond=0)
        week = day - timedelta(days=day.weekday())
        return (as_utc_naive(day), as_utc_naive(week),
                now - timedelta(days=self.cfg.parity_window_days))

    def _state(self, reps: list[Rep], now: datetime) -> dict[str, _RepState]:
        day, week, window = self._windows(now)
        state = {r.email: _RepState(r) for r in reps}
        rows = self.engine.query(
            """
            SELECT rep,
                   count(*) FILTER (WHERE assigned_at >= ?),
                   count(*) FILTER (WHERE assigned_at >= ?),
                   count(*) FILTER (WHERE assigned_at >= ? AND grade = ANY(?)),
                   count(*) FILTER (WHERE assigned_at >= ?),
                   max(assigned_at)
            FROM assignments WHERE assigned_at <= ? GROUP BY rep
            """,
            [day, week, window, list(self.cfg.parity_grades), window, now],
        )
        for rep, d, w, p, n, last in rows:
            if rep in state:
                s = state[rep]
                s.day, s.week, s.parity, s.window, s.last = d, w, p, n, last
        return state

    def capacity(self, now: datetime | None = None) -> dict[str, dict[str, Any]]:
        """rep -> leads used and left today / this week, and A/B leads in the parity window."""
        now = resolve_now(now, self.clock)
        return {e: s.capacity() for e, s in
                self._state(roster(self.engine, self.settings), now).items()}

    # -- planning --

    def plan(self, leads: Any = None, *, trigger: str = "qualified",
             now: datetime | None = None) -> RoutingPlan:
        now = resolve_now(now, self.clock)
        reps = roster(self.engine, self.settings)
        check_rules(self.settings, reps)
        given = rows_of(leads)
        notes = []
        if leads is None:
            if not has_table(self.engine, "latest_scores"):
                notes.append("no latest_scores table yet: only queued leads were routed; "
                             "pass leads explicitly until the scoring model has run")
            given = [{"person_id": p} for p in qualified_person_ids(self.engine, self.settings)]
        queued = {r["person_id"]: r for r in waiting(self.engine)}
        wanted: dict[str, dict[str, Any]] = {}
        for row in given:
            wanted[row["person_id"]] = row
        for pid, q in queued.items():
            wanted.setdefault(pid, {"person_id": pid, "trigger": q["trigger"]})

        ids = sorted(wanted)
        owned: set[str] = set()
        if ids:
            owned = {r[0] for r in self.engine.query(
                "SELECT DISTINCT person_id FROM assignments WHERE person_id = ANY(?)", [ids])}
        stored = store_leads(self.engine, [i for i in ids if i not in owned], model=self.cfg.model)
        leads_ = [self.lead_fields(wanted[i], stored.get(i), trigger) for i in ids
                  if i not in owned]
        seed = self.cfg.seed
        leads_.sort(key=lambda d: (
            -(d["score"] if d["score"] is not None else -math.inf),
            d["grade"] or "\uffff", _hash(seed, d["person_id"])))

        run_id = _hash(now.isoformat(), seed, *ids)[:12]
        plan = RoutingPlan(run_id=run_id, at=now, dry_run=True, notes=notes,
                           already_assigned=sorted(owned))
        state = self._state(reps, now)
        by_name = {r.name.strip().lower(): r.email for r in reps if r.name}
        account_rep = self._account_reps([d.get("account_id") for d in leads_])

        for lead in leads_:
            decision = self._decide(lead, state, by_name, account_rep, now, queued)
            if isinstance(decision, Assignment):
                decision.assignment_id = _hash(run_id, decision.person_id)[:20]
                plan.assignments.append(decision)
                if decision.account_id:
                    account_rep.setdefault(decision.account_id, decision.rep)
            else:
                plan.waiting.append(decision)
        plan.capacity = {e: s.capacity() for e, s in state.items()}
        return plan

    def _account_reps(self, account_ids: list[str | None]) -> dict[str, str]:
        ids = sorted({a for a in account_ids if a})
        if not ids:
            return {}
        rows = self.engine.query(
            "SELECT account_id, rep FROM assignments WHERE account_id = ANY(?) "
            "ORDER BY assigned_at, assignment_id", [ids])
        return {a: rep for a, rep in rows}  # the latest wins

    def _decide(self, lead: dict[str, Any], state: dict[str, _RepState], by_name: dict[str, str],
                account_rep: dict[str, str], now: datetime,
                queued: dict[str, dict]) -> Assignment | Waiting:
        base = {"trigger": lead["trigger"], "grade": lead["grade"], "score": lead["score"]}
        queued_at = (queued.get(lead["person_id"]) or {}).get("queued_at") or now

        def wait(why: str, team: str | None, rule: str | None, detail: dict) -> Waiting:
            return Waiting(person_id=lead["person_id"], why=why, team=team, rule=rule,
                           detail=detail, queued_at=queued_at, **base)

        # 1. ownership sticks
        context: dict[str, Any] = {}
        if self.cfg.account_owner:
            owners = (("person_owner", _text(lead.get("person_owner"))),
                      ("account_owner", _text(lead.get("account_owner"))),
                      ("account_assignment", account_rep.get(lead.get("account_id") or "")))
            for rule, owner in owners:
                if not owner:
                    continue
                email = owner.lower() if owner.lower() in state else by_name.get(owner.lower())
                if email is None:
                    return self._assign(lead, owner, None, rule, None, now, {
                        "why": f"{rule.replace('_', ' ')}: {owner} (not in the roster: "
                               "capacity not tracked)"})
                s = state[email]
                blocked = ("away" + (f" until {s.rep.away_until:%Y-%m-%d %H:%M}"
                                     if s.rep.away_until and s.rep.away_until.year < 9999 else "")
                           if s.rep.away(now) else s.full())
                if blocked and rule == "account_assignment":
                    # no formal owner, only an earlier hand-off: do not hold the lead for them
                    context["account_earlier_rep"] = {"rep": email, "because": blocked}
                    break
                if blocked:
                    return wait("owner_unavailable", s.rep.team, rule,
                                {"owner": email, "because": blocked,
                                 "note": "people of an owned account wait for their owner"})
                return self._assign(lead, email, s.rep.team, rule, None, now, {
                    "why": f"{rule.replace('_', ' ')}: {email}"}, state)

        # 2. rules pick the team
        picked = self.pick_rule(lead)
        if picked is None:
            return wait("no_rule", None, None, {
                **context,
                "note": "no routing rule matches and there is no [routing].default_team",
                "fields": {k: lead.get(k) for k in ("country", "region", "size_band", "type",
                                                    "source")}})
        rule, rule_index, team = picked

        # 3. a rep inside the team (or its overflow teams)
        tried: list[dict[str, Any]] = []
        seen: set[str] = set()
        current: str | None = team
        while current and current not in seen:
            seen.add(current)
            members = [s for s in state.values() if s.rep.team == current]
            eligible, skipped = [], []
            for s in members:
                why_not = (("away" if s.rep.away(now) else None) or self.covers(s.rep, lead)
                           or s.full())
                if why_not:
                    skipped.append({"rep": s.rep.email, "why": why_not})
                else:
                    eligible.append(s)
            if eligible:
                chosen, why = self._choose(eligible, lead)
                extra = {**context, "rule_index": rule_index, "why": why,
                         "candidates": [self._candidate(s) for s in eligible],
                         "skipped": skipped}
                if current != team:
                    extra["overflow_from"] = team
                    extra["tried"] = tried
                return self._assign(lead, chosen.rep.email, current, rule, rule_index, now,
                                    extra, state)
            tried.append({"team": current, "reps": len(members), "skipped": skipped})
            team_cfg = self.settings.teams.get(current)
            current = team_cfg.overflow if team_cfg else None
        why = "team_has_no_reps" if all(t["reps"] == 0 for t in tried) else "team_unavailable"
        return wait(why, team, rule, {**context, "rule_index": rule_index, "tried": tried})

    def _candidate(self, s: _RepState) -> dict[str, Any]:
        return {"rep": s.rep.email, "parity_leads": s.parity, "weight": s.rep.weight,
                "capacity_left": s.left(), "leads_today": s.day}

    def _choose(self, eligible: list[_RepState], lead: dict[str, Any]) -> tuple[_RepState, str]:
        seed, pid = self.cfg.seed, lead["person_id"]
        parity = lead["grade"] in self.cfg.parity_grades

        def room(s: _RepState) -> float:
            left = s.left()
            return math.inf if left is None else left

        def key(s: _RepState) -> tuple:
            tail = (s.last or datetime.min, _hash(seed, pid, s.rep.email))
            if parity:
                return ((s.parity + 1) / s.rep.weight, -room(s), s.day / s.rep.weight, *tail)
            return (-room(s), s.day / s.rep.weight, *tail)

        chosen = min(eligible, key=key)
        if len(eligible) == 1:
            return chosen, "the only rep in the team who could take it"
        if parity:
            return chosen, (f"fewest {'/'.join(self.cfg.parity_grades)} leads in the last "
                            f"{self.cfg.parity_window_days} days ({chosen.parity}, weight "
                            f"{chosen.rep.weight:g}) — parity")
        left = chosen.left()
        return chosen, ("most capacity left (" + ("unlimited" if left is None else str(left))
                        + ") — round-robin weighted by remaining capacity")

    def _assign(self, lead: dict[str, Any], rep: str, team: str | None, rule: str,
                rule_index: int | None, now: datetime, extra: dict[str, Any],
                state: dict[str, _RepState] | None = None) -> Assignment:
        s = (state or {}).get(rep)
        if s is not None:  # book the lead against the rep's capacity and parity
            s.day += 1
            s.week += 1
            s.window += 1
            s.parity += lead["grade"] in self.cfg.parity_grades
            s.last = now
        reason: dict[str, Any] = {
            "rule": rule, "team": team, "rep": rep, "trigger": lead["trigger"],
            "grade": lead["grade"], "score": lead["score"], **extra,
            "capacity_left": (
                {"day": s.capacity()["day_left"], "week": s.capacity()["week_left"]}
                if s is not None else None),
            "at": now.isoformat(),
        }
        return Assignment(
            person_id=lead["person_id"], rep=rep, team=team, rule=rule, trigger=lead["trigger"],
            grade=lead["grade"], score=lead["score"], account_id=_text(lead.get("account_id")),
            reason=reason, assigned_at=now,
        )

    # -- applying --

    def apply(self, plan: RoutingPlan) -> RoutingPlan:
        """Write a plan: assignments, the queue (assigned leave it, waiting ones stay/enter)."""
        e = self.engine
        with e.transaction():
            sync_config_reps(e, self.settings, plan.at)
            # assigned leads leave the queue (so do queued leads someone owns meanwhile);
            # waiting ones are re-written with today's reason
            touched = ([a.person_id for a in plan.assignments] + plan.already_assigned
                       + [w.person_id for w in plan.waiting])
            if touched:
                e.execute("DELETE FROM routing_queue WHERE person_id = ANY(?)", [touched])
            if plan.assignments:
                e.append("assignments", pa.table({
                    "assignment_id": [a.assignment_id for a in plan.assignments],
                    "person_id": [a.person_id for a in plan.assignments],
                    "account_id": pa.array([a.account_id for a in plan.assignments], pa.string()),
                    "rep": [a.rep for a in plan.assignments],
                    "team": pa.array([a.team for a in plan.assignments], pa.string()),
                    "rule": [a.rule for a in plan.assignments],
                    "trigger": [a.trigger for a in plan.assignments],
                    "grade": pa.array([a.grade for a in plan.assignments], pa.string()),
                    "score": pa.array([a.score for a in plan.assignments], pa.float64()),
                    "reason": [orjson.dumps(a.reason, default=str).decode()
                               for a in plan.assignments],
                    "assigned_at": pa.array([a.assigned_at for a in plan.assignments],
                                            pa.timestamp("us")),
                    "run_id": [plan.run_id] * len(plan.assignments),
                }))
            if plan.waiting:
                w = plan.waiting
                e.append("routing_queue", pa.table({
                    "person_id": [x.person_id for x in w],
                    "team": pa.array([x.team for x in w], pa.string()),
                    "rule": pa.array([x.rule for x in w], pa.string()),
                    "trigger": [x.trigger for x in w],
                    "grade": pa.array([x.grade for x in w], pa.string()),
                    "score": pa.array([x.score for x in w], pa.float64()),
                    "why": [x.why for x in w],
                    "detail": [orjson.dumps(x.detail, default=str).decode() for x in w],
                    "queued_at": pa.array([x.queued_at for x in w], pa.timestamp("us")),
                    "last_tried_at": pa.array([plan.at] * len(w), pa.timestamp("us")),
                    "run_id": [plan.run_id] * len(w),
                }))
        plan.dry_run = False
        return plan

    def route(self, leads: Any = None, *, dry_run: bool = False, trigger: str = "qualified",
              now: datetime | None = None) -> RoutingPlan:
        plan = self.plan(leads, trigger=trigger, now=now)
        return plan if dry_run else self.apply(plan)


def route(engine: Engine, settings: Settings, leads: Any = None, *, dry_run: bool = False,
          trigger: str = "qualified", clock: Clock | None = None,
          now: datetime | None = None) -> RoutingPlan:
    """Route qualified leads (see the module docstring). `dry_run` returns the plan unwritten."""
    return Router(engine, settings, clock=clock).route(leads, dry_run=dry_run, trigger=trigger,
                                                       now=now)


# -- parity -----------------------------------------------------------------------------------


@dataclass
class TeamParity:
    team: str
    window_days: int
    tolerance: float
    counts: dict[str, int]  # rep -> parity-grade leads in the window
    weighted: dict[str, float]  # count / weight
    spread: float  # max - min of weighted counts among active reps
    within_tolerance: bool
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def parity_report(engine: Engine, settings: Settings, *, now: datetime | None = None,
                  clock: Clock | None = None) -> list[TeamParity]:
    """Per team: each active rep's A/B leads over the parity window and whether the spread is
    within `[routing].parity_tolerance`. Reps away now are listed but not compared."""
    now = resolve_now(now, clock)
    cfg = settings.routing
    reps = roster(engine, settings)
    since = now - timedelta(days=cfg.parity_window_days)
    counts = dict(engine.query(
        "SELECT rep, count(*) FROM assignments WHERE assigned_at >= ? AND assigned_at <= ? "
        "AND grade = ANY(?) GROUP BY rep", [since, now, list(cfg.parity_grades)]))
    out = []
    for team in sorted({r.team for r in reps}):
        members = [r for r in reps if r.team == team]
        active = [r for r in members if not r.away(now)]
        weighted = {r.email: counts.get(r.email, 0) / r.weight for r in members}
        compared = [weighted[r.email] for r in active]
        spread = (max(compared) - min(compared)) if compared else 0.0
        notes = [f"{r.email} is away (not compared)" for r in members if r.away(now)]
        if len({(r.territory, r.sizes, r.types) for r in active}) > 1:
            notes.append("reps in this team serve different territories or segments: "
                         "parity holds only among reps who can take the same leads")
        out.append(TeamParity(
            team=team, window_days=cfg.parity_window_days, tolerance=cfg.parity_tolerance,
            counts={r.email: counts.get(r.email, 0) for r in members}, weighted=weighted,
            spread=spread, within_tolerance=spread <= cfg.parity_tolerance + 1e-9, notes=notes,
        ))
    return out
