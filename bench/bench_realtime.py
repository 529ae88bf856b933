"""Real time under load: `/v1/batch` ingestion with incremental rescoring on vs off (the floor),
and how long an event takes to become a delivered webhook alert.

    .venv/bin/python bench/bench_realtime.py [--clients 6] [--procs 1] [--seconds 20] [--batch 100]
                        [--rate 20000] [--people 200000] [--history 1500] [--probes-per-s 5]
                        [--sessions 0] [--modes off,on] [--repeat 1] [--shield]

For each mode, on a fresh project with the demo scoring model (`sample/model.yaml`) and
`--history` generated trial users already ingested:

* `off`: `[triggers] enabled = false` — the server only acknowledges and loads (the floor);
* `on`:  a trigger file beside the model; every loaded micro-batch's people are rescored with
  the compiled model, compared with their last state, triggers fire into the outbox, the
  deliverer POSTs them to a webhook receiver in this process.

`--clients` keep-alive connections (threads of `--procs` client processes) send `/v1/batch`
requests of `--batch` events for `--seconds`: paced to `--rate` events/s in total (open loop:
latency counts from when a request was due, so queueing shows), or as fast as answered with
`--rate 0`. Every body is built before the clock starts.
`LR_BENCH_SET='store.threads=1;server.checkpoint_mb=64'` sets project settings for an experiment.
About `--probes-per-s` times a second a client
puts a *probe* in its batch: a new trial user who asks to talk to sales (`Contact Sales
Requested`, a buy-readiness trigger that fires once per person). Event -> webhook latency is
from the acknowledgement of the request carrying the probe to its alert reaching the receiver.
The probe takes the hot lane (act/realtime.py): evaluated once its request is durable, not
after the loader has stored it. About `--warm-per-s` times a second a request also carries a
*warm lead*: a known person of the history whose score is just below grade 1's line (60 to 70)
reading pricing, security and API pages, launching a class, clicking e-mails — enough points, in
most cases, to reach grade 1 (the `hot_lead` trigger). That alert needs the lead rescored: it
takes the warm lane (people just below a line are scored as soon as their request is durable,
over their stored events and those received; `LR_BENCH_SET='triggers.warm_lane=false'`: the
urgent lane, after the load). Reported: warm e2w p50/p99, the warm lane's lag (received ->
committed, every message it scored), and `warm_lost` — warm leads at grade 1 after the run
whose alert never arrived. About
`--abusers-per-s` times a second a request carries a new trial user starting a class of 40
guests (10 allowed: the model's `too_many_guests`, an abuse rule one event raises, so the fast
lane announces it with the event, no rescore). Reported: abuse e2w p50/p99 and abusers lost.

Reports per mode: events/s acknowledged, client p50/p99 request latency, the server's own
p99 (handler to acknowledgement), rescoring batches and their lag (hook to commit, p99), the
rescoring backlog (people waiting) when sending stopped and how long until everything was loaded
and rescored (`drain`; in `off` mode: loaded — the ingestion floor), event -> webhook
p50/p99/max and probes lost, and the load average; the JSON lines add the server's split of a
request (`durable_ms`: waiting for the log's fsync, `commit_ms`: the fsync itself) and more.
`--repeat N` runs the modes N times, interleaved, and adds each mode's median: single runs vary
a lot on a shared machine. `--shield` (root) runs the server and the clients 10 nice levels
above other work on a shared machine. The request loop is
bench/loadgen.py, shared with bench_http_ingest.py. Targets (DESIGN.md, issue 5): >= 20k
events/s with rescoring on, p99 request <= 50 ms, event -> webhook p99 <= 1 s, on 2 cores. The
clients and the receiver share the machine with the server: figures are a lower bound.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
from loadgen import cpu_seconds, fork_clients, free_port, get_json, shield

WRITE_KEY = "bench-key"
SAMPLE_MODEL = Path(__file__).parents[1] / "src" / "leadrefinery" / "sample" / "model.yaml"
TRIGGERS = """\
version: 1
defaults: {cooldown: 24h, to: "webhook:bench"}
triggers:
  - {id: hot_lead, kind: grade, at_least: "1"}
  - id: buy_ready
    kind: action
    events: [Contact Sales Requested, Documentation Purchased, Training Registered]
    fast_track: false
  - {id: abuse, kind: abuse, severity: critical}
"""
PAGES = ["/", "/blog/labs", "/product", "/features/classes", "/docs/getting-started",
         "/docs/api/envs", "/pricing", "/docs/security"]
EVENTS = ["Logged In", "Environment Launched", "Environment Stopped", "Email Clicked"]


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


class Visitors:
    """Who sends the next event: a random one of `people` users each time (`sessions=0`, the
    worst case for per-person rescoring), or one of `active` users in a session, each session
    `sessions` events long on average before a random user takes its place."""

    def __init__(self, rng: random.Random, people: int | list[str], sessions: int,
                 active: int = 300) -> None:
        self.rng, self.people, self.sessions = rng, people, sessions
        self.n = len(people) if isinstance(people, list) else people
        self.active = [rng.randrange(self.n) for _ in range(active)] if sessions else []

    def next(self) -> tuple[int, str]:
        if not self.sessions:
            p = self.rng.randrange(self.n)
        else:
            k = self.rng.randrange(len(self.active))
            if self.rng.random() < 1 / self.sessions:
                self.active[k] = self.rng.randrange(self.n)
            p = self.active[k]
        return p, self.people[p] if isinstance(self.people, list) else f"user-{p}"


WARM_PAGES = ["/pricing", "/docs/security", "/docs/sso", "/docs/api/envs", "/docs/api/auth",
              "/docs/api/classes", "/features/classes", "/case-studies/acme", "/product"]


def warm_events(uid: str, now: float) -> list[dict]:
    """What a warm lead does in one request: about 30 points of engagement, before caps."""
    base = {"userId": uid, "timestamp": iso(now)}
    msgs = [{**base, "type": "page", "name": "Page", "properties": {"path": p}}
            for p in WARM_PAGES]
    msgs += [{**base, "type": "track", "event": "Environment Launched", "properties": {
        "environment_id": f"warm-{uid}-{k}", "guests": 4, "template": "data-science"}}
        for k in range(2)]
    msgs += [{**base, "type": "track", "event": "Email Clicked", "properties": {}}
             for _ in range(3)]
    return [{**m, "messageId": str(uuid.uuid4())} for m in msgs]


def abuse_events(uid: str, now: float) -> list[dict]:
    """A new trial user starting a class of 40 guests (10 allowed)."""
    base = {"userId": uid, "timestamp": iso(now)}
    return [{**base, "messageId": str(uuid.uuid4()), **m} for m in (
        {"type": "identify", "traits": {"email": f"{uid}@abuse.example", "company": "Abuse Co"}},
        {"type": "track", "event": "Environment Launched", "properties": {
            "environment_id": f"env-{uid}", "guests": 40, "template": "windows-lab",
            "class_id": f"class-{uid}"}})]


def make_batch(rng: random.Random, size: int, who: Visitors, probe: str | None,
               warm: str | None = None, abuser: str | None = None) -> bytes:
    now = time.time()
    msgs = warm_events(warm, now) if warm else []
    msgs += abuse_events(abuser, now) if abuser else []
    for _ in range(size - (2 if probe else 0) - len(msgs)):
        p, uid = who.next()
        base = {"messageId": str(uuid.uuid4()), "userId": uid, "timestamp": iso(now),
                "context": {"library": {"name": "bench", "version": "1"},
                            "ip": f"10.0.{p % 255}.{p % 199}"}}
        r = rng.random()
        if r < 0.05:
            base |= {"type": "identify", "traits": {
                "email": f"{uid}@example{p % 97}.com", "company": f"Co {p % 97}",
                "title": rng.choice(["Engineer", "Trainer", "CTO", "Student"])}}
        elif r < 0.45:
            base |= {"type": "page", "name": "Page",
                     "properties": {"path": rng.choice(PAGES)}}
        else:
            base |= {"type": "track", "event": rng.choice(EVENTS), "properties": {
                "environment_id": f"env-{p}-{rng.randrange(3)}", "guests": rng.randrange(6),
                "template": "linux-lab"}}
        msgs.append(base)
    if probe:
        msgs.append({"messageId": str(uuid.uuid4()), "userId": probe, "type": "identify",
                     "timestamp": iso(now), "traits": {"email": f"{probe}@probe.example",
                                                       "company": "Probe Inc"}})
        msgs.append({"messageId": str(uuid.uuid4()), "userId": probe, "type": "track",
                     "event": "Contact Sales Requested", "timestamp": iso(now),
                     "properties": {"topic": "bench"}})
    return orjson.dumps({"batch": msgs, "sentAt": iso(now)})


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.arrived: dict[str, float] = {}  # probe user -> first arrival
        self.created: dict[str, float] = {}  # probe user -> its alert's created_at (fast lane)
        self.warm: dict[str, float] = {}  # person -> first arrival of its hot_lead alert
        self.abuse: dict[str, float] = {}  # abuser -> first arrival of its abuse alert
        self.count = 0
        self.lock = threading.Lock()
        rx = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                now = time.time()
                with rx.lock:
                    rx.count += 1
                    pid = (body.get("person") or {}).get("id", "")
                    if body["trigger"]["id"] == "hot_lead":
                        rx.warm.setdefault(pid, now)
                    if body["trigger"]["id"] == "abuse" and pid.startswith("abuser-"):
                        rx.abuse.setdefault(pid, now)
                    if body["trigger"]["id"] == "buy_ready" and pid.startswith("probe-"):
                        rx.arrived.setdefault(pid, now)
                        rx.created.setdefault(pid, datetime.fromisoformat(
                            body["created_at"].replace("Z", "+00:00")).timestamp())
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        """Forget an earlier run's alerts (a later run reuses the names)."""
        with self.lock:
            for d in (self.arrived, self.created, self.warm, self.abuse):
                d.clear()


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q))]


def prepare(work: Path, mode: str, args, receiver: Receiver) -> Path:
    from leadrefinery import Project

    root = work / f"proj-{mode}"
    shutil.rmtree(root, ignore_errors=True)  # an earlier round's (--repeat)
    Project.init(root, name=f"bench-rt-{mode}", write_key=WRITE_KEY).close()
    with (root / "refinery.toml").open("a") as f:
        f.write(f"""
[alerts]
poll_seconds = 0.5

[alerts.webhooks.bench]
url = "http://127.0.0.1:{receiver.port}/hook"

[triggers]
enabled = {"true" if mode == "on" else "false"}
sweep_seconds = 0
abuse_sweep_seconds = 0
unusual_seconds = 0
max_batch_people = {args.max_batch}
""")
    toml = (root / "refinery.toml").read_text()
    for item in filter(None, os.environ.get("LR_BENCH_SET", "").split(";")):  # experiments
        key, value = item.split("=", 1)
        toml = set_setting(toml, *key.rsplit(".", 1), value)
    (root / "refinery.toml").write_text(toml)
    shutil.copy(SAMPLE_MODEL, root / "model.yaml")
    (root / "triggers.yaml").write_text(TRIGGERS)
    if args.store:  # a deployment's store (bench_rescore's: 200 k people, 9.9 M events)
        shutil.copy(args.store, root / "store.duckdb")
        with Project(root) as p:
            p.score()
            args.known = [r[0] for r in p.engine.query("SELECT person_id FROM people")]
    elif args.history:
        from leadrefinery.sample import generate

        data = work / "history"
        if not (data / "events.jsonl").exists():
            generate(data, people=args.history, months=2, seed=5)
        with Project(root) as p:
            p.ingest([data / "events.jsonl"])
            p.score()  # a full run, as a deployment would have
    with Project(root) as p:  # warm leads: a good fit, active two days ago; 60 to 70 points
        if mode == "on" and args.warm_per_s > 0:
            p.ingest([write_warm_history(work / f"warm-{mode}.jsonl",
                                         int(args.seconds * args.warm_per_s) + 10)])
            p.score()
        args.warm = [r[0] for r in p.engine.query(
            "SELECT person_id FROM latest_scores WHERE person_id LIKE 'warm-%' "
            "AND score >= 60 AND score < 70 ORDER BY person_id")]
    return root


def set_setting(toml: str, section: str, name: str, value: str) -> str:
    """`toml` with `name = value` in `[section]`: the key's line replaced, else added."""
    lines, head, at = toml.splitlines(), f"[{section}]", None
    for i, line in enumerate(lines):
        if line.strip() == head:
            at = i
        elif at is not None and line.startswith("["):
            break
        elif at is not None and line.split("=", 1)[0].strip() == name:
            lines[i] = f"{name} = {value}"
            return "\n".join(lines) + "\n"
    if at is None:
        return f"{toml}\n{head}\n{name} = {value}\n"
    lines.insert(at + 1, f"{name} = {value}")
    return "\n".join(lines) + "\n"


def write_warm_history(path: Path, n: int) -> Path:
    then = time.time() - 2 * 86400
    with path.open("wb") as f:
        for k in range(n):
            uid = f"warm-{k:04d}"
            msgs = [{"type": "identify", "userId": uid, "timestamp": iso(then), "traits": {
                "email": f"{uid}@acme{k}.com", "company": f"Acme{k}",
                "title": "Head of Training", "emailVerified": True, "phoneVerified": True}}]
            msgs += [{"type": "track", "userId": uid, "event": "Logged In",
                      "timestamp": iso(then + 60 * j), "properties": {}} for j in range(2)]
            msgs += [{"type": "track", "userId": uid, "event": "Environment Launched",
                      "timestamp": iso(then + 120 + j), "properties": {
                          "environment_id": f"{uid}-old-{j}", "guests": 4,
                          "template": "data-science"}} for j in range(2)]
            msgs += [{"type": "page", "userId": uid, "name": "Page", "timestamp": iso(then + 180),
                      "properties": {"path": "/pricing"}},
                     {"type": "track", "userId": uid, "event": "Email Clicked",
                      "timestamp": iso(then + 240), "properties": {}}]
            for m in msgs:
                f.write(orjson.dumps({**m, "messageId": str(uuid.uuid4())}) + b"\n")
    return path


def run_mode(work: Path, mode: str, args, receiver: Receiver) -> dict:
    from leadrefinery import Project

    root = prepare(work, mode, args, receiver)
    receiver.reset()
    port = free_port()
    exe = Path(sys.executable).with_name("leadrefinery")
    log = work / f"server-{mode}.log"
    proc = subprocess.Popen([str(exe), "serve", "--project", str(root), "--port", str(port)],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while True:
            try:
                rt = get_json(port, "/v1/realtime")
                if mode == "off" or rt.get("running") and rt.get("sweeps", {}).get("startup"):
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"server did not start:\n{log.read_text()}")
            time.sleep(0.2)
        if args.shield and not (shield(proc.pid) and shield(os.getpid())):
            print("--shield needs root; running unshielded", file=sys.stderr)
            args.shield = False
        # every request body made before the clock starts: building 20,000 events a second
        # in the client process (one GIL for all its threads) delayed its own sends and reads
        # and so inflated the latencies it measured
        # (closed loop, --rate 0: bodies for 40,000 events/s — more than 2 cores can take)
        interval = args.batch * args.clients / (args.rate or 40_000)
        schedule = sorted(
            (interval * c / args.clients + i * interval, c, i)
            for c in range(args.clients)
            for i in range(int(args.seconds / interval) + 1)
        )
        probes: dict[tuple[int, int], str] = {}  # (client, request) -> its probe
        if mode == "on":  # the first request due at or after each probe tick carries one
            tick = 0.0
            for due, c, i in schedule:
                if due >= tick:
                    probes[c, i] = f"probe-{mode}-{len(probes) + 1}"
                    tick += max(1.0 / args.probes_per_s, 0.01)
        warm: dict[tuple[int, int], str] = {}  # (client, request) -> a warm lead
        if mode == "on" and args.warm_per_s > 0:
            tick, leads = 0.0, list(args.warm)
            for due, c, i in schedule:
                if due >= tick and leads and (c, i) not in probes:
                    warm[c, i] = leads.pop(0)
                    tick += 1.0 / args.warm_per_s
        abusers: dict[tuple[int, int], str] = {}  # (client, request) -> a new abuser
        if mode == "on" and args.abusers_per_s > 0:
            tick = 0.5 / args.abusers_per_s  # between the probes' and warm leads' ticks
            for due, c, i in schedule:
                if due >= tick and (c, i) not in probes and (c, i) not in warm:
                    abusers[c, i] = f"abuser-{mode}-{len(abusers) + 1}"
                    tick += 1.0 / args.abusers_per_s
        rngs = [random.Random(c) for c in range(args.clients)]
        users = getattr(args, "known", None) or args.people
        who = [Visitors(rngs[c], users, args.sessions) for c in range(args.clients)]
        bodies = {(c, i): make_batch(rngs[c], args.batch, who[c], probes.get((c, i)),
                                     warm.get((c, i)), abusers.get((c, i)))
                  for _, c, i in schedule}
        load0 = os.getloadavg()
        cpu0 = cpu_seconds(proc.pid)
        auth = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
        sent = fork_clients(args.procs, port, auth, clients=args.clients, batch=args.batch,
                            rate=args.rate, seconds=args.seconds,
                            body=lambda c, i: bodies.get((c, i)))
        # probe / warm lead / abuser -> when its request was acknowledged (wall clock)
        acked = {p: sent.acked_at[k] for k, p in probes.items() if k in sent.acked_at}
        warm_acked = {p: sent.acked_at[k] for k, p in warm.items() if k in sent.acked_at}
        abuse_acked = {p: sent.acked_at[k] for k, p in abusers.items() if k in sent.acked_at}
        elapsed = sent.last - sent.t0
        pl = [v for k, v in sent.latency.items() if k in probes]
        load1 = os.getloadavg()
        cpu1 = cpu_seconds(proc.pid)
        backlog = get_json(port, "/v1/realtime").get("pending_people", 0)
        # wait for the store and the rescoring lane to catch up, and for the probes' alerts
        ended = time.time()
        deadline = ended + args.drain
        drained = None
        while time.time() < deadline:
            h = get_json(port, "/health")
            rt = get_json(port, "/v1/realtime")
            with receiver.lock:
                arrived = sum(1 for p in acked if p in receiver.arrived)
                arrived += sum(1 for p in warm_acked if p in receiver.warm)
                arrived += sum(1 for p in abuse_acked if p in receiver.abuse)
            if h["log"]["lag_bytes"] == 0 and (mode == "off" or rt.get("idle")):
                drained = drained or time.time() - ended
                if arrived == len(acked) + len(warm_acked) + len(abuse_acked):
                    break
            time.sleep(0.25)
        health = get_json(port, "/health")
        rt = get_json(port, "/v1/realtime")
        with receiver.lock:
            e2w = [receiver.arrived[p] - t for p, t in acked.items() if p in receiver.arrived]
            lost = [p for p in acked if p not in receiver.arrived]
            # the two halves: ack -> the fast lane takes it up (log, load, wait for the lane);
            # then -> delivered (the lane's transaction, the deliverer's claim and POST)
            to_lane = [receiver.created[p] - t for p, t in acked.items() if p in receiver.created]
            to_rx = [receiver.arrived[p] - receiver.created[p] for p in acked
                     if p in receiver.created]
            warm_e2w = [receiver.warm[p] - t for p, t in warm_acked.items()
                        if p in receiver.warm]
            abuse_e2w = [receiver.abuse[p] - t for p, t in abuse_acked.items()
                         if p in receiver.abuse]
        proc.send_signal(signal.SIGTERM)  # the store is the server's until it exits
        proc.wait(120)
        with Project(root) as p:  # the warm leads that reached grade 1 should have alerted
            hot = {r[0] for r in p.engine.query(
                "SELECT person_id FROM latest_scores WHERE grade = '1' AND person_id = ANY(?)",
                [list(warm_acked)])} if warm_acked else set()
        return {
            "mode": mode,
            "events_per_s": sent.events / elapsed,
            "events": sent.events,
            "errors": len(sent.errors),
            "req_p50_ms": 1000 * pct(sent.latencies, 0.5),
            "req_p99_ms": 1000 * pct(sent.latencies, 0.99),
            # requests carrying a probe (new leads asking for sales), and the others
            "probe_req_ms": {"p50": 1000 * pct(pl, 0.5), "max": 1000 * max(pl)} if pl else {},
            "other_req_p99_ms": 1000 * pct([v for k, v in sent.latency.items()
                                            if k not in probes], 0.99),
            "server_req_ms": health["log"].get("request_ms", {}),
            "rescore_batches": rt.get("batches", 0),
            "rescore_people": rt.get("people", 0),
            "rescore_lag_ms": rt.get("batch_lag_ms", {}),
            "rescore_backlog_people": backlog,  # waiting for rescoring when sending stopped
            "drain_s": drained,  # from then until loaded and rescored
            "fast_lane_lag_ms": rt.get("fast_lag_ms", {}),
            "hot_lane_lag_ms": rt.get("hot_lag_ms", {}),  # received -> alert committed
            "hot_dropped": rt.get("hot_dropped", 0),
            "realtime_errors": rt.get("errors", 0), "last_error": rt.get("last_error"),
            "loader_last_batch_s": health["loader"].get("last_batch_seconds"),
            "recent_batches": rt.get("recent_batches", []),
            "probes": len(acked),
            "e2w_p50_s": pct(e2w, 0.5),
            "e2w_p99_s": pct(e2w, 0.99),
            "e2w_max_s": max(e2w) if e2w else None,
            "ack_to_lane_s": {"p50": pct(to_lane, 0.5), "p99": pct(to_lane, 0.99)},
            "lane_to_rx_s": {"p50": pct(to_rx, 0.5), "p99": pct(to_rx, 0.99)},
            "fast_batch_ms": rt.get("fast_batch_ms", {}),
            "loader_batch_ms": health["loader"].get("batch_ms", {}),
            "loop_lag_ms": health["log"].get("loop_lag_ms", {}),
            "commit_ms": health["log"].get("commit_ms", {}),
            # the log's write + fsync, and a request's wait for it (fsyncs queue behind one
            # another and behind the store's own writes on the same disk)
            "durable_ms": health["log"].get("durable_ms", {}),
            "probes_lost": len(lost),
            "warm": len(warm_acked), "warm_hot": len(hot),
            "warm_alerted": sum(1 for p in warm_acked if p in receiver.warm),
            "warm_lost": len(hot - set(receiver.warm)),
            "warm_e2w_p50_s": pct(warm_e2w, 0.5), "warm_e2w_p99_s": pct(warm_e2w, 0.99),
            "warm_e2w_max_s": max(warm_e2w) if warm_e2w else None,
            "urgent_lag_ms": rt.get("urgent_lag_ms", {}),
            "warm_lane_lag_ms": rt.get("warm_lag_ms", {}),  # received -> scored, committed
            "near": rt.get("near"),
            "abusers": len(abuse_acked), "abusers_lost": len(abuse_acked) - len(abuse_e2w),
            "abuse_e2w_p50_s": pct(abuse_e2w, 0.5), "abuse_e2w_p99_s": pct(abuse_e2w, 0.99),
            "load_before": load0,
            "load_after": load1,
            "server_cpu_s": round(cpu1 - cpu0, 2),  # of the two cores' 2 x --seconds
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()


def fmt(v, unit="", nd=1) -> str:
    if v is None:
        return "—"
    return f"{v:,.{nd}f}{unit}"


def row(r: dict, label: str | None = None) -> str:
    """One line of the table."""
    srv = r["server_req_ms"].get("p99") if r["server_req_ms"] else None
    lag = r["rescore_lag_ms"].get("p99") if r["rescore_lag_ms"] else None
    return (f"{label or r['mode']:<5} {fmt(r['events_per_s'], nd=0):>10} "
            f"{fmt(r['req_p50_ms'], ' ms'):>9} {fmt(r['req_p99_ms'], ' ms'):>9} "
            f"{fmt(srv, ' ms'):>9} {r['rescore_batches']:>8} {fmt(lag, ' ms', 0):>9} "
            f"{r['rescore_backlog_people']:>8} {fmt(r['drain_s'], ' s'):>7} "
            f"{fmt(r['e2w_p50_s'], ' s', 2):>8} {fmt(r['e2w_p99_s'], ' s', 2):>8} "
            f"{r['probes_lost']:>5} {fmt(r['warm_e2w_p50_s'], ' s', 2):>8} "
            f"{fmt(r['warm_e2w_p99_s'], ' s', 2):>8} "
            f"{r['warm_hot']:>4}/{r['warm_lost']:<3} "
            f"{fmt(r['abuse_e2w_p50_s'], ' s', 2):>9} {fmt(r['abuse_e2w_p99_s'], ' s', 2):>9} "
            f"{r['abusers_lost']:>4}  "
            f"{r['load_before'][0]:.1f}->{r['load_after'][0]:.1f}")


SUMMED = ("probes_lost", "warm_lost", "warm_hot", "abusers_lost")  # counts over all runs


def median_of(runs: list[dict]) -> dict:
    """The fields of `row` over `runs`: the median of each (of the runs that have it), the
    sum of SUMMED; the load average before the first run and after the last."""
    def med(get) -> float | None:
        xs = sorted(v for v in map(get, runs) if v is not None)
        return (xs[(len(xs) - 1) // 2] + xs[len(xs) // 2]) / 2 if xs else None

    out: dict = {k: med(lambda r, k=k: r[k]) for k in (
        "events_per_s", "req_p50_ms", "req_p99_ms", "rescore_batches", "rescore_backlog_people",
        "drain_s", "e2w_p50_s", "e2w_p99_s", "warm_e2w_p50_s", "warm_e2w_p99_s",
        "abuse_e2w_p50_s", "abuse_e2w_p99_s")}
    out |= {k: sum(r[k] for r in runs) for k in SUMMED}
    for k in ("server_req_ms", "rescore_lag_ms"):
        out[k] = {"p99": v} if (v := med(lambda r, k=k: r[k].get("p99"))) is not None else {}
    out["rescore_batches"] = round(out["rescore_batches"] or 0)
    out["rescore_backlog_people"] = round(out["rescore_backlog_people"] or 0)
    out["load_before"], out["load_after"] = runs[0]["load_before"], runs[-1]["load_after"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--procs", type=int, default=1,
                    help="client processes the clients are spread over (on 2 cores more of "
                         "them take CPU from the server: 6 measured worse than 1)")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--rate", type=float, default=20_000,
                    help="events/s in total, paced (open loop); 0 = as fast as answered")
    ap.add_argument("--people", type=int, default=200_000, help="distinct users in the load")
    ap.add_argument("--sessions", type=int, default=0,
                    help="events per visit on average (each client keeps 300 visitors "
                         "active); 0 = every event from a random user (the worst case for "
                         "per-person rescoring)")
    ap.add_argument("--store", type=Path, default=None,
                    help="start from a copy of this store (e.g. /tmp/leadrefinery-bench/"
                         "rescore-200000/store.duckdb from bench_rescore.py --full) instead of "
                         "--history; the load's users are then its people")
    ap.add_argument("--history", type=int, default=1500,
                    help="generated trial users ingested before the run (0 = empty store)")
    ap.add_argument("--probes-per-s", type=float, default=5.0)
    ap.add_argument("--warm-per-s", type=float, default=1.0,
                    help="warm leads (known, just below grade 1) turning hot, per second")
    ap.add_argument("--abusers-per-s", type=float, default=1.0,
                    help="new trial users starting a 40-guest class, per second")
    ap.add_argument("--max-batch", type=int, default=20000,
                    help="[triggers] max_batch_people: people per rescoring transaction")
    ap.add_argument("--drain", type=float, default=120.0,
                    help="seconds to wait for the store and the alerts to catch up")
    ap.add_argument("--modes", default="off,on")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run the modes this many times, interleaved, and add each mode's "
                         "median (lost: the sum) — single runs vary a lot on a shared machine")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--shield", action="store_true",
                    help="on a shared machine (root only), run the server and the clients 10 "
                         "nice levels above other work (keeping the server's own order: "
                         "background lanes below the event loop)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lr-bench-rt-"))
    receiver = Receiver()
    results = []
    try:
        for _ in range(args.repeat):  # interleaved: the machine's mood shifts over minutes
            for mode in args.modes.split(","):
                r = run_mode(work, mode.strip(), args, receiver)
                results.append(r)
                print(json.dumps(r, default=str), flush=True)
    finally:
        receiver.server.shutdown()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    rate = f"paced at {args.rate:,.0f} events/s" if args.rate else "closed loop"
    print(f"\n{args.clients} clients in {args.procs} processes x /v1/batch of {args.batch}, "
          f"{rate}, {args.seconds:g} s "
          f"per mode, {os.cpu_count()} cores; "
          + (f"store {args.store} ({len(args.known):,} known people in the load)" if args.store
             else f"history {args.history} users, {args.people:,} users in the load")
          + (f"; visits of {args.sessions} events" if args.sessions else "; random users")
          + ("; --shield" if args.shield else ""))
    print(f"{'mode':<5} {'events/s':>10} {'req p50':>9} {'req p99':>9} {'srv p99':>9} "
          f"{'batches':>8} {'lag p99':>9} {'backlog':>8} {'drain':>7} {'e2w p50':>8} "
          f"{'e2w p99':>8} {'lost':>5} {'warm p50':>8} {'warm p99':>8} {'hot/lost':>8} "
          f"{'abuse p50':>9} {'abuse p99':>9} {'lost':>4}  load")
    modes = list(dict.fromkeys(r["mode"] for r in results))
    for r in results:
        print(row(r))
    medians = {m: median_of([r for r in results if r["mode"] == m]) for m in modes}
    if args.repeat > 1:
        for m in modes:
            print(row(medians[m], f"{m}~"))
        print(f"~: the median of {args.repeat} runs (lost, hot: the sum)")
    if modes == ["off", "on"] and medians["off"]["events_per_s"]:
        off, on = medians["off"], medians["on"]
        print(f"rescoring on / off: {on['events_per_s'] / off['events_per_s']:.2f}x events/s, "
              f"p99 request {on['req_p99_ms'] / off['req_p99_ms']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
