"""Routing qualified leads to reps: rules, capacity, parity, account ownership, the queue."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest

from leadrefinery.act.clock import ManualClock
from leadrefinery.act.reps import FOREVER, import_reps, roster, set_away
from leadrefinery.act.routing import parity_report, route, waiting
from leadrefinery.config import Settings
from leadrefinery.errors import ConfigError, InputError

MONDAY = datetime(2026, 3, 2, 9, 0)


def settings(**over) -> Settings:
    base = {
        "reps": [
            {"email": "ann@x.io", "team": "emea", "per_day": 10},
            {"email": "bob@x.io", "team": "emea", "per_day": 10},
            {"email": "cyd@x.io", "team": "emea", "per_day": 10},
            {"email": "dan@x.io", "team": "na", "per_day": 2, "per_week": 3},
            {"email": "eve@x.io", "team": "ent", "territory": ["EMEA", "NA"]},
            {"email": "oli@x.io", "team": "oem", "types": ["oem"]},
        ],
        "teams": {"emea": {"territory": ["EMEA"]}, "na": {"territory": ["NA"]}},
        "routing": {
            "rules": [
                {"name": "oem", "team": "oem", "when": {"type": "oem"}},
                {"name": "enterprise", "team": "ent", "when": {"size": {"min": 1000}}},
                {"name": "emea", "team": "emea", "when": {"region": "EMEA"}},
                {"name": "north-america", "team": "na", "when": {"country": ["US", "CA"]}},
            ],
        },
    }
    if "reps" in over:  # other reps: the base teams do not apply
        base["teams"] = {}
    for k, v in over.items():
        base[k] = {**base[k], **v} if k == "routing" else v
    return Settings.model_validate(base)


def add_people(engine, rows: list[dict]) -> None:
    for r in rows:
        engine.execute(
            "INSERT INTO people (person_id, email, country, account_id, owner, traits) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [r["person_id"], r.get("email", f"{r['person_id']}@corp.example"), r.get("country"),
             r.get("account_id"), r.get("owner"), orjson.dumps(r.get("traits", {})).decode()],
        )


def add_account(engine, account_id: str, *, size=None, owner=None, traits=None) -> None:
    engine.execute(
        "INSERT INTO accounts (account_id, name, size, owner, traits) VALUES (?, ?, ?, ?, ?)",
        [account_id, account_id, size, owner, orjson.dumps(traits or {}).decode()])


def table_counts(engine) -> dict[str, int]:
    from leadrefinery.store.schema import TABLES

    return {t: engine.scalar(f"SELECT count(*) FROM {t}") for t in TABLES}


def test_every_qualified_lead_gets_an_owner_or_waits_visibly(project):
    e = project.engine
    s = settings()
    people = (
        [{"person_id": f"de{i}", "country": "DE", "grade": "A", "score": 90 - i} for i in range(8)]
        + [{"person_id": f"us{i}", "country": "US", "grade": "B", "score": 70 - i}
           for i in range(5)]
        + [{"person_id": "br0", "country": "BR", "grade": "A", "score": 99}]  # no rule
        + [{"person_id": "oem0", "country": "JP", "grade": "B", "score": 50,
            "traits": {"customer_type": "OEM"}}]
    )
    add_people(e, people)
    plan = route(e, s, [{k: p[k] for k in ("person_id", "grade", "score")} for p in people],
                 now=MONDAY)
    assigned = {a.person_id: a for a in plan.assignments}
    waits = {w.person_id: w for w in plan.waiting}
    assert set(assigned) | set(waits) == {p["person_id"] for p in people}
    assert not set(assigned) & set(waits)
    # the queue is visible in the store, with why
    queue = {q["person_id"]: q for q in waiting(e)}
    assert set(queue) == set(waits)
    assert queue["br0"]["why"] == "no_rule"
    # NA has one rep with 2 a day: three US leads wait, and say who was skipped and why
    us_waiting = [p for p in waits if p.startswith("us")]
    assert len(us_waiting) == 3
    detail = queue[us_waiting[0]]["detail"]
    assert queue[us_waiting[0]]["why"] == "team_unavailable"
    assert detail["tried"][0]["skipped"] == [
        {"rep": "dan@x.io", "why": "full: 2 of 2 leads today"}]
    # highest scores first: the two best US leads got the capacity
    assert {p for p in assigned if p.startswith("us")} == {"us0", "us1"}
    assert assigned["oem0"].rep == "oli@x.io" and assigned["oem0"].rule == "oem"
    # every assignment records why
    stored = e.query("SELECT person_id, rep, rule, reason FROM assignments ORDER BY person_id")
    assert len(stored) == len(assigned)
    reason = orjson.loads(dict((r[0], r[3]) for r in stored)["de0"])
    assert reason["rule"] == "emea" and reason["team"] == "emea"
    assert reason["rep"] == assigned["de0"].rep
    assert reason["capacity_left"]["day"] == 9
    assert "parity" in reason["why"] and len(reason["candidates"]) == 3


def test_queued_leads_are_retried_and_capacity_is_never_exceeded(project):
    e = project.engine
    s = settings()
    clock = ManualClock(MONDAY)
    leads = [{"person_id": f"us{i}", "country": "US", "grade": "B", "score": 100 - i}
             for i in range(6)]
    add_people(e, leads)
    given = [{"person_id": x["person_id"], "grade": "B", "score": x["score"]} for x in leads]
    routed_per_day = []
    for _day in range(5):
        plan = route(e, s, given if _day == 0 else None, clock=clock)
        routed_per_day.append(len(plan.assignments))
        # nothing vanishes: every lead is either assigned or waiting
        owned = {r[0] for r in e.query("SELECT person_id FROM assignments")}
        queued = {q["person_id"] for q in waiting(e)}
        assert owned | queued == {x["person_id"] for x in leads} and not owned & queued
        clock.advance(days=1)
    # dan: 2 a day, 3 a week -> Mon 2, Tue 1, then full until next Monday
    assert routed_per_day == [2, 1, 0, 0, 0]
    per_day = e.query("SELECT rep, CAST(assigned_at AS DATE), count(*) FROM assignments "
                      "GROUP BY ALL")
    assert all(n <= 2 for _, _, n in per_day)
    clock.set(MONDAY + timedelta(days=7))  # a new week
    plan = route(e, s, clock=clock)
    assert len(plan.assignments) == 2
    assert {w.why for w in plan.waiting} == {"team_unavailable"}
    # the queue keeps when each lead first had to wait
    assert {q["queued_at"] for q in waiting(e)} == {MONDAY}


def test_parity_of_a_b_leads_within_tolerance_across_runs(project):
    e = project.engine
    s = settings(reps=[{"email": f"r{i}@x.io", "team": "emea"} for i in range(4)],
                 routing={"rules": [], "default_team": "emea"})
    rng = random.Random(5)
    clock = ManualClock(MONDAY)
    n = 0
    for _run in range(6):
        batch = []
        for _ in range(rng.randint(5, 17)):
            grade = rng.choice("AABBCCCDD")
            batch.append({"person_id": f"p{n}", "grade": grade,
                          "score": {"A": 90, "B": 70, "C": 50, "D": 20}[grade] + rng.random()})
            n += 1
        route(e, s, batch, clock=clock)
        clock.advance(hours=7)
    counts = dict(e.query("SELECT rep, count(*) FROM assignments WHERE grade IN ('A', 'B') "
                          "GROUP BY rep"))
    assert max(counts.values()) - min(counts.values()) <= s.routing.parity_tolerance
    report = parity_report(e, s, clock=clock)
    assert [t.team for t in report] == ["emea"] and report[0].within_tolerance
    assert report[0].spread <= 1


def test_parity_respects_rep_weights(project):
    e = project.engine
    s = settings(reps=[{"email": "full@x.io", "team": "t", "weight": 2},
                       {"email": "half@x.io", "team": "t", "weight": 1}],
                 routing={"rules": [], "default_team": "t"})
    route(e, s, [{"person_id": f"p{i}", "grade": "A", "score": 80} for i in range(30)],
          now=MONDAY)
    counts = dict(e.query("SELECT rep, count(*) FROM assignments GROUP BY rep"))
    assert counts == {"full@x.io": 20, "half@x.io": 10}


def test_account_owner_keeps_its_people(project):
    e = project.engine
    s = settings()
    add_account(e, "acme", size=50, owner="cyd@x.io")
    add_account(e, "globex", size=50)
    add_people(e, [
        {"person_id": "a1", "country": "US", "account_id": "acme"},  # rules would say NA
        {"person_id": "a2", "country": "DE", "account_id": "acme"},
        {"person_id": "g1", "country": "DE", "account_id": "globex"},
        {"person_id": "g2", "country": "DE", "account_id": "globex"},
    ])
    plan = route(e, s, [{"person_id": p, "grade": "A", "score": 80} for p in ("a1", "a2", "g1")],
                 now=MONDAY)
    by = {a.person_id: a for a in plan.assignments}
    assert by["a1"].rep == by["a2"].rep == "cyd@x.io"
    assert by["a1"].rule == "account_owner"
    first_globex_rep = by["g1"].rep
    # a later lead of an account routed before follows it (even if parity would differ)
    plan = route(e, s, [{"person_id": "g2", "grade": "A", "score": 80}], now=MONDAY)
    assert plan.assignments[0].rep == first_globex_rep
    assert plan.assignments[0].rule == "account_assignment"
    # the owner is away: the lead waits for them rather than going to someone else
    set_away(e, s, "cyd@x.io", FOREVER, MONDAY)
    add_people(e, [{"person_id": "a3", "country": "DE", "account_id": "acme"}])
    plan = route(e, s, [{"person_id": "a3", "grade": "A", "score": 80}], now=MONDAY)
    assert plan.assignments == []
    assert plan.waiting[0].why == "owner_unavailable"
    assert plan.waiting[0].detail["owner"] == "cyd@x.io"
    # an owner outside the roster still gets the lead
    add_account(e, "initech", owner="Pat Smith")
    add_people(e, [{"person_id": "i1", "country": "DE", "account_id": "initech"}])
    plan = route(e, s, [{"person_id": "i1", "grade": "B", "score": 60}], now=MONDAY)
    assert plan.assignments[0].rep == "Pat Smith" and plan.assignments[0].team is None


def test_dry_run_writes_nothing_and_matches_the_real_run(project):
    e = project.engine
    s = settings()
    add_people(e, [{"person_id": f"de{i}", "country": "DE"} for i in range(7)]
               + [{"person_id": "br0", "country": "BR"}])
    leads = [{"person_id": f"de{i}", "grade": "AB"[i % 2], "score": 50 + i} for i in range(7)]
    leads.append({"person_id": "br0", "grade": "A", "score": 90})
    before = table_counts(e)
    dry = route(e, s, leads, dry_run=True, now=MONDAY)
    assert table_counts(e) == before
    assert dry.dry_run and len(dry.assignments) == 7 and len(dry.waiting) == 1
    real = route(e, s, leads, now=MONDAY)
    assert not real.dry_run
    assert [(a.person_id, a.rep) for a in real.assignments] == [
        (a.person_id, a.rep) for a in dry.assignments]
    assert table_counts(e)["assignments"] == 7
    # routing the same leads again assigns nobody twice
    again = route(e, s, leads, now=MONDAY)
    assert again.assignments == [] and set(again.already_assigned) >= {f"de{i}" for i in range(7)}


def test_same_input_same_plan(tmp_path: Path):
    from leadrefinery import Project

    plans = []
    for name in ("one", "two"):
        with Project.init(tmp_path / name) as p:
            s = settings(reps=[{"email": f"r{i}@x.io", "team": "t"} for i in range(3)],
                         routing={"rules": [], "default_team": "t", "seed": 11})
            leads = [{"person_id": f"p{i}", "grade": "ABCD"[i % 4], "score": 10.0}
                     for i in range(20)]
            plans.append([(a.person_id, a.rep) for a in route(p.engine, s, leads,
                                                               now=MONDAY).assignments])
    assert plans[0] == plans[1]


def test_territory_size_and_type_restrictions(project):
    e = project.engine
    s = settings(
        reps=[{"email": "smb@x.io", "team": "t", "sizes": ["smb", "mid"]},
              {"email": "big@x.io", "team": "t", "sizes": ["ent"]},
              {"email": "fr@x.io", "team": "fr", "territory": ["FR"]}],
        routing={"rules": [{"name": "france", "team": "fr", "when": {"country": "FR"}}],
                 "default_team": "t"},
    )
    add_account(e, "big", size=5000)
    add_account(e, "small", size=10)
    add_people(e, [{"person_id": "b", "country": "GB", "account_id": "big"},
                   {"person_id": "s", "country": "GB", "account_id": "small"},
                   {"person_id": "u", "country": "GB"},  # size unknown: nobody serves it
                   {"person_id": "f", "country": "FR"}])
    plan = route(e, s, [{"person_id": p, "grade": "C"} for p in "bsuf"], now=MONDAY)
    by = {a.person_id: a.rep for a in plan.assignments}
    assert by == {"b": "big@x.io", "s": "smb@x.io", "f": "fr@x.io"}
    assert plan.waiting[0].person_id == "u"
    skipped = plan.waiting[0].detail["tried"][0]["skipped"]
    assert {x["why"].split(":")[0] for x in skipped} == {"size"}
    # with a band for unknown sizes, the lead finds its rep
    s2 = s.model_copy(update={"routing": s.routing.model_copy(update={"unknown_size_band": "smb"})})
    plan = route(e, s2, now=MONDAY)
    assert [(a.person_id, a.rep) for a in plan.assignments] == [("u", "smb@x.io")]


def test_overflow_team_takes_what_the_team_cannot(project):
    e = project.engine
    s = settings(reps=[{"email": "a@x.io", "team": "t", "per_day": 1},
                       {"email": "b@x.io", "team": "spill"}],
                 teams={"t": {"overflow": "spill"}},
                 routing={"rules": [], "default_team": "t"})
    plan = route(e, s, [{"person_id": f"p{i}", "grade": "B", "score": 9 - i} for i in range(3)],
                 now=MONDAY)
    assert [(a.person_id, a.rep) for a in plan.assignments] == [
        ("p0", "a@x.io"), ("p1", "b@x.io"), ("p2", "b@x.io")]
    assert plan.assignments[1].reason["overflow_from"] == "t"


def test_reads_grades_from_latest_scores_when_present(project):
    e = project.engine
    s = settings(reps=[{"email": "a@x.io", "team": "t"}],
                 routing={"rules": [], "default_team": "t", "qualify_grades": ["A", "B"]})
    assert route(e, s, now=MONDAY).assignments == []  # nothing scored yet
    e.execute("INSERT INTO latest_scores (model, as_of, person_id, score, grade, segments) VALUES "
              "('m', '2026-03-01', 'p1', 91, 'A', '[\"commercial\"]'), "
              "('m', '2026-03-01', 'p2', 40, 'C', '[]'), ('m', '2026-03-01', 'p3', 75, 'B', NULL), "
              # another model's newer opinion of p2 counts only if that model is not pinned
              "('other', '2026-03-02', 'p2', 80, 'A', NULL)")
    pinned = s.model_copy(update={"routing": s.routing.model_copy(update={"model": "m"})})
    plan = route(e, pinned, dry_run=True, now=MONDAY)
    assert [(a.person_id, a.grade, a.score) for a in plan.assignments] == [
        ("p1", "A", 91.0), ("p3", "B", 75.0)]
    plan = route(e, s, now=MONDAY)
    assert [(a.person_id, a.grade) for a in plan.assignments] == [
        ("p1", "A"), ("p2", "A"), ("p3", "B")]
    e.execute("DROP TABLE latest_scores")  # a store from before the scoring model
    assert "no latest_scores" in route(e, s, now=MONDAY).notes[0]


def test_away_reps_are_skipped_until_back(project):
    e = project.engine
    s = settings(reps=[{"email": "a@x.io", "team": "t"}, {"email": "b@x.io", "team": "t"}],
                 routing={"rules": [], "default_team": "t"})
    set_away(e, s, "a@x.io", MONDAY + timedelta(days=1), MONDAY)
    plan = route(e, s, [{"person_id": f"p{i}", "grade": "A", "score": 5} for i in range(3)],
                 now=MONDAY)
    assert {a.rep for a in plan.assignments} == {"b@x.io"}
    assert plan.assignments[0].reason["skipped"] == [{"rep": "a@x.io", "why": "away"}]
    plan = route(e, s, [{"person_id": "late", "grade": "A", "score": 5}],
                 now=MONDAY + timedelta(days=2))
    assert plan.assignments[0].rep == "a@x.io"  # back, and behind on parity


def test_rule_errors_name_the_rule(project):
    bad_field = settings(routing={"rules": [{"name": "x", "team": "emea",
                                             "when": {"contry": "DE"}}]})
    with pytest.raises(ConfigError, match="unknown field 'contry'") as info:
        route(project.engine, bad_field, [], now=MONDAY)
    assert info.value.key == "routing.rules[0].when.contry"
    bad_team = settings(routing={"rules": [{"name": "x", "team": "apac"}]})
    with pytest.raises(ConfigError, match="team 'apac'"):
        route(project.engine, bad_team, [], now=MONDAY)
    with pytest.raises(InputError, match="no person_id"):
        route(project.engine, settings(), [{"grade": "A"}], now=MONDAY)


def test_reps_csv_import(project, tmp_path: Path):
    e = project.engine
    s = settings(reps=[{"email": "ann@x.io", "team": "emea"}])
    path = tmp_path / "reps.csv"
    path.write_text(
        "Email,Name,Team,Territory,Per Day,Active\n"
        "zed@x.io,Zed,apac,\"JP;SG\",5,yes\n"
        "ann@x.io,Ann,apac,,3,yes\n"
        "yan@x.io,Yan,apac,APAC,,away\n",
        encoding="utf-8")
    result = import_reps(e, s, path, MONDAY)
    assert (result.added, result.updated) == (2, 0)
    assert result.skipped == [(3, "ann@x.io is declared in refinery.toml")]
    reps = {r.email: r for r in roster(e, s)}
    assert reps["zed@x.io"].territory == ("JP", "SG") and reps["zed@x.io"].per_day == 5
    assert reps["ann@x.io"].team == "emea"  # the config wins
    assert reps["yan@x.io"].away(MONDAY)
    path.write_text("email,team,per_day\nbad-address,t,1\nq@x.io,t,-2\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"line 2: email 'bad-address'.*\(and 1 more\)"):
        import_reps(e, s, path, MONDAY)


def test_an_earlier_hand_off_is_followed_only_while_that_rep_can_take_more(project):
    e = project.engine
    s = settings(reps=[{"email": "a@x.io", "team": "t", "per_day": 1},
                       {"email": "b@x.io", "team": "t", "per_day": 1}],
                 routing={"rules": [], "default_team": "t"})
    add_account(e, "acme")
    add_people(e, [{"person_id": p, "account_id": "acme"} for p in ("p1", "p2")])
    plan = route(e, s, [{"person_id": "p1", "grade": "A", "score": 9},
                        {"person_id": "p2", "grade": "A", "score": 8}], now=MONDAY)
    by = {a.person_id: a for a in plan.assignments}
    first = by["p1"].rep
    # that rep is full for the day and is no formal owner: p2 goes on by the rules, saying why
    assert by["p2"].rep != first and by["p2"].rule == "default"
    assert by["p2"].reason["account_earlier_rep"] == {
        "rep": first, "because": "full: 1 of 1 leads today"}


def test_a_plan_becomes_outbox_alerts_once(project):
    from leadrefinery.act.outbox import enqueue, list_alerts

    e = project.engine
    s = settings(reps=[{"email": "a@x.io", "team": "t", "per_day": 1}],
                 routing={"rules": [], "default_team": "t"})
    plan = route(e, s, [{"person_id": "p1", "grade": "A", "score": 9},
                        {"person_id": "p2", "grade": "B", "score": 8}], now=MONDAY)
    enqueue(e, plan.alerts(), now=MONDAY)
    again = route(e, s, now=MONDAY + timedelta(hours=1))  # p2 still waits: no second alert
    enqueue(e, again.alerts(), now=MONDAY)
    alerts = {a.trigger_kind: a for a in list_alerts(e)}
    assert len(list_alerts(e)) == 2
    assert (alerts["assignment"].channel, alerts["assignment"].recipient) == ("email", "a@x.io")
    assert alerts["assignment"].payload["data"]["rule"] == "default"
    assert alerts["routing_queue"].channel == "feed"
    assert alerts["routing_queue"].person_id == "p2"
