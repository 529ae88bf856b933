"""Buckets by volume, a stable control holdout, and the model card that reports them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from leadrefinery.predict import BucketScheme, LeadModel, ModelCard, NotFittedError
from leadrefinery.predict.buckets import holdout_draw
from leadrefinery.predict.metrics import evaluate


def test_default_buckets_follow_volume_quantiles() -> None:
    p = np.random.default_rng(0).random(10_000)
    scheme = BucketScheme().fit(p)
    buckets = scheme.assign(p)
    shares = pd.Series(buckets).value_counts(normalize=True)
    assert shares["A"] == pytest.approx(0.10, abs=0.001)
    assert shares["B"] == pytest.approx(0.15, abs=0.001)
    assert shares["C"] == pytest.approx(0.25, abs=0.001)
    assert shares["D"] == pytest.approx(0.50, abs=0.001)
    # better bucket <=> higher probability
    assert p[buckets == "A"].min() > p[buckets == "B"].max() > p[buckets == "C"].max()


def test_thresholds_stay_fixed_after_fit() -> None:
    scheme = BucketScheme(
        cumulative=(0.2, 0.5), labels=("hot", "warm", "cold"), holdout_buckets=("cold",)
    ).fit(np.linspace(0, 1, 101))
    assert list(scheme.assign([0.95, 0.6, 0.1])) == ["hot", "warm", "cold"]
    assert list(scheme.assign([0.99, 0.98])) == ["hot", "hot"]  # a new population is not re-cut


def test_bad_scheme_and_unfitted_use() -> None:
    with pytest.raises(ValueError, match="increase"):
        BucketScheme(cumulative=(0.5, 0.25, 0.1)).fit([0.1, 0.2])
    with pytest.raises(ValueError, match="labels"):
        BucketScheme(cumulative=(0.5,)).fit([0.1, 0.2])
    with pytest.raises(NotFittedError):
        BucketScheme().assign([0.3])


def test_holdout_is_stable_and_only_in_low_buckets() -> None:
    rng = np.random.default_rng(1)
    ids = [f"person-{i}" for i in range(20_000)]
    p = rng.random(20_000)
    scheme = BucketScheme(seed=7).fit(p)
    buckets = scheme.assign(p)
    hold = scheme.holdout(ids, buckets)
    low = np.isin(buckets, ["C", "D"])
    assert not hold[~low].any()
    assert hold[low].mean() == pytest.approx(0.10, abs=0.01)
    # re-scoring: new probabilities, shuffled order -> a C/D person keeps their draw
    perm = rng.permutation(20_000)
    again = scheme.holdout([ids[i] for i in perm], buckets[perm])
    np.testing.assert_array_equal(again, hold[perm])
    assert holdout_draw("person-1", 7) == holdout_draw("person-1", 7) != holdout_draw("person-1", 8)
    frame = scheme.score(ids[:5], p[:5])
    assert list(frame.columns) == ["person_id", "probability", "bucket", "holdout"]


def test_scheme_round_trips_through_a_dict() -> None:
    scheme = BucketScheme(holdout_share=0.2).fit(np.linspace(0, 1, 50))
    again = BucketScheme.from_dict(json.loads(json.dumps(scheme.to_dict())))
    p = np.linspace(0, 1, 17)
    assert list(again.assign(p)) == list(scheme.assign(p))


def test_model_card(tmp_path) -> None:
    rng = np.random.default_rng(2)
    n = 1500
    X = pd.DataFrame({"x": rng.normal(size=n), "c": pd.Categorical(rng.choice(["u", "v"], n))})
    y = (rng.random(n) < 1 / (1 + np.exp(-(2 * X["x"] - 1)))).astype(int)
    model = LeadModel(max_rounds=100, learning_rate=0.1, param_grid=[{"num_leaves": 7}], n_jobs=1)
    model.fit(X.iloc[:1000], y[:1000])
    p = model.predict_proba(X.iloc[1000:])[:, 1]
    card = ModelCard.build(
        model,
        y[1000:],
        p,
        name="demo",
        test_window=(1000, 1499),
        baselines={"constant": evaluate(y[1000:], np.full(500, 0.3))},
    )
    d = json.loads(card.to_json())
    assert d["counts"]["test"] == 500 and d["counts"]["train"] == model.n_train_
    assert d["better_than_chance"] and d["verdict"].startswith("better than chance")
    assert {"auc", "pr_auc", "brier", "lift_10", "capture_20"} <= set(d["metrics"])
    assert [r["bucket"] for r in d["conversion_by_bucket"]][:4] == ["A", "B", "C", "D"]
    assert len(d["calibration"]) == 10
    assert d["baselines"][0]["model"] == "constant"
    assert not d["baselines"][0]["better_than_chance"]
    text = card.to_markdown()
    assert "Verdict: better than chance" in text and "| constant |" in text
    model.save(tmp_path / "m", card=card)
    assert (tmp_path / "m" / "card.md").read_text().startswith("# Model card: demo")
