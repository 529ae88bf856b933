"""Point-in-time features: the same code builds the same frame on every engine.

A small generated business is ingested into a DuckDB project the normal way and scored twice
(so rule-score features have snapshots to pick from), a few awkward events are added (paths that
do not start with '/', numbers and booleans as traits, a trait changed at the same second), and
the store is copied to the other engine with `copy_tables`. The vocabulary each engine learns and
the feature frame each builds must agree: same rows, numbers to 1e-9, same categoricals.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leadrefinery.predict.features import FeatureSpec, build_features, rule_categories
from leadrefinery.predict.training import make_examples
from leadrefinery.project import Project
from leadrefinery.store.copy import copy_tables
from leadrefinery.store.engine import Engine

DEMO_MODEL = Path(__file__).resolve().parents[2] / "src" / "leadrefinery" / "sample" / "model.yaml"
CONVERSION = "Subscription Started"
TABLES = [
    "events", "people", "trait_history", "account_trait_history", "accounts", "outcomes",
    "scores", "latest_scores",
]
SCORED_AT = [datetime(2026, 3, 20), datetime(2026, 4, 10)]


def _odd_messages() -> list[dict]:
    def track(i: int, props: dict, event: str = "Report Exported") -> dict:
        return {"type": "track", "userId": "odd1", "event": event, "messageId": f"odd-t{i}",
                "timestamp": f"2026-03-{5 + i:02d}T10:00:00.250000Z", "properties": props}

    def page(i: int, path: object) -> dict:
        return {"type": "page", "userId": "odd1", "name": "Odd", "messageId": f"odd-p{i}",
                "timestamp": f"2026-03-{5 + i:02d}T11:00:00Z", "properties": {"path": path}}

    def identify(i: int, traits: dict) -> dict:
        return {"type": "identify", "userId": "odd1", "messageId": f"odd-id{i}",
                "timestamp": "2026-03-02T09:00:00Z", "traits": traits}

    return [
        identify(0, {"email": "Odd@GMAIL.com", "companySize": 12, "emailVerified": True,
                     "title": "Founder"}),
        identify(1, {"title": "CTO"}),  # same second: the tie-break must agree too
        track(0, {"n": 1}), track(1, {"n": "x"}), track(2, {}, event="Odd 'quoted' event"),
        page(0, "pricing"), page(1, None), page(2, "/pricing?x=1"), page(3, "/docs/api/v2#top"),
    ]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    from leadrefinery.sample import generate

    root = tmp_path_factory.mktemp("features")
    biz = generate(root / "data", people=150, months=2, seed=5, start="2026-03-01")
    project = Project.init(root / "proj", name="features", write_key="k")
    project.settings.ingest.conversion_events = [CONVERSION]
    shutil.copy(DEMO_MODEL, project.model_path())
    project.ingest([biz.accounts_path], kind="accounts")
    assert project.ingest([biz.events_path], kind="events").stored > 1_000
    assert project.ingestor.ingest_messages(_odd_messages(), source="odd").stored == 9
    for as_of in SCORED_AT:
        project.score(as_of=as_of)
    yield project
    project.close()


@pytest.fixture(scope="module")
def examples(source: Project) -> pd.DataFrame:
    ex = make_examples(source.engine, horizon_days=14, offsets=(1.0, 7.0, 21.0))
    odd = pd.DataFrame({"person_id": ["odd1", "nobody"], "as_of": [datetime(2026, 3, 30)] * 2})
    return pd.concat([ex[["person_id", "as_of"]], odd], ignore_index=True)


def _spec_and_frame(engine: Engine, examples: pd.DataFrame) -> tuple[FeatureSpec, pd.DataFrame]:
    spec = FeatureSpec.learn(engine, examples, exclude_events=[CONVERSION])
    spec.rule_categories = rule_categories(engine)
    return spec, build_features(engine, examples, spec)


def _assert_same_frames(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b)
    for col in a.columns:
        x, y = a[col], b[col]
        if isinstance(x.dtype, pd.CategoricalDtype):
            assert isinstance(y.dtype, pd.CategoricalDtype), col
            assert list(x.cat.categories) == list(y.cat.categories), col
            assert x.astype(object).where(x.notna(), None).tolist() == \
                y.astype(object).where(y.notna(), None).tolist(), col
        else:
            np.testing.assert_allclose(x.to_numpy(float), y.to_numpy(float), rtol=0, atol=1e-9,
                                       equal_nan=True, err_msg=col)


def _check_engine(source: Project, examples: pd.DataFrame, other: Engine) -> None:
    other.ensure_schema()
    copy_tables(source.engine, other, TABLES)
    spec, frame = _spec_and_frame(source.engine, examples)
    other_spec, other_frame = _spec_and_frame(other, examples)
    assert other_spec == spec
    _assert_same_frames(frame, other_frame)
    # the store gave every kind of feature something to compute, so the comparison is not empty
    assert spec.events and spec.pages and spec.traits and spec.rule_categories
    odd = frame.iloc[-2]
    assert odd["trait.title"] == "CTO" and odd["webmail"] == 1
    assert odd["page_30d./pricing"] == 1 and odd["page_30d./docs/api"] == 1
    assert odd["events_n_all"] == 9  # every message counts, identify and page ones too
    assert frame.iloc[-1].filter(like="events_").eq(0).all()  # unknown person: no activity
    assert frame["rule_score"].notna().sum() > 0


@pytest.mark.postgres
def test_postgres_builds_the_duckdb_features(source, examples, postgres_engine) -> None:
    _check_engine(source, examples, postgres_engine)


def test_duckdb_copy_builds_the_same_features(source, examples, tmp_path: Path) -> None:
    """The engine-free half of the contract: a copied store (no PostgreSQL needed) agrees,
    so a difference on another engine is the dialect's, not the copy's."""
    from leadrefinery.store.duckdb_engine import DuckDBEngine

    copy = DuckDBEngine(tmp_path / "copy.duckdb")
    try:
        _check_engine(source, examples, copy)
    finally:
        copy.close()
