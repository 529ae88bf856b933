"""Predictive reasons on the lead list: bucket, probability, holdout, surge and top factors,
cached at predict time for the top of the list and computed for other rows only when shown."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import leadrefinery
from leadrefinery.cli import app
from leadrefinery.predict.training import MODELS_DIR, explain_people
from leadrefinery.report.leads import with_predictions


def _track(user: str, day: int, event: str, n: int = 1) -> list[dict]:
    return [{"type": "track", "userId": user, "event": event,
             "messageId": f"{user}-{event}-{day}-{i}",
             "timestamp": f"2026-{1 + day // 28:02d}-{1 + day % 28:02d}T10:{i:02d}:00Z"}
            for i in range(n)]


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    from leadrefinery.project import Project

    project = Project.init(tmp_path_factory.mktemp("reasons") / "p", name="t", write_key="k")
    project.settings.ingest.conversion_events = ["Subscription Started"]
    rng = np.random.default_rng(3)
    msgs = []
    for i in range(160):
        user, day = f"u{i}", int(rng.integers(0, 60))
        keen = rng.random() < 0.4
        msgs.append({"type": "identify", "userId": user, "messageId": f"{user}-id",
                     "timestamp": f"2026-{1 + day // 28:02d}-{1 + day % 28:02d}T09:00:00Z",
                     "traits": {"email": f"{user}@{'acme.com' if keen else 'gmail.com'}"}})
        msgs += _track(user, day, "Logged In", 6 if keen else 1)
        if keen and rng.random() < 0.7:
            msgs += _track(user, day + 5, "Subscription Started")
    msgs += _track("u0", 100, "Logged In")  # data end
    project.ingestor.ingest_messages(msgs, source="t")
    project.train(publish=True, n_jobs=1)
    out = project.predict(explain_top=3)
    yield project, out
    project.close()


def test_rows_get_bucket_probability_marks_and_factors(scored):
    project, out = scored
    ids = out["person_id"].tolist()[:6]  # ranked: 3 explained at predict time, 3 not
    cached = {r[0] for r in project.engine.query(
        "SELECT person_id FROM predictions WHERE factors IS NOT NULL")}
    assert set(ids[:3]) <= cached and not set(ids[3:]) & cached

    asked: list[list[str]] = []

    def explain_missing(missing: list[str]) -> dict:
        asked.append(missing)
        return explain_people(project.engine, project.root, missing)

    rows = with_predictions(project.engine, [{"person_id": i} for i in ids], explain_missing)
    assert asked == [ids[3:]]  # only the shown rows that lacked factors were explained
    for r, (_, want) in zip(rows, out.head(6).iterrows(), strict=True):
        assert r["bucket"] == want["bucket"]
        assert r["probability"] == pytest.approx(want["probability"])
        assert isinstance(r["holdout"], bool) and isinstance(r["surge"], bool)
        factors = r["factors"]["positive"] + r["factors"]["negative"]
        assert factors and all(f["text"] for f in factors)
        assert all(f["contribution"] > 0 for f in r["factors"]["positive"])
        assert all(f["contribution"] < 0 for f in r["factors"]["negative"])


def test_unscored_people_get_empty_predictive_fields(scored):
    project, _ = scored
    rows = with_predictions(project.engine, [{"person_id": "nobody"}],
                            lambda ids: pytest.fail("nothing to explain"))
    assert rows == [{"person_id": "nobody", "probability": None, "bucket": None,
                     "holdout": None, "surge": None, "factors": None}]


def test_leads_lists_with_a_note_when_the_models_files_are_gone(scored, tmp_path):
    """`leadrefinery leads` after the published model's directory was deleted: the ranked list
    with each row's bucket and probability, the factors `predict` cached, and a note on
    stderr saying which are not shown and why (it crashed on the missing file). Last in this
    module: it closes the shared project."""
    project, out = scored
    root = project.root
    shutil.copy(Path(leadrefinery.__file__).parent / "sample" / "model.yaml", root / "model.yaml")
    project.score()
    project.close()
    models = root / MODELS_DIR
    gone = models.rename(tmp_path / "gone")
    try:
        r = CliRunner().invoke(app, ["leads", "--project", str(root), "--format", "json",
                                     "--top", "500"])
    finally:
        gone.rename(models)
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    want = dict(zip(out["person_id"], out["bucket"], strict=True))
    assert len(rows) > 6 and all(x["bucket"] == want[x["person_id"]] for x in rows
                                 if x["person_id"] in want)
    assert sum(1 for x in rows if x["factors"]) == 3  # the 3 `predict` explained
    assert "predictive factors of" in r.stderr and "are missing" in r.stderr
