"""Metrics against values computed by hand, and the chance verdict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadrefinery.predict.errors import TrainingDataError
from leadrefinery.predict.metrics import (
    auc_confidence_interval,
    brier,
    calibration_table,
    capture_at,
    chance_verdict,
    conversion_by_bucket,
    evaluate,
    lift_at,
    pr_auc,
    roc_auc,
)

# 10 leads, 4 conversions, scores all distinct, best first
Y = np.array([1, 1, 0, 1, 0, 0, 1, 0, 0, 0])
P = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.15, 0.1])


def test_auc_by_hand() -> None:
    # pairs (pos, neg) ranked right: pos 0.9 beats 6, 0.8 beats 6, 0.6 beats 5, 0.3 beats 3 = 20/24
    assert roc_auc(Y, P) == pytest.approx(20 / 24)


def test_auc_counts_ties_as_half() -> None:
    assert roc_auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    # pos 0.9 vs negs (0.9, 0.0): 0.5 + 1; pos 0.1 vs negs: 0 + 1
    assert roc_auc([1, 0, 1, 0], [0.9, 0.9, 0.1, 0.0]) == pytest.approx(2.5 / 4)


def test_pr_auc_by_hand() -> None:
    # precision at each positive: 1/1, 2/2, 3/4, 4/7; each recall step is 1/4
    assert pr_auc(Y, P) == pytest.approx((1 + 1 + 3 / 4 + 4 / 7) / 4)


def test_lift_and_capture_by_hand() -> None:
    # top 10 % = 1 lead (converted): rate 1.0 / base 0.4 = 2.5
    assert lift_at(Y, P, 0.1) == pytest.approx(2.5)
    # top 20 % = 2 leads, both converted: 2 of 4 conversions
    assert capture_at(Y, P, 0.2) == pytest.approx(0.5)
    assert lift_at(Y, P, 0.2) == pytest.approx(1.0 / 0.4)
    # top 50 % = 5 leads, 3 conversions
    assert capture_at(Y, P, 0.5) == pytest.approx(3 / 4)


def test_ties_at_the_cut_count_pro_rata() -> None:
    # a constant score: the top 20 % holds 20 % of the conversions on average, lift 1
    y = np.array([1, 0, 0, 0, 1, 0, 0, 0, 0, 0])
    p = np.full(10, 0.3)
    assert capture_at(y, p, 0.2) == pytest.approx(0.2)
    assert lift_at(y, p, 0.1) == pytest.approx(1.0)


def test_brier_by_hand() -> None:
    assert brier([1, 0], [0.8, 0.4]) == pytest.approx((0.04 + 0.16) / 2)


def test_auc_needs_both_outcomes() -> None:
    with pytest.raises(TrainingDataError, match="both outcomes"):
        roc_auc([1, 1, 1], [0.1, 0.2, 0.3])


def test_delong_interval_matches_bootstrap_roughly() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    p = y * 0.5 + rng.normal(size=400)
    auc, lo, hi = auc_confidence_interval(y, p)
    b_auc, b_lo, b_hi = auc_confidence_interval(y, p, method="bootstrap", n_boot=300)
    assert lo < auc < hi
    assert auc == pytest.approx(b_auc)
    assert lo == pytest.approx(b_lo, abs=0.02) and hi == pytest.approx(b_hi, abs=0.02)


def test_verdict_says_not_better_than_chance_for_noise() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    verdict = chance_verdict(y, rng.random(2000))
    assert not verdict.better_than_chance
    assert verdict.text.startswith("not better than chance")
    strong = chance_verdict(y, y + rng.normal(size=2000))
    assert strong.better_than_chance and strong.text.startswith("better than chance")


def test_calibration_table_deciles() -> None:
    p = np.linspace(0.01, 0.99, 100)
    y = (np.arange(100) % 2 == 0).astype(int)
    table = calibration_table(y, p, n_bins=10)
    assert list(table["bin"]) == list(range(1, 11))
    assert table["n"].tolist() == [10] * 10
    assert table["mean_predicted"].is_monotonic_increasing
    assert table["observed_rate"].tolist() == [0.5] * 10
    assert table["positives"].sum() == 50


def test_conversion_by_bucket() -> None:
    y = [1, 0, 1, 0, 0, 0]
    out = conversion_by_bucket(y, ["A", "A", "B", "D", "D", "D"])
    assert out["bucket"].tolist() == ["A", "B", "C", "D"]
    assert out["leads"].tolist() == [2, 1, 0, 3]
    assert out["conversions"].tolist() == [1, 1, 0, 0]
    assert out["conversion_rate"].tolist() == pytest.approx([0.5, 1.0, 0.0, 0.0])
    assert out["share_of_conversions"].tolist() == pytest.approx([0.5, 0.5, 0.0, 0.0])


def test_evaluate_bundles_everything() -> None:
    ev = evaluate(Y, P)
    assert ev.n == 10 and ev.positives == 4 and ev.base_rate == pytest.approx(0.4)
    assert ev.auc == pytest.approx(20 / 24)
    assert ev.capture_20 == pytest.approx(0.5)
    d = ev.to_dict()
    assert d["verdict"]["text"] == ev.verdict.text
    assert isinstance(pd.Series(d).to_json(), str)
