"""Baselines the predictive model must beat, under the same split, in the same run.

    LogisticBaseline     one-hot + standard scaling + logistic regression (scikit-learn)
    OdooNaiveBayes       the frequency naive Bayes of Odoo CRM's predictive lead scoring
    HGBBaseline          scikit-learn's HistGradientBoostingClassifier with default settings and
                         native categoricals (the reference baseline quoted in issue 4)

All three follow scikit-learn's conventions (hyper-parameters in `__init__`, learned state ending
in `_`, `fit` returns self, unfitted use raises `NotFittedError`) and take the same pandas feature
frames as `LeadModel`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from .errors import TrainingDataError, check_is_fitted
from .frame import FeatureSchema

__all__ = ["HGBBaseline", "LogisticBaseline", "OdooNaiveBayes"]

MISSING = "(missing)"


def _labels(y: Any) -> np.ndarray:
    y_arr = np.asarray(y).ravel().astype(int)
    if not np.isin(y_arr, (0, 1)).all():
        raise TrainingDataError("labels must be 0/1")
    if y_arr.min() == y_arr.max():
        raise TrainingDataError(f"labels hold only one outcome ({y_arr[0]}); need won and lost")
    return y_arr


def _proba_2col(p1: np.ndarray) -> np.ndarray:
    return np.column_stack([1.0 - p1, p1])


class LogisticBaseline:
    """Logistic regression on one-hot categoricals and median-imputed, standardised numerics.

    Missing numerics also get a 0/1 "was missing" indicator; a missing categorical is its own
    level; a category unseen in training is all-zeros.
    """

    def __init__(self, C: float = 1.0, max_iter: int = 2000, min_frequency: int = 5) -> None:
        self.C = C
        self.max_iter = max_iter
        self.min_frequency = min_frequency

    def _prepare(self, X: pd.DataFrame) -> pd.DataFrame:
        frame = self.schema_.transform(X)
        for name in self.schema_.categorical:
            frame[name] = frame[name].astype(object).where(frame[name].notna(), MISSING)
        return frame

    def fit(self, X: pd.DataFrame, y: Any) -> LogisticBaseline:
        y_arr = _labels(y)
        self.schema_ = FeatureSchema.from_frame(X)
        numeric, categorical = self.schema_.numeric, list(self.schema_.categorical)
        steps = []
        if numeric:
            steps.append(
                (
                    "numeric",
                    Pipeline(
                        [
                            (
                                "impute",
                                SimpleImputer(
                                    strategy="median", add_indicator=True, keep_empty_features=True
                                ),
                            ),
                            ("scale", StandardScaler()),
                        ]
                    ),
                    numeric,
                )
            )
        if categorical:
            steps.append(
                (
                    "categorical",
                    OneHotEncoder(
                        handle_unknown="infrequent_if_exist",
                        min_frequency=self.min_frequency,
                        sparse_output=True,
                    ),
                    categorical,
                )
            )
        self.pipeline_ = Pipeline(
            [
                ("features", ColumnTransformer(steps)),
                ("logistic", LogisticRegression(C=self.C, max_iter=self.max_iter)),
            ]
        )
        self.pipeline_.fit(self._prepare(X), y_arr)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "pipeline_")
        return self.pipeline_.predict_proba(self._prepare(X))


class OdooNaiveBayes:
    """Odoo CRM's predictive lead scoring: per-field won/lost frequencies, naive-Bayes product.

    Faithful to `crm.lead._pls_get_naive_bayes_probabilities` and `_pls_update_frequency_table`
    in odoo/odoo, addons/crm/models/crm_lead.py (read at commit 694f48a59a2d):

    * a frequency table holds, per (field, value) seen on closed leads, won_count + 0.1 and
      lost_count + 0.1 ("we add 0.1 in each frequency ... should be +1 but it weights too much on
      small recordset");
    * unset values are neither counted nor used in scoring;
    * per field, P(value | won) = won_count(value) / sum of won_count over the field's values, and
      likewise for lost (each field normalised by its own total, since unset values are skipped);
    * the prior P(won) = team_won / team_total comes from the first stage's counts, which every
      closed lead increments: (n_won + 0.1) / (n_won + n_lost + 0.2);
    * probability = S(won) / (S(won) + S(lost)) with S = prior * product over the lead's fields;
      a value absent from the table is skipped; the result is clamped to [0.01 %, 99.99 %].

    Differences, because our data is not Odoo's: there is no per-sales-team table (one team), no
    stage field (Odoo also scores the current stage), no tag special case, the product is
    computed as a sum of logs (same value, no underflow with many fields), probabilities are not
    rounded to 0.01 %, and numeric fields - which Odoo does not score - are cut into `n_bins`
    training quantile bins so they can take part.
    """

    def __init__(self, prior: float = 0.1, n_bins: int = 10) -> None:
        self.prior = prior
        self.n_bins = n_bins

    def _values(self, X: pd.DataFrame) -> dict[str, pd.Series]:
        """Each field as a Series of strings (bins for numerics), missing stays missing."""
        frame = self.schema_.transform(X)
        out: dict[str, pd.Series] = {}
        for name in self.schema_.columns:
            col = frame[name]
            if name in self.schema_.categorical:
                out[name] = col.astype("string")
            else:
                values = col.to_numpy(dtype=float)
                edges = self.bin_edges_[name]
                bins = np.searchsorted(edges, values, side="right").astype(float)
                bins[np.isnan(values)] = np.nan
                out[name] = pd.Series(bins, index=frame.index).astype("Int64").astype("string")
        return out

    def fit(self, X: pd.DataFrame, y: Any) -> OdooNaiveBayes:
        y_arr = _labels(y)
        self.schema_ = FeatureSchema.from_frame(X)
        frame = self.schema_.transform(X)
        self.bin_edges_: dict[str, np.ndarray] = {}
        for name in self.schema_.numeric:
            values = frame[name].to_numpy(dtype=float)
            values = values[~np.isnan(values)]
            if values.size == 0:
                self.bin_edges_[name] = np.array([])
                continue
            qs = np.quantile(values, np.linspace(0, 1, self.n_bins + 1)[1:-1])
            self.bin_edges_[name] = np.unique(qs)
        rows = []
        for name, col in self._values(X).items():
            counts = (
                pd.DataFrame({"value": col, "won": y_arr, "lost": 1 - y_arr})
                .dropna(subset=["value"])
                .groupby("value")[["won", "lost"]]
                .sum()
            )
            for value, r in counts.iterrows():
                rows.append((name, str(value), r["won"] + self.prior, r["lost"] + self.prior))
        self.frequency_table_ = pd.DataFrame(
            rows, columns=["field", "value", "won_count", "lost_count"]
        )
        n_won = float(y_arr.sum())
        n_lost = float(y_arr.size - n_won)
        self.team_won_ = n_won + self.prior
        self.team_lost_ = n_lost + self.prior
        # log P(value|won) - log P(value|lost), per field, normalised by the field's own totals
        table = self.frequency_table_
        totals = table.groupby("field")[["won_count", "lost_count"]].transform("sum")
        log_ratio = np.log(table["won_count"] / totals["won_count"]) - np.log(
            table["lost_count"] / totals["lost_count"]
        )
        self.log_ratio_: dict[str, dict[str, float]] = {}
        for name, value, lr in zip(table["field"], table["value"], log_ratio, strict=True):
            self.log_ratio_.setdefault(name, {})[value] = float(lr)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "log_ratio_")
        total = np.full(len(X), math.log(self.team_won_) - math.log(self.team_lost_))
        for name, col in self._values(X).items():
            lr = col.map(self.log_ratio_.get(name, {})).to_numpy(dtype=float, na_value=0.0)
            total += np.nan_to_num(lr, nan=0.0)  # unset or unseen value: skipped, as in Odoo
        p = 1.0 / (1.0 + np.exp(-total))
        return _proba_2col(np.clip(p, 0.0001, 0.9999))


class HGBBaseline:
    """Default `HistGradientBoostingClassifier` with `categorical_features="from_dtype"`."""

    def __init__(self, random_state: int = 0) -> None:
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, y: Any) -> HGBBaseline:
        y_arr = _labels(y)
        self.schema_ = FeatureSchema.from_frame(X)
        self.model_ = HistGradientBoostingClassifier(
            categorical_features="from_dtype", random_state=self.random_state
        )
        self.model_.fit(self.schema_.transform(X), y_arr)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "model_")
        return self.model_.predict_proba(self.schema_.transform(X))
