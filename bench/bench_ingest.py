"""JSONL ingestion throughput vs DuckDB reading the same file raw (the floor).

    .venv/bin/python bench/bench_ingest.py [--people 40000] [--file EVENTS.jsonl]

Both sides run in this process, one after the other, on the same file:
  floor:  CREATE TABLE AS SELECT * FROM read_json(file) in a database file, checkpointed
          (DuckDB's own reader: no validation, no de-duplication, nothing derived)
  ours:   `Project.ingest` — split lines, validate every message, de-duplicate by messageId,
          resolve identities, derive people/accounts, quarantine bad lines.
Target (DESIGN.md): >= 100k events/s and within 2x of the floor.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from leadrefinery import Project


def floor_seconds(path: Path, db: Path) -> tuple[float, int]:
    """DuckDB's own reader into a table of a database file (durable, like ours)."""
    con = duckdb.connect(str(db), config={"threads": 2, "memory_limit": "2GB"})
    t = time.perf_counter()
    con.execute(
        f"CREATE TABLE raw AS SELECT * FROM read_json('{path}', format='newline_delimited', "
        "union_by_name=true, maximum_object_size=1048576)"
    )
    con.execute("CHECKPOINT")
    n = con.execute("SELECT count(*) FROM raw").fetchone()[0]
    seconds = time.perf_counter() - t
    con.close()
    return seconds, n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--people", type=int, default=40_000, help="size of the generated business")
    ap.add_argument("--file", type=Path, help="use this JSONL file instead of generating one")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lr-bench-ingest-"))
    try:
        if args.file:
            path = args.file
        else:
            from leadrefinery.sample import generate

            t = time.perf_counter()
            biz = generate(work / "data", people=args.people, seed=11)
            path = biz.events_path
            print(f"generated {path.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - t:.1f}s")
        floor_s, n = floor_seconds(path, work / "floor.duckdb")
        project = Project.init(work / "proj", name="bench")
        t = time.perf_counter()
        report = project.ingest([path])
        ours_s = time.perf_counter() - t
        project.close()
        assert report.balanced
        print(f"events in file:          {n:,}")
        print(f"duckdb read_json (floor): {floor_s:6.2f}s  {n / floor_s:>10,.0f} events/s")
        print(f"leadrefinery ingest:      {ours_s:6.2f}s  {report.read / ours_s:>10,.0f} events/s"
              f"  (stored {report.stored:,}, duplicates {report.duplicates:,}, "
              f"quarantined {report.quarantined:,})")
        print(f"ratio ours/floor:         {ours_s / floor_s:6.2f}x   (target <= 2.0x, >= 100k/s)")
        print(f"reproduce: .venv/bin/python bench/bench_ingest.py --people {args.people}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
