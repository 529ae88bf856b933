"""Alert delivery against real receivers on loopback: an HTTP webhook receiver (http.server in
a thread) that can be switched to fail, hang or go down, and an SMTP server (aiosmtpd).

No mocks: the deliverer's threads, httpx and smtplib talk to real sockets. Back-offs are cut to
tens of milliseconds through settings, so every test ends within seconds.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import json
import ssl
from collections import Counter
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from tests.e2e.conftest import Receiver, free_port, wait_for

from leadrefinery.act.channels import Secrets, verify_signature
from leadrefinery.act.delivery import Deliverer
from leadrefinery.act.outbox import (
    AlertIn,
    enqueue,
    feed,
    get_alert,
    list_alerts,
    requeue_dead,
    status_counts,
)
from leadrefinery.config import Settings
from leadrefinery.store.duckdb_engine import DuckDBEngine
from leadrefinery.store.schema import TABLES

pytestmark = pytest.mark.timeout(60)

SECRET = "shared-webhook-secret"
OUTBOX_TABLES = ("alerts", "alert_feed", "people", "accounts", "meta")


# -- a real SMTP server ---------------------------------------------------------------------


class Mailbox:
    def __init__(self, refuse: set[str] | None = None) -> None:
        self.messages: list[tuple[str, list[str], bytes, bool]] = []
        self.refuse = refuse or set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content,
                              bool(session.authenticated)))
        return "250 Message accepted"

    def parsed(self) -> list[email.message.EmailMessage]:
        return [email.message_from_bytes(m[2], policy=email.policy.default)
                for m in self.messages]


def self_signed(tmp: Path) -> tuple[Path, Path]:
    crypto = pytest.importorskip("cryptography")
    del crypto
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "smtp-cert.pem", tmp / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def smtp_server():
    started: list[Controller] = []

    def start(mailbox: Mailbox, **kwargs) -> int:
        port = free_port()
        c = Controller(mailbox, hostname="127.0.0.1", port=port, **kwargs)
        c.start()
        started.append(c)
        return port

    yield start
    for c in started:
        c.stop()


# -- the store and settings -----------------------------------------------------------------


def open_store(path: Path) -> DuckDBEngine:
    e = DuckDBEngine(path)
    e.ensure_schema({k: TABLES[k] for k in OUTBOX_TABLES})
    return e


@pytest.fixture
def store(tmp_path):
    holder = {"engine": open_store(tmp_path / "store.duckdb")}
    yield holder
    holder["engine"].close()


def make_settings(receiver: Receiver | None = None, *, smtp: dict | None = None,
                  timeout: float = 2.0, **alerts) -> Settings:
    cfg = {
        "poll_seconds": 0.02, "retry_base_seconds": 0.05, "retry_factor": 2.0,
        "retry_max_seconds": 0.2, "retry_jitter": 0.2, "max_attempts": 100, "workers": 4,
        "webhooks": {"sales": {"url": receiver.url if receiver else None,
                               "timeout_seconds": timeout}},
        "smtp": smtp or {"host": "127.0.0.1", "port": 1, "security": "none"},
    }
    cfg.update(alerts)
    return Settings.model_validate({"project": {"name": "acme"},
                                    "server": {"public_url": "https://lr.example.com"},
                                    "alerts": cfg})


def secrets(**extra) -> Secrets:
    return Secrets({"alerts": {"webhooks": {"sales": {"secret": SECRET}}, **extra}}, env={})


def alerts(n: int, channel: str = "webhook", recipient: str = "sales", **kw) -> list[AlertIn]:
    return [
        AlertIn(
            trigger_id="hot-lead", trigger_kind="grade_reached", severity="critical",
            title=f"Lead {i} reached grade 1", channel=channel, recipient=recipient,
            person_id=f"p{i}", account_id="a1",
            person={"email": f"lead{i}@acme.com", "name": f"Lead {i}", "title": "CTO"},
            account={"name": "Acme", "domain": "acme.com"},
            change={"field": "grade", "from": 3, "to": 1, "score": 91},
            reasons=[{"rule": "pricing_page", "points": 25, "detail": "visited /pricing"},
                     {"rule": "environments", "points": 15, "detail": "launched 4 labs"}],
            evidence=[{"kind": "guests_over_limit", "detail": "12 guests in class c1 (limit 10)",
                       "logged_in": ["u1", "u2"], "environment": "lab-7"}],
            **kw,
        )
        for i in range(n)
    ]


def enqueue_committed(engine, items: list[AlertIn]) -> list[str]:
    with engine.transaction():
        return enqueue(engine, items)


def delivered(engine) -> int:
    return status_counts(engine)["delivered"]


# -- webhooks -------------------------------------------------------------------------------


def test_every_webhook_alert_arrives_exactly_once_signed_and_documented(store, receiver):
    e = store["engine"]
    ids = enqueue_committed(e, alerts(40))
    with Deliverer(e, make_settings(receiver), secrets=secrets()) as d:
        d.wake()
        wait_for(lambda: delivered(e) == 40, what="40 delivered")
    assert (d.stats.delivered, d.stats.failed, d.stats.errors) == (40, 0, 0)
    counts = receiver.ids()
    assert set(counts) == set(ids) and set(counts.values()) == {1}  # no duplicates
    for a in receiver.accepted:
        h = {k.lower(): v for k, v in a["headers"].items()}
        assert verify_signature(a["raw"], h["x-leadrefinery-signature"], SECRET)
        body = json.loads(a["raw"])
        assert h["x-leadrefinery-alert-id"] == h["idempotency-key"] == body["alert_id"]
        assert h["content-type"] == "application/json" and h["x-leadrefinery-attempt"] == "1"
        assert h["user-agent"].startswith("LeadRefinery/")
        assert body["schema"] == "leadrefinery.alert.v1" and body["project"] == "acme"
        assert body["severity"] == "critical"
        assert body["person"]["email"].endswith("@acme.com")
        assert body["reasons"][0]["rule"] == "pricing_page"
        assert body["evidence"][0]["environment"] == "lab-7"
        assert body["links"]["person"] == f"https://lr.example.com/people/{body['person']['id']}"
        assert body["text"].startswith(":rotating_light: *Lead") and "<https://" in body["text"]
    assert all(r.attempts == 1 and r.delivered_at for r in list_alerts(e, limit=100))


def test_receiver_down_for_a_while_then_back_gets_every_alert(store, receiver):
    e = store["engine"]
    receiver.down()
    with Deliverer(e, make_settings(receiver), secrets=secrets()) as d:
        ids = enqueue_committed(e, alerts(25))
        d.wake()
        wait_for(lambda: all(r.attempts >= 3 for r in list_alerts(e, limit=100)),
                 what="three failed attempts each")
        assert delivered(e) == 0
        assert "ConnectError" in list_alerts(e, limit=1)[0].last_error
        receiver.up()
        wait_for(lambda: delivered(e) == 25, what="all delivered after the receiver is back")
    counts = receiver.ids()
    assert set(counts) == set(ids) and set(counts.values()) == {1}  # each once: acked in time


def test_failing_receiver_backs_off_then_dead_letters_and_requeue_delivers(store, receiver):
    e = store["engine"]
    receiver.mode = "fail"
    s = make_settings(receiver, max_attempts=4, retry_base_seconds=0.1,
                      retry_max_seconds=0.3, retry_jitter=0.2)
    with Deliverer(e, s, secrets=secrets()) as d:
        ids = enqueue_committed(e, alerts(3))
        d.wake()
        wait_for(lambda: status_counts(e)["dead"] == 3, what="all dead")
        for aid in ids:
            row = get_alert(e, aid)
            assert row.attempts == 4 and row.next_attempt_at is None
            assert row.last_error.startswith("attempt 4: webhook sales: HTTP 503")
            times = [t for t, a, _, _ in receiver.requests if a == aid]
            attempts = [n for _, a, n, _ in receiver.requests if a == aid]
            assert attempts == [1, 2, 3, 4]  # then it stopped: dead
            gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
            # 0.1, 0.2, then capped at 0.3; each less up to 20 % jitter; plus polling slack
            for gap, full in zip(gaps, [0.1, 0.2, 0.3], strict=True):
                assert 0.8 * full - 0.01 <= gap <= full + 0.25, gaps
        assert receiver.ids() == Counter()
        receiver.mode = "ok"
        assert requeue_dead(e) == 3
        d.wake()
        wait_for(lambda: delivered(e) == 3, what="re-queued alerts delivered")
    assert set(receiver.ids()) == set(ids)


def test_a_permanent_refusal_goes_dead_at_once(store, receiver):
    e = store["engine"]
    receiver.mode = "gone"
    with Deliverer(e, make_settings(receiver), secrets=secrets()) as d:
        (aid,) = enqueue_committed(e, alerts(1))
        d.wake()
        wait_for(lambda: status_counts(e)["dead"] == 1)
    row = get_alert(e, aid)
    assert row.attempts == 1 and "HTTP 404" in row.last_error


def test_slow_receiver_may_see_an_alert_twice_with_the_same_id(store, receiver):
    """At least once: when the receiver answers after the sender's timeout, the alert is sent
    again — with the same alert id (and body), so the receiver can drop the copy."""
    e = store["engine"]
    receiver.mode, receiver.delay = "slow_once", 0.6
    with Deliverer(e, make_settings(receiver, timeout=0.25), secrets=secrets()) as d:
        ids = enqueue_committed(e, alerts(3))
        d.wake()
        wait_for(lambda: delivered(e) == 3)
        wait_for(lambda: sum(receiver.ids().values()) == 6, what="the slow copies to land")
    counts = receiver.ids()
    assert set(counts) == set(ids) and set(counts.values()) == {2}
    by_id: dict[str, set[bytes]] = {}
    for a in receiver.accepted:
        by_id.setdefault(json.loads(a["raw"])["alert_id"], set()).add(a["raw"])
    assert all(len(bodies) == 1 for bodies in by_id.values())  # identical copies
    assert all("no answer within 0.25s" in get_alert(e, i).last_error for i in ids)


def test_a_restarted_process_resumes_undelivered_alerts(tmp_path, store, receiver):
    e = store["engine"]
    receiver.down()
    s = make_settings(receiver)
    d = Deliverer(e, s, secrets=secrets())
    d.start()
    ids = enqueue_committed(e, alerts(10))
    d.wake()
    wait_for(lambda: all(r.attempts >= 1 for r in list_alerts(e)))
    assert d.stop()
    e.close()  # the process ends

    e = store["engine"] = open_store(tmp_path / "store.duckdb")
    assert status_counts(e)["pending"] == 10
    # a process killed mid-send leaves claimed rows: the next deliverer releases them
    e.execute("UPDATE alerts SET claimed_at = next_attempt_at, claimed_by = 'dead-process' "
              "WHERE alert_id IN (?, ?)", ids[:2])
    receiver.up()
    with Deliverer(e, s, secrets=secrets()) as d2:
        d2.wake()
        wait_for(lambda: delivered(e) == 10, what="resumed alerts delivered")
    assert set(receiver.ids()) == set(ids)


def test_a_hanging_receiver_holds_up_no_other_receiver(store, receiver, smtp_server):
    e = store["engine"]
    receiver.mode, receiver.delay = "slow_once", 3.0  # hangs past the sender's timeout
    box = Mailbox()
    port = smtp_server(box)
    s = make_settings(receiver, timeout=1.5, workers=4,
                      smtp={"host": "127.0.0.1", "port": port, "security": "none"})
    with Deliverer(e, s, secrets=secrets()) as d:
        hooks = enqueue_committed(e, alerts(8))  # more than there are sender threads
        others = enqueue_committed(e, alerts(3, channel="email", recipient="rep@acme.com")
                                   + alerts(3, channel="feed", recipient=""))
        d.wake()
        wait_for(lambda: delivered(e) == 6, timeout=1.2, what="email and feed while hooks hang")
        assert {r.alert_id for r in list_alerts(e, status="delivered")} == set(others)
        assert all(get_alert(e, h).status == "pending" for h in hooks)
        # at most per_receiver (workers // 2) sends to the hanging receiver at once
        assert len(receiver.requests) <= 2
        d.stop(timeout=10)


# -- email ----------------------------------------------------------------------------------


def test_email_alerts_arrive_as_text_and_html_with_a_stable_message_id(store, smtp_server):
    e = store["engine"]
    box = Mailbox()
    port = smtp_server(box)
    s = make_settings(smtp={"host": "127.0.0.1", "port": port, "security": "none",
                            "from_address": "Lead Refinery <alerts@refinery.acme.com>"})
    ids = enqueue_committed(e, alerts(5, channel="email", recipient="Ann <ann@acme.com>"))
    with Deliverer(e, s, secrets=secrets()) as d:
        d.wake()
        wait_for(lambda: delivered(e) == 5)
    assert len(box.messages) == 5
    assert {m[1][0] for m in box.messages} == {"ann@acme.com"}
    assert {m[0] for m in box.messages} == {"alerts@refinery.acme.com"}
    by_id = {}
    for msg in box.parsed():
        by_id[msg["X-LeadRefinery-Alert-Id"]] = msg
        assert msg["Message-ID"] == f"<{msg['X-LeadRefinery-Alert-Id']}@refinery.acme.com>"
        assert msg["Subject"].startswith("[critical] Lead ")
        assert msg["Auto-Submitted"] == "auto-generated"
        assert msg.get_content_type() == "multipart/alternative"
        text = msg.get_body(("plain",)).get_content()
        html = msg.get_body(("html",)).get_content()
        assert "pricing_page +25: visited /pricing" in text
        assert "Open in Lead Refinery: https://lr.example.com/people/p" in text
        assert "<li>pricing_page +25: visited /pricing</li>" in html
        assert 'href="https://lr.example.com/people/p' in html
        assert "12 guests in class c1" in text and "12 guests in class c1" in html
    assert set(by_id) == set(ids)


@pytest.mark.parametrize("security", ["starttls", "ssl"])
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_email_over_tls_with_login(store, smtp_server, tmp_path, security):
    cert, key = self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        assert isinstance(auth_data, LoginPassword)
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"smtp-pw")

    box = Mailbox()
    tls = ({"tls_context": server_tls, "require_starttls": True} if security == "starttls"
           # aiosmtpd counts only STARTTLS as TLS for AUTH; this session is TLS from the start
           else {"ssl_context": server_tls, "auth_require_tls": False})
    port = smtp_server(box, authenticator=authenticator, auth_required=True, **tls)
    s = make_settings(smtp={"host": "127.0.0.1", "port": port, "security": security,
                            "user": "refinery", "ca_file": str(cert)})
    e = store["engine"]
    enqueue_committed(e, alerts(2, channel="email", recipient="rep@acme.com"))
    with Deliverer(e, s, secrets=secrets(smtp={"password": "smtp-pw"})) as d:
        d.wake()
        wait_for(lambda: delivered(e) == 2)
    assert len(box.messages) == 2 and all(m[3] for m in box.messages)  # authenticated
    assert set(logins) == {(b"refinery", b"smtp-pw")}


def test_a_refused_recipient_is_dead_at_once_others_still_arrive(store, smtp_server):
    e = store["engine"]
    box = Mailbox(refuse={"gone@acme.com"})
    port = smtp_server(box)
    s = make_settings(smtp={"host": "127.0.0.1", "port": port, "security": "none"})
    (bad,) = enqueue_committed(e, alerts(1, channel="email", recipient="gone@acme.com"))
    (good,) = enqueue_committed(e, alerts(1, channel="email", recipient="rep@acme.com"))
    with Deliverer(e, s, secrets=secrets()) as d:
        d.wake()
        wait_for(lambda: get_alert(e, bad).status == "dead" and delivered(e) == 1)
    assert "550" in get_alert(e, bad).last_error and get_alert(e, bad).attempts == 1
    assert len(box.messages) == 1


def test_smtp_server_down_then_back(store, smtp_server):
    e = store["engine"]
    port = free_port()  # nothing listens yet
    s = make_settings(smtp={"host": "127.0.0.1", "port": port, "security": "none",
                            "timeout_seconds": 1.0})
    with Deliverer(e, s, secrets=secrets()) as d:
        ids = enqueue_committed(e, alerts(4, channel="email", recipient="rep@acme.com"))
        d.wake()
        wait_for(lambda: all(r.attempts >= 2 for r in list_alerts(e)))
        box = Mailbox()
        c = Controller(box, hostname="127.0.0.1", port=port)
        c.start()
        try:
            wait_for(lambda: delivered(e) == 4)
        finally:
            c.stop()
    got = Counter(m["X-LeadRefinery-Alert-Id"] for m in box.parsed())
    assert set(got) == set(ids) and set(got.values()) == {1}


# -- a shared PostgreSQL store: several deliverers side by side -----------------------------


@pytest.fixture
def pg_engine():
    import os
    import uuid

    dsn = os.environ.get("LEADREFINERY_PG_DSN")
    if not dsn:
        pytest.skip("no PostgreSQL server: LEADREFINERY_PG_DSN is not set "
                    "(scripts/test-services.sh starts one)")
    from leadrefinery.store.postgres_engine import PostgresEngine

    schema = f"outbox_{uuid.uuid4().hex[:10]}"
    e = PostgresEngine(dsn, schema=schema)
    e.ensure_schema({k: TABLES[k] for k in OUTBOX_TABLES})
    yield e
    try:
        e.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        e.close()


@pytest.mark.postgres
def test_two_deliverers_on_a_shared_postgres_store_send_each_alert_once(pg_engine, receiver):
    e = pg_engine
    with pytest.raises(RuntimeError), e.transaction():
        enqueue(e, alerts(3))
        raise RuntimeError("rolled back")
    assert status_counts(e)["pending"] == 0
    s = make_settings(receiver)
    ids = enqueue_committed(e, alerts(40) + alerts(5, channel="feed", recipient=""))
    with Deliverer(e, s, secrets=secrets()) as a, Deliverer(e, s, secrets=secrets()) as b:
        a.wake()
        b.wake()
        wait_for(lambda: delivered(e) == 45, what="45 delivered by two deliverers")
    counts = receiver.ids()
    assert len(counts) == 40 and set(counts.values()) == {1}  # claimed by one of them only
    assert set(counts) | {f["alert_id"] for f in feed(e, limit=10)} == set(ids)
    assert a.stats.delivered + b.stats.delivered == 45
