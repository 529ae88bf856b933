"""Triggers, without a store: the file's validation (file:line errors) and the pure evaluation
— episodes, hysteresis, cool-downs, stages forward only, segments, buy-readiness actions,
surges, abuse flags and silent first runs."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from leadrefinery.act.triggers import (
    Action,
    Episode,
    LeadState,
    TriggerError,
    evaluate,
    parse_triggers,
)
from leadrefinery.model import parse_model

T0 = datetime(2026, 3, 2, 12, 0)

MODEL = """\
version: 1
name: t
facts:
  logins: {on: track, event: Logged In}
  launches: {on: track, event: Environment Launched}
  max_guests: {on: track, event: Environment Launched, agg: max, of: properties.guests}
categories: {fit: {cap: 40}, engagement: {cap: 100}, intent: {cap: 60}}
score: {min: 0, max: 100}
rules:
  - {id: company_email, on: person, when: "NOT webmail AND email IS NOT NULL", points: 10}
  - {id: login, on: track, event: Logged In, points: 5, half_life: 7d}
  - {id: launch, on: track, event: Environment Launched, points: 4, half_life: 7d}
  - id: pricing
    on: page
    when: "path LIKE '/pricing%'"
    points: 10
    half_life: 7d
    category: intent
  - id: contact_sales
    on: track
    event: Contact Sales Requested
    points: 30
    frequency: once
    half_life: 30d
    category: intent
grades:
  levels: [{grade: A, min: 60}, {grade: B, min: 40}, {grade: C, min: 20}, {grade: D}]
  mql: [A, B]
stages:
  order: [Recognize, Evaluate, Sample, Integrate]
  expires: 30d
  evidence:
    Recognize: [{on: page, when: "path = '/'"}]
    Evaluate: [{on: page, when: "path LIKE '/pricing%'"}]
    Sample: [{on: track, event: Environment Launched}]
    Integrate: [{on: page, when: "path LIKE '/docs/api%'"}]
abuse:
  - id: session_too_long
    description: a lab session kept running past 240 minutes
    kind: session
    key: properties.environment_id
    max_minutes: 240
    start: {on: track, event: Environment Launched}
    stop: {on: track, event: Environment Stopped}
  - id: too_many_guests
    description: more than 10 guests in a class
    kind: event
    on: track
    event: Environment Launched
    when: properties.guests > 10
    measure: properties.guests
segments:
  developer: "facts.logins >= 3"
  buyer: "category.intent > 0"
"""

TRIGGERS = """\
version: 1
defaults: {cooldown: 24h, to: "webhook:sales"}
triggers:
  - {id: hot, kind: grade, at_least: B}
  - {id: cold, kind: grade, grades: [A, B], fire: leave}
  - {id: s50, kind: score, threshold: 50, hysteresis: 5, direction: both}
  - {id: forward, kind: stage, min_stage: Evaluate, cooldown: 7d}
  - {id: dev, kind: segment, segment: developer, fire: both}
  - id: ready
    kind: action
    events: [Contact Sales Requested, Documentation Purchased]
    pages: ["/pricing*"]
    fast_track: true
  - {id: abuse, kind: abuse, severity: critical, also: ["email:trust@example.com"]}
  - {id: surge, kind: surge, category: engagement, rise: 10, within: 24h}
"""


@pytest.fixture(scope="module")
def model():
    return parse_model(MODEL, "model.yaml")


@pytest.fixture(scope="module")
def ts(model):
    return parse_triggers(TRIGGERS, model, file="triggers.yaml", webhooks=["sales"])


class Person:
    """One person's trigger memory across evaluations, as act/realtime.py keeps it."""

    def __init__(self, ts, pid: str = "p1") -> None:
        self.ts, self.pid = ts, pid
        self.state: LeadState | None = None
        self.memo: dict = {}
        self.open: dict[tuple[str, str], Episode] = {}
        self.last: dict[tuple[str, str, str], datetime] = {}
        self.alerts: list = []

    def step(self, new: LeadState, at: datetime, *, actions=(), silent=frozenset(),
             only=None) -> list:
        out = evaluate(self.ts, self.pid, self.state, new, memo=self.memo,
                       open_episodes=self.open, last_fired=self.last, now=at, actions=actions,
                       silent=silent, only=frozenset(only) if only else None)
        kinds = {t.id: t.kind for t in self.ts.triggers}
        for o in out.opened:
            if o.get("status") != "closed":
                self.open[(o["trigger_id"], o["key"])] = Episode(
                    o["episode_id"], o["trigger_id"], o["key"], o["opened_at"], o["fired_at"],
                    o["outcome"])
        for ep, _ in out.closed:
            self.open.pop((ep.trigger_id, ep.key), None)
        for f in out.firings:
            moment = kinds[f.trigger.id] in ("stage", "action", "surge")
            self.last[(f.trigger.id, f.key, "moment" if moment else f.direction)] = at
        self.state, self.memo = new, out.memo
        self.alerts += out.firings
        self.out = out
        return [(f.trigger.id, f.direction, f.key) for f in out.firings]


def S(score: float, grade: str | None = None, **kw) -> LeadState:
    if grade is None:
        grade = "A" if score >= 60 else "B" if score >= 40 else "C" if score >= 20 else "D"
    return LeadState(score=score, grade=grade, **kw)


# -- the file -------------------------------------------------------------------------------


def test_valid_file_resolves_defaults(ts):
    by = ts.by_id()
    assert ts.grades_of(by["hot"]) == {"A", "B"}
    assert ts.cooldown(by["forward"]) == timedelta(days=7)
    assert ts.cooldown(by["hot"]) == timedelta(hours=24)
    assert ts.to(by["hot"]) == "webhook:sales"
    assert ts.severity(by["abuse"]) == "critical"
    assert ts.also(by["abuse"]) == ["email:trust@example.com"]


@pytest.mark.parametrize("text, line, trigger, words", [
    ("triggers:\n  - {id: a, kind: grade, at_least: Z}\n", 2, "a", "'Z' is not a grade"),
    ("triggers:\n  - id: a\n    kind: grdae\n    grades: [A]\n", 2, "a", "not a trigger kind"),
    ("triggers:\n  - id: a\n    kind: score\n    treshold: 5\n", 4, "a", "unknown key 'treshold'"),
    ("triggers:\n  - {id: a, kind: segment, segment: devs}\n", 2, "a", "'devs' is not a segment"),
    ("triggers:\n  - {id: a, kind: abuse, rules: [nope]}\n", 2, "a", "not a abuse rule"),
    ("triggers:\n  - {id: a, kind: surge, category: nope, rise: 5}\n", 2, "a", "not a category"),
    ("triggers:\n  - {id: a, kind: stage, min_stage: Deploy}\n", 2, "a", "not a stage"),
    ("triggers:\n  - {id: a, kind: grade, grades: [A]}\n  - {id: a, kind: grade, grades: [B]}\n",
     3, "a", "used twice"),
    ("triggers:\n  - {id: a, kind: grade, grades: [A], to: 'webhook:nope'}\n", 2, "a",
     "no webhook receiver 'nope'"),
    ("triggers:\n  - {id: a, kind: grade, grades: [A], to: 'somebody'}\n", 2, "a",
     "not an address"),
    ("triggers:\n  - {id: a, kind: grade, grades: [A], at_least: B}\n", 2, "a", "not both"),
    ("triggers:\n  - {id: a, kind: action}\n", 2, "a", "needs `events`"),
    ("triggers:\n  - {id: Bad-Id, kind: grade, grades: [A]}\n", 2, "Bad-Id", "not a valid id"),
    ("triggers:\n  - {id: a, kind: score, threshold: 5, hysteresis: -1}\n", 2, "a",
     "greater than or equal to 0"),
    ("defaults:\n  cooldown: soon\n", 2, None, "not a duration"),
    ("triggers: [\n", 2, None, "not valid YAML"),
])
def test_invalid_file_says_file_line_and_trigger(model, text, line, trigger, words):
    with pytest.raises(TriggerError) as ei:
        parse_triggers(text, model, file="triggers.yaml", webhooks=["sales"])
    e = ei.value
    assert e.line == line, e.message
    assert e.message.startswith(f"triggers.yaml:{line}"), e.message
    if trigger:
        assert f"(trigger {trigger!r})" in e.message
    assert words in e.message


# -- conditions: episodes, cool-down, hysteresis ---------------------------------------------


def test_grade_fires_once_per_episode_and_respects_cooldown(ts):
    p = Person(ts)
    assert p.step(S(30), T0, only={"hot"}) == []
    assert p.step(S(45), T0 + timedelta(minutes=1), only={"hot"}) == [("hot", "enter", "")]
    # still B, then A: the same episode, no second alert
    assert p.step(S(48), T0 + timedelta(minutes=2), only={"hot"}) == []
    assert p.step(S(70), T0 + timedelta(minutes=3), only={"hot"}) == []
    # leaves, comes back within the cool-down: a new episode, but held back
    assert p.step(S(30), T0 + timedelta(hours=1), only={"hot"}) == []
    assert p.step(S(45), T0 + timedelta(hours=2), only={"hot"}) == []
    assert p.out.suppressed == 1 and p.out.opened[0]["outcome"] == "cooled_down"
    # leaves and comes back after the cool-down: alerts again
    assert p.step(S(30), T0 + timedelta(hours=30), only={"hot"}) == []
    assert p.step(S(45), T0 + timedelta(hours=31), only={"hot"}) == [("hot", "enter", "")]


def test_grade_leave_only(ts):
    p = Person(ts)
    assert p.step(S(65), T0, only={"cold"}) == []
    assert p.step(S(45), T0 + timedelta(hours=1), only={"cold"}) == []  # A -> B: still in
    assert p.step(S(30), T0 + timedelta(hours=2), only={"cold"}) == [("cold", "leave", "")]
    f = p.alerts[-1]
    assert f.change["from"] == "B" and f.change["to"] == "C"


def test_score_hysteresis_one_episode_while_hovering(ts):
    p = Person(ts)
    at = T0
    fired = []
    # hovering around 50: 49, 51, 48, 52, 46, 53 ... never below 45 -> one alert up
    for s in (40, 49, 51, 48, 52, 46, 53, 47, 50):
        at += timedelta(minutes=10)
        fired += p.step(S(s), at, only={"s50"})
    assert fired == [("s50", "enter", "")]
    # falls below 50 - 5: the episode ends, the down crossing alerts
    assert p.step(S(44), at + timedelta(minutes=10), only={"s50"}) == [("s50", "leave", "")]
    assert p.alerts[-1].change["direction"] == "down"
    # back above 50 within the cool-down of the up alert: held back
    assert p.step(S(51), at + timedelta(minutes=20), only={"s50"}) == []
    assert p.out.suppressed == 1


def test_score_up_needs_the_threshold_not_the_lower_line(ts):
    p = Person(ts)
    assert p.step(S(47), T0, only={"s50"}) == []  # above 45, below 50: not in
    assert p.step(S(50), T0 + timedelta(minutes=1), only={"s50"}) == [("s50", "enter", "")]


def test_segment_join_and_leave(ts):
    p = Person(ts)
    dev = frozenset({"developer"})
    assert p.step(S(10), T0, only={"dev"}) == []
    assert p.step(S(10, segments=dev), T0 + timedelta(hours=1), only={"dev"}) == [
        ("dev", "enter", "developer")]
    assert p.alerts[-1].change["joined"] == "developer"
    assert p.step(S(10, segments=dev), T0 + timedelta(hours=2), only={"dev"}) == []
    assert p.step(S(10), T0 + timedelta(hours=3), only={"dev"}) == [("dev", "leave", "developer")]
    assert p.alerts[-1].change["left"] == "developer"


def test_abuse_flag_episode_per_rule_with_evidence(ts):
    p = Person(ts)
    ev = {"sessions_over": 1, "key": "env-1", "minutes": 301.0, "allowed_minutes": 240.0,
          "still_running": True}
    flags = {"session_too_long": ev}
    assert p.step(S(20, flags=flags), T0, only={"abuse"}) == [
        ("abuse", "enter", "session_too_long")]
    f = p.alerts[-1]
    assert f.evidence[0]["key"] == "env-1" and f.evidence[0]["still_running"] is True
    assert "still running" in f.title and "240 minutes" in f.title
    # the session goes on (evidence grows): the same episode
    flags2 = {"session_too_long": {**ev, "minutes": 330.0}}
    assert p.step(S(20, flags=flags2), T0 + timedelta(minutes=30), only={"abuse"}) == []
    # a second rule: its own episode
    both = {**flags2, "too_many_guests": {"count": 1, "max": 40}}
    assert p.step(S(20, flags=both), T0 + timedelta(minutes=31), only={"abuse"}) == [
        ("abuse", "enter", "too_many_guests")]


# -- moments ----------------------------------------------------------------------------------


def test_stage_moves_forward_only(ts):
    p = Person(ts)
    st = {s: i + 1 for i, s in enumerate(("Recognize", "Evaluate", "Sample", "Integrate"))}

    def at(stage):
        return S(30, stage=stage, stage_rank=st.get(stage, 0))

    assert p.step(at("Recognize"), T0, only={"forward"}) == []  # below min_stage
    assert p.step(at("Sample"), T0 + timedelta(hours=1), only={"forward"}) == [
        ("forward", "moment", "Sample")]
    assert p.step(at("Evaluate"), T0 + timedelta(hours=2), only={"forward"}) == []  # backwards
    # forward again to a stage already announced within the cool-down: held back
    assert p.step(at("Sample"), T0 + timedelta(hours=3), only={"forward"}) == []
    assert p.out.suppressed == 1
    # a further stage: its own alert
    assert p.step(at("Integrate"), T0 + timedelta(hours=4), only={"forward"}) == [
        ("forward", "moment", "Integrate")]
    assert p.alerts[-1].change == {"field": "stage", "from": "Sample", "to": "Integrate",
                                   "score": 30, "grade": "C"}


def test_buy_readiness_action_fires_once_per_action_and_fast_tracks(ts):
    p = Person(ts)
    a1 = Action("m1", T0 - timedelta(minutes=1), "track", "Contact Sales Requested", None)
    assert p.step(S(40), T0, actions=[a1], only={"ready"}) == [("ready", "moment", "")]
    assert p.out.fast_track is True
    assert p.alerts[-1].evidence[0]["event"] == "Contact Sales Requested"
    # the same event seen again: nothing
    assert p.step(S(40), T0 + timedelta(minutes=1), actions=[a1], only={"ready"}) == []
    # a new pricing page view within the cool-down: held back, not re-announced later
    a2 = Action("m2", T0 + timedelta(minutes=2), "page", "Pricing", "/pricing/enterprise")
    assert p.step(S(40), T0 + timedelta(minutes=3), actions=[a1, a2], only={"ready"}) == []
    assert p.out.suppressed == 1 and p.out.fast_track is False
    # after the cool-down, a docs page is no buy-readiness action; a new pricing view is
    later = T0 + timedelta(hours=30)
    a3 = Action("m3", later, "page", "Docs", "/docs/api")
    assert p.step(S(40), later, actions=[a3], only={"ready"}) == []
    a4 = Action("m4", later, "page", None, "/pricing")
    assert p.step(S(40), later + timedelta(seconds=1), actions=[a3, a4], only={"ready"}) == [
        ("ready", "moment", "")]


def test_old_actions_from_an_import_do_not_alert(ts):
    p = Person(ts)
    old = Action("m0", T0 - timedelta(days=30), "track", "Documentation Purchased", None)
    assert p.step(S(40), T0, actions=[old], only={"ready"}) == []


def test_surge_compares_with_the_lowest_value_within_the_window(ts):
    p = Person(ts)

    def eng(v):
        return S(30, categories={"engagement": v})

    assert p.step(eng(5), T0, only={"surge"}) == []  # nothing to compare with yet
    assert p.step(eng(8), T0 + timedelta(hours=2), only={"surge"}) == []
    assert p.step(eng(16), T0 + timedelta(hours=4), only={"surge"}) == [("surge", "moment", "")]
    assert p.alerts[-1].change["from"] == 5 and p.alerts[-1].change["to"] == 16
    # flat for days, then a jump: the value the window started with counts
    r = Person(ts, "p3")
    assert r.step(eng(5), T0, only={"surge"}) == []
    assert r.step(eng(17), T0 + timedelta(days=3), only={"surge"}) == [("surge", "moment", "")]
    # a slow climb over days is no surge
    q = Person(ts, "p2")
    at = T0
    for v in range(0, 40, 3):
        at += timedelta(hours=20)
        assert q.step(eng(v), at, only={"surge"}) == []


def test_silent_first_run_records_episodes_without_alerting(ts):
    p = Person(ts)
    st = S(70, segments=frozenset({"developer"}))
    everyone = frozenset(t.id for t in ts.triggers)
    assert p.step(st, T0, silent=everyone) == []
    assert {k[0] for k in p.open} >= {"hot", "s50", "dev"}
    assert all(o["outcome"] == "baseline" for o in p.out.opened)
    # already in: no alert afterwards either
    assert p.step(S(72, segments=frozenset({"developer"})), T0 + timedelta(minutes=1)) == []
