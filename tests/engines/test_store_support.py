"""The pieces around the engines: placeholders, Arrow normalisation, opening by settings."""

from __future__ import annotations

import datetime as dt
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pytest

from leadrefinery.config import Settings
from leadrefinery.errors import MissingExtra
from leadrefinery.store import open_engine
from leadrefinery.store.copy import prepare_arrow_for_load, to_logical
from leadrefinery.store.schema import TABLES

psycopg = pytest.importorskip("psycopg", reason="the postgres extra is not installed")
from leadrefinery.store.postgres_engine import qmark_to_format, redact  # noqa: E402


@pytest.mark.parametrize(
    ("sql", "want"),
    [
        ("SELECT ?", "SELECT %s"),
        ("SELECT '?', ?", "SELECT '?', %s"),
        ("SELECT 'it''s ?', ?", "SELECT 'it''s ?', %s"),
        ("SELECT E'\\' ?', ?", "SELECT E'\\' ?', %s"),
        ('SELECT "odd?name" FROM t WHERE a = ?', 'SELECT "odd?name" FROM t WHERE a = %s'),
        ("SELECT 1 -- why?\n, ?", "SELECT 1 -- why?\n, %s"),
        ("SELECT /* ? */ ?", "SELECT /* ? */ %s"),
        ("SELECT $$a ? b$$, $x$?$x$, ?", "SELECT $$a ? b$$, $x$?$x$, %s"),
        ("SELECT 10 % 3, ?", "SELECT 10 %% 3, %s"),
        ("SELECT '100%', ?", "SELECT '100%%', %s"),
    ],
)
def test_qmark_to_format(sql: str, want: str) -> None:
    assert qmark_to_format(sql) == want


def test_redact_hides_the_password() -> None:
    assert redact("postgresql://lr:s3cret@db.example:6543/prod") == "lr@db.example:6543/prod"
    assert "s3cret" not in redact("host=h user=u password=s3cret dbname=d")


def test_prepare_arrow_for_load() -> None:
    data = pa.table(
        {
            "s": pa.array(["a", None], pa.large_string()),
            "d": pa.array(["x", "x"]).dictionary_encode(),
            "ts": pa.array(
                [dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=-5))), None],
                pa.timestamp("ns", tz="America/New_York"),
            ),
            "nested": pa.array([{"a": [1, 2], "b": None}, None]),
            "js": pa.array(['{"k": 1}', None], pa.json_(pa.string())),
        }
    )
    out = prepare_arrow_for_load(data)
    assert out.schema.types == [
        pa.string(),
        pa.string(),
        pa.timestamp("us"),
        pa.string(),
        pa.string(),
    ]
    assert out.column("ts").to_pylist() == [dt.datetime(2024, 1, 1, 17), None]
    assert out.column("nested").to_pylist() == ['{"a":[1,2],"b":null}', None]
    assert out.column("js").to_pylist() == ['{"k": 1}', None]


def test_to_logical_casts_to_the_schema_types() -> None:
    data = pa.table(
        {"id": pa.array([1], pa.int32()), "amount": pa.array([2], pa.int64()), "won": [True]}
    )
    table = TABLES["outcomes"]
    out = to_logical(data.rename_columns(["outcome_id", "amount", "won"]), table)
    assert out.schema.types == [pa.string(), pa.float64(), pa.bool_()]


def test_missing_extras_say_which_pip_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("psycopg", "leadrefinery.store.postgres_engine"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg -> ImportError
    settings = Settings.model_validate(
        {"store": {"engine": "postgres", "dsn": "postgresql://x@127.0.0.1:1/x"}}
    )
    with pytest.raises(MissingExtra, match=r"pip install 'leadrefinery\[postgres\]'"):
        open_engine(settings, tmp_path)

    from leadrefinery.store import _engine_class

    for name in [m for m in sys.modules if m.split(".")[0] == "pyspark"] + [
        "leadrefinery.store.spark_engine"
    ]:
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "pyspark", None)
    with pytest.raises(MissingExtra, match=r"pip install 'leadrefinery\[spark\]'"):
        _engine_class("spark")


@pytest.mark.postgres
def test_open_engine_on_postgres(postgres_dsn: str, tmp_path: Path) -> None:
    settings = Settings.model_validate({"store": {"engine": "postgres", "dsn": postgres_dsn}})
    engine = open_engine(settings, tmp_path)
    try:
        assert engine.name == "postgres"
        assert engine.existing_columns("events")
    finally:
        engine.close()


@pytest.mark.postgres
def test_postgres_unreachable_is_a_store_error() -> None:
    from leadrefinery.errors import StoreError
    from leadrefinery.store.postgres_engine import PostgresEngine

    with pytest.raises(StoreError, match="cannot connect to PostgreSQL") as info:
        PostgresEngine("postgresql://nobody:pw@127.0.0.1:1/none", connect_timeout=2)
    assert "pw" not in str(info.value)


@pytest.mark.postgres
def test_postgres_threads_have_their_own_transactions(postgres_engine) -> None:
    postgres_engine.ensure_schema({"meta": TABLES["meta"]})
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def work(key: str, fail: bool) -> None:
        try:
            with postgres_engine.transaction():
                postgres_engine.execute("INSERT INTO meta VALUES (?, 'x')", [key])
                barrier.wait(timeout=10)  # both transactions open at once
                if fail:
                    raise RuntimeError("roll me back")
        except RuntimeError:
            pass
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k, k == "bad")) for k in ("good", "bad")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert postgres_engine.query("SELECT key FROM meta WHERE key IN ('good', 'bad')") == [("good",)]


@pytest.mark.postgres
def test_loading_events_into_postgres_is_refused_before_anything_is_acknowledged(
        postgres_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The loader's SQL is DuckDB's: `ingest` and `serve` on a PostgreSQL store say so at
    once, `serve` before it opens its log (both failed on a SQL syntax error)."""
    from leadrefinery import Project
    from leadrefinery.api.service import IngestService
    from leadrefinery.errors import StoreError

    root = tmp_path / "pg"
    Project.init(root, name="pg").close()
    toml = root / "refinery.toml"
    toml.write_text(toml.read_text().replace('engine = "duckdb"', 'engine = "postgres"', 1))
    monkeypatch.setenv("LEADREFINERY_PG_DSN", postgres_dsn)
    (root / "events.jsonl").write_text(
        '{"type": "track", "userId": "u", "event": "Logged In", "messageId": "m1"}\n')
    with Project(root) as p:
        assert p.engine.name == "postgres"
        with pytest.raises(StoreError, match="cannot be loaded into a postgres store yet"):
            p.ingest([root / "events.jsonl"])
        service = IngestService(p)
        with pytest.raises(StoreError, match=r'engine = "duckdb"'):
            service.start()
        assert service.started_at is None and not (root / "log").exists()
