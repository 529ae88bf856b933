"""A second, independent model (Quarry, a made-up warehouse trial — not the demo business):
it compiles for the three engines, scores its people sensibly, and the engines agree."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from pathlib import Path

import pytest

from leadrefinery.config import Settings
from leadrefinery.errors import ModelError
from leadrefinery.ingest import Ingestor
from leadrefinery.model import build_plan, load_model, parse_model
from leadrefinery.model.dialects import ENGINES
from leadrefinery.store.copy import copy_tables
from leadrefinery.store.duckdb_engine import DuckDBEngine
from leadrefinery.store.engine import Engine

from .quarry import business
from .test_scoring_equivalence import TABLES, _close, _rows

MODEL = Path(__file__).parent / "quarry" / "model.yaml"


@pytest.fixture(scope="module")
def quarry() -> Iterator[DuckDBEngine]:
    engine = DuckDBEngine(None)
    engine.ensure_schema()
    report = Ingestor(engine, Settings()).ingest_messages(business.messages(), source="quarry")
    assert report.stored > 2000
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def scored(quarry: DuckDBEngine) -> dict[str, dict]:
    """kind -> list of that kind's per-person rows."""
    rows = _rows(quarry, load_model(MODEL), business.AS_OF)
    user = dict(quarry.query("SELECT person_id, max(user_id) FROM events GROUP BY person_id"))
    kinds = business.people()
    by_kind: dict[str, list[dict]] = {k: [] for k in business.KINDS}
    for pid, row in rows.items():
        by_kind[kinds[user[pid]]].append(row)
    assert {k: len(v) for k, v in by_kind.items()} == business.KINDS
    return by_kind


def test_compiles_for_every_engine() -> None:
    plan = build_plan(load_model(MODEL), as_of=business.AS_OF)
    for engine in ENGINES:
        sql = plan.sql(engine)
        assert "lr_ab_cluster_past_limit_ss" in sql  # sessions resumed after a suspend
        assert "properties" in sql and "engine" in sql


def _median(rows: list[dict], column: str) -> float:
    return statistics.median(float(r[column]) for r in rows)


def test_scores_rank_the_kinds_of_people_sensibly(scored: dict[str, list[dict]]) -> None:
    champion, student, cold = scored["champion"], scored["student"], scored["cold"]
    assert _median(champion, "score") > 60
    assert _median(champion, "score") > _median(cold, "score") > _median(student, "score")
    # matrix grades: champions are A1/A2 MQLs, students never MQL
    assert sum(r["mql"] for r in champion) >= 0.8 * len(champion)
    assert all(r["grade"][0] == "A" for r in champion)
    assert not any(r["mql"] for r in student)
    assert all(r["grade"][0] in "CD" for r in student)
    # the profile rules fire on the right people
    assert all(r["r_free_email"] < 0 and r["r_seniority"] < 0 for r in student)
    assert all(r["r_risky_country"] == -12 for r in scored["risky"])
    assert all(r["r_domain_is_company"] == 5 and r["r_good_source"] == 6 for r in champion)
    assert all(r["r_admin_trait"] == 2 for r in champion)
    # a per-day limit and a cap hold
    assert all(0 < r["r_query_run"] <= 20 for r in champion)
    assert all(r["r_docs"] <= 6 for r in champion)
    # seats: 2 points each once there are two (min_count), capped at 8
    assert all(r["r_seats_n"] >= 2 and r["r_seats"] == min(8, 2 * r["r_seats_n"]) for r in champion)
    assert all(r["r_seats"] == 0 for r in student)


def test_stages_expire_and_go_back_to_the_default(scored: dict[str, list[dict]]) -> None:
    assert all(r["stage"] == "Buying" for r in scored["champion"])  # pricing within 30 days
    # the cold engineers' evidence (60-90 days old) has expired: back to the default
    assert all(r["stage"] == "Aware" and r["stage_rank"] == 1 for r in scored["cold"])
    assert all(r["r_gone_cold"] == -8 for r in scored["cold"])


def test_abuse_rules_flag_the_abusers_and_nobody_else(scored: dict[str, list[dict]]) -> None:
    rules = ["cluster_past_limit", "too_many_seats", "clusters_at_once", "scripted_polling"]
    for row in scored["abuser"]:
        assert all(row[f"ab_{a}"] for a in rules), {a: row[f"ab_{a}"] for a in rules}
        # a session resumed every hour is one session of 6-8 hours, against 120 minutes allowed
        assert row["ab_cluster_past_limit_allowed"] == 120
        assert row["ab_cluster_past_limit_minutes"] > 6 * 60
        assert row["ab_clusters_at_once_n"] == 3 and row["ab_clusters_at_once_minutes"] > 300
        assert row["ab_too_many_seats_max"] == 9
        assert 59 < row["ab_scripted_polling_mean_gap_minutes"] < 61
        assert row["seg_abuser"] and not row["seg_best"]
    for kind in ("champion", "student", "cold", "risky"):
        assert not any(r["flagged"] for r in scored[kind]), kind


def test_segments(scored: dict[str, list[dict]]) -> None:
    assert all(r["seg_company"] and r["seg_analyst"] for r in scored["champion"])
    assert sum(r["seg_buyer"] for r in scored["champion"]) >= len(scored["champion"]) // 2
    assert not any(r["seg_company"] or r["seg_analyst"] for r in scored["student"])


def _compare(source: DuckDBEngine, other: Engine) -> None:
    other.ensure_schema()
    copy_tables(source, other, TABLES)
    model = load_model(MODEL)
    want, got = _rows(source, model, business.AS_OF), _rows(other, model, business.AS_OF)
    assert set(got) == set(want) and len(want) == sum(business.KINDS.values())
    diffs = [
        (pid, c, v, got[pid][c])
        for pid, row in want.items()
        for c, v in row.items()
        if not _close(v, got[pid][c])
    ]
    assert not diffs, f"{len(diffs)} differences, e.g. {diffs[:5]}"


@pytest.mark.postgres
def test_postgres_agrees_with_duckdb(quarry: DuckDBEngine, postgres_engine: Engine) -> None:
    _compare(quarry, postgres_engine)


@pytest.mark.spark
@pytest.mark.slow
def test_spark_agrees_with_duckdb(quarry: DuckDBEngine, fresh_spark_engine: Engine) -> None:
    _compare(quarry, fresh_spark_engine)


@pytest.mark.parametrize(
    ("good", "bad", "line", "rule", "message"),
    [
        (
            "event: [Cluster Started, Cluster Resumed]}\n    stop: {on: track, event: Cluster "
            "Suspended}\n    key: properties.cluster_id\n    limit",
            "evnt: [Cluster Started, Cluster Resumed]}\n    stop: {on: track, event: Cluster "
            "Suspended}\n    key: properties.cluster_id\n    limit",
            112,
            "cluster_past_limit",
            "did you mean 'event'?",
        ),
        (
            "limit: properties.max_hours",
            "limit: propertes.max_hours",
            115,
            "cluster_past_limit",
            "did you mean 'properties'?",
        ),
        (
            "resume_within: 2m\n    max_concurrent",
            "resume_within: 2 minutes\n    max_concurrent",
            129,
            "clusters_at_once",
            "not a duration",
        ),
        (
            "    category: engagement\n    levels",
            "    category: engagment\n    levels",
            91,
            "grades",
            "did you mean 'engagement'?",
        ),
        (
            "facts.engines_used >= 2",
            "facts.engine_used >= 2",
            145,
            "segment:analyst",
            "did you mean 'engines_used'?",
        ),
        ("IN @big_engines", "IN @big_engine", 63, "query_run", "did you mean 'big_engines'?"),
    ],
)
def test_mistakes_in_this_model_name_file_line_and_rule(
    good: str, bad: str, line: int, rule: str, message: str
) -> None:
    text = MODEL.read_text()
    assert text.count(good) == 1
    with pytest.raises(ModelError) as info:
        parse_model(text.replace(good, bad), "quarry.yaml")
    e = info.value
    assert (e.line, e.rule) == (line, rule) and message in str(e)
    assert str(e).startswith(f"quarry.yaml:{line} (rule '{rule}')")
