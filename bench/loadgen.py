"""The request loop the HTTP benchmarks share: keep-alive `/v1/batch` POSTs on loopback, paced
on a schedule (open loop: latency counts from when a request was due, so queueing shows) or
sent as fast as answered (closed loop, `rate=0`).

    sent = run_clients(port, auth, range(clients), clients=6, batch=100, rate=20_000,
                       t0=time.perf_counter(), seconds=20, body=lambda c, i: make(c, i))
    sent = fork_clients(3, port, auth, clients=6, ...)   # the same, in 3 client processes
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(port: int, path: str, timeout: float = 60) -> dict:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        return json.loads(c.getresponse().read())
    finally:
        c.close()


def shield(pid: int, delta: int = -10) -> bool:
    """Raise every thread of `pid` by `delta` nice levels (root only; Linux niceness is per
    thread), keeping their order: the server's loader stays below its event loop."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        for tid in tids:
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + delta)
    except (OSError, PermissionError):
        return False
    return True


@dataclass
class Sent:
    latency: dict[tuple[int, int], float] = field(default_factory=dict)  # (client, i) -> seconds
    acked_at: dict[tuple[int, int], float] = field(default_factory=dict)  # (c, i) -> wall clock
    events: int = 0  # acknowledged
    errors: list[str] = field(default_factory=list)  # statuses other than 200
    t0: float = 0.0  # perf_counter when the clients started
    last: float = 0.0  # perf_counter of the last acknowledgement

    @property
    def latencies(self) -> list[float]:
        """Seconds, of accepted requests."""
        return list(self.latency.values())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_clients(port: int, auth: str, ids: Iterable[int], *, clients: int, batch: int,
                rate: float, t0: float, seconds: float,
                body: Callable[[int, int], bytes | None]) -> Sent:
    """Clients `ids` (threads, of `clients` in all) send request `i` = `body(c, i)` (None:
    this client is done) until `seconds` after `t0` (a `time.perf_counter()`)."""
    stop_at = t0 + seconds
    interval = batch * clients / rate if rate else 0.0
    out = Sent(t0=t0, last=t0)
    lock = threading.Lock()

    def client(c: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Content-Type": "application/json", "Authorization": auth}
        start = t0 + interval * c / clients  # the clients' schedules interleave
        i = 0
        while True:
            scheduled = start + i * interval if interval else time.perf_counter()
            if scheduled >= stop_at:
                break
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            data = body(c, i)
            if data is None:
                break
            conn.request("POST", "/v1/batch", data, headers)
            resp = conn.getresponse()
            resp.read()
            done = time.perf_counter()
            with lock:
                if resp.status != 200:
                    out.errors.append(str(resp.status))
                else:
                    out.latency[c, i] = done - scheduled
                    out.acked_at[c, i] = time.time()
                    out.events += batch
                    out.last = max(out.last, done)
            i += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def fork_clients(procs: int, port: int, auth: str, *, clients: int, batch: int, rate: float,
                 seconds: float, body: Callable[[int, int], bytes | None],
                 meanwhile: Callable[[float], None] | None = None) -> Sent:
    """`run_clients` for all `clients`, spread over `procs` forked processes (clients k,
    k + procs, ...; they share the bodies `body` returns): a real deployment's clients are
    other processes, and one client process's GIL would add its own waits to the latencies
    measured. `meanwhile(t0)` runs here while they send (t0: when they start)."""
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    t0 = time.perf_counter() + 0.5  # time for the children to start

    def child(ids: list[int]) -> None:
        out.put(run_clients(port, auth, ids, clients=clients, batch=batch, rate=rate, t0=t0,
                            seconds=seconds, body=body))

    ps = [ctx.Process(target=child, args=(list(range(k, clients, procs)),))
          for k in range(max(1, min(procs, clients)))]
    for p in ps:
        p.start()
    if meanwhile is not None:
        meanwhile(t0)
    parts = [out.get() for _ in ps]
    for p in ps:
        p.join()
    sent = Sent(t0=t0, last=max(r.last for r in parts))
    for r in parts:
        sent.latency |= r.latency
        sent.acked_at |= r.acked_at
        sent.events += r.events
        sent.errors += r.errors
    return sent
