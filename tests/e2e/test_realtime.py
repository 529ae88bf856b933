"""Real time, end to end: `leadrefinery serve` as a subprocess, the real Segment client sending
a stream, a webhook receiver (http.server in a thread) and an SMTP server (aiosmtpd) on
loopback. No mocks.

* every expected alert arrives, once, with its reasons; none for leads that crossed no line;
* the receiver taken down and brought back loses nothing;
* `kill -9` of the server mid-stream loses no acknowledged event and no alert.
"""

from __future__ import annotations

import email
import email.policy
import signal
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from tests.e2e.conftest import Receiver, Server, free_port, wait_for

from leadrefinery import Project

pytestmark = [pytest.mark.timeout(300)]

KEY = "rt-key"
SECRET = "rt-webhook-secret"

TRIGGERS = """\
version: 1
defaults: {cooldown: 24h, to: "webhook:sales"}
triggers:
  - {id: hot, kind: grade, at_least: B, description: reached grade B or better}
  - id: ready
    kind: action
    events: [Contact Sales Requested, Documentation Purchased]
    severity: warning
  - {id: abuse, kind: abuse, severity: critical}
"""


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content,
                                                      policy=email.policy.default))
        return "250 Message accepted"

    def ids(self) -> Counter:
        return Counter(m["X-LeadRefinery-Alert-Id"] for m in self.messages)


def make_project(root: Path, receiver: Receiver, smtp_port: int) -> Path:
    Project.init(root, name="rt-e2e", write_key=KEY).close()
    with (root / "refinery.toml").open("a") as f:
        f.write(f"""
[alerts]
poll_seconds = 0.2
retry_base_seconds = 0.2
retry_max_seconds = 1.0
retry_jitter = 0.0
max_attempts = 1000

[alerts.webhooks.sales]
url = "{receiver.url}"
timeout_seconds = 2

[alerts.smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
from_address = "Lead Refinery <alerts@rt.example>"

[triggers]
abuse_sweep_seconds = 2
sweep_seconds = 30
unusual_seconds = 0
""")
    (root / "model.yaml").write_text(_model_text())
    (root / "triggers.yaml").write_text(TRIGGERS)
    return root


def _model_text() -> str:
    from tests.unit.test_triggers import MODEL as text  # the unit tests' small model

    return text


@pytest.fixture
def mailbox():
    box = Mailbox()
    c = Controller(box, hostname="127.0.0.1", port=free_port())
    c.start()
    yield box, c.port
    c.stop()


@pytest.fixture
def server(tmp_path: Path, receiver: Receiver, mailbox):
    _, smtp_port = mailbox
    s = Server(make_project(tmp_path / "proj", receiver, smtp_port),
               env={"LEADREFINERY_WEBHOOK_SECRET": SECRET}, ready=Server.live)
    yield s
    s.close()


# -- the stream -----------------------------------------------------------------------------


def stream(prefix: str = "") -> tuple[list[tuple], dict[tuple[str, str], str]]:
    """Calls of the Segment client (method, args, kwargs) and the alerts they must cause:
    (person, trigger) -> channel. Quiet leads cross no line and must cause none."""
    calls: list[tuple] = []
    expect: dict[tuple[str, str], str] = {}

    def who(name: str, **traits) -> str:
        uid = f"{prefix}{name}"
        calls.append(("identify", (uid, {"email": f"{uid}@{name}-corp.com",
                                         "company": f"{name.title()} Corp", **traits}), {}))
        return uid

    # ann has an owner: her alerts go to the owner by email
    ann = who("ann", owner="ann.rep@rt.example")
    calls += [("page", (ann, "Pricing"), {"properties": {"path": "/pricing"}}),
              ("track", (ann, "Logged In"), {}),
              ("track", (ann, "Contact Sales Requested"), {"properties": {"topic": "seats"}})]
    expect[(ann, "hot")] = expect[(ann, "ready")] = "email"
    # cat gets hot by using the product: the default recipient, the webhook
    cat = who("cat")
    calls += [("page", (cat, "Pricing"), {"properties": {"path": "/pricing"}})]
    calls += [("track", (cat, "Logged In"), {}) for _ in range(7)]
    expect[(cat, "hot")] = "webhook"
    # dan buys the docs: buy-ready without being hot
    dan = who("dan")
    calls += [("track", (dan, "Documentation Purchased"), {"properties": {"price": 49}})]
    expect[(dan, "ready")] = "webhook"
    # eve runs a class of 40 guests (10 allowed): abuse, while it happens
    eve = who("eve")
    calls += [("track", (eve, "Environment Launched"),
               {"properties": {"environment_id": f"{eve}-env", "guests": 40,
                               "template": "windows-lab"}})]
    expect[(eve, "abuse")] = "webhook"
    # quiet leads: a login or two, nothing more
    for i in range(6):
        q = who(f"quiet{i}")
        calls += [("track", (q, "Logged In"), {}) for _ in range(1 + i % 2)]
        calls += [("page", (q, "Docs"), {"properties": {"path": "/docs/start"}})]
    return calls, expect


def send(client, calls: list[tuple]) -> list[str]:
    ids = []
    for method, args, kwargs in calls:
        ok, msg = getattr(client, method)(*args, **kwargs)
        assert ok
        ids.append(msg["messageId"])
    return ids


def stored_alerts(root: Path) -> list[dict]:
    with Project(root, read_only=True) as p:
        cols = ("alert_id", "person_id", "trigger_id", "channel", "recipient", "status",
                "attempts")
        return [dict(zip(cols, r, strict=True)) for r in p.engine.query(
            f"SELECT {', '.join(cols)} FROM alerts WHERE trigger_id NOT LIKE 'routing.%'")]


# -- tests ----------------------------------------------------------------------------------


def test_stream_alerts_arrive_once_with_reasons(server: Server, receiver: Receiver, mailbox):
    from segment.analytics import Client

    box, _ = mailbox
    server.start()
    errors: list = []
    client = Client(KEY, host=server.url, on_error=lambda e, b: errors.append(e),
                    upload_interval=0.05, max_retries=3)
    calls, expect = stream()
    began = time.time()
    send(client, calls)
    client.flush()
    assert not errors
    hooks = {k for k, ch in expect.items() if ch == "webhook"}
    wait_for(lambda: set(receiver.got()) >= hooks, 90, "the webhook alerts")
    wait_for(lambda: len(box.ids()) >= 3, 60, "the email alerts")
    server.settled()
    time.sleep(1.5)  # anything unexpected would arrive by now
    got = receiver.got()
    assert set(got) == hooks, got  # none for the quiet leads
    assert set(got.values()) == {1}
    assert set(receiver.ids().values()) == {1}  # each alert id exactly once
    assert receiver.bad_signatures(SECRET) == 0
    # the reasons and evidence
    hot = receiver.body("cat", "hot")
    assert hot["change"]["to"] == "B" and hot["trigger"]["kind"] == "grade_reached"
    rules = {r["rule"] for r in hot["reasons"]}
    assert {"login", "pricing", "company_email"} <= rules
    assert hot["links"]["person"].endswith("/people/cat")
    assert "Why:" in hot["text"]
    abuse = receiver.body("eve", "abuse")
    assert abuse["severity"] == "critical"
    assert abuse["evidence"][0]["rule"] == "too_many_guests" and abuse["evidence"][0]["max"] == 40
    ready = receiver.body("dan", "ready")
    assert ready["evidence"][0]["event"] == "Documentation Purchased"
    # ann's alerts went to her owner, by email
    mails = {m["X-LeadRefinery-Alert-Id"]: m for m in box.messages}
    assert all(m["To"] == "ann.rep@rt.example" for m in mails.values())
    subjects = sorted(m["Subject"] for m in mails.values())
    assert any("reached grade B" in s for s in subjects)
    assert any("ready to buy" in s for s in subjects)
    assert any("fast-track lead for you" in s for s in subjects)  # routed to her owner
    ready = next(m for m in mails.values() if "ready to buy" in m["Subject"])
    assert "Contact Sales Requested" in ready.get_body(("plain",)).get_content()
    # in time: event -> webhook delivered (a loaded shared machine: generous bound)
    assert max(receiver.arrived().values()) - began < 30
    server.stop()
    stored = stored_alerts(server.root)
    assert {(a["person_id"], a["trigger_id"]) for a in stored} == set(expect)
    assert {a["status"] for a in stored} == {"delivered"}


def test_receiver_down_then_back_loses_nothing(server: Server, receiver: Receiver):
    from segment.analytics import Client

    server.start()
    receiver.down()
    client = Client(KEY, host=server.url, upload_interval=0.05)
    calls, expect = stream("w1-")
    send(client, calls)
    client.flush()
    server.settled()
    hooks = {k for k, ch in expect.items() if ch == "webhook"}
    wait_for(lambda: server.realtime()["delivery"]["failed"] >= len(hooks), 60,
             "failed attempts while the receiver is down")
    assert not receiver.got()
    receiver.up()
    wait_for(lambda: set(receiver.got()) >= hooks, 60, "every alert after the receiver is back")
    time.sleep(1.0)
    assert set(receiver.got()) == hooks
    assert set(receiver.got().values()) == {1}


def test_kill_9_mid_stream_loses_no_acknowledged_event_and_no_alert(
        server: Server, receiver: Receiver):
    """A sender goes on through a `kill -9` and a restart; every acknowledged event is stored
    and every alert its people earned is delivered (perhaps twice, with the same alert id)."""
    from segment.analytics import Client

    server.start()
    calls, expect = [], {}
    for k in range(6):
        c, e = stream(f"k{k}-")
        calls += c
        expect.update(e)
    acked: list[str] = []
    sent_ids = [str(uuid.uuid4()) for _ in calls]
    stop = threading.Event()

    def sender() -> None:  # one request per event (sync mode); retried until acknowledged
        client = Client(KEY, host=server.url, sync_mode=True, timeout=5, max_retries=0)
        for (method, args, kwargs), mid in zip(calls, sent_ids, strict=True):
            while not stop.is_set():
                try:
                    getattr(client, method)(*args, **kwargs, message_id=mid)
                    acked.append(mid)
                    break
                except Exception:  # noqa: BLE001 - the server is down: try again
                    time.sleep(0.1)

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    wait_for(lambda: len(acked) >= len(calls) // 2, 120, "half the stream acknowledged")
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    n_at_kill = len(acked)
    server.start()
    t.join(180)
    stop.set()
    assert len(acked) == len(calls)
    assert n_at_kill < len(calls)
    server.settled()
    hooks = {k for k, ch in expect.items() if ch == "webhook"}
    wait_for(lambda: set(receiver.got()) >= hooks, 90, "every webhook alert")
    server.stop()
    with Project(server.root, read_only=True) as p:
        stored = {r[0] for r in p.engine.query("SELECT message_id FROM events")}
    assert set(acked) <= stored
    alerts = stored_alerts(server.root)
    assert {(a["person_id"], a["trigger_id"]) for a in alerts} == set(expect)
    assert Counter((a["person_id"], a["trigger_id"], a["channel"]) for a in alerts).most_common(
        1)[0][1] == 1  # one alert per person, trigger and recipient: none fired twice
    assert set(receiver.got()) == hooks
    assert set(receiver.got().values()) == {1}  # duplicates only as the same alert id
    assert {a["status"] for a in alerts if a["channel"] == "webhook"} == {"delivered"}
