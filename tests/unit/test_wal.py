"""The ingestion log and its loader: group commit, rotation, torn tails, exactly-once replay.

Real files, real fsync, a real DuckDB store; no server (see tests/e2e/test_ingest_http.py).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path

import orjson
import pytest

from leadrefinery import Project
from leadrefinery.api.ingest import encode_lines
from leadrefinery.api.loader_thread import line_source
from leadrefinery.api.service import IngestService
from leadrefinery.api.wal import IngestLog, segment_name, wait_until
from leadrefinery.errors import StoreBusy

pytestmark = pytest.mark.timeout(120)


def lines(n: int, size: int = 60) -> list[bytes]:
    return [orjson.dumps({"i": i, "pad": "x" * size}) + b"\n" for i in range(n)]


def read_all(directory: Path) -> bytes:
    segs = sorted(directory.glob("ingest-*.jsonl"), key=lambda p: int(p.stem.split("-")[1]))
    return b"".join(p.read_bytes() for p in segs)


def messages(n: int, *, user: str = "u") -> list[dict]:
    return [
        {"type": "track", "event": "Logged In", "userId": f"{user}{i % 7}",
         "messageId": str(uuid.uuid4()), "receivedAt": "2024-01-01T00:00:00Z"}
        for i in range(n)
    ]


@pytest.fixture
def ingest_log(tmp_path: Path):
    log = IngestLog(tmp_path / "log").open()
    yield log
    log.close()


def test_appends_are_whole_lines_in_order(ingest_log: IngestLog, tmp_path: Path):
    data = lines(50)
    for d in data:
        ingest_log.append(d)
    assert read_all(tmp_path / "log") == b"".join(data)
    assert ingest_log.appends == 50 and ingest_log.written == len(b"".join(data))


def test_concurrent_requests_share_fsyncs(ingest_log: IngestLog, tmp_path: Path):
    """Group commit: requests waiting together are written and fsync'd together."""
    data = lines(400)

    async def main() -> None:
        await asyncio.gather(*(ingest_log.append_async(d) for d in data))

    asyncio.run(main())
    assert ingest_log.appends == 400
    assert ingest_log.fsyncs < 400 / 4  # one fsync served many requests
    assert sorted(read_all(tmp_path / "log").splitlines(keepends=True)) == sorted(data)

    # threads too: every append returns only after its own data is on disk
    before = ingest_log.fsyncs
    barrier = threading.Barrier(16)

    def worker(k: int) -> None:
        barrier.wait()
        for j in range(20):
            ingest_log.append(orjson.dumps({"t": k, "j": j}) + b"\n")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ingest_log.appends == 400 + 320
    assert ingest_log.fsyncs - before < 320


def test_rejects_data_without_final_newline(ingest_log: IngestLog):
    with pytest.raises(ValueError):
        ingest_log.append(b'{"a":1}')


def test_rotates_segments_by_size(tmp_path: Path):
    log = IngestLog(tmp_path / "log", segment_bytes=1000).open()
    data = lines(60, size=80)  # ~100 bytes each
    try:
        for d in data:
            log.append(d)
    finally:
        log.close()
    files = sorted((tmp_path / "log").glob("ingest-*.jsonl"))
    assert len(files) >= 5
    assert all(f.stat().st_size < 1000 + 200 for f in files)
    assert read_all(tmp_path / "log") == b"".join(data)  # nothing lost or reordered


def test_torn_last_line_is_set_aside_on_open(tmp_path: Path):
    """A crash mid-write leaves a partial line (never acknowledged): it is moved aside, and
    later lines do not run into it."""
    d = tmp_path / "log"
    d.mkdir()
    whole = b"".join(lines(3))
    (d / segment_name(1)).write_bytes(whole + b'{"i": 99, "pa')
    log = IngestLog(d).open()
    try:
        assert (d / segment_name(1)).read_bytes() == whole
        assert (d / (segment_name(1) + ".torn")).read_bytes() == b'{"i": 99, "pa'
        assert log.torn_bytes == len(b'{"i": 99, "pa')
        log.append(b'{"after": 1}\n')
    finally:
        log.close()
    # a new run always writes a new segment
    assert (d / segment_name(2)).read_bytes() == b'{"after": 1}\n'


def test_one_writer_per_log_and_numbers_never_reused(tmp_path: Path):
    log = IngestLog(tmp_path / "log").open(first_free=7)
    try:
        assert [s.number for s in log.segments()] == [7]
        with pytest.raises(StoreBusy):
            IngestLog(tmp_path / "log").open()
    finally:
        log.close()


def test_line_source_reads_the_tag_without_parsing():
    cache: dict[bytes, str] = {}
    line = encode_lines("web", messages(1))
    assert line_source(line, cache) == "web"
    assert line_source(encode_lines('we"b', messages(1)), cache) == 'we"b'
    assert line_source(b'{"type":"track"}\n', cache) == "http"


# -- the loader, against a real store --------------------------------------------------------


def wait_loaded(service: IngestService, timeout: float = 60) -> None:
    assert wait_until(lambda: service.loader.pending() == 0, timeout), service.health(counts=False)


def test_loads_log_into_store_with_offsets_and_hooks(project: Project):
    service = IngestService(project, load_interval=0.01)
    seen: list[tuple[list[str], int]] = []
    service.on_loaded.append(lambda people, report: seen.append((people, report.stored)))
    service.start()
    try:
        msgs = messages(30)
        for k in range(3):
            service.log.append(encode_lines("web", msgs[k * 10 : k * 10 + 10]))
        wait_loaded(service)
        h = service.health()
        assert h["log"]["lag_bytes"] == 0 and h["counts"]["events"] == 30
    finally:
        service.stop()
    assert sum(n for _, n in seen) == 30
    assert {p for people, _ in seen for p in people} == {f"u{i}" for i in range(7)}
    e = project.engine
    assert e.scalar("SELECT count(DISTINCT source) FROM events") == 1
    assert e.scalar("SELECT min(source) FROM events") == "web"
    (name, loaded), = e.query("SELECT log, loaded_bytes FROM ingest_log_offsets")
    assert loaded == (project.root / "log" / name).stat().st_size


def test_restart_replays_only_the_unloaded_tail(project: Project):
    """What an earlier run acknowledged but did not load is loaded on start, exactly once."""
    service = IngestService(project, load_interval=0.01)
    service.start()
    first = messages(20, user="a")
    service.log.append(encode_lines("web", first))
    wait_loaded(service)
    service.stop()
    # a "crashed" run: it acknowledged these lines (fsync'd) but died before loading them,
    # and was killed while writing one more line (torn, never acknowledged)
    tail = messages(15, user="b")
    seg = max((project.root / "log").glob("ingest-*.jsonl"))
    with open(seg, "ab") as f:
        f.write(encode_lines("mobile", tail) + b'{"_source":"web","type":"tr')

    service = IngestService(project, load_interval=0.01)
    service.start()
    try:
        wait_loaded(service)
        report = service.loader.stats.report
        assert (report.read, report.stored, report.duplicates) == (15, 15, 0)  # tail only
    finally:
        service.stop()
    e = project.engine
    assert e.scalar("SELECT count(*) FROM events") == 35
    assert e.scalar("SELECT count(*) FROM events WHERE source = 'mobile'") == 15
    assert e.scalar("SELECT count(*) - count(DISTINCT message_id) FROM events") == 0
    assert e.scalar("SELECT count(*) FROM quarantine") == 0


def test_loaded_segments_are_deleted(project: Project):
    service = IngestService(project, load_interval=0.01, segment_bytes=2000)
    service.start()
    try:
        for _ in range(10):
            service.log.append(encode_lines("web", messages(5)))
        wait_loaded(service)
        assert wait_until(lambda: len(service.log.segments()) == 1, 30)
    finally:
        service.stop()
    files = list((project.root / "log").glob("ingest-*.jsonl"))
    assert len(files) == 1
    assert project.engine.scalar("SELECT count(*) FROM events") == 50
    # only the segment still on disk keeps an offset row
    assert [r[0] for r in project.engine.query("SELECT log FROM ingest_log_offsets")] in (
        [files[0].name], [],
    )


def test_a_micro_batch_with_several_sources_keeps_each_source(project: Project):
    d = project.root / "log"
    d.mkdir()
    web, app, web2 = messages(4, user="w"), messages(3, user="m"), messages(2, user="x")
    (d / segment_name(1)).write_bytes(
        encode_lines("web", web) + encode_lines("app", app) + encode_lines("web", web2)
    )
    service = IngestService(project, load_interval=0.01)
    service.start()
    try:
        wait_loaded(service)
        assert service.loader.stats.batches == 1
    finally:
        service.stop()
    rows = dict(project.engine.query("SELECT source, count(*) FROM events GROUP BY 1"))
    assert rows == {"web": 6, "app": 3}
