"""Getting data in: Segment JSON Lines, key=value logs, CSV of people/accounts/outcomes/costs.

`Ingestor.ingest_file` picks the reader by `kind` (or the file name), and every reader ends in
the store through one loader per family, so counts, quarantine and de-duplication behave the
same whatever the source.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import orjson
import pyarrow as pa

from ..config import CsvMapping, KeyValueMapping, Settings
from ..errors import InputError
from ..store.engine import Engine
from . import keyvalue, tables
from .lines import LineChunk, open_bytes, read_line_chunks
from .loader import EventLoader, IngestReport

EVENT_KINDS = ("events", "kv")
ALL_KINDS = EVENT_KINDS + tables.KINDS

Progress = Callable[[int], None]  # called with bytes/rows processed


def _stem_suffixes(path: Path) -> list[str]:
    return [s.lower() for s in path.suffixes if s.lower() != ".gz"]


def guess_csv_kind(path: Path, delimiter: str = ",") -> str:
    with open_bytes(path) as f:
        first = f.readline().decode("utf-8-sig", errors="replace")
    header = {tables.norm(h) for h in next(csv.reader([first], delimiter=delimiter), [])}
    if header & {"opportunity_id", "deal_stage", "opportunity", "deal_id", "stage"}:
        return "opportunities"
    if header & {"cost", "spend"}:
        return "campaigns"
    if header & {"converted_at", "conversion_id", "conversion_date"}:
        return "conversions"
    if "email" not in header and header & {"employees", "industry", "domain", "website"}:
        return "accounts"
    stem = tables.norm(path.name.split(".")[0])
    for words, kind in _NAME_KINDS:
        if any(w in stem for w in words):
            return kind
    return "people"


# what a file's name says it holds, when its header does not
_NAME_KINDS = (
    (("conversion",), "conversions"),
    (("opportunit", "deal", "pipeline"), "opportunities"),
    (("activit",), "activities"),
    (("campaign", "cost", "spend"), "campaigns"),
    (("account", "compan"), "accounts"),
)


class Ingestor:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.events = EventLoader(engine, settings)
        self.tables = tables.TableImporter(engine)

    def resolve(
        self, path: Path, kind: str | None, mapping: str | None
    ) -> tuple[str, CsvMapping | KeyValueMapping | None]:
        cfg = self.settings.ingest
        if mapping:
            if mapping in cfg.csv:
                return cfg.csv[mapping].kind, cfg.csv[mapping]
            if mapping in cfg.kv:
                return "kv", cfg.kv[mapping]
            known = ", ".join([*cfg.csv, *cfg.kv]) or "none declared"
            raise InputError(
                f"no mapping named {mapping!r} in refinery.toml [ingest.csv.*]/[ingest.kv.*] "
                f"(known: {known})"
            )
        suffixes = _stem_suffixes(path)
        if kind is None:
            if suffixes and suffixes[-1] in (".jsonl", ".ndjson", ".json"):
                kind = "events"
            elif suffixes and suffixes[-1] in (".log", ".txt", ".kv"):
                kind = "kv"
            elif suffixes and suffixes[-1] in (".csv", ".tsv"):
                kind = guess_csv_kind(path, "\t" if suffixes[-1] == ".tsv" else ",")
            else:
                raise InputError(
                    f"cannot tell what {path.name} holds; pass --kind "
                    f"({' | '.join(ALL_KINDS)})",
                    file=str(path),
                )
        if kind not in ALL_KINDS:
            raise InputError(f"unknown kind {kind!r}; use one of {', '.join(ALL_KINDS)}")
        if kind == "kv":
            if len(cfg.kv) == 1:
                return kind, next(iter(cfg.kv.values()))
            return kind, KeyValueMapping()
        if kind in tables.KINDS:
            delim = "\t" if suffixes and suffixes[-1] == ".tsv" else ","
            return kind, CsvMapping(kind=kind, delimiter=delim)  # type: ignore[arg-type]
        return kind, None

    def ingest_file(
        self,
        path: Path,
        *,
        kind: str | None = None,
        mapping: str | None = None,
        columns: dict[str, str] | None = None,
        progress: Progress | None = None,
    ) -> IngestReport:
        if not path.is_file():
            raise InputError("no such file", file=str(path))
        kind, spec = self.resolve(path, kind, mapping)
        source = str(path)
        if kind in EVENT_KINDS:
            report = IngestReport(files=[source])
            for chunk in read_line_chunks(path, self.settings.ingest.chunk_bytes):
                if kind == "kv":
                    assert isinstance(spec, KeyValueMapping)
                    chunk = keyvalue.convert_chunk(chunk, spec)
                report += self.events.load_chunk(chunk, source)
                if progress:
                    progress(chunk.table.num_rows + len(chunk.rejects) + chunk.blank)
            return report
        assert isinstance(spec, CsvMapping)
        records, rejects = tables.read_rows(
            path,
            kind,
            {**spec.columns, **(columns or {})},
            delimiter=spec.delimiter,
            time_format=spec.time_format,
        )
        report = self.tables.load(kind, records, rejects, source)
        if progress:
            progress(report.read)
        return report

    def ingest_messages(self, messages: list[dict], source: str) -> IngestReport:
        """Load already-parsed Segment messages (used by tests and the demo)."""
        lines = [orjson.dumps(m).decode() for m in messages]
        table = pa.table(
            {"line_no": pa.array(range(1, len(lines) + 1), pa.int64()), "line": lines}
        )
        return self.events.load_chunk(LineChunk(table), source)

    def retry_quarantine(self, fixed: dict[int, str] | None = None, ids: list[int] | None = None) -> IngestReport:
        """Re-ingest quarantined events (optionally with fixed raw text, by quarantine id).

        The retried rows leave the quarantine; any that still fail come back with the new
        reason, so nothing is lost either way.
        """
        e = self.engine
        where = "status = 'open' AND kind = 'events'"
        params: list = []
        wanted = sorted(set(ids or []) | set(fixed or {}))
        if wanted:
            where += f" AND id IN ({', '.join('?' for _ in wanted)})"
            params = wanted
        rows = e.query(f"SELECT id, source, line, raw FROM quarantine WHERE {where} ORDER BY id",
                       params)
        report = IngestReport()
        by_source: dict[str, list[tuple[int, int, str]]] = {}
        for qid, source, line, raw in rows:
            by_source.setdefault(source, []).append((qid, line or 0, (fixed or {}).get(qid, raw)))
        for source, items in by_source.items():
            table = pa.table(
                {
                    "line_no": pa.array([i[1] for i in items], pa.int64()),
                    "line": pa.array([i[2] for i in items], pa.string()),
                }
            )
            qids = [i[0] for i in items]
            marks = ", ".join("?" for _ in qids)

            def resolve(engine: Engine, qids=qids, marks=marks) -> None:
                engine.execute(
                    f"UPDATE quarantine SET status = 'retried' WHERE id IN ({marks})", qids
                )

            report += self.events.load_lines(table, source, after=resolve)
        return report
