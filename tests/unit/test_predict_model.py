"""LeadModel: estimator conventions, honesty on noise, calibration, explanations, save/load."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from leadrefinery.errors import LeadRefineryError
from leadrefinery.predict import FeatureDescriber, LeadModel, NotFittedError
from leadrefinery.predict.errors import ModelFileError, TrainingDataError
from leadrefinery.predict.metrics import brier, chance_verdict, roc_auc
from leadrefinery.predict.model import Calibrator

FAST = {"max_rounds": 300, "early_stopping_rounds": 30, "learning_rate": 0.1, "n_jobs": 1}


def leads(n: int, seed: int = 0, signal: bool = True) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "logins_7d": rng.poisson(3, n).astype(float),
            "pages_30d": rng.poisson(10, n).astype(float),
            "days_since_signup": rng.integers(0, 90, n).astype(float),
            "is_webmail": rng.integers(0, 2, n),
            "country": pd.Categorical(rng.choice(["FR", "DE", "US", "BR", "IN"], n)),
            "source": rng.choice(["ads", "organic", "referral"], n),  # strings -> categories
        }
    )
    for i in range(6):
        X[f"noise_{i}"] = rng.normal(size=n)
    X.loc[rng.random(n) < 0.05, "pages_30d"] = np.nan
    if signal:
        logit = (
            -1.5
            + 0.45 * (X["logins_7d"] - 3)
            - 1.0 * X["is_webmail"]
            + 0.8 * (X["source"] == "referral")
            - 0.02 * X["days_since_signup"]
            + 0.5 * X["country"].isin(["US", "DE"])
        )
        y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    else:
        y = rng.integers(0, 2, n)
    return X, y


@pytest.fixture(scope="module")
def fitted() -> tuple[LeadModel, pd.DataFrame, np.ndarray]:
    X, y = leads(3000)
    labels = {
        "logins_7d": "{value:g} logins in the last 7 days",
        "is_webmail": {1: "webmail address", 0: "company email address"},
        "country": lambda v: f"based in {v}",
    }
    model = LeadModel(**FAST, describer=FeatureDescriber(labels)).fit(X, y)
    X_test, y_test = leads(1500, seed=1)
    return model, X_test, y_test


def test_unfitted_use_raises() -> None:
    model = LeadModel()
    X, _ = leads(10)
    for call in (model.predict_proba, model.explain, model.decision_function):
        with pytest.raises(NotFittedError) as info:
            call(X)
        assert isinstance(info.value, LeadRefineryError)
        assert isinstance(info.value, ValueError) and isinstance(info.value, AttributeError)
    with pytest.raises(NotFittedError):
        model.save("/tmp/never-written")


def test_fit_returns_self_and_follows_sklearn_conventions() -> None:
    X, y = leads(1200)
    model = LeadModel(**FAST, param_grid=[{"num_leaves": 7}])
    assert model.fit(X, y) is model
    assert not hasattr(LeadModel(), "booster_")  # learned state appears only at fit
    assert model.get_params()["valid_fraction"] == 0.3 and model.get_params()["n_tails"] == 3
    twin = clone(model)
    assert twin.get_params() == model.get_params() and not hasattr(twin, "booster_")
    p = model.predict_proba(X)
    assert p.shape == (1200, 2) and np.allclose(p.sum(axis=1), 1)
    assert list(model.classes_) == [0, 1] and model.n_features_in_ == 12


def test_learns_signal_and_respects_time_order(fitted) -> None:
    model, X_test, y_test = fitted
    auc = roc_auc(y_test, model.predict_proba(X_test)[:, 1])
    assert auc > 0.75
    assert model.n_train_ == 3000 and model.n_valid_ == 900
    # order: the validation tails are the newest rows, whatever order they come in
    X, y = leads(1000)
    t = pd.date_range("2024-01-01", periods=1000, freq="h").to_numpy()[::-1]  # newest first
    m = LeadModel(**FAST, param_grid=[{"num_leaves": 7}]).fit(X, y, order=t)
    assert m.window_["valid"][0] == str(pd.Timestamp(np.sort(t)[700]).isoformat())
    assert m.window_["valid"][1] == str(pd.Timestamp(t.max()).isoformat())
    assert m.window_["train"][0] == str(pd.Timestamp(t.min()).isoformat())


def test_rounds_come_from_every_tail_and_respect_the_floor() -> None:
    X, y = leads(2000, seed=11)
    model = LeadModel(**FAST, min_rounds=40, param_grid=[{"num_leaves": 7}, {"num_leaves": 15}])
    model.fit(X, y)
    assert len(model.tuning_) == 2 and model.best_params_ in [t["setting"] for t in model.tuning_]
    assert model.best_iteration_ >= 40
    assert model.n_rounds_ >= model.best_iteration_  # the final model sees more rows
    # a floor above the early-stopping patience still holds
    assert LeadModel(**FAST, min_rounds=200, param_grid=[{"num_leaves": 7}]).fit(
        X, y).best_iteration_ >= 200


def test_noise_labels_are_judged_not_better_than_chance() -> None:
    X, y = leads(3000, seed=5, signal=False)
    model = LeadModel(**FAST).fit(X, y)
    X_test, y_test = leads(2000, seed=6, signal=False)
    verdict = chance_verdict(y_test, model.predict_proba(X_test)[:, 1])
    assert not verdict.better_than_chance
    assert "not better than chance" in verdict.text


def test_one_outcome_only_is_refused() -> None:
    X, _ = leads(500)
    with pytest.raises(TrainingDataError, match="both outcomes"):
        LeadModel(**FAST).fit(X, np.zeros(500, dtype=int))


def test_calibrator_fixes_an_overconfident_score() -> None:
    rng = np.random.default_rng(2)
    true_logit = rng.normal(-1, 1, 6000)
    y = (rng.random(6000) < 1 / (1 + np.exp(-true_logit))).astype(int)
    z = 3 * true_logit + 1.0  # overconfident and shifted
    fit, test = slice(0, 3000), slice(3000, 6000)
    raw_brier = brier(y[test], 1 / (1 + np.exp(-z[test])))
    for kind in ("sigmoid", "isotonic"):
        cal = Calibrator.fit(kind, z[fit], y[fit])
        p = cal.apply(z[test])
        assert brier(y[test], p) < raw_brier - 0.01
        assert roc_auc(y[test], p) == pytest.approx(roc_auc(y[test], z[test]), abs=1e-9)


def test_calibration_improves_brier_when_the_rate_drifts() -> None:
    # conversion rate climbs over time; the newest slice re-anchors the probabilities
    X, y = leads(4000, seed=3, signal=False)
    rng = np.random.default_rng(4)
    logit = 0.6 * (X["logins_7d"] - 3) + np.linspace(-3, 0.5, 4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-logit))).astype(int)
    X_test = X.iloc[:1500].copy()
    y_test = (rng.random(1500) < 1 / (1 + np.exp(-(0.6 * (X_test["logins_7d"] - 3) + 0.5)))).astype(
        int
    )
    calibrated = LeadModel(**FAST, calibration="auto").fit(X, y)
    raw = LeadModel(**FAST, calibration="none").fit(X, y)
    b_cal = brier(y_test, calibrated.predict_proba(X_test)[:, 1])
    b_raw = brier(y_test, raw.predict_proba(X_test)[:, 1])
    assert b_cal < b_raw
    assert calibrated.calibrator_.kind in ("sigmoid", "isotonic")
    assert raw.calibrator_.kind == "none" and raw.calibration_report_ == {}


def test_auto_calibration_keeps_lightgbm_probability_when_no_map_carries_forward() -> None:
    # a stationary process: LightGBM's own probability is already calibrated, and a map must
    # beat it on every later tail to be used
    X, y = leads(4000, seed=12)
    model = LeadModel(**FAST, param_grid=[{"num_leaves": 7}]).fit(X, y)
    report = model.calibration_report_
    assert set(report) == {"brier_none", "brier_sigmoid", "brier_isotonic"}
    if model.calibrator_.kind != "none":
        assert report[f"brier_{model.calibrator_.kind}"] < report["brier_none"]


def test_explain_gives_three_and_three_factors_in_words(fitted) -> None:
    model, X_test, _ = fitted
    rows = X_test.head(50)
    explanations = model.explain(rows)
    assert len(explanations) == 50
    contrib = model.booster_.predict(model.schema_.transform(rows), pred_contrib=True)[:, :-1]
    full = 0
    for e, c, p in zip(explanations, contrib, model.predict_proba(rows)[:, 1], strict=True):
        # three each way, unless fewer features push that way for this lead
        assert len(e.positive) == min(3, int((c > 0).sum()))
        assert len(e.negative) == min(3, int((c < 0).sum()))
        full += len(e.positive) == 3 and len(e.negative) == 3
        assert all(f.contribution > 0 for f in e.positive)
        assert all(f.contribution < 0 for f in e.negative)
        assert [f.contribution for f in e.positive] == sorted(c[c > 0], reverse=True)[:3]
        assert e.probability == pytest.approx(p)
        assert all(isinstance(f.text, str) and f.text for f in e.positive + e.negative)
    assert full >= 40
    texts = [f.text for e in model.explain(X_test.head(200)) for f in e.positive + e.negative]
    assert any(t.endswith("logins in the last 7 days") for t in texts)
    assert any(t in ("webmail address", "company email address") for t in texts)
    assert any(t.startswith("based in ") for t in texts)
    assert any(" = " in t for t in texts)  # unlabelled features fall back to "field = value"
    json.dumps(explanations[0].to_dict())


def test_describer_fallbacks() -> None:
    d = FeatureDescriber({"logins_7d": "{value:g} logins in the last 7 days", "plan": "{value:g}"})
    assert d.describe("logins_7d", 7.0) == "7 logins in the last 7 days"
    assert d.describe("plan", "pro") == "plan = pro"  # template does not fit a string
    assert d.describe("pages", 12.0) == "pages = 12"
    assert d.describe("pages", float("nan")) == "pages unknown"


def test_save_load_round_trip(fitted, tmp_path) -> None:
    model, X_test, _ = fitted
    path = model.save(tmp_path / "model-v1")
    loaded = LeadModel.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(X_test), model.predict_proba(X_test))
    a, b = model.explain(X_test.head(3)), loaded.explain(X_test.head(3))
    assert [f.text for f in a[0].positive] == [f.text for f in b[0].positive]
    texts = [f.text for e in loaded.explain(X_test.head(50)) for f in e.positive + e.negative]
    assert "webmail address" in texts or "company email address" in texts  # value maps saved
    assert loaded.get_params()["calibration"] == model.get_params()["calibration"]
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format_version"] == 1 and manifest["schema"]["columns"][0] == "logins_7d"


def test_load_refuses_damaged_or_missing_files(fitted, tmp_path) -> None:
    model, _, _ = fitted
    with pytest.raises(ModelFileError, match="missing"):
        LeadModel.load(tmp_path / "nothing-here")
    path = model.save(tmp_path / "m")
    booster = path / "booster.txt"
    booster.write_text(booster.read_text().replace("num_leaves", "num_leaveZ", 1))
    with pytest.raises(ModelFileError, match="hash"):
        LeadModel.load(path)


def test_unseen_category_and_missing_column(fitted) -> None:
    model, X_test, _ = fitted
    X = X_test.head(4).copy()
    X["country"] = ["XX", "FR", None, "US"]  # unseen / missing categories score fine
    assert np.isfinite(model.predict_proba(X)).all()
    with pytest.raises(TrainingDataError, match="lacks"):
        model.predict_proba(X.drop(columns=["source"]))


def test_too_little_history_for_the_tails_is_refused() -> None:
    X, y = leads(100)
    with pytest.raises(TrainingDataError, match="validation tail"):
        LeadModel(**FAST, n_tails=5).fit(X, y)
    with pytest.raises(ValueError, match="n_tails"):
        LeadModel(n_tails=0).fit(X, y)
