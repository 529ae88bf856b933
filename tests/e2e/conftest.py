"""The loopback parts the end-to-end tests share: free ports, waiting for a condition, a real
webhook receiver, and `leadrefinery serve` as a subprocess.

    rx = receiver (fixture)                  # listening; rx.mode = "fail" | "gone" | ...
    s = Server(root, ready=Server.healthy).start()   # waits until `ready(s)` holds
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from leadrefinery import Project
from leadrefinery.act.channels import verify_signature

EXE = Path(sys.executable).with_name("leadrefinery")
OWN_KEY = object()  # `Server.post` default: the server's write key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


# -- a real webhook receiver ----------------------------------------------------------------


class Receiver:
    """HTTP receiver on 127.0.0.1. `mode`: ok (200) | fail (503) | gone (404) | slow_once (the
    first request per alert id answers after `delay` s, later ones at once). `down()` closes
    the socket (connection refused), `up()` listens again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks/leads"
        self.mode = "ok"
        self.delay = 0.0
        self.lock = threading.Lock()
        self.requests: list[tuple[float, str, int, int]] = []  # (time, alert id, attempt, status)
        # answered 2xx: the raw body, its headers and when it arrived (wall clock)
        self.accepted: list[dict] = []
        self.server: ThreadingHTTPServer | None = None

    def handler(self) -> type[BaseHTTPRequestHandler]:
        rx = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                aid = self.headers.get("X-LeadRefinery-Alert-Id", "")
                with rx.lock:
                    seen = any(r[1] == aid for r in rx.requests)
                    status = {"ok": 200, "fail": 503, "gone": 404, "slow_once": 200}[rx.mode]
                    rx.requests.append((time.monotonic(), aid,
                                        int(self.headers.get("X-LeadRefinery-Attempt", 0)), status))
                if rx.mode == "slow_once" and not seen:
                    time.sleep(rx.delay)
                if status == 200:
                    with rx.lock:
                        rx.accepted.append({"raw": raw, "headers": dict(self.headers),
                                            "at": time.time()})
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender gave up waiting

        return Handler

    def up(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self.handler())
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True).start()

    def down(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def bodies(self) -> list[dict]:
        """The accepted bodies, in arrival order."""
        with self.lock:
            return [json.loads(a["raw"]) for a in self.accepted]

    def ids(self) -> Counter:
        """Alert id -> how many times it was accepted."""
        return Counter(b["alert_id"] for b in self.bodies())

    def got(self) -> Counter:
        """(person, trigger) -> how many distinct alert ids arrived."""
        firsts = {b["alert_id"]: b for b in self.bodies()}
        return Counter((b["person"]["id"], b["trigger"]["id"]) for b in firsts.values())

    def body(self, person: str, trigger: str) -> dict:
        return next(b for b in self.bodies() if b["person"]["id"] == person
                    and b["trigger"]["id"] == trigger)

    def arrived(self) -> dict[str, float]:
        """Alert id -> its first arrival (wall clock)."""
        with self.lock:
            out: dict[str, float] = {}
            for a in self.accepted:
                out.setdefault(json.loads(a["raw"])["alert_id"], a["at"])
            return out

    def bad_signatures(self, secret: str) -> int:
        with self.lock:
            return sum(not verify_signature(a["raw"], a["headers"].get(
                "X-LeadRefinery-Signature"), secret) for a in self.accepted)


@pytest.fixture
def receiver():
    rx = Receiver()
    rx.up()
    yield rx
    rx.down()


# -- the server -----------------------------------------------------------------------------


class Server:
    """`leadrefinery serve` as a subprocess on a free port; `start()` waits until `ready`."""

    def __init__(self, root: Path, *, write_key: str | None = None,
                 env: dict[str, str] | None = None,
                 ready: Callable[[Server], bool] | None = None) -> None:
        self.root = root
        self.write_key = write_key
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **(env or {})}
        self.ready = ready or Server.healthy
        self.proc: subprocess.Popen | None = None
        self.runs = 0

    @property
    def log_path(self) -> Path:
        return self.root.parent / f"server-{self.port}-{self.runs}.log"

    def start(self, timeout: float = 90) -> Server:
        self.runs += 1
        self.proc = subprocess.Popen(
            [str(EXE), "serve", "--project", str(self.root), "--port", str(self.port)],
            stdout=self.log_path.open("wb"), stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            try:
                if self.ready(self):
                    return self
            except (httpx.TransportError, ValueError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"server did not start:\n{self.output()}")

    def healthy(self) -> bool:
        return httpx.get(f"{self.url}/health", timeout=5).status_code == 200

    def live(self) -> bool:
        """Real-time rescoring runs and its startup sweep (the triggers' baseline) is done."""
        rt = self.realtime()
        return bool(rt.get("running")) and "startup" in rt.get("sweeps", {})

    def output(self) -> str:
        """What every run of this server wrote."""
        return "\n".join(p.read_text(errors="replace")
                         for p in sorted(self.root.parent.glob(f"server-{self.port}-*.log")))

    def health(self) -> dict:
        return httpx.get(f"{self.url}/health", timeout=30).json()

    def realtime(self) -> dict:
        return httpx.get(f"{self.url}/v1/realtime", timeout=30).json()

    def wait_loaded(self, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            h = self.health()
            if h["log"]["lag_bytes"] == 0:
                return h
            assert time.monotonic() < deadline, h
            time.sleep(0.05)

    def settled(self, timeout: float = 90) -> dict:
        """Wait until the log is loaded and every loaded micro-batch has been rescored."""
        deadline = time.monotonic() + timeout
        while True:
            h = self.health()
            rt = self.realtime()
            if h["log"]["lag_bytes"] == 0 and rt["idle"] and rt["caught_up"]:
                return rt
            assert time.monotonic() < deadline, (h, rt)
            time.sleep(0.1)

    def post(self, path: str, body, *, key: str | None | object = OWN_KEY,
             gzipped: bool = False, headers: dict | None = None) -> httpx.Response:
        """POST JSON with `key` as Basic auth (None: no auth)."""
        key = self.write_key if key is OWN_KEY else key
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
        if gzipped:
            data = gzip.compress(data)
            headers["Content-Encoding"] = "gzip"
        auth = (key, "") if key is not None else None
        return httpx.post(f"{self.url}{path}", content=data, headers=headers, auth=auth,
                          timeout=30)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def store(self) -> Project:
        """Stop the server and open the store (read-only) to check what it holds."""
        self.stop()
        return Project(self.root, read_only=True)

    def close(self) -> None:
        """Fixture teardown: a server still running is killed (as a crash would)."""
        self.stop(signal.SIGKILL if self.proc and self.proc.poll() is None else signal.SIGTERM)
