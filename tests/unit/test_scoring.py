"""Scoring semantics on DuckDB: decay, frequency, caps, grades, stages, abuse, segments,
point-in-time correctness, snapshots and the restricted (real-time) path."""

from __future__ import annotations

import itertools
import json
import textwrap
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from leadrefinery import Project
from leadrefinery.model import parse_model
from leadrefinery.model.scoring import compute, score

pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")

T = datetime(2024, 6, 1, 12, 0, 0)
_ids = itertools.count()


def at(days: float = 0, hours: float = 0, minutes: float = 0) -> datetime:
    return T - timedelta(days=days, hours=hours, minutes=minutes)


def _msg(kind: str, user: str, t: datetime, **kw: Any) -> dict:
    return {
        "type": kind,
        "userId": user,
        "timestamp": t.isoformat() + "Z",
        "messageId": f"m{next(_ids)}",
        **kw,
    }


def identify(user: str, t: datetime, **traits: Any) -> dict:
    return _msg("identify", user, t, traits=traits)


def track(user: str, event: str, t: datetime, **props: Any) -> dict:
    return _msg("track", user, t, event=event, properties=props)


def page(user: str, path: str, t: datetime) -> dict:
    return _msg("page", user, t, name=path, properties={"path": path})


def group(user: str, gid: str, t: datetime, **traits: Any) -> dict:
    return _msg("group", user, t, groupId=gid, traits=traits)


def model(body: str):
    return parse_model("version: 1\n" + textwrap.dedent(body), "test.yaml")


def load(project: Project, msgs: list[dict]) -> None:
    report = project.ingestor.ingest_messages(msgs, source="test")
    assert report.quarantined == 0, report.reasons


def rows(project: Project, m, as_of: datetime = T, **kw: Any) -> dict[str, dict]:
    table = compute(project.engine, m, as_of=as_of, snapshot=False, **kw)
    return {r["person_id"]: r for r in table.to_pylist()}


# -- decay, windows, frequency, caps ------------------------------------------------------------


def test_half_life_decay_is_exact(project: Project) -> None:
    load(
        project,
        [
            track("u1", "Logged In", at(days=14)),
            track("u1", "Logged In", at(days=28)),
            track("u1", "Logged In", at(days=0)),
        ],
    )
    m = model("""
        rules:
          - {id: login, on: track, event: Logged In, points: 10, half_life: 14d}
        """)
    r = rows(project, m)["u1"]
    assert r["r_login_n"] == 3
    assert r["r_login_raw"] == 30
    assert r["r_login_dec"] == pytest.approx(10 + 5 + 2.5, abs=1e-12)
    assert r["score"] == pytest.approx(17.5, abs=1e-9)


def test_decay_is_measured_from_the_as_of_time(project: Project) -> None:
    load(project, [track("u1", "Logged In", at(days=10))])
    m = model("rules:\n  - {id: login, on: track, event: Logged In, points: 8, half_life: 5d}\n")
    assert rows(project, m, as_of=at(days=5))["u1"]["r_login"] == pytest.approx(4.0)
    assert rows(project, m, as_of=at(days=0))["u1"]["r_login"] == pytest.approx(2.0)


def test_window_drops_old_occurrences(project: Project) -> None:
    load(project, [page("u1", "/pricing", at(days=d)) for d in (1, 10, 29, 31, 60)])
    m = model(
        "rules:\n  - {id: pricing, on: page, when: \"path = '/pricing'\", points: 2, window: 30d}\n"
    )
    r = rows(project, m)["u1"]
    assert r["r_pricing_n"] == 3 and r["r_pricing"] == 6


def test_frequencies(project: Project) -> None:
    day1 = [page("u1", "/pricing", at(days=1, hours=h)) for h in range(5)]
    day2 = [page("u1", "/pricing", at(days=3, hours=h)) for h in range(2)]
    load(project, day1 + day2)
    m = model("""
        rules:
          - {id: each, on: page, points: 1}
          - {id: once, on: page, points: 4, frequency: once, half_life: 1d}
          - {id: daily, on: page, points: 1, frequency: {max_per_day: 2}}
          - {id: total, on: page, points: 1, frequency: {max_total: 3}}
          - {id: third, on: page, points: 7, min_count: 3, frequency: once}
          - {id: eighth, on: page, points: 7, min_count: 8}
          - {id: capped, on: page, points: 3, cap: 10}
          - {id: penalty, on: page, points: -3, cap: 5}
        """)
    r = rows(project, m)["u1"]
    assert r["r_each"] == 7 and r["r_each_n"] == 7
    # once: the most recent occurrence (1 day old) counts, decayed
    assert r["r_once"] == pytest.approx(4 * 0.5 ** (1 + 0 / 24), rel=1e-12)
    assert r["r_once_raw"] == 4
    assert r["r_daily"] == 4  # 2 on each of the two days
    assert r["r_total"] == 3
    assert r["r_third"] == 7 and r["r_eighth"] == 0
    assert r["r_capped_dec"] == 21 and r["r_capped"] == 10
    assert r["r_penalty_dec"] == -21 and r["r_penalty"] == -5


def test_max_per_day_keeps_the_most_recent_of_the_day(project: Project) -> None:
    load(project, [page("u1", "/x", at(days=2, hours=h)) for h in (1, 5, 9)])
    m = model(
        "rules:\n  - {id: p, on: page, points: 10, half_life: 1d, frequency: {max_per_day: 1}}\n"
    )
    r = rows(project, m)["u1"]
    # 2024-05-30 at 11:00, 07:00, 03:00: one counts, the latest (11:00 = 2d 1h old)
    assert r["r_p"] == pytest.approx(10 * 0.5 ** (2 + 1 / 24), rel=1e-12)


def test_occurrences_at_one_instant_keep_the_larger_points(project: Project) -> None:
    # two launches in the same microsecond, one per day allowed: which counts must not depend
    # on message ids or storage order — the larger points do (u1 and u2 differ only in ids)
    t = at(days=1)
    low, high = {"template": "linux-lab"}, {"template": "windows-lab"}
    msgs = [
        track("u1", "Environment Launched", t, **low),
        track("u1", "Environment Launched", t, **high),
    ]
    msgs += [
        track("u2", "Environment Launched", t, **high),
        track("u2", "Environment Launched", t, **low),
    ]
    load(project, msgs)
    m = model("""
        rules:
          - id: env
            on: track
            event: Environment Launched
            frequency: {max_per_day: 1}
            cases:
              - {when: "properties.template = 'windows-lab'", points: 8}
              - {points: 3}
        """)
    r = rows(project, m)
    assert r["u1"]["r_env"] == r["u2"]["r_env"] == 8
    assert r["u1"]["r_env_n"] == 2


def test_cases_categories_caps_and_score_range(project: Project) -> None:
    load(
        project,
        [
            identify("u1", at(days=5), email="ann@acme.com", company="Acme", title="VP Sales"),
            track("u1", "Environment Launched", at(days=1), template="windows-lab"),
            track("u1", "Environment Launched", at(days=1), template="linux-lab"),
            identify("u2", at(days=5), email="bob@gmail.com", title="Student"),
        ],
    )
    m = model("""
        categories:
          fit: {cap: 12, min: -5}
        score: {min: 0, max: 100}
        rules:
          - id: env
            on: track
            event: Environment Launched
            cases:
              - {when: "properties.template = 'windows-lab'", points: 8}
              - {points: 3}
          - {id: company, on: person, when: NOT webmail, points: 10}
          - {id: senior, on: person, when: "title ILIKE 'vp%'", points: 10}
          - {id: student, on: person, when: "title = 'Student'", points: -20}
        """)
    out = rows(project, m)
    u1, u2 = out["u1"], out["u2"]
    assert u1["r_env"] == 11
    assert u1["cat_fit_raw"] == 20 and u1["cat_fit"] == 12  # category cap
    assert u1["score"] == 23
    assert u2["cat_fit"] == -5  # category floor
    assert u2["score"] == 0  # score range


# -- point in time ------------------------------------------------------------------------------


def test_as_of_never_sees_later_events(project: Project) -> None:
    """Fails if scoring as of T uses anything that happened after T."""
    m = model("""
        facts:
          logins: {on: track, event: Logged In}
        rules:
          - {id: login, on: track, event: Logged In, points: 1}
          - {id: verified, on: person, when: traits.emailVerified, points: 5}
          - {id: twice, on: person, when: facts.logins >= 2, points: 7}
          - {id: big, on: account, when: account.size >= 100, points: 9}
          - {id: acme, on: person, when: "company = 'Acme'", points: 2}
        stages:
          evidence:
            Deploy: [{on: page, when: "path = '/contact-sales'"}]
        abuse:
          - {id: guests, kind: event, on: track, event: Launched, when: properties.guests > 10}
        """)
    cut = at(days=10)
    before = [
        identify("u1", at(days=20), email="a@acme.com", company="Initech", emailVerified=False),
        group("u1", "g1", at(days=20), name="Acme", employees=10),
        track("u1", "Logged In", at(days=15)),
    ]
    load(project, before)
    snapshot = rows(project, m, as_of=cut)
    later = [
        track("u1", "Logged In", at(days=9)),
        track("u1", "Logged In", at(days=1)),
        identify("u1", at(days=5), emailVerified=True, company="Acme"),
        group("u1", "g1", at(days=5), employees=5000),
        page("u1", "/contact-sales", at(days=2)),
        track("u1", "Launched", at(days=2), guests=40),
        identify("u9", at(days=3), email="new@x.com"),
        track("u9", "Logged In", at(days=3)),
    ]
    load(project, later)
    again = rows(project, m, as_of=cut)
    assert again == snapshot
    r = again["u1"]
    assert r["r_login_n"] == 1 and r["r_verified"] == 0 and r["r_twice"] == 0 and r["r_big"] == 0
    assert r["r_acme"] == 0 and r["stage"] is None and not r["ab_guests"]
    assert "u9" not in again
    now = rows(project, m)["u1"]  # and the later facts are seen when the time comes
    assert now["r_login_n"] == 3 and now["r_verified"] == 5 and now["r_twice"] == 7
    assert (
        now["r_big"] == 9 and now["r_acme"] == 2 and now["stage"] == "Deploy" and now["ab_guests"]
    )


# -- grades -------------------------------------------------------------------------------------


def _scores(project: Project, values: list[int]) -> None:
    msgs = []
    for i, v in enumerate(values):
        msgs += [track(f"p{i}", "Point", at(days=1)) for _ in range(v)]
        msgs.append(track(f"p{i}", "Hello", at(days=1)))
    load(project, msgs)


def test_threshold_grades(project: Project) -> None:
    _scores(project, [0, 5, 10, 20, 30])
    m = model("""
        rules: [{id: pt, on: track, event: Point, points: 1}]
        grades:
          levels: [{grade: "1", min: 20}, {grade: "2", min: 10}, {grade: "3"}]
          mql: ["1"]
        """)
    out = rows(project, m)
    assert {p: (r["grade"], r["mql"]) for p, r in out.items()} == {
        "p0": ("3", False),
        "p1": ("3", False),
        "p2": ("2", False),
        "p3": ("1", True),
        "p4": ("1", True),
    }


def test_volume_grades_and_their_cutoffs_for_restricted_runs(project: Project) -> None:
    _scores(project, list(range(1, 11)))  # p0..p9 score 1..10
    m = model("""
        rules: [{id: pt, on: track, event: Point, points: 1}]
        grades:
          method: volume
          levels: [{grade: A, top: 0.2}, {grade: B, top: 0.5}, {grade: C}]
          mql: [A, B]
        """)
    out = rows(project, m)
    grades = {p: r["grade"] for p, r in out.items()}
    assert [grades[f"p{i}"] for i in range(10)] == ["C"] * 5 + ["B"] * 3 + ["A"] * 2
    run = score(project.engine, m, as_of=T)
    cut = json.loads(
        project.engine.scalar("SELECT cutoffs FROM score_runs WHERE run_id = ?", [run.run_id])
    )
    assert cut == {"A": 9.0, "B": 6.0, "C": 1.0}
    # a restricted rescore grades with the full run's cut-offs, not within the few people
    part = rows(project, m, restrict=["p5", "p9"])
    assert {p: r["grade"] for p, r in part.items()} == {"p5": "B", "p9": "A"}


def test_matrix_grades(project: Project) -> None:
    load(
        project,
        [
            identify("a", at(days=3), email="a@acme.com"),
            *[track("a", "Point", at(days=1)) for _ in range(30)],
            identify("b", at(days=3), email="b@gmail.com"),
            *[track("b", "Point", at(days=1)) for _ in range(5)],
        ],
    )
    m = model("""
        rules:
          - {id: company, on: person, when: NOT webmail, points: 20}
          - {id: pt, on: track, event: Point, points: 1}
        grades:
          method: matrix
          fit: {category: fit, levels: [{label: A, min: 15}, {label: B, min: 5}, {label: D}]}
          engagement: {category: engagement, levels: [{label: "1", min: 20}, {label: "2", min: 10}, {label: "4"}]}
          mql: [A1]
        """)
    out = rows(project, m)
    assert (out["a"]["grade"], out["a"]["mql"]) == ("A1", True)
    assert (out["b"]["grade"], out["b"]["mql"]) == ("D4", False)


# -- stages -------------------------------------------------------------------------------------

STAGES = """
    stages:
      expires: 30d
      evidence:
        Recognize: [{on: page, when: "path LIKE '/blog/%'"}]
        Evaluate: [{on: page, when: "path = '/pricing'"}]
        Sample:
          min_count: 2
          any: [{on: track, event: Environment Launched}]
        Deploy:
          expires: 60d
          any: [{on: page, when: "path = '/contact-sales'"}, {on: track, event: Contact Sales Requested}]
    """


def test_stage_is_the_furthest_with_fresh_evidence(project: Project) -> None:
    load(
        project,
        [
            page("a", "/blog/x", at(days=1)),
            page("a", "/pricing", at(days=2)),
            track("a", "Environment Launched", at(days=3)),  # Sample needs 2
            page("b", "/contact-sales", at(days=50)),
            page("b", "/pricing", at(days=1)),
            page("c", "/pricing", at(days=40)),
            page("c", "/blog/y", at(days=5)),
            page("d", "/blog/y", at(days=45)),
            track("e", "Environment Launched", at(days=3)),
            track("e", "Environment Launched", at(days=2)),
        ],
    )
    m = model(STAGES)
    out = rows(project, m)
    assert out["a"]["stage"] == "Evaluate" and out["a"]["stage_rank"] == 2
    # Deploy evidence 50 days old is fresh (Deploy expires after 60d): no going back to Evaluate
    assert out["b"]["stage"] == "Deploy" and out["b"]["stage_rank"] == 6
    assert out["c"]["stage"] == "Recognize"  # Evaluate evidence expired (30d)
    assert out["d"]["stage"] is None and out["d"]["stage_rank"] == 0
    assert out["e"]["stage"] == "Sample" and out["e"]["stage_n"] == 2
    assert out["e"]["stage_last"] == at(days=2).replace(microsecond=0)
    # ... and 11 days later b's Deploy evidence has expired: back to the fresh Evaluate
    later = rows(project, m, as_of=T + timedelta(days=11))
    assert later["b"]["stage"] == "Evaluate"


def test_stage_default(project: Project) -> None:
    load(project, [track("z", "Hello", at(days=1))])
    m = model(
        STAGES.replace("expires: 30d", "expires: 30d\n      default: Recognize").replace(
            "Recognize: [", "Recognize: ["
        )
    )
    assert rows(project, m)["z"]["stage"] == "Recognize"


# -- abuse --------------------------------------------------------------------------------------

ABUSE = """
    abuse:
      - {id: guests, kind: event, on: track, event: Environment Launched, when: properties.guests > 10,
         measure: properties.guests}
      - id: long
        kind: session
        start: {on: track, event: Environment Launched}
        stop: {on: track, event: Environment Stopped}
        key: properties.environment_id
        max_minutes: 240
        limit: properties.max_duration_minutes
      - id: parallel
        kind: concurrent
        start: {on: track, event: Environment Launched}
        stop: {on: track, event: Environment Stopped}
        key: properties.environment_id
        max_concurrent: 1
      - id: scripted
        kind: regular
        on: track
        event: Environment Resumed
        key: properties.environment_id
        min_events: 5
        max_cv: 0.05
        gap: [25m, 35m]
        points: 10
        category: abuse
    segments:
      abuser: abuse.any
    """


def launch(u: str, env: str, t: datetime, **kw: Any) -> dict:
    return track(u, "Environment Launched", t, environment_id=env, **kw)


def stop(u: str, env: str, t: datetime) -> dict:
    return track(u, "Environment Stopped", t, environment_id=env)


def test_abuse_rules_and_their_evidence(project: Project) -> None:
    base = at(days=2)
    msgs = [
        # ok: one environment, within the limit, few guests, no resumes
        launch("ok", "e1", base, guests=3),
        stop("ok", "e1", base + timedelta(minutes=200)),
        launch("ok", "e2", base + timedelta(minutes=200), guests=3),  # touching, not overlapping
        stop("ok", "e2", base + timedelta(minutes=300)),
        # guests
        launch("g", "e3", base, guests=30),
        stop("g", "e3", base + timedelta(minutes=10)),
        # long: 300 minutes over its own limit of 120; and one never stopped (open until as-of)
        launch("l", "e4", base, max_duration_minutes=120),
        stop("l", "e4", base + timedelta(minutes=300)),
        # parallel: three at once
        *[launch("p", f"e5{i}", base + timedelta(minutes=i)) for i in range(3)],
        *[stop("p", f"e5{i}", base + timedelta(minutes=60)) for i in range(3)],
        # scripted: resumed every 29 minutes, 8 times
        *[
            track(
                "s",
                "Environment Resumed",
                base + timedelta(minutes=29 * k, seconds=k % 2),
                environment_id="e6",
            )
            for k in range(8)
        ],
        # irregular resumes are fine
        *[
            track("r", "Environment Resumed", base + timedelta(minutes=m), environment_id="e7")
            for m in (0, 5, 60, 70, 200, 201)
        ],
    ]
    load(project, msgs)
    m = model(ABUSE)
    out = rows(project, m)
    flags = {
        p: [a for a in ("guests", "long", "parallel", "scripted") if r[f"ab_{a}"]]
        for p, r in out.items()
    }
    assert flags == {
        "ok": [],
        "g": ["guests"],
        "l": ["long"],
        "p": ["parallel"],
        "s": ["scripted"],
        "r": [],
    }
    assert out["g"]["ab_guests_max"] == 30
    assert out["l"]["ab_long_key"] == "e4" and out["l"]["ab_long_minutes"] == pytest.approx(300)
    assert out["l"]["ab_long_allowed"] == 120 and out["l"]["ab_long_over"] == pytest.approx(180)
    assert out["p"]["ab_parallel_n"] == 3
    assert out["s"]["ab_scripted_n"] == 8 and out["s"][
        "ab_scripted_mean_gap_minutes"
    ] == pytest.approx(29, abs=0.01)
    assert out["s"]["cat_abuse"] == 10 and out["s"]["seg_abuser"] and not out["ok"]["seg_abuser"]
    # evidence in the stored snapshot, as JSON
    run = score(project.engine, m, as_of=T)
    abuse = json.loads(
        project.engine.scalar(
            "SELECT abuse FROM scores WHERE run_id = ? AND person_id = 'l'", [run.run_id]
        )
    )
    assert abuse["long"]["key"] == "e4" and abuse["long"]["over_minutes"] == pytest.approx(180)


def test_an_open_session_counts_up_to_the_as_of_time(project: Project) -> None:
    load(project, [launch("o", "e9", at(hours=5))])
    m = model(ABUSE)
    assert not rows(project, m, as_of=at(hours=2))["o"]["ab_long"]  # 3 h < 4 h
    r = rows(project, m)["o"]
    assert r["ab_long"] and r["ab_long_minutes"] == pytest.approx(300)


# -- segments, facts, person fields -------------------------------------------------------------


def test_segments_facts_and_person_fields(project: Project) -> None:
    load(
        project,
        [
            identify(
                "a",
                at(days=9),
                email="Ann@Acme-Labs.com",
                company="Acme Labs Inc",
                title="Software Engineer",
                phoneCountry="NG",
                referralSource="partner",
                emailVerified=True,
            ),
            *[page("a", "/docs/api/x", at(days=d)) for d in (1, 2, 3)],
            track("a", "Logged In", at(days=2)),
            track("a", "Logged In", at(days=1)),
            identify("b", at(days=9), email="bob@gmail.com", company="Initech", title="CTO"),
            page("b", "/pricing", at(days=1)),
        ],
    )
    m = model("""
        sets:
          risky: [NG, PK]
        facts:
          api: {on: page, when: "path LIKE '/docs/api%'"}
          days: {on: page, agg: active_days}
          last_seen: {on: any, agg: days_since_last}
        rules:
          - {id: match, on: person, when: domain_matches_company, points: 5}
          - {id: risky, on: person, when: traits.phoneCountry IN @risky, points: -5}
          - {id: partner, on: person, when: "source = 'partner'", points: 4}
          - {id: verified, on: person, when: traits.emailVerified = true, points: 2}
          - {id: pricing, on: page, when: "path = '/pricing'", points: 20}
        grades:
          levels: [{grade: A, min: 15}, {grade: B}]
        segments:
          developer: "facts.api >= 3 OR title ILIKE '%engineer%'"
          buyer: "matches(lower(title), 'cto|ceo|vp') AND rules.pricing > 0"
          commercial: NOT webmail
          hot: "grade = 'A' AND category.engagement >= 20"
        """)
    out = rows(project, m)
    a, b = out["a"], out["b"]
    assert a["p_domain"] == "acme-labs.com" and a["p_domain_matches_company"] and not a["p_webmail"]
    assert (a["r_match"], a["r_risky"], a["r_partner"], a["r_verified"]) == (5, -5, 4, 2)
    assert b["p_webmail"] and not b["p_domain_matches_company"]
    assert a["f_api"] == 3 and a["f_days"] == 3 and a["f_last_seen"] == pytest.approx(1.0)
    assert (a["seg_developer"], a["seg_buyer"], a["seg_commercial"], a["seg_hot"]) == (
        True,
        False,
        True,
        False,
    )
    assert (b["seg_developer"], b["seg_buyer"], b["seg_commercial"], b["seg_hot"]) == (
        False,
        True,
        False,
        True,
    )


# -- snapshots, history, restricted runs ---------------------------------------------------------


def test_snapshots_history_latest_and_accounts(project: Project) -> None:
    load(
        project,
        [
            identify("a", at(days=9), email="a@acme.com"),
            identify("b", at(days=9), email="b@acme.com"),
            identify("c", at(days=9), email="c@gmail.com"),
            *[track("a", "Point", at(days=1)) for _ in range(3)],
            track("b", "Point", at(days=1)),
        ],
    )
    m = model("""
        rules: [{id: pt, on: track, event: Point, points: 10}]
        grades: {levels: [{grade: "1", min: 25}, {grade: "2"}], mql: ["1"]}
        """)
    r1 = score(project.engine, m, as_of=at(days=3))
    r2 = score(project.engine, m, as_of=T)
    e = project.engine
    assert (r1.people, r2.people) == (3, 3) and r2.latest
    assert e.scalar("SELECT count(*) FROM scores") == 6
    assert e.query("SELECT person_id, score, grade FROM latest_scores ORDER BY person_id") == [
        ("a", 30.0, "1"),
        ("b", 10.0, "2"),
        ("c", 0.0, "2"),
    ]
    # grade distribution per day and stage transitions are plain queries over the history
    per_day = e.query(
        "SELECT CAST(as_of AS DATE) d, grade, count(*) FROM scores GROUP BY ALL ORDER BY 1, 2"
    )
    assert per_day == [(at(days=3).date(), "2", 3), (T.date(), "1", 1), (T.date(), "2", 2)]
    comps = json.loads(e.scalar("SELECT components FROM latest_scores WHERE person_id = 'a'"))
    assert comps == {"pt": {"n": 3, "raw": 30.0, "decayed": 30.0, "points": 30.0}}
    acct = e.query(
        "SELECT account_id, people, engaged_people, mql_people, score_sum, score_max "
        "FROM account_scores WHERE run_id = ?",
        [r2.run_id],
    )
    assert acct == [("domain:acme.com", 2, 2, 1, 40.0, 30.0)]
    # an older as-of is kept in history but does not replace the newest scores
    old = score(project.engine, m, as_of=at(days=30))
    assert not old.latest and e.scalar("SELECT count(*) FROM latest_scores") == 3


def test_restricted_rescore_uses_the_same_query_for_a_few_people(project: Project) -> None:
    load(project, [track(u, "Point", at(days=1)) for u in ("a", "b", "c")])
    m = model("rules: [{id: pt, on: track, event: Point, points: 10}]\n")
    score(project.engine, m, as_of=at(hours=1))
    load(project, [track("b", "Point", at(minutes=30)), track("c", "Point", at(minutes=30))])
    e = project.engine
    e.execute("CREATE TABLE touched AS SELECT 'b' AS person_id")
    full = rows(project, m)
    part = rows(project, m, restrict="touched")
    assert list(part) == ["b"] and part["b"] == full["b"]
    run = score(project.engine, m, as_of=T, restrict=["b"])
    assert run.restricted and run.people == 1
    assert e.query("SELECT person_id, score FROM latest_scores ORDER BY 1") == [
        ("a", 10.0),
        ("b", 20.0),
        ("c", 10.0),
    ]  # c not rescored yet


def test_cached_sql_is_the_sql_rendered_afresh(project: Project) -> None:
    """The cached template, filled in, is byte for byte what compiling for that time gives."""
    import leadrefinery
    from leadrefinery.model import load_model
    from leadrefinery.model.compile import build_plan
    from leadrefinery.model.scoring import insert_scores_sql, scoring_sql

    m = load_model(Path(leadrefinery.__file__).parent / "sample" / "model.yaml")
    engine = project.engine
    for as_of in (T, T + timedelta(days=3, microseconds=7), datetime(2030, 1, 1)):
        for restrict in (None, "lr_ids"):
            plan = build_plan(m, as_of=as_of, restrict=restrict)
            fresh = plan.sql(engine.dialect, pretty=False)
            assert scoring_sql(engine, m, as_of=as_of, restrict=restrict) == fresh
            cached = scoring_sql(engine, m, as_of=as_of, restrict=restrict, insert_run="r-42")
            assert cached == insert_scores_sql(engine, plan, "r-42")


def test_the_query_with_its_time_as_parameters_scores_as_the_text(project: Project,
                                                                  tmp_path: Path) -> None:
    """`scoring_sql_at` (the warm lane's query, parsed once and run at every round's time):
    run at a time, it gives the rows `scoring_sql` for that time gives — decay, windows and
    stages move with the parameters, not with anything frozen in the text. (A rule's decayed
    sum in the reasons may differ in its last digit: DuckDB adds in another order.)"""
    import leadrefinery
    from leadrefinery.model import load_model
    from leadrefinery.model.scoring import as_of_params, scoring_sql, scoring_sql_at
    from leadrefinery.sample import generate

    biz = generate(tmp_path / "data", people=120, months=2, seed=5)
    project.ingest([biz.events_path])
    m = load_model(Path(leadrefinery.__file__).parent / "sample" / "model.yaml")
    e = project.engine
    e.execute("CREATE TABLE lr_ids AS SELECT DISTINCT person_id FROM events")
    text = scoring_sql_at(e, m, restrict="lr_ids")
    assert text is not None and "$1" in text and "$2" in text
    cols = "person_id, score, grade, stage, stage_rank, categories, segments, abuse"
    parsed = e.parse(f"SELECT {cols}, components FROM ({text}) q ORDER BY person_id")
    last = e.scalar("SELECT max(ts) FROM events")
    seen = []
    for as_of in (last - timedelta(days=20), last, last + timedelta(days=9, microseconds=3)):
        sql = scoring_sql(e, m, as_of=as_of, restrict="lr_ids")
        want = e.query(f"SELECT {cols}, components FROM ({sql}) q ORDER BY person_id")
        got = e.query(parsed, as_of_params(as_of))
        assert len(want) == 120 and [r[:-1] for r in got] == [r[:-1] for r in want]
        for a, b in zip(want, got, strict=True):
            ca, cb = json.loads(a[-1]), json.loads(b[-1])
            assert ca.keys() == cb.keys() and all(
                cb[r] == pytest.approx(ca[r], rel=1e-12) for r in ca)
        seen.append([r[1] for r in got])
    assert seen[0] != seen[1] != seen[2]  # the time did change the scores
