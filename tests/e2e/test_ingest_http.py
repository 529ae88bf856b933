"""`leadrefinery serve`, end to end: the real server process, the real Segment and RudderStack
client libraries, and a `kill -9` right after the last acknowledgement.

The store belongs to the server while it runs (DuckDB: one writing process), so each test
sends, waits for `/health` to show the log loaded, stops the server, and then reads the store.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import httpx
import pytest
from tests.e2e.conftest import Server

from leadrefinery import Project

pytestmark = [pytest.mark.timeout(180)]

KEY = "test-key"
EXE = Path(sys.executable).with_name("leadrefinery")


@pytest.fixture
def server(tmp_path: Path):
    Project.init(tmp_path / "proj", name="e2e", write_key=KEY).close()
    s = Server(tmp_path / "proj", write_key=KEY).start()
    yield s
    s.close()


def ids_in_store(p: Project) -> dict[str, int]:
    return dict(p.engine.query("SELECT message_id, count(*) FROM events GROUP BY 1"))


def track(i: int | str = 0, **extra) -> dict:
    return {"type": "track", "userId": f"user-{i}", "event": "Logged In",
            "messageId": str(uuid.uuid4()), **extra}


# -- the real client libraries ----------------------------------------------------------------


def test_segment_client_delivers_every_event(server: Server):
    from segment.analytics import Client

    errors: list = []
    client = Client(KEY, host=server.url, on_error=lambda e, b: errors.append(e), max_retries=1,
                    upload_interval=0.05)
    sent = []
    for i in range(40):
        sent.append(client.identify(f"u{i}", {"email": f"u{i}@acme{i % 3}.com", "name": f"U {i}"},
                                    anonymous_id=f"anon-{i}")[1])
        sent.append(client.track(f"u{i}", "Environment Launched", {"guests": i % 4})[1])
        sent.append(client.page(f"u{i}", "Docs", "Pricing", {"path": "/pricing"})[1])
    sent.append(client.screen("u1", "App", "Home")[1])
    sent.append(client.group("u1", "acme0.com", {"name": "Acme", "employees": 120})[1])
    sent.append(client.alias("anon-x", "u2")[1])
    client.flush()
    sync = Client(KEY, host=server.url, sync_mode=True, gzip=True)  # one request per call
    sent.append(sync.track(anonymous_id="anon-sync", event="Pricing Viewed")[1])
    assert not errors
    server.wait_loaded()
    with server.store() as p:
        stored = ids_in_store(p)
        assert {m["messageId"] for m in sent} <= set(stored)
        assert set(stored.values()) == {1}
        assert p.engine.scalar("SELECT count(*) FROM events WHERE source = 'web'") == len(sent)
        assert p.engine.scalar("SELECT count(*) FROM events WHERE received_at IS NULL") == 0
        assert p.engine.scalar("SELECT count(*) FROM quarantine") == 0
        types = {r[0] for r in p.engine.query("SELECT DISTINCT type FROM events")}
        assert types == {"identify", "track", "page", "screen", "group", "alias"}


def test_rudderstack_client_delivers_every_event(server: Server):
    from rudderstack.analytics import Client

    errors: list = []
    client = Client(KEY, host=server.url, on_error=lambda e, b: errors.append(e), max_retries=1,
                    upload_interval=0.05)  # gzip'd bodies by default
    sent = []
    for i in range(30):
        sent.append(client.identify(f"r{i}", {"email": f"r{i}@globex.io"})[1])
        sent.append(client.track(f"r{i}", "Class Started", {"class": "k8s-101"})[1])
    sent.append(client.page("r1", "Docs", "Install")[1])
    sent.append(client.screen("r1", "App", "Home")[1])
    sent.append(client.group("r1", "globex.io", {"name": "Globex"})[1])
    sent.append(client.alias("anon-r", "r1")[1])
    client.flush()
    assert not errors
    server.wait_loaded()
    with server.store() as p:
        stored = ids_in_store(p)
        assert {m["messageId"] for m in sent} <= set(stored)
        assert set(stored.values()) == {1}


# -- the protocol -----------------------------------------------------------------------------


def test_write_key_is_required(server: Server):
    r = server.post("/v1/track", track(), key=None)
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    assert "write key" in r.json()["message"]
    r = server.post("/v1/track", track(), key="nope")
    assert r.status_code == 401 and r.json()["message"] == "unknown write key"
    r = server.post("/v1/batch", {"writeKey": "nope", "batch": [track()]}, key=None)
    assert r.status_code == 401
    ok = track()
    r = server.post("/v1/batch", {"writeKey": KEY, "batch": [ok]}, key=None)
    assert r.status_code == 200 and r.json() == {"success": True}
    server.wait_loaded()
    with server.store() as p:
        assert set(ids_in_store(p)) == {ok["messageId"]}


def test_bad_messages_are_rejected_naming_the_field(server: Server):
    r = server.post("/v1/track", {"userId": "u1"})
    assert r.status_code == 400
    assert r.json()["code"] == "invalid_message" and r.json()["field"] == "event"
    assert "'event'" in r.json()["message"]
    r = server.post("/v1/identify", {"traits": {"email": "a@b.c"}})
    assert r.status_code == 400 and r.json()["field"] == "userId"
    r = server.post("/v1/page", {"userId": "u", "timestamp": "yesterday"})
    assert r.status_code == 400 and r.json()["field"] == "timestamp"
    good = [track(1), track(2)]
    r = server.post("/v1/batch", {"batch": [*good, {"type": "group", "userId": "u"}, track(3)]})
    assert r.status_code == 400
    body = r.json()
    assert (body["field"], body["index"]) == ("groupId", 2)
    assert body["message"].startswith("batch[2]")
    r = server.post("/v1/batch", {"batch": [track(), {"userId": "u", "event": "x"}]})
    assert r.status_code == 400 and r.json()["field"] == "type" and r.json()["index"] == 1
    r = server.post("/v1/batch", {"batch": {"not": "a list"}})
    assert r.status_code == 400 and r.json()["field"] == "batch"
    r = server.post("/v1/track", b'{"userId": "u", "event": ')
    assert r.status_code == 400 and r.json()["code"] == "invalid_json"
    r = server.post("/v1/nope", track())
    assert r.status_code == 404 and "code" in r.json()
    server.wait_loaded()
    with server.store() as p:  # a rejected request stores nothing, not even its good messages
        assert ids_in_store(p) == {}


def test_gzip_bodies_and_short_paths(server: Server):
    batch = [track(i) for i in range(20)]
    r = server.post("/v1/batch", {"batch": batch}, gzipped=True)
    assert r.status_code == 200
    single = track("t")
    assert server.post("/v1/t", single, gzipped=True).status_code == 200
    r = server.post("/v1/batch", b"\x1f\x8b\x08\x00not really gzip",
                    headers={"Content-Encoding": "gzip"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_gzip"
    server.wait_loaded()
    with server.store() as p:
        assert set(ids_in_store(p)) == {m["messageId"] for m in [*batch, single]}


def test_size_limits(server: Server):
    big = track(properties={"blob": "x" * 33_000})
    r = server.post("/v1/track", big)
    assert r.status_code == 400 and r.json()["code"] == "payload_too_large"
    assert "32 KB" in r.json()["message"]
    r = server.post("/v1/batch", {"batch": [track(), big]})
    assert r.status_code == 400 and r.json()["index"] == 1
    assert r.json()["code"] == "payload_too_large"
    many = [track(i, properties={"blob": "y" * 20_000}) for i in range(30)]  # ~600 KB
    r = server.post("/v1/batch", {"batch": many})
    assert r.status_code == 400 and "500 KB" in r.json()["message"]
    r = server.post("/v1/batch", {"batch": many}, gzipped=True)  # small on the wire, not inside
    assert r.status_code == 400 and r.json()["code"] == "payload_too_large"
    near = [track(i, properties={"blob": "z" * 30_000}) for i in range(15)]  # ~450 KB: fine
    assert server.post("/v1/batch", {"batch": near}).status_code == 200
    server.wait_loaded()
    with server.store() as p:
        assert set(ids_in_store(p)) == {m["messageId"] for m in near}
        assert p.engine.scalar("SELECT count(*) FROM quarantine") == 0


def test_duplicates_enrichment_and_batch_context(server: Server):
    dup = track("d")
    for _ in range(3):
        assert server.post("/v1/track", dup).status_code == 200
    assert server.post("/v1/batch", {"batch": [dup, dup]}).status_code == 200
    no_id = {"type": "track", "userId": "n", "event": "No Id", "properties": {"k": 1}}
    merged = track("m", context={"library": {"name": "mine"}})
    r = server.post("/v1/batch", {"batch": [no_id, merged], "sentAt": "2024-05-01T10:00:00Z",
                                  "context": {"ip": "10.1.2.3", "library": {"name": "batch"}}})
    assert r.status_code == 200
    server.wait_loaded()
    log = server.health()["log"]  # each request's wait for its fsync is part of its time
    assert log["acknowledged_requests"] == 5
    assert 0 < log["durable_ms"]["max"] <= log["request_ms"]["max"]
    with server.store() as p:
        e = p.engine
        assert ids_in_store(p)[dup["messageId"]] == 1
        mid, ts, received = e.query(
            "SELECT message_id, ts, received_at FROM events WHERE event = 'No Id'")[0]
        assert uuid.UUID(mid).version == 4  # a messageId was given
        assert ts == received  # no timestamp: the server's receivedAt is the event time
        ctx = json.loads(e.scalar("SELECT context FROM events WHERE message_id = ?",
                                  [merged["messageId"]]))
        assert ctx == {"ip": "10.1.2.3", "library": {"name": "mine"}}  # the message's keys win
        assert e.scalar("SELECT count(*) FROM events") == 3


def test_serve_owns_the_store_and_says_so(server: Server):
    info = json.loads((server.root / "serve.json").read_text())
    assert info["pid"] == server.proc.pid and info["url"] == server.url
    out = subprocess.run([str(EXE), "status", "--project", str(server.root)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 4  # StoreBusy
    assert str(server.proc.pid) in out.stderr and "serve" in out.stderr
    h = server.health()
    assert h["status"] == "ok" and h["log"]["lag_bytes"] == 0 and "events" in h["counts"]
    assert httpx.get(f"{server.url}/v1/health", timeout=10).status_code == 200
    assert server.stop(signal.SIGTERM) == 0
    assert not (server.root / "serve.json").exists()


# -- durability -------------------------------------------------------------------------------


def test_kill_9_right_after_the_last_200_loses_nothing(server: Server):
    """Every acknowledged event is in the store exactly once after a kill -9 and a restart."""
    # load rarely, so that most acknowledged events are still only in the log at the kill
    server.stop()
    toml = server.root / "refinery.toml"
    toml.write_text(toml.read_text().replace("[server]\n", "[server]\nload_interval_ms = 3000\n"))
    server.start()
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(c: int) -> None:
        with httpx.Client(timeout=30, auth=(KEY, "")) as http:
            for b in range(40):
                batch = [track(f"k{c}-{i}", properties={"b": b}) for i in range(100)]
                r = http.post(f"{server.url}/v1/batch", json={"batch": batch})
                assert r.status_code == 200, r.text
                with lock:
                    acked.extend(m["messageId"] for m in batch)
                if stop.is_set():
                    return

    threads = [threading.Thread(target=client, args=(c,)) for c in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    os.kill(server.proc.pid, signal.SIGKILL)  # right after the last 200
    server.proc.wait(30)
    assert (server.root / "serve.json").exists()  # stale: the next start takes over

    server.start()
    h = server.wait_loaded(timeout=120)
    assert h["status"] == "ok"
    assert "replaying" in server.output()  # the tail was replayed, not loaded before the kill
    with server.store() as p:
        stored = ids_in_store(p)
    assert len(acked) == 16_000
    missing = set(acked) - set(stored)
    assert not missing, f"{len(missing)} acknowledged events lost"
    assert set(stored.values()) == {1}, "an event was stored twice"
    assert set(stored) == set(acked)
