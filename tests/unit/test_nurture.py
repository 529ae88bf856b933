"""Nurture sequences: schedule and send windows, branches, fast-track, exits, consent.

Mail goes to a real SMTP server (aiosmtpd) on loopback; the clock is a ManualClock.
"""

from __future__ import annotations

import email
import json
import socket
from datetime import datetime, timedelta
from email import policy
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from leadrefinery.act.clock import ManualClock
from leadrefinery.act.nurture import (
    Nurture,
    SmtpSender,
    load_sequences,
    next_opening,
    read_unsubscribe_token,
    unsubscribe,
    unsubscribe_token,
)
from leadrefinery.config import SendWindow, Settings
from leadrefinery.errors import AuthError, ConfigError

from ..conftest import write_lines

SECRET = "test-unsubscribe-secret"
MON = datetime(2026, 3, 2, 10, 0)  # a Monday, 10:00 UTC

TRIAL = {
    "sequence": "trial",
    "enroll": {"event": "Signed Up"},
    "branches": [{"when": {"clicked": "tools"}, "goto": "builders"}],
    "steps": [
        {"id": "welcome", "day": 0, "window": False,
         "subject": "Welcome, {{ person.first_name | default('there') }}",
         "body": "Hi {{ person.first_name | default('there') }},\nyour trial has started.\n"},
        {"id": "tools", "day": 3, "subject": "Tools for {{ account.name | default('you') }}",
         "body": "Try the lab templates.\nUnsubscribe: {{ unsubscribe_url }}\n"},
        {"id": "docs", "day": 7, "subject": "Docs and forums", "body": "Read the docs."},
        {"id": "tips", "day": 14, "subject": "Tips", "body": "Five tips."},
        {"id": "talk", "day": 25, "category": "sales", "subject": "Talk to sales?",
         "body": "Shall we talk, {{ person.first_name }}?"},
    ],
    "tracks": {"builders": {"then": "resume", "steps": [
        {"id": "builders-1", "day": 1, "subject": "Building labs", "body": "Deep dive."}]}},
}


class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"

    def to(self, address: str) -> list[str]:
        return [m["Subject"] for m in self.messages if m["To"] == address]


@pytest.fixture
def inbox():
    from aiosmtpd.controller import Controller

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    box = Inbox()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    box.port = port
    yield box
    controller.stop()


def make_settings(inbox: Inbox, **nurture) -> Settings:
    return Settings.model_validate({
        "reps": [{"email": "rep@x.io", "team": "t"}],
        "routing": {"default_team": "t"},
        "alerts": {"smtp": {"host": "127.0.0.1", "port": inbox.port, "security": "none",
                            "from_address": "LabCloud <hello@labcloud.example>"}},
        "server": {"public_url": "https://refinery.example"},
        "nurture": nurture,
    })


def nurture(project, settings: Settings, clock: ManualClock, *sequences) -> Nurture:
    return Nurture(project.engine, settings, sequences=list(sequences) or [TRIAL],
                   secret=SECRET, sender=SmtpSender(settings.alerts.smtp), clock=clock)


def ingest(project, tmp_path: Path, messages: list[dict]) -> None:
    lines = []
    for i, m in enumerate(messages):
        m = {"messageId": f"{tmp_path.name}-{len(list(tmp_path.iterdir()))}-{i}", **m}
        if isinstance(m.get("timestamp"), datetime):
            m["timestamp"] = m["timestamp"].isoformat() + "Z"
        lines.append(json.dumps(m))
    path = write_lines(tmp_path / f"ev{len(list(tmp_path.iterdir()))}.jsonl", lines)
    report = project.ingest([path])
    assert report.quarantined == 0, project.quarantine()


def signup(user: str, at: datetime, **traits) -> list[dict]:
    return [
        {"type": "identify", "userId": user, "timestamp": at, "traits": traits},
        {"type": "track", "userId": user, "event": "Signed Up", "timestamp": at},
    ]


def run(n: Nurture, clock: ManualClock, until: datetime, wake: tuple[datetime, ...] = ()):
    """Tick as a scheduler would: at each next due time (and a minute before it, when nothing
    may go out yet), when new events arrive (`wake`), then at `until`."""
    results = [n.tick()]
    wake = sorted(w for w in wake if w > clock.now())
    while (due := min([d for d in (n.next_due(), *wake[:1]) if d], default=None)) is not None \
            and due <= until:
        if wake and due == wake[0]:
            clock.set(wake.pop(0))
            results.append(n.tick())
            continue
        if due - timedelta(minutes=1) > clock.now():
            clock.set(due - timedelta(minutes=1))
            early = n.tick()
            assert not early.queued and not early.suppressed, "sent before it was due"
            results.append(early)
        clock.set(max(due, clock.now()))
        results.append(n.tick())
    clock.set(until)
    results.append(n.tick())
    return results


def test_sequence_delivers_on_schedule_inside_local_send_windows(project, tmp_path, inbox):
    ingest(project, tmp_path,
           signup("ann", MON, email="ann@acme.de", first_name="Ann", country="DE")
           + signup("ken", MON, email="ken@tokyo.example", first_name="Ken", country="JP")
           + signup("sam", MON + timedelta(days=2), email="sam@acme.de", country="DE"))
    s = make_settings(inbox)
    clock = ManualClock(MON + timedelta(minutes=5))
    n = nurture(project, s, clock)
    first = n.tick()
    assert sorted(first.enrolled) == [("ann", "trial"), ("ken", "trial")]
    assert inbox.to("ann@acme.de") == ["Welcome, Ann"]  # day 0 goes out at once
    run(n, clock, MON + timedelta(days=31), wake=(MON + timedelta(days=2),))  # sam signs up

    due = {(x["person_id"], x["step"]): x for x in n.sends()}
    # Berlin (UTC+1), window 09:00-17:00 Mon-Fri: 10:00 UTC is inside, keep the time
    assert due[("ann", "tools")]["due_at"] == datetime(2026, 3, 5, 10, 0)
    assert due[("ann", "talk")]["due_at"] == datetime(2026, 3, 27, 10, 0)
    # Tokyo: day 3 falls at 19:00 local, so it waits for 09:00 next morning (00:00 UTC)
    assert due[("ken", "tools")]["due_at"] == datetime(2026, 3, 6, 0, 0)
    # sam's day 3 is a Saturday: Monday 09:00 Berlin
    assert due[("sam", "tools")]["due_at"] == datetime(2026, 3, 9, 8, 0)
    for x in due.values():
        assert x["status"] == "sent"
        assert x["sent_at"] == x["due_at"] or x["sent_at"] == MON + timedelta(minutes=5)
    assert inbox.to("ann@acme.de") == ["Welcome, Ann", "Tools for acme.de", "Docs and forums",
                                       "Tips", "Talk to sales?"]
    assert len(inbox.to("sam@acme.de")) == 5 and inbox.to("sam@acme.de")[0] == "Welcome, there"
    assert {e["status"] for e in n.enrollments()} == {"completed"}
    # every message: one-click unsubscribe (RFC 8058) and a stable Message-ID
    m = inbox.messages[0]
    assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert m["List-Unsubscribe"].startswith("<https://refinery.example/v1/unsubscribe?token=")
    assert m["Message-ID"].endswith("@labcloud.example>")
    assert "No more email from us at all" in m.get_content()  # footer added when missing
    # ticking again sends nothing twice
    before = len(inbox.messages)
    n.tick()
    assert len(inbox.messages) == before


def _token(message) -> str:
    url = message["List-Unsubscribe"].strip("<>")
    return parse_qs(urlparse(url).query)["token"][0]


def test_unsubscribe_is_honoured_per_category_and_for_everything(project, tmp_path, inbox):
    ingest(project, tmp_path, signup("ann", MON, email="ann@acme.de", first_name="Ann",
                                     country="DE"))
    s = make_settings(inbox)
    clock = ManualClock(MON + timedelta(minutes=5))
    n = nurture(project, s, clock)
    n.tick()
    welcome = inbox.messages[-1]
    person, category = read_unsubscribe_token(SECRET, _token(welcome))
    assert (person, category) == ("ann", "product_news")
    unsubscribe(project.engine, SECRET, _token(welcome), now=clock.now())  # one click
    run(n, clock, MON + timedelta(days=31))
    # product news stopped; the sales step is another category and still came
    assert inbox.to("ann@acme.de") == ["Welcome, Ann", "Talk to sales?"]
    why = {x["step"]: x["why"] for x in n.sends() if x["status"] == "suppressed"}
    assert why == {"tools": "unsubscribed from product_news", "docs": "unsubscribed from "
                   "product_news", "tips": "unsubscribed from product_news"}
    with pytest.raises(AuthError):
        read_unsubscribe_token(SECRET, _token(welcome)[:-2] + "xx")
    with pytest.raises(AuthError):  # a token for someone else cannot be forged
        read_unsubscribe_token(SECRET, unsubscribe_token("other-secret", "bob"))


def test_unsubscribe_between_making_and_sending_is_honoured(project, tmp_path, inbox):
    ingest(project, tmp_path, signup("ann", MON, email="ann@acme.de", country="DE"))
    s = make_settings(inbox)
    clock = ManualClock(MON + timedelta(minutes=5))
    n = nurture(project, s, clock)
    made = n.tick(deliver=False)
    assert [q["step"] for q in made.queued] == ["welcome"] and not inbox.messages
    unsubscribe(project.engine, SECRET, unsubscribe_token(SECRET, "ann", "*"), now=clock.now())
    report = n.deliver()
    assert report.sent == [] and list(report.suppressed.values()) == ["unsubscribed from all mail"]
    assert not inbox.messages
    clock.advance(days=4)
    result = n.tick()
    assert result.exited == [("ann", "trial", "unsubscribed from all mail")]


def test_community_members_never_get_sales_mail(project, tmp_path, inbox):
    ingest(project, tmp_path,
           signup("dev", MON, email="dev@uni.example", first_name="Dev", country="DE",
                  segment="community")
           + signup("buyer", MON, email="buyer@corp.example", first_name="Bo", country="DE"))
    s = make_settings(inbox)
    clock = ManualClock(MON + timedelta(minutes=5))
    quick = {"sequence": "quick", "enroll": {"event": "Signed Up"}, "steps": [
        {"id": "hello", "day": 0, "window": False, "subject": "Hello", "body": "Hi"},
        {"id": "buy", "day": 0, "window": False, "category": "sales", "subject": "Buy now",
         "body": "Offer"}]}
    n = nurture(project, s, clock, quick)
    n.tick()
    assert inbox.to("dev@uni.example") == ["Hello"]
    assert inbox.to("buyer@corp.example") == ["Hello", "Buy now"]
    suppressed = [x for x in n.sends() if x["status"] == "suppressed"]
    assert [(x["person_id"], x["why"]) for x in suppressed] == [
        ("dev", "community member: no sales mail")]


def test_buy_readiness_fast_tracks_out_of_nurture_into_routing(project, tmp_path, inbox):
    ingest(project, tmp_path,
           signup("ann", MON, email="ann@acme.de", country="DE")
           + signup("bob", MON, email="bob@acme.de", country="DE"))
    s = make_settings(inbox)
    clock = ManualClock(MON + timedelta(minutes=5))
    n = nurture(project, s, clock)
    n.tick()
    ingest(project, tmp_path, [{"type": "track", "userId": "ann",
                                "event": "Documentation Purchased",
                                "timestamp": MON + timedelta(days=1, hours=2),
                                "properties": {"title": "Admin Guide"}}])
    clock.set(MON + timedelta(days=1, hours=3))
    result = n.tick()
    assert result.fast_tracked == ["ann"]
    enr = {e["person_id"]: e for e in n.enrollments()}
    assert enr["ann"]["status"] == "fast_tracked"
    assert enr["ann"]["exit_reason"] == "fast_track: Documentation Purchased"
    assert enr["bob"]["status"] == "active"
    # ... and straight to a rep, marked as a fast-track
    assert [(a.person_id, a.rep, a.trigger) for a in result.routing.assignments] == [
        ("ann", "rep@x.io", "fast_track")]
    assert project.engine.query("SELECT trigger FROM assignments WHERE person_id = 'ann'") == [
        ("fast_track",)]
    run(n, clock, MON + timedelta(days=31))
    assert inbox.to("ann@acme.de") == ["Welcome, there"]  # no more nurture mail
    assert len(inbox.to("bob@acme.de")) == 5


def test_fast_tracked_lead_nobody_can_take_waits_in_the_queue(project, tmp_path, inbox):
    ingest(project, tmp_path, signup("ann", MON, email="ann@acme.de", country="DE")
           + [{"type": "track", "userId": "ann", "event": "Training Registered",
               "timestamp": MON + timedelta(hours=1)}])
    s = make_settings(inbox).model_copy(update={"reps": []})
    s = Settings.model_validate({**s.model_dump(), "routing": {}, "reps": []})
    clock = ManualClock(MON + timedelta(hours=2))
    result = nurture(project, s, clock).tick()
    assert result.fast_tracked == ["ann"]
    assert [(w.person_id, w.why, w.trigger) for w in result.routing.waiting] == [
        ("ann", "no_rule", "fast_track")]
    assert project.engine.query("SELECT person_id, trigger FROM routing_queue") == [
        ("ann", "fast_track")]


def test_a_click_branches_into_a_sub_sequence_then_resumes(project, tmp_path, inbox):
    ingest(project, tmp_path, signup("ann", MON, email="ann@acme.de", country="DE"))
    s = make_settings(inbox)
    clock = ManualClock(MON + timedelta(minutes=5))
    n = nurture(project, s, clock)
    run(n, clock, MON + timedelta(days=3, hours=1))  # welcome and tools are out
    assert inbox.to("ann@acme.de") == ["Welcome, there", "Tools for acme.de"]
    click = MON + timedelta(days=3, hours=2)
    ingest(project, tmp_path, [
        {"type": "track", "userId": "ann", "event": "Email Opened", "timestamp": click,
         "properties": {"sequence": "trial", "step": "tools"}},
        {"type": "track", "userId": "ann", "event": "Email Clicked", "timestamp": click,
         "properties": {"sequence": "trial", "step": "tools", "url": "https://x/labs"}}])
    clock.set(click + timedelta(minutes=1))
    results = run(n, clock, MON + timedelta(days=31))
    assert ("ann", "trial", "builders") in [b for r in results for b in r.branched]
    assert inbox.to("ann@acme.de") == ["Welcome, there", "Tools for acme.de", "Building labs",
                                       "Docs and forums", "Tips", "Talk to sales?"]
    sends = {x["step"]: x for x in n.sends()}
    assert sends["builders-1"]["due_at"] == click + timedelta(days=1)
    assert sends["tools"]["opened_at"] == click and sends["tools"]["clicked_at"] == click
    assert sends["welcome"]["clicked_at"] is None


def test_conversion_ends_the_sequence(project, tmp_path, inbox):
    ingest(project, tmp_path, signup("ann", MON, email="ann@acme.de", country="DE"))
    s = make_settings(inbox)
    clock = ManualClock(MON + timedelta(minutes=5))
    n = nurture(project, s, clock)
    n.tick()
    # refinery.toml of the test project records this event as a conversion
    ingest(project, tmp_path, [{"type": "track", "userId": "ann", "event": "Subscription Started",
                                "timestamp": MON + timedelta(days=2)}])
    results = run(n, clock, MON + timedelta(days=31))
    assert ("ann", "trial", "converted") in [x for r in results for x in r.exited]
    assert inbox.to("ann@acme.de") == ["Welcome, there"]


def test_steps_long_overdue_are_skipped_not_flooded(project, tmp_path, inbox):
    ingest(project, tmp_path, signup("ann", MON, email="ann@acme.de", country="DE"))
    s = make_settings(inbox)
    clock = ManualClock(MON + timedelta(days=20))  # the tick did not run for 20 days
    n = nurture(project, s, clock)
    result = n.tick()
    assert [x["step"] for x in result.skipped] == ["welcome", "tools", "docs", "tips"]
    assert not inbox.messages
    run(n, clock, MON + timedelta(days=31))
    assert inbox.to("ann@acme.de") == ["Talk to sales?"]


def test_next_opening_handles_windows_weekends_and_dst():
    from zoneinfo import ZoneInfo

    w = SendWindow(start="09:00", end="17:00", days=["mon", "tue", "wed", "thu", "fri"])
    ny = ZoneInfo("America/New_York")
    # Friday 23:00 UTC = 18:00 New York: closed until Monday 09:00, which is after the DST
    # change (2026-03-08), so 13:00 UTC rather than 14:00
    assert next_opening(datetime(2026, 3, 6, 23, 0), ny, w) == datetime(2026, 3, 9, 13, 0)
    assert next_opening(datetime(2026, 3, 9, 15, 0), ny, w) == datetime(2026, 3, 9, 15, 0)


def test_sequence_files_are_checked_at_load(project, tmp_path):
    folder = project.root / "sequences"
    folder.mkdir()
    (folder / "tools.txt.j2").write_text("Hello {{ person.first_name }}", encoding="utf-8")
    (folder / "trial.yaml").write_text(
        "sequence: trial\n"
        "enroll: { event: Signed Up }\n"
        "steps:\n"
        "  - { id: hi, day: 0, subject: Hi, template: tools.txt.j2 }\n", encoding="utf-8")
    s = project.settings
    specs = load_sequences(s, project.root)
    assert specs["trial"].steps[0].body == "Hello {{ person.first_name }}"
    (folder / "trial.yaml").write_text(
        "sequence: trial\n"
        "branches:\n"
        "  - { when: { clicked: hi }, goto: nowhere }\n"
        "steps:\n"
        "  - { id: hi, day: 0, subject: Hi, body: x }\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="track 'nowhere'") as info:
        load_sequences(s, project.root)
    assert info.value.key == "branches[0].goto"
    (folder / "trial.yaml").write_text(
        "sequence: trial\n"
        "steps:\n"
        "  - id: hi\n"
        "    dya: 3\n"
        "    subject: Hi\n"
        "    body: x\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"trial.yaml:4.*Extra inputs"):
        load_sequences(s, project.root)
    (folder / "trial.yaml").write_text(
        "sequence: trial\nsteps:\n  - { id: hi, subject: 'Hi {{ person.name', body: x }\n",
        encoding="utf-8")
    with pytest.raises(ConfigError, match="template subject"):
        load_sequences(s, project.root)
    (folder / "trial.yaml").write_text(
        "sequence: trial\nsteps:\n  - { id: hi, category: spam, subject: Hi, body: x }\n",
        encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown category 'spam'"):
        load_sequences(s, project.root)


def test_missing_secret_says_what_to_do(project, monkeypatch):
    monkeypatch.delenv("LEADREFINERY_UNSUBSCRIBE_SECRET", raising=False)
    with pytest.raises(ConfigError, match="LEADREFINERY_UNSUBSCRIBE_SECRET"):
        Nurture(project.engine, project.settings, root=project.root, sequences=[TRIAL])
    (project.root / "secrets.toml").write_text('[nurture]\nunsubscribe_secret = "abc"\n')
    n = Nurture(project.engine, project.settings, root=project.root, sequences=[TRIAL])
    assert n.secret == "abc"


def test_serve_ticks_nurture_on_a_schedule(project, tmp_path, inbox, monkeypatch):
    """Inside `serve` (act/realtime.py) a nurture tick runs every `[nurture] tick_seconds`:
    enrolment and the day-0 mail happen without cron, and ticking again sends nothing twice."""
    import time

    from leadrefinery.act.realtime import Realtime, periodic_jobs

    monkeypatch.setenv("LEADREFINERY_UNSUBSCRIBE_SECRET", SECRET)
    (project.root / "sequences").mkdir()
    (project.root / "sequences" / "trial.json").write_text(json.dumps(TRIAL))
    project.settings = make_settings(inbox, tick_seconds=0.05, files=["sequences/*.json"])
    project.settings.sla.check_seconds = 0
    ingest(project, tmp_path, signup("ann", MON, email="ann@acme.de", first_name="Ann"))
    rt = Realtime(None, settings=project.settings, clock=ManualClock(MON + timedelta(minutes=5)),
                  jobs=periodic_jobs(project))
    assert [j.kind for j in rt.jobs] == ["nurture"]
    ticks = []
    rt.start()
    try:
        deadline = time.monotonic() + 30
        while len(ticks) < 3:  # three ticks at least
            assert time.monotonic() < deadline, rt.stats.last_error
            time.sleep(0.02)
            at = rt.stats.jobs.get("nurture", {}).get("at")
            if at is not None and at not in ticks:
                ticks.append(at)
    finally:
        rt.stop()
    assert inbox.to("ann@acme.de") == ["Welcome, Ann"]
    assert rt.stats.errors == 0
