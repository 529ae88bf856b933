"""How good is a lead score? Ranking, concentration and calibration metrics, with honesty.

Every function takes `y` (0/1 outcomes) and `p` (scores; probabilities where calibration
matters) as array-likes of the same length. Ties in `p` are handled as a random tie-break would
on average (the expected value), so a coarse score (a naive Bayes with three fields, a points
model) is neither rewarded nor punished by the order rows happen to come in.

    roc_auc, pr_auc, brier              the usual three
    lift_at, capture_at                 top-k concentration ("top decile lift", "top 20 % capture")
    auc_confidence_interval             DeLong (default) or bootstrap
    chance_verdict                      better than chance iff the CI's lower bound is above 0.5
    calibration_table                   deciles of predicted probability: mean predicted vs observed
    conversion_by_bucket                leads, conversions and rate per A/B/C/D bucket
    evaluate                            all of the above for one (y, p) pair
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm, rankdata

from .errors import TrainingDataError

__all__ = [
    "ChanceVerdict",
    "Evaluation",
    "auc_confidence_interval",
    "brier",
    "calibration_table",
    "capture_at",
    "chance_verdict",
    "conversion_by_bucket",
    "evaluate",
    "lift_at",
    "pr_auc",
    "roc_auc",
]


def _arrays(y: Any, p: Any) -> tuple[np.ndarray, np.ndarray]:
    y_arr = np.asarray(y, dtype=float).ravel()
    p_arr = np.asarray(p, dtype=float).ravel()
    if y_arr.shape != p_arr.shape:
        raise ValueError(f"y has {y_arr.size} values but p has {p_arr.size}")
    if not np.isin(y_arr, (0.0, 1.0)).all():
        raise ValueError("y must contain only 0 and 1")
    if np.isnan(p_arr).any():
        raise ValueError("p contains NaN scores")
    return y_arr.astype(np.int8), p_arr


def _both_classes(y: np.ndarray) -> None:
    pos = int(y.sum())
    if pos == 0 or pos == y.size:
        raise TrainingDataError(
            f"AUC needs both outcomes; got {pos} positives out of {y.size} rows"
        )


def roc_auc(y: Any, p: Any) -> float:
    """Area under the ROC curve: P(score of a random positive > a random negative), ties = 1/2."""
    y_arr, p_arr = _arrays(y, p)
    _both_classes(y_arr)
    ranks = rankdata(p_arr)  # mid-ranks: ties count one half
    m = int(y_arr.sum())
    n = y_arr.size - m
    return float((ranks[y_arr == 1].sum() - m * (m + 1) / 2) / (m * n))


def pr_auc(y: Any, p: Any) -> float:
    """Average precision (area under the precision-recall curve, step-wise, no interpolation).

    Tied scores form one threshold, as in scikit-learn's `average_precision_score`.
    """
    y_arr, p_arr = _arrays(y, p)
    _both_classes(y_arr)
    order = np.argsort(-p_arr, kind="stable")
    ys, ps = y_arr[order], p_arr[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(ps)), ys.size - 1]
    tp = np.cumsum(ys)[last_of_tie]
    seen = last_of_tie + 1
    precision = tp / seen
    recall = tp / tp[-1]
    d_recall = np.diff(np.r_[0.0, recall])
    return float((d_recall * precision).sum())


def brier(y: Any, p: Any) -> float:
    """Mean squared error of the probability: 0 is perfect; a constant base rate b scores
    b * (1 - b)."""
    y_arr, p_arr = _arrays(y, p)
    return float(np.mean((p_arr - y_arr) ** 2))


def _expected_positives_in_top(y: np.ndarray, p: np.ndarray, k: int) -> float:
    """Positives among the k highest scores; rows tied at the cut-off count pro rata."""
    if k <= 0:
        return 0.0
    if k >= y.size:
        return float(y.sum())
    order = np.argsort(-p, kind="stable")
    cut = p[order[k - 1]]
    above = p > cut
    tied = p == cut
    n_above = int(above.sum())
    pos_tied = float(y[tied].sum())
    return float(y[above].sum()) + (k - n_above) * pos_tied / int(tied.sum())


def _top_k(n: int, fraction: float) -> int:
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    return max(1, int(round(fraction * n)))


def capture_at(y: Any, p: Any, fraction: float = 0.2) -> float:
    """Share of all positives found in the top `fraction` of rows by score."""
    y_arr, p_arr = _arrays(y, p)
    total = int(y_arr.sum())
    if total == 0:
        return float("nan")
    k = _top_k(y_arr.size, fraction)
    return float(_expected_positives_in_top(y_arr, p_arr, k) / total)


def lift_at(y: Any, p: Any, fraction: float = 0.1) -> float:
    """Positive rate in the top `fraction` by score divided by the overall positive rate."""
    y_arr, p_arr = _arrays(y, p)
    base = y_arr.mean()
    if base == 0:
        return float("nan")
    k = _top_k(y_arr.size, fraction)
    return float((_expected_positives_in_top(y_arr, p_arr, k) / k) / base)


def _delong_se(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """AUC and its DeLong standard error (mid-rank algorithm of Sun & Xu, 2014)."""
    pos, neg = p[y == 1], p[y == 0]
    m, n = pos.size, neg.size
    tz = rankdata(np.r_[pos, neg])
    tx = rankdata(pos)
    ty = rankdata(neg)
    auc = (tz[:m].sum() - m * (m + 1) / 2) / (m * n)
    v_pos = (tz[:m] - tx) / n
    v_neg = 1.0 - (tz[m:] - ty) / m
    var = (np.var(v_pos, ddof=1) if m > 1 else 0.0) / m + (
        np.var(v_neg, ddof=1) if n > 1 else 0.0
    ) / n
    return float(auc), float(math.sqrt(max(var, 0.0)))


def auc_confidence_interval(
    y: Any,
    p: Any,
    *,
    level: float = 0.95,
    method: str = "delong",
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(auc, low, high). `method` is "delong" (fast, default) or "bootstrap" (stratified)."""
    y_arr, p_arr = _arrays(y, p)
    _both_classes(y_arr)
    if method == "delong":
        auc, se = _delong_se(y_arr, p_arr)
        z = float(norm.ppf(0.5 + level / 2))
        return auc, max(0.0, auc - z * se), min(1.0, auc + z * se)
    if method == "bootstrap":
        rng = np.random.default_rng(seed)
        pos_idx, neg_idx = np.flatnonzero(y_arr == 1), np.flatnonzero(y_arr == 0)
        aucs = np.empty(n_boot)
        for b in range(n_boot):
            idx = np.r_[rng.choice(pos_idx, pos_idx.size), rng.choice(neg_idx, neg_idx.size)]
            aucs[b] = roc_auc(y_arr[idx], p_arr[idx])
        alpha = (1 - level) / 2
        low, high = np.quantile(aucs, [alpha, 1 - alpha])
        return roc_auc(y_arr, p_arr), float(low), float(high)
    raise ValueError(f"unknown method {method!r}; use 'delong' or 'bootstrap'")


@dataclass(frozen=True)
class ChanceVerdict:
    """Is the score better than a coin? Yes only if the whole AUC interval is above 0.5."""

    auc: float
    low: float
    high: float
    level: float
    better_than_chance: bool

    @property
    def text(self) -> str:
        ci = f"AUC {self.auc:.3f}, {self.level:.0%} CI {self.low:.3f}-{self.high:.3f}"
        if self.better_than_chance:
            return f"better than chance ({ci})"
        return f"not better than chance ({ci}): do not use this score to rank leads"

    def __str__(self) -> str:
        return self.text


def chance_verdict(y: Any, p: Any, *, level: float = 0.95, method: str = "delong") -> ChanceVerdict:
    auc, low, high = auc_confidence_interval(y, p, level=level, method=method)
    return ChanceVerdict(auc, low, high, level, better_than_chance=low > 0.5)


def calibration_table(y: Any, p: Any, n_bins: int = 10) -> pd.DataFrame:
    """Equal-count bins of predicted probability (bin 1 = lowest): n, mean predicted, observed."""
    y_arr, p_arr = _arrays(y, p)
    n_bins = max(1, min(n_bins, y_arr.size))
    ranks = rankdata(p_arr, method="ordinal") - 1  # distinct 0..n-1, ties by position
    bins = (ranks * n_bins // y_arr.size).astype(int) + 1
    frame = pd.DataFrame({"bin": bins, "p": p_arr, "y": y_arr})
    table = frame.groupby("bin").agg(
        n=("y", "size"),
        mean_predicted=("p", "mean"),
        observed_rate=("y", "mean"),
        positives=("y", "sum"),
        p_min=("p", "min"),
        p_max=("p", "max"),
    )
    return table.reset_index()


def conversion_by_bucket(
    y: Any, buckets: Any, labels: Sequence[str] = ("A", "B", "C", "D")
) -> pd.DataFrame:
    """Per bucket: leads, share of leads, conversions, conversion rate, share of conversions."""
    y_arr = np.asarray(y, dtype=float).ravel()
    b = pd.Series(np.asarray(buckets, dtype=object).ravel(), name="bucket")
    frame = pd.DataFrame({"bucket": b, "y": y_arr})
    grouped = frame.groupby("bucket")["y"].agg(["size", "sum"])
    grouped = grouped.reindex(list(labels), fill_value=0)
    total_n, total_pos = max(len(frame), 1), max(float(y_arr.sum()), 1.0)
    out = pd.DataFrame(
        {
            "bucket": list(labels),
            "leads": grouped["size"].to_numpy().astype(int),
            "conversions": grouped["sum"].to_numpy().astype(int),
        }
    )
    out["share_of_leads"] = out["leads"] / total_n
    leads = out["leads"].replace(0, np.nan)
    out["conversion_rate"] = (out["conversions"] / leads).fillna(0.0)
    out["share_of_conversions"] = out["conversions"] / total_pos
    return out


@dataclass(frozen=True)
class Evaluation:
    """The headline numbers of one score on one labelled set."""

    n: int
    positives: int
    base_rate: float
    auc: float
    auc_low: float
    auc_high: float
    pr_auc: float
    lift_10: float
    lift_20: float
    capture_10: float
    capture_20: float
    brier: float
    verdict: ChanceVerdict

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["verdict"] = {**asdict(self.verdict), "text": self.verdict.text}
        return d


def evaluate(y: Any, p: Any, *, level: float = 0.95, ci_method: str = "delong") -> Evaluation:
    y_arr, p_arr = _arrays(y, p)
    verdict = chance_verdict(y_arr, p_arr, level=level, method=ci_method)
    return Evaluation(
        n=int(y_arr.size),
        positives=int(y_arr.sum()),
        base_rate=float(y_arr.mean()),
        auc=verdict.auc,
        auc_low=verdict.low,
        auc_high=verdict.high,
        pr_auc=pr_auc(y_arr, p_arr),
        lift_10=lift_at(y_arr, p_arr, 0.1),
        lift_20=lift_at(y_arr, p_arr, 0.2),
        capture_10=capture_at(y_arr, p_arr, 0.1),
        capture_20=capture_at(y_arr, p_arr, 0.2),
        brier=brier(y_arr, p_arr),
        verdict=verdict,
    )
