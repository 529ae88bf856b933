"""Hand-off SLAs and refinery health from CRM feedback."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from leadrefinery.act.outbox import enqueue, list_alerts
from leadrefinery.act.routing import route
from leadrefinery.act.sla import (
    alerts_for,
    first_touch,
    health,
    qualification,
    record_activities,
    rejection_labels,
    rejections,
)
from leadrefinery.config import Settings
from leadrefinery.errors import InputError

T0 = datetime(2026, 3, 2, 9, 0)


def settings(**sla) -> Settings:
    return Settings.model_validate({
        "reps": [{"email": "ann@x.io", "team": "t"}, {"email": "bob@x.io", "team": "t"}],
        "routing": {"default_team": "t"},
        "sla": {"first_touch_hours": {"A": 4, "B": 24}, "never_touched_days": 7,
                "min_sample": 10, **sla},
    })


def hand_off(engine, s, leads: list[tuple[str, str]], at: datetime) -> dict[str, str]:
    """Route (person, grade) pairs at `at`; -> person -> rep."""
    plan = route(engine, s, [{"person_id": p, "grade": g, "score": 50} for p, g in leads], now=at)
    assert not plan.waiting
    return {a.person_id: a.rep for a in plan.assignments}


def test_first_touch_breaches_and_never_touched_from_a_crm_csv(project, tmp_path: Path):
    e, s = project.engine, settings()
    reps = hand_off(e, s, [("fast", "A"), ("slow", "A"), ("b-late", "B"), ("b-ok", "B")], T0)
    hand_off(e, s, [("ghost", "A")], T0 - timedelta(days=8))
    csv = tmp_path / "crm_activities.csv"
    csv.write_text(
        "Lead ID,Owner,Activity,Date,Reason\n"
        f"fast,{reps['fast']},First touch,2026-03-02 11:00:00,\n"
        f"slow,{reps['slow']},Called,2026-03-02 19:30:00,\n"
        f"b-ok,{reps['b-ok']},Accepted,2026-03-02 20:00:00,\n"
        f"b-ok,{reps['b-ok']},Emailed,2026-03-02 21:00:00,\n"
        "nobody,ann@x.io,teleported,2026-03-02 21:00:00,\n",
        encoding="utf-8")
    report = project.ingest([csv], kind="activities")
    assert (report.stored, report.quarantined) == (4, 1)
    assert "teleported" in project.quarantine()[0]["reason"]
    assert project.ingest([csv], kind="activities").stored == 0  # idempotent

    now = T0 + timedelta(hours=30)
    summary, findings = first_touch(e, s, now=now)
    breaches = {f.person_id: f for f in findings if f.check == "first_touch_breach"}
    assert set(breaches) == {"slow", "b-late", "ghost"}
    assert breaches["slow"].data["hours_to_touch"] == 10.5
    assert breaches["slow"].rep == reps["slow"]
    assert breaches["b-late"].data["first_touch"] is None  # untouched, past its 24 h
    assert [f.person_id for f in findings if f.check == "never_touched"] == ["ghost"]
    a = summary["by_grade"]["A"]
    assert (a["routed"], a["touched"], a["within_sla"], a["breached"]) == (3, 2, 1, 2)
    assert summary["by_grade"]["B"]["median_hours_to_touch"] == 11.0

    # before the B lead's SLA ran out, it was no breach
    _, early = first_touch(e, s, now=T0 + timedelta(hours=20))
    assert "b-late" not in {f.person_id for f in early}


def test_opportunities_lost_right_after_hand_off_mean_too_loose(project):
    e, s = project.engine, settings()
    people = [(f"p{i}", "B") for i in range(12)]
    hand_off(e, s, people, T0)
    rows = [{"person_id": p, "kind": "opportunity", "at": T0 + timedelta(days=1)}
            for p, _ in people]
    rows += [{"person_id": f"p{i}", "kind": "Closed Lost", "at": T0 + timedelta(days=5),
              "reason": "no budget"} for i in range(3)]
    record_activities(e, rows, now=T0)
    now = T0 + timedelta(days=40)
    summary, findings = qualification(e, s, now=now)
    assert summary["lost_after_handoff"] == 3 and summary["opportunities"] == 12
    assert not [f for f in findings if f.check == "qualification_too_loose"]  # 25 % < 30 %
    assert len([f for f in findings if f.check == "lost_after_handoff"]) == 3

    record_activities(e, [{"person_id": "p3", "kind": "lost", "at": T0 + timedelta(days=9)},
                          # lost, but long after the hand-off: not "right after"
                          {"person_id": "p4", "kind": "lost", "at": T0 + timedelta(days=35)}],
                      now=T0)
    summary, findings = qualification(e, s, now=now)
    loose = [f for f in findings if f.check == "qualification_too_loose"]
    assert len(loose) == 1 and loose[0].data["rate"] == pytest.approx(4 / 12, abs=1e-3)
    assert loose[0].severity == "warning" and loose[0].person_id is None


def test_a_high_win_rate_of_routed_leads_means_too_strict(project):
    e, s = project.engine, settings()
    people = [(f"w{i}", "A") for i in range(12)]
    hand_off(e, s, people, T0)
    outcomes = [{"person_id": f"w{i}", "kind": "won" if i < 6 else "lost",
                 "at": T0 + timedelta(days=45)} for i in range(12)]
    record_activities(e, outcomes, now=T0)
    now = T0 + timedelta(days=60)
    summary, findings = qualification(e, s, now=now)
    assert summary["win_rate"] == 0.5
    assert not [f for f in findings if f.check == "qualification_too_strict"]  # not above 50 %
    # a won opportunity from the CRM's opportunity import counts too
    e.execute("INSERT INTO outcomes (outcome_id, kind, person_id, created_at, won, closed_at) "
              "VALUES ('o1', 'opportunity', 'w11', ?, true, ?)",
              [T0 + timedelta(days=2), T0 + timedelta(days=20)])
    summary, findings = qualification(e, s, now=now)
    strict = [f for f in findings if f.check == "qualification_too_strict"]
    assert summary["won"] == 7 and len(strict) == 1
    assert strict[0].data["win_rate"] == pytest.approx(7 / 12, abs=1e-3)
    # too few decided leads: no verdict either way
    few = settings(min_sample=50)
    summary, findings = qualification(e, few, now=now)
    assert not findings or all(f.check == "lost_after_handoff" for f in findings)
    assert "need 50" in summary["note_strict"]


def test_rejections_by_reason_become_labels(project):
    e, s = project.engine, settings()
    hand_off(e, s, [(p, "B") for p in ("r1", "r2", "r3", "ok", "dup")], T0)
    record_activities(e, [
        {"person_id": "r1", "rep": "ann@x.io", "kind": "rejected", "reason": "Not a fit",
         "at": T0 + timedelta(hours=2)},
        {"person_id": "r2", "rep": "bob@x.io", "kind": "rejected", "reason": "not a fit",
         "at": T0 + timedelta(hours=3)},
        {"person_id": "r3", "rep": "bob@x.io", "kind": "rejected", "reason": "student",
         "at": T0 + timedelta(hours=3)},
        {"person_id": "dup", "rep": "bob@x.io", "kind": "rejected", "reason": "Duplicate",
         "at": T0 + timedelta(hours=3)},
        {"person_id": "ok", "rep": "ann@x.io", "kind": "accepted", "at": T0 + timedelta(hours=1)},
    ], now=T0)
    summary = rejections(e, s, now=T0 + timedelta(days=1))
    assert summary["total"] == 4
    assert summary["by_reason"] == {"not a fit": 2, "duplicate": 1, "student": 1}
    assert summary["by_rep"]["bob@x.io"] == {"duplicate": 1, "not a fit": 1, "student": 1}
    labels = rejection_labels(e, s, as_of=T0 + timedelta(days=1))
    assert labels == {"r1": 0, "r2": 0, "r3": 0, "ok": 1}  # a duplicate says nothing
    # point in time: before the verdicts, no labels
    assert rejection_labels(e, s, as_of=T0 + timedelta(minutes=30)) == {}


def test_findings_travel_through_the_alerts_outbox_once(project):
    e, s = project.engine, settings()
    hand_off(e, s, [("late", "A")], T0)
    report = health(e, s, now=T0 + timedelta(days=8))
    assert {f.check for f in report.findings} == {"first_touch_breach", "never_touched"}
    ids = enqueue(e, alerts_for(report.findings), now=report.at)
    again = health(e, s, now=T0 + timedelta(days=8, hours=1))
    assert enqueue(e, alerts_for(again.findings)) == ids  # same findings, same alerts
    alerts = list_alerts(e)
    assert len(alerts) == 2
    assert {a.channel for a in alerts} == {"email"}  # to the rep who owns the lead
    assert {a.trigger_kind for a in alerts} == {"sla"}
    assert all(a.person_id == "late" for a in alerts)


def test_serve_checks_the_slas_on_a_schedule(project):
    """Inside `serve` (act/realtime.py) the SLA check runs every `[sla] check_seconds`; each
    finding reaches the outbox once however often it is found again; 0 turns it off."""
    import time

    from leadrefinery.act.clock import ManualClock
    from leadrefinery.act.realtime import Realtime, periodic_jobs

    project.settings = settings(check_seconds=0.05).model_copy(
        update={"nurture": Settings().nurture.model_copy(update={"tick_seconds": 0})})
    hand_off(project.engine, project.settings, [("late", "A")], T0)
    rt = Realtime(None, settings=project.settings, clock=ManualClock(T0 + timedelta(days=8)),
                  jobs=periodic_jobs(project))
    assert [j.kind for j in rt.jobs] == ["sla"]  # nurture ticks are off
    runs = []
    rt.start()
    try:
        deadline = time.monotonic() + 30
        while len(runs) < 3:  # found again and again
            assert time.monotonic() < deadline, rt.stats.last_error
            time.sleep(0.02)
            at = rt.stats.jobs.get("sla", {}).get("at")
            if at is not None and at not in runs:
                runs.append(at)
    finally:
        rt.stop()
    alerts = list_alerts(project.engine)
    assert sorted(a.trigger_id for a in alerts) == ["sla.first_touch_breach", "sla.never_touched"]
    assert rt.stats.jobs["sla"]["findings"] == 2 and rt.stats.errors == 0
    project.settings = settings(check_seconds=0)
    assert [j.kind for j in Realtime(None, settings=project.settings,
                                     jobs=periodic_jobs(project)).jobs] == ["nurture"]


def test_record_activities_validates(project):
    with pytest.raises(InputError, match="not an activity"):
        record_activities(project.engine, [{"person_id": "p", "kind": "x", "at": T0}])
    with pytest.raises(InputError, match="at"):
        record_activities(project.engine, [{"person_id": "p", "kind": "won"}])
    assert record_activities(project.engine, [
        {"person_id": "p", "kind": "won", "at": "2026-03-02T10:00:00Z"}]) == 1
