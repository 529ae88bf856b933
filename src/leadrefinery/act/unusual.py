"""Unusual trial usage: an isolation forest over per-trial usage features, with reasons.

The declared abuse rules catch what someone thought of; this flags what nobody wrote a rule
for — a trial whose usage looks like few others in the population — and says *which features*
made it unusual, so an alert can carry evidence ("guests_max = 40, typical 3").

    det = UnusualUsageDetector(contamination=0.01, random_state=0).fit(features)  # one row/person
    det.predict(features)          # -1 unusual, 1 normal (scikit-learn's outlier convention)
    det.score_samples(features)    # lower = more unusual
    det.explain(features)          # flagged rows: score, and the features behind each flag

It follows scikit-learn's estimator conventions: hyper-parameters in `__init__`, learned state
in attributes ending in `_`, `fit` returns self, using it unfitted raises `NotFittedError`.
Input is a pandas DataFrame of numeric (or boolean) columns, one row per person (its index is
kept in `explain`); missing values are filled with the median learned at fit.

Why a feature made a row unusual — two measures per feature, both reported:

* `z`: the robust z-score, (value − median) / robust scale (MAD × 1.4826; when more than half
  the population has the same value — typical for counts of rare actions — the mean absolute
  deviation, then the standard deviation). Says how far off the feature is on its own.
* `contribution`: how much less anomalous the row becomes when only that feature is set to
  its median (the forest's score with it, minus the score without). It reads the model itself,
  so it also credits features that are unusual only in combination.

A feature is named as a reason when its contribution is positive; reasons are sorted by
contribution, at most `max_reasons` of them.

Two choices that differ from `IsolationForest`'s defaults, both for the same reason — a trial
far out in *one* feature must stand out:

* `max_samples=1.0` (every tree sees the whole population): with the usual 256-row
  subsamples a planted outlier is missing from most trees, and a tree places a value it has not
  seen like the most extreme value it has, so single-feature outliers drown among the natural
  tails of heavy-tailed usage counts.
* For the same reason a forest cannot rank a *new* row's value beyond the training range (60
  guests scores like the training maximum). A row with a feature outside the range seen at fit
  by more than `z_limit` robust scales is therefore flagged as well (`beyond_range`), with that
  feature as its first reason. `z_limit=None` turns this off.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.ensemble import IsolationForest
from sklearn.utils.validation import check_is_fitted

from ..errors import InputError

MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution × this = its standard deviation
MEAN_AD_TO_SIGMA = 1.2533  # mean absolute deviation of a normal × this = sigma


def robust_scale(x: np.ndarray) -> float:
    """A spread that ignores outliers; never zero (1.0 for a constant column)."""
    med = np.median(x)
    for s in (MAD_TO_SIGMA * np.median(np.abs(x - med)),
              MEAN_AD_TO_SIGMA * np.mean(np.abs(x - med)),
              np.std(x)):
        if s > 1e-12:
            return float(s)
    return 1.0


class UnusualUsageDetector(OutlierMixin, BaseEstimator):
    """Isolation forest over usage features that explains each flag by feature."""

    def __init__(
        self,
        *,
        n_estimators: int = 200,
        max_samples: int | float | str = 1.0,
        contamination: float | str = 0.02,
        max_features: float = 1.0,
        max_reasons: int = 3,
        z_limit: float | None = 6.0,
        random_state: int | None = None,
        n_jobs: int | None = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.contamination = contamination
        self.max_features = max_features
        self.max_reasons = max_reasons
        self.z_limit = z_limit
        self.random_state = random_state
        self.n_jobs = n_jobs

    # -- input ------------------------------------------------------------------------------

    def _frame(self, X: pd.DataFrame, *, fitting: bool) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            raise InputError("usage features must be a pandas DataFrame, one row per person")
        if fitting:
            bad = [c for c in X.columns
                   if not (pd.api.types.is_numeric_dtype(X[c]) or pd.api.types.is_bool_dtype(X[c]))]
            if bad:
                raise InputError(
                    f"usage features must be numeric; not: {', '.join(map(str, bad))} "
                    "(encode categories as numbers or leave them out)", field=str(bad[0]))
            if len(X) < 2:
                raise InputError("need at least two rows (people) to learn what usual is")
            names = [str(c) for c in X.columns]
        else:
            names = list(self.feature_names_in_)
            missing = [c for c in names if c not in X.columns]
            if missing:
                raise InputError(f"usage features lack the columns seen at fit: "
                                 f"{', '.join(missing)}", field=missing[0])
        return X.loc[:, names].astype("float64")

    def _matrix(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "forest_")
        m = self._frame(X, fitting=False).to_numpy(copy=True)
        holes = np.isnan(m)
        if holes.any():
            m[holes] = np.take(self.median_, np.nonzero(holes)[1])
        return m

    # -- scikit-learn API -------------------------------------------------------------------

    def fit(self, X: pd.DataFrame, y: Any = None) -> UnusualUsageDetector:
        frame = self._frame(X, fitting=True)
        self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        self.n_features_in_ = frame.shape[1]
        m = frame.to_numpy(copy=True)
        med = np.nanmedian(m, axis=0)
        self.median_ = np.where(np.isnan(med), 0.0, med)
        holes = np.isnan(m)
        if holes.any():
            m[holes] = np.take(self.median_, np.nonzero(holes)[1])
        self.scale_ = np.array([robust_scale(m[:, j]) for j in range(m.shape[1])])
        self.min_, self.max_ = m.min(axis=0), m.max(axis=0)
        self.forest_ = IsolationForest(
            n_estimators=self.n_estimators, max_samples=self.max_samples,
            contamination=self.contamination, max_features=self.max_features,
            random_state=self.random_state, n_jobs=self.n_jobs,
        ).fit(m)
        self.offset_ = self.forest_.offset_
        return self

    def score_samples(self, X: pd.DataFrame) -> np.ndarray:
        """The forest's anomaly score: lower is more unusual (scikit-learn's convention)."""
        m = self._matrix(X)  # first: it checks the model is fitted
        return self.forest_.score_samples(m)

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """score_samples − offset_: negative for unusual rows."""
        return self.score_samples(X) - self.offset_

    def beyond_range(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per row and feature: outside the training range by more than `z_limit` scales."""
        m = self._matrix(X)
        cols = list(self.feature_names_in_)
        if self.z_limit is None:
            return pd.DataFrame(False, index=X.index, columns=cols)
        over = np.maximum(m - self.max_, self.min_ - m) / self.scale_
        z = np.abs(m - self.median_) / self.scale_
        return pd.DataFrame((over > 0) & (z > self.z_limit), index=X.index, columns=cols)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """-1 for unusual rows (the forest says so, or a feature is far beyond the training
        range), 1 for the others."""
        unusual = (self.decision_function(X) < 0) | self.beyond_range(X).to_numpy().any(axis=1)
        return np.where(unusual, -1, 1)

    # -- reasons ----------------------------------------------------------------------------

    def robust_z(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per-feature robust z-scores, same index and columns as the fitted features."""
        m = self._matrix(X)
        return pd.DataFrame((m - self.median_) / self.scale_, index=X.index,
                            columns=list(self.feature_names_in_))

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """For each row and feature: how much more usual the row scores when that feature alone
        is set to its median (positive = the feature makes the row unusual)."""
        m = self._matrix(X)
        base = self.forest_.score_samples(m)
        n, k = m.shape
        probes = np.repeat(m[None, :, :], k, axis=0)  # (feature, row, feature)
        for j in range(k):
            probes[j, :, j] = self.median_[j]
        scores = self.forest_.score_samples(probes.reshape(k * n, k)).reshape(k, n)
        return pd.DataFrame((scores - base).T, index=X.index, columns=list(self.feature_names_in_))

    def explain(self, X: pd.DataFrame, *, only_flagged: bool = True) -> pd.DataFrame:
        """One row per flagged person (all rows with `only_flagged=False`), most unusual first.

        Columns: `score` (decision function, negative = unusual), `beyond_range` (bool),
        `unusual` (bool) and `reasons`: a list of `{feature, value, median, z, contribution,
        beyond_range, detail}` — features beyond the training range first, then the largest
        contributions — ready to go into an alert's `evidence` (`detail` is the sentence).
        """
        decision = self.decision_function(X)
        beyond = self.beyond_range(X)
        far = beyond.to_numpy().any(axis=1)
        unusual = (decision < 0) | far
        keep = unusual if only_flagged else np.ones(len(X), dtype=bool)
        sub = X.loc[keep]
        out = pd.DataFrame({"score": decision[keep], "beyond_range": far[keep],
                            "unusual": unusual[keep]}, index=sub.index)
        if len(sub) == 0:
            out["reasons"] = pd.Series([], dtype=object)
            return out
        z = self.robust_z(sub)
        contrib = self.contributions(sub)
        values = self._frame(sub, fitting=False)
        beyond = beyond.loc[keep]
        names = list(self.feature_names_in_)
        reasons = []
        for i in range(len(sub)):
            c, b = contrib.iloc[i], beyond.iloc[i]
            picked = [f for f in z.iloc[i].abs().sort_values(ascending=False).index if b[f]]
            picked += [f for f in c[c > 0].sort_values(ascending=False).index if not b[f]]
            reasons.append([_reason(f, values.iloc[i][f], self.median_[names.index(f)],
                                    z.iloc[i][f], c[f], b[f])
                            for f in picked[: self.max_reasons]])
        out["reasons"] = reasons
        return out.sort_values(["beyond_range", "score"], ascending=[False, True])


def _reason(feature: str, value: Any, median: Any, z: float, contribution: float,
            beyond: bool) -> dict[str, Any]:
    v, m = _plain(value), _plain(median)
    return {"feature": feature, "value": v, "median": m, "z": round(float(z), 2),
            "contribution": round(float(contribution), 4), "beyond_range": bool(beyond),
            "detail": f"{feature} = {v} (typical {m}, {float(z):+.1f} robust sd"
                      + (", beyond anything seen)" if beyond else ")")}


def _plain(v: Any) -> float | int | None:
    v = float(v)
    if np.isnan(v):
        return None
    return int(v) if v.is_integer() else round(v, 4)
