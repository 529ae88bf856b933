"""The alerts outbox without a network: enqueue in transactions, recipients, retries, rendering,
the feed channel, re-queueing and the `alerts` command."""

from __future__ import annotations

import json
import random
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from leadrefinery.act.channels import (
    DeliveryError,
    FeedChannel,
    RenderContext,
    Secrets,
    render,
    sign,
    verify_signature,
)
from leadrefinery.act.delivery import Deliverer, RetryPolicy
from leadrefinery.act.outbox import (
    AlertIn,
    Recipient,
    enqueue,
    feed,
    get_alert,
    list_alerts,
    owners,
    requeue,
    requeue_dead,
    resolve_recipient,
    status_counts,
)
from leadrefinery.config import Settings
from leadrefinery.errors import InputError, NotFound
from leadrefinery.store.duckdb_engine import DuckDBEngine
from leadrefinery.store.schema import TABLES

# the tables the outbox reads and writes
OUTBOX_TABLES = ("alerts", "alert_feed", "people", "accounts", "meta")


def outbox_engine(path: Path | None = None) -> DuckDBEngine:
    e = DuckDBEngine(path)
    e.ensure_schema({k: TABLES[k] for k in OUTBOX_TABLES})
    return e


@pytest.fixture
def engine():
    e = outbox_engine()
    yield e
    e.close()


def alert(n: int = 0, **kw) -> AlertIn:
    fields = dict(
        trigger_id="hot-lead", trigger_kind="grade_reached", title=f"Lead {n} reached grade 1",
        channel="feed", person_id=f"p{n}", severity="warning",
        person={"email": f"lead{n}@acme.com", "name": f"Lead {n}", "company": "Acme"},
        change={"field": "grade", "from": 3, "to": 1, "score": 88},
        reasons=[{"rule": "pricing_page", "points": 20, "detail": "visited /pricing 3 times"}],
    )
    fields.update(kw)
    return AlertIn(**fields)


def count(engine, table: str = "alerts") -> int:
    return engine.scalar(f"SELECT count(*) FROM {table}")


# -- enqueue and transactions ---------------------------------------------------------------


def test_enqueue_in_a_rolled_back_transaction_leaves_nothing(engine):
    with pytest.raises(RuntimeError), engine.transaction():
        engine.execute("INSERT INTO people (person_id, email) VALUES ('p1', 'a@b.c')")
        enqueue(engine, [alert(1), alert(2, channel="email", recipient="rep@acme.com")])
        assert count(engine) == 2  # visible inside the transaction...
        raise RuntimeError("the trigger engine failed after writing")
    assert count(engine) == 0  # ...and gone with the state change
    assert count(engine, "people") == 0


def test_enqueue_commits_with_the_callers_transaction_not_before(engine):
    seen_inside: list[int] = []
    with engine.transaction():
        engine.execute("INSERT INTO people (person_id, email) VALUES ('p1', 'a@b.c')")
        ids = enqueue(engine, [alert(1)])
        # another thread (its own cursor) sees nothing until the caller commits
        t = threading.Thread(target=lambda: seen_inside.append(count(engine)))
        t.start()
        t.join()
    assert seen_inside == [0]
    assert count(engine) == 1 and count(engine, "people") == 1
    row = get_alert(engine, ids[0])
    assert (row.status, row.attempts, row.severity) == ("pending", 0, "warning")
    assert row.payload["reasons"][0]["rule"] == "pricing_page"
    assert row.payload["person"]["email"] == "lead1@acme.com"


def test_enqueue_outside_a_transaction_commits_on_its_own(engine):
    enqueue(engine, [alert(1)])
    assert count(engine) == 1


def test_alert_ids_are_unique_and_stable_with_a_key(engine):
    ids = enqueue(engine, [alert(i) for i in range(50)])
    assert len(set(ids)) == 50 and all(i.startswith("al_") for i in ids)
    a = alert(1, key="hot-lead|p1|2026-03-02T09:00")
    first = enqueue(engine, [a, a])  # twice in one call
    again = enqueue(engine, [a])  # and again later (e.g. a replayed trigger)
    assert first[0] == first[1] == again[0]
    assert count(engine) == 51
    # the same key to another channel is another alert
    other = enqueue(engine, [alert(1, key="hot-lead|p1|2026-03-02T09:00", channel="email",
                                   recipient="rep@acme.com")])
    assert other[0] != first[0]


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"channel": "sms"}, "unknown channel"),
        ({"severity": "urgent"}, "unknown severity"),
        ({"channel": "email", "recipient": "ann"}, "not an address"),
        ({"channel": "webhook", "recipient": ""}, "needs the name"),
    ],
)
def test_enqueue_rejects_alerts_that_cannot_be_sent(engine, fields, match):
    with pytest.raises(InputError, match=match):
        enqueue(engine, [alert(1, **fields)])
    assert count(engine) == 0


# -- recipients -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("person_owner", "account_owner", "default", "expected"),
    [
        ("ann@acme.com", "bob@acme.com", "webhook:sales",
         Recipient("email", "ann@acme.com", "person_owner")),
        (None, "bob@acme.com", "webhook:sales",
         Recipient("email", "bob@acme.com", "account_owner")),
        ("", None, "webhook:sales", Recipient("webhook", "sales", "default")),
        # a CRM owner name, looked up in [alerts].recipients
        ("Ann Lee", None, "feed", Recipient("email", "ann.lee@acme.com", "person_owner")),
        ("Unknown Rep", None, "webhook:sales", Recipient("webhook", "sales", "default")),
        ("email:carl@acme.com", None, None, Recipient("email", "carl@acme.com", "person_owner")),
        ("EMEA team", None, None, Recipient("webhook", "emea", "person_owner")),
        (None, None, None, Recipient("feed", "", "fallback")),
        (None, None, "webhook:", Recipient("feed", "", "fallback")),
        (None, None, "feed:sdr", Recipient("feed", "sdr", "default")),
    ],
)
def test_recipient_is_the_owner_else_the_account_owner_else_the_default(
    person_owner, account_owner, default, expected
):
    directory = {"Ann Lee": "ann.lee@acme.com", "EMEA team": "webhook:emea"}
    assert resolve_recipient(person_owner, account_owner, default, directory=directory) == expected


def test_owners_come_from_people_and_their_account(engine):
    engine.execute("INSERT INTO accounts (account_id, owner) VALUES ('a1', 'acct@acme.com')")
    engine.execute("INSERT INTO people (person_id, owner, account_id) VALUES "
                   "('p1', 'ann@acme.com', 'a1'), ('p2', NULL, 'a1'), ('p3', NULL, NULL)")
    got = owners(engine, ["p1", "p2", "p3", "nobody"])
    assert got == {"p1": ("ann@acme.com", "acct@acme.com"), "p2": (None, "acct@acme.com"),
                   "p3": (None, None)}
    r = resolve_recipient(*got["p2"], "feed")
    assert str(r) == "email:acct@acme.com"
    row_id = enqueue(engine, [AlertIn.to(r, trigger_id="t", trigger_kind="k", title="x")])[0]
    assert get_alert(engine, row_id).recipient == "acct@acme.com"


# -- retries --------------------------------------------------------------------------------


def test_back_off_grows_exponentially_with_jitter_and_a_cap():
    p = RetryPolicy(max_attempts=5, base=1.0, factor=2.0, cap=10.0, jitter=0.25)
    rng = random.Random(4)
    for attempt, full in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (60, 10.0),
                          (5000, 10.0)]:
        delays = [p.delay(attempt, rng) for _ in range(200)]
        assert all(0.75 * full <= d <= full for d in delays), attempt
        assert len(set(delays)) > 100  # jittered: retries of many alerts spread out
    assert not p.gives_up(4) and p.gives_up(5)
    assert RetryPolicy(jitter=0).delay(3) == 8.0


def test_retry_policy_comes_from_settings():
    s = Settings.model_validate({"alerts": {"max_attempts": 3, "retry_base_seconds": 0.5}})
    p = RetryPolicy.from_settings(s.alerts)
    assert (p.max_attempts, p.base, p.cap) == (3, 0.5, 900.0)


# -- rendering and signatures ---------------------------------------------------------------


def test_rendered_payload_has_who_what_why_and_a_link(engine):
    (aid,) = enqueue(engine, [alert(
        7, channel="webhook", recipient="sales", account_id="a1",
        account={"name": "Acme <Corp>", "domain": "acme.com"},
        evidence=[{"kind": "guests_over_limit", "detail": "40 guests in class c9 (limit 10)",
                   "class_id": "c9", "logged_in": ["u1", "u2"]}],
        data={"model_version": "v3"})])
    m = render(get_alert(engine, aid), RenderContext("acme", "https://lr.example.com",
                                                     "{base_url}/people/{person_id}"))
    b = json.loads(m.body_bytes)
    assert b["schema"] == "leadrefinery.alert.v1" and b["alert_id"] == aid
    assert b["trigger"] == {"id": "hot-lead", "kind": "grade_reached"}
    assert b["person"] == {"id": "p7", "email": "lead7@acme.com", "name": "Lead 7",
                           "company": "Acme"}
    assert b["account"]["id"] == "a1" and b["change"]["to"] == 1
    assert b["reasons"][0]["points"] == 20 and b["evidence"][0]["logged_in"] == ["u1", "u2"]
    assert b["links"]["person"] == "https://lr.example.com/people/p7"
    assert b["recipient"] == {"channel": "webhook", "address": "sales"}
    assert b["data"] == {"model_version": "v3"} and b["created_at"].endswith("Z")
    # Slack mrkdwn: bold title, the reasons, a link; <, > and & escaped
    assert b["text"].startswith(":warning: *Lead 7 reached grade 1*")
    assert "pricing_page +20: visited /pricing 3 times" in b["text"]
    assert "guests_over_limit: 40 guests in class c9 (limit 10)" in b["text"]
    assert "<https://lr.example.com/people/p7|Open in Lead Refinery>" in b["text"]
    assert m.body_bytes == render(get_alert(engine, aid), RenderContext(
        "acme", "https://lr.example.com")).body_bytes  # same body on every attempt
    row = get_alert(engine, enqueue(engine, [alert(8, title="a <b> & c")])[0])
    assert "*a &lt;b&gt; &amp; c*" in render(row, RenderContext()).text


def test_signature_verifies_only_the_exact_body_and_secret():
    body = b'{"alert_id":"al_1"}'
    sig = sign(body, "s3cret")
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert verify_signature(body, sig, "s3cret")
    assert not verify_signature(body + b" ", sig, "s3cret")
    assert not verify_signature(body, sig, "other")
    assert not verify_signature(body, None, "s3cret")


def test_secrets_come_from_the_environment_before_secrets_toml(tmp_path):
    (tmp_path / "secrets.toml").write_text(
        '[alerts]\nwebhook_secret = "fallback"\n[alerts.smtp]\npassword = "file-pw"\n'
        '[alerts.webhooks.sales]\nsecret = "file-sales"\nurl = "https://hooks.example/x"\n')
    s = Secrets.load(tmp_path)
    s.env = {}
    assert (s.webhook_secret("sales"), s.webhook_secret("ops")) == ("file-sales", "fallback")
    assert s.smtp_password() == "file-pw" and s.webhook_url("sales") == "https://hooks.example/x"
    s.env = {"LEADREFINERY_WEBHOOK_SECRET_SALES": "env-sales", "LEADREFINERY_SMTP_PASSWORD": "pw",
             "LEADREFINERY_WEBHOOK_SECRET": "env-all"}
    assert (s.webhook_secret("sales"), s.webhook_secret("ops")) == ("env-sales", "env-all")
    assert s.smtp_password() == "pw"


def test_person_url_template_is_checked_at_load():
    with pytest.raises(ValueError, match="person_url"):
        Settings.model_validate({"alerts": {"person_url": "{base_url}/p/{id}"}})


def test_settings_keep_secrets_out_of_refinery_toml():
    with pytest.raises(ValueError, match="secret"):
        Settings.model_validate({"alerts": {"webhooks": {"sales": {"url": "x", "secret": "s"}}}})
    with pytest.raises(ValueError, match="password"):
        Settings.model_validate({"alerts": {"smtp": {"password": "pw"}}})


# -- the feed channel and the deliverer without a network -----------------------------------


def settings(**alerts) -> Settings:
    base = {"poll_seconds": 0.05, "retry_base_seconds": 0.01, "retry_max_seconds": 0.05,
            "max_attempts": 3}
    return Settings.model_validate({"project": {"name": "t"}, "alerts": {**base, **alerts}})


def test_feed_alerts_land_in_the_feed_once(engine):
    ids = enqueue(engine, [alert(i) for i in range(3)] + [alert(9, recipient="sdr")])
    d = Deliverer(engine, settings())
    assert d.run_once() == 4 and d.run_once() == 0
    assert status_counts(engine) == {"pending": 0, "delivered": 4, "dead": 0}
    # sending one again (a crash between sending and recording) adds no second feed row
    FeedChannel(engine).send(render(get_alert(engine, ids[0]), d.context))
    assert count(engine, "alert_feed") == 4
    everyone = feed(engine)
    assert {f["alert_id"] for f in everyone} == set(ids)
    assert [f["alert_id"] for f in feed(engine, recipient="sdr")] != []
    assert everyone[0]["payload"]["alert_id"] == everyone[0]["alert_id"]
    assert "Lead" in everyone[0]["text"]


def test_urgent_alerts_are_claimed_ahead_of_older_ones(engine):
    """A lead asking for sales now, or a critical alert, does not wait behind a burst of
    score changes for the same receiver; otherwise the oldest due goes first."""
    now = datetime.now()
    enqueue(engine, [alert(i, created_at=now - timedelta(minutes=10 - i)) for i in range(6)]
            + [alert(7, trigger_kind="buy_readiness", severity="info", created_at=now),
               alert(8, severity="critical", created_at=now - timedelta(minutes=1))], now=now)
    d = Deliverer(engine, settings())
    got = [r.person_id for r in d.claim(4)]
    assert got[:2] == ["p8", "p7"] and got[2:] == ["p0", "p1"]


def test_the_deliverer_thread_sends_what_is_enqueued_and_woken_for(engine):
    with Deliverer(engine, settings(poll_seconds=5.0)) as d:  # poll slowly: wake() must do it
        with engine.transaction():
            enqueue(engine, [alert(i) for i in range(5)])
        d.wake()
        deadline = datetime.now() + timedelta(seconds=5)
        while status_counts(engine)["delivered"] < 5 and datetime.now() < deadline:
            threading.Event().wait(0.01)
    assert status_counts(engine)["delivered"] == 5
    assert d.stats.delivered == 5 and not d.running


def test_an_unknown_webhook_name_is_dead_at_once_and_requeue_brings_it_back(engine):
    (aid,) = enqueue(engine, [alert(1, channel="webhook", recipient="nope")])
    d = Deliverer(engine, settings())
    d.run_once()
    row = get_alert(engine, aid)
    assert row.status == "dead" and row.attempts == 1
    assert "no webhook named 'nope'" in row.last_error
    assert requeue_dead(engine) == 1
    row = get_alert(engine, aid)
    assert (row.status, row.attempts, row.last_error) == ("pending", 0, row.last_error)
    d.close()


def test_requeue_refuses_delivered_and_unknown_alerts(engine):
    (aid,) = enqueue(engine, [alert(1)])
    Deliverer(engine, settings()).run_once()
    with pytest.raises(InputError, match="delivered"):
        requeue(engine, [aid])
    with pytest.raises(NotFound):
        requeue(engine, ["al_missing"])
    assert list_alerts(engine, status="delivered")[0].alert_id == aid
    with pytest.raises(InputError):
        list_alerts(engine, status="lost")


def test_a_channel_that_raises_is_retried_then_dead(engine):
    class Refusing(FeedChannel):
        def send(self, message):
            raise DeliveryError("receiver said no")

    (aid,) = enqueue(engine, [alert(1)])
    d = Deliverer(engine, settings(max_attempts=3), channels={"feed": Refusing(engine)})
    for _ in range(3):
        d.run_once()
        row = get_alert(engine, aid)
        if row.status == "pending":
            assert row.next_attempt_at > row.created_at  # backed off
            engine.execute("UPDATE alerts SET next_attempt_at = created_at")  # skip the wait
    row = get_alert(engine, aid)
    assert (row.status, row.attempts) == ("dead", 3)
    assert row.last_error == "attempt 3: receiver said no"


# -- the command line -----------------------------------------------------------------------


def test_alerts_command_lists_and_requeues(tmp_path):
    from typer.testing import CliRunner

    from leadrefinery import Project
    from leadrefinery.cli import app

    p = Project.init(tmp_path / "proj", name="t")
    enqueue(p.engine, [alert(1), alert(2, channel="webhook", recipient="missing")])
    p.close()
    run = CliRunner().invoke
    res = run(app, ["alerts", "--deliver", "-p", str(p.root)])
    assert res.exit_code == 0, res.output
    assert "1 delivered" in res.output and "1 dead" in res.output
    res = run(app, ["alerts", "--status", "dead", "--json", "-p", str(p.root)])
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["status"] for r in rows] == ["dead"] and "missing" in rows[0]["last_error"]
    res = run(app, ["alerts", "--requeue", rows[0]["alert_id"], "-p", str(p.root)])
    assert res.exit_code == 0 and "re-queued 1" in res.output
    res = run(app, ["alerts", "--requeue", "al_nope", "-p", str(p.root)])
    assert res.exit_code == 6 and "no alert" in res.output
    res = run(app, ["alerts", "--status", "pending", "-p", str(p.root)])
    assert res.exit_code == 0 and "0 dead" in res.output
