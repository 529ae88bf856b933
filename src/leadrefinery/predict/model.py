"""`LeadModel`: gradient boosting trained on your own conversions, honestly validated.

How `fit(X, y, order=...)` uses the rows, oldest to newest (`order` is the time of each row):

    |<-------------------- older rows -------------------->|<-tail 1->|<-tail 2->|<-tail 3->|
                                                             newest `valid_fraction` (30 %)

1. Each setting of a small grid (`param_grid`) is trained, once per tail, on all the rows before
   that tail and scored on the tail after every boosting round (early stopping ends a run once
   it stops improving). The setting and round count with the best score averaged over the tails
   win; `min_rounds` is a floor. Several tails make the choice robust to one odd period (a single
   tail once stopped a model after one round).
2. The winning setting's out-of-fold scores on the tails choose the calibration: none (LightGBM's
   own probability), Platt or isotonic, whichever has the lowest cross-fitted Brier score. Every
   map is monotone, so calibration cannot change the ranking; "none" wins unless a map really
   helps. Scores are read relative to the base rate each booster learned from, so the map
   carries over to the final booster.
3. The final model learns from every row - the newest matter most when behaviour drifts - for
   the chosen rounds scaled by its extra rows.

Nothing here ever looks at a test set; evaluate the fitted model on rows newer than all of these.

LightGBM handles categoricals natively (pandas `category` columns; strings become categories),
and its exact per-row contributions (`pred_contrib=True`) give `explain(X)`: for the rows asked
for only, the top positive and negative factors in plain words (see `explain.py`).

A fitted model saves to a directory (`save`/`load`) holding `booster.txt` (LightGBM's own text
format) and `manifest.json` (format version, parameters, feature schema, calibration map, hashes)
and, if given, the model card. No pickle: loading a model file cannot run code.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from .errors import ModelFileError, TrainingDataError, check_is_fitted
from .explain import Explanation, FeatureDescriber, top_factors
from .frame import FeatureSchema
from .metrics import roc_auc

__all__ = ["Calibrator", "LeadModel", "DEFAULT_GRID"]

FORMAT = "leadrefinery.lead_model"
FORMAT_VERSION = 1

# A few settings, from cautious to flexible; chosen on the validation tail only.
DEFAULT_GRID: tuple[dict[str, Any], ...] = (
    {"num_leaves": 7, "min_child_samples": 50},
    {"num_leaves": 15, "min_child_samples": 30},
    {"num_leaves": 31, "min_child_samples": 20},
)

BASE_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "min_data_per_group": 50,
    "cat_smooth": 10.0,
    "cat_l2": 10.0,
    "max_cat_to_onehot": 8,
    "verbose": -1,
    "deterministic": True,
}

FAST_ROWS = 50_000  # from this many training rows on, learning_rate "auto" is 0.1, not 0.05
MIN_ROWS = 20  # per slice, and each slice needs both outcomes
MIN_BIN = 40  # rows per bin of the isotonic calibration map


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class Calibrator:
    """A monotone map from the booster's score to a probability.

    Its input is the raw score (log-odds) minus the log-odds of the base rate the booster was
    trained on, so a map fitted with one booster also fits a booster retrained on more rows
    with a different base rate. kind "none": logistic(z + b) with b the training log-odds, i.e.
    LightGBM's own probability; "sigmoid" (Platt): logistic(a * z + b);
    "isotonic": isotonic regression over equal-count bins of the raw score, linearly
    interpolated between bin centres and flat beyond them. An isotonic map is flat in places; a
    vanishing (1e-6) tie-break by the raw score keeps the model's ranking intact instead of
    turning a step into thousands of ties.
    """

    kind: str = "none"
    a: float = 1.0
    b: float = 0.0
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)

    @classmethod
    def fit(cls, kind: str, z: np.ndarray, y: np.ndarray) -> Calibrator:
        if kind == "sigmoid":
            lr = LogisticRegression(C=1e6, max_iter=1000).fit(z.reshape(-1, 1), y)
            return cls("sigmoid", a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]))
        if kind == "isotonic":
            # isotonic regression on equal-count bins of the z score (>= MIN_BIN rows each,
            # rates smoothed by one pseudo-conversion at the slice's rate), so no step sits at
            # exactly 0 or 1 because of a handful of rows at the extremes
            n_bins = int(max(2, min(50, z.size // MIN_BIN)))
            order = np.argsort(z, kind="stable")
            chunks = np.array_split(order, n_bins)
            rate = float(y.mean())
            xs = np.array([z[c].mean() for c in chunks])
            ys = np.array([(y[c].sum() + rate) / (c.size + 1.0) for c in chunks])
            ws = np.array([c.size for c in chunks], dtype=float)
            iso = IsotonicRegression(out_of_bounds="clip").fit(xs, ys, sample_weight=ws)
            return cls(
                "isotonic",
                x=[float(v) for v in xs],
                y=[float(v) for v in iso.predict(xs)],
            )
        raise ValueError(f"unknown calibration {kind!r}; use auto, isotonic, sigmoid or none")

    def apply(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=float)
        if self.kind in ("none", "sigmoid"):
            p = _expit(self.a * z + self.b)
        elif self.kind == "isotonic":
            p = np.interp(z, self.x, self.y) + 1e-6 * (_expit(z) - 0.5)
        else:
            raise ValueError(f"unknown calibration {self.kind!r}")
        return np.clip(p, 1e-6, 1 - 1e-6)


def _logit_rate(y: np.ndarray) -> float:
    rate = min(max(float(np.mean(y)), 1e-6), 1 - 1e-6)
    return math.log(rate / (1 - rate))


def _brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((p - y) ** 2))


def _both(y: np.ndarray) -> bool:
    return 0 < int(y.sum()) < y.size


def _mean_curve(curves: list[np.ndarray]) -> np.ndarray:
    """Per-round mean of the tails' metric curves; a curve that stopped early keeps its last
    value (early stopping ends a curve once it has stopped improving)."""
    size = max(c.size for c in curves)
    return np.mean([np.pad(c, (0, size - c.size), mode="edge") for c in curves], axis=0)


def _forward_errors(
    kind: str, z: list[np.ndarray], p_raw: list[np.ndarray], y: list[np.ndarray]
) -> list[np.ndarray]:
    """Squared errors of a calibration map on each tail when fitted on the tails before it: the
    map must carry forward in time, as it will have to on new leads (a map that only fits the
    period it was fitted on loses here). One tail: its halves (every other row) in turn."""
    if len(z) == 1:
        halves = [np.arange(y[0].size) % 2 == k for k in (0, 1)]
        z, p_raw, y = ([a[h] for h in halves] for a in (z[0], p_raw[0], y[0]))
        pairs = [([0], 1), ([1], 0)]
    else:
        pairs = [(list(range(k)), k) for k in range(1, len(z))]
    out = []
    for fit, k in pairs:
        if kind == "none":
            p = p_raw[k]
        else:
            y_fit = np.concatenate([y[i] for i in fit])
            if not _both(y_fit):
                return [np.full(y[k].size, np.inf) for _, k in pairs]
            p = Calibrator.fit(kind, np.concatenate([z[i] for i in fit]), y_fit).apply(z[k])
        out.append((p - y[k]) ** 2)
    return out


def _clearly_better(errors: list[np.ndarray], reference: list[np.ndarray]) -> bool:
    """Lower mean error on every step, and overall by more than two standard errors."""
    diffs = [e - r for e, r in zip(errors, reference, strict=True)]
    if not all(np.isfinite(d).all() and d.mean() < 0 for d in diffs):
        return False
    d = np.concatenate(diffs)
    return bool(d.mean() + 2 * d.std(ddof=1) / math.sqrt(d.size) < 0)


class LeadModel(ClassifierMixin, BaseEstimator):
    """Calibrated LightGBM conversion model tuned on time-ordered validation tails.

    Parameters
    ----------
    learning_rate, max_rounds, early_stopping_rounds
        boosting schedule; rounds are chosen on the validation tails. learning_rate "auto":
        0.05, or 0.1 from `FAST_ROWS` training rows on (many rows support larger steps, and
        half the rounds keep training on 200 k people within a minute).
    min_rounds
        floor on the rounds the tails may choose.
    stopping_metric
        "auc" (default) or "binary_logloss", for early stopping and picking the grid setting.
    param_grid
        LightGBM settings to try (default `DEFAULT_GRID`); each is merged over `params`.
    params
        extra LightGBM parameters applied to every setting.
    valid_fraction, n_tails
        the newest `valid_fraction` of the (time-ordered) training rows, cut into `n_tails`
        consecutive validation tails.
    calibration
        "auto" (the lowest cross-fitted Brier of none, Platt and isotonic on the tails'
        out-of-fold scores), "sigmoid", "isotonic" or "none".
    n_jobs
        LightGBM threads (0 = its default, all cores).
    describer
        `FeatureDescriber` for `explain` (feature label templates).
    """

    def __init__(
        self,
        *,
        learning_rate: float | str = "auto",
        max_rounds: int = 3000,
        early_stopping_rounds: int = 100,
        min_rounds: int = 20,
        stopping_metric: str = "auc",
        param_grid: Sequence[Mapping[str, Any]] | None = None,
        params: Mapping[str, Any] | None = None,
        valid_fraction: float = 0.3,
        n_tails: int = 3,
        calibration: str = "auto",
        n_jobs: int = 0,
        random_state: int = 0,
        describer: FeatureDescriber | None = None,
    ) -> None:
        self.learning_rate = learning_rate
        self.max_rounds = max_rounds
        self.early_stopping_rounds = early_stopping_rounds
        self.min_rounds = min_rounds
        self.stopping_metric = stopping_metric
        self.param_grid = param_grid
        self.params = params
        self.valid_fraction = valid_fraction
        self.n_tails = n_tails
        self.calibration = calibration
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.describer = describer

    # ------------------------------------------------------------------ fit

    def _lgb_params(self, setting: Mapping[str, Any]) -> dict[str, Any]:
        return {
            **BASE_PARAMS,
            "learning_rate": self.learning_rate_,
            "num_threads": self.n_jobs,
            "seed": self.random_state,
            **dict(self.params or {}),
            **dict(setting),
        }

    def _dataset(self, frame: pd.DataFrame, y: np.ndarray, reference: Any = None) -> lgb.Dataset:
        return lgb.Dataset(
            frame,
            label=y,
            categorical_feature=list(self.schema_.categorical) or "auto",
            reference=reference,
            free_raw_data=False,
            params={"verbose": -1, "max_bin": 255, "feature_pre_filter": False},
        )

    def fit(self, X: pd.DataFrame, y: Any, order: Any = None) -> LeadModel:
        """Train on rows ordered by `order` (times or numbers; a column name of X; default: as
        given, oldest first). Returns self."""
        started = time.perf_counter()
        if self.stopping_metric not in ("auc", "binary_logloss"):
            raise ValueError(
                f"stopping_metric must be auc or binary_logloss, not {self.stopping_metric!r}"
            )
        if self.calibration not in ("auto", "sigmoid", "isotonic", "none"):
            raise ValueError(
                f"calibration must be auto, sigmoid, isotonic or none, not {self.calibration!r}"
            )
        if self.n_tails < 1:
            raise ValueError(f"n_tails must be at least 1, not {self.n_tails!r}")
        if isinstance(order, str):
            order_values = X[order].to_numpy()
            X = X.drop(columns=[order])
        else:
            order_values = None if order is None else np.asarray(order)
        y_arr = np.asarray(y).ravel().astype(int)
        if len(y_arr) != len(X):
            raise TrainingDataError(f"X has {len(X)} rows but y has {len(y_arr)}")
        if not np.isin(y_arr, (0, 1)).all():
            raise TrainingDataError("labels must be 0/1 (converted or not)")
        if order_values is not None and len(order_values) != len(X):
            raise TrainingDataError(f"order has {len(order_values)} values for {len(X)} rows")

        self.schema_ = FeatureSchema.from_frame(X)
        frame = self.schema_.transform(X).reset_index(drop=True)
        if order_values is not None:
            idx = np.argsort(order_values, kind="stable")
            frame = frame.iloc[idx].reset_index(drop=True)
            y_arr = y_arr[idx]
            order_sorted = order_values[idx]
        else:
            order_sorted = np.arange(len(y_arr))
        n = len(y_arr)
        tails = self._tails(y_arr)
        self.learning_rate_ = (
            (0.1 if n >= FAST_ROWS else 0.05) if self.learning_rate == "auto"
            else float(self.learning_rate)
        )

        # 1. each setting of the grid learns the rows before the newest tail and is scored on
        # that tail after every round; the best score (at min_rounds or more) picks the setting
        d_all = self._dataset(frame, y_arr)
        settings = DEFAULT_GRID if self.param_grid is None else self.param_grid
        grid: list[dict[str, Any]] = [dict(s) for s in settings] or [{}]
        tuning: list[dict[str, Any]] = []
        runs: list[tuple[lgb.Booster, np.ndarray]] = []
        for setting in grid:
            booster, curve = self._run_tail(setting, d_all, tails[-1])
            rounds, score = self._best_round(curve)
            tuning.append({"setting": dict(setting), "rounds": rounds,
                           f"newest_tail_{self.stopping_metric}": score})
            runs.append((booster, curve))
        sign = 1.0 if self.stopping_metric == "auc" else -1.0
        best_i = max(range(len(grid)),  # ties: fewer rounds, then the earlier (simpler) setting
                     key=lambda i: (sign * tuning[i][f"newest_tail_{self.stopping_metric}"],
                                    -tuning[i]["rounds"], -i))
        self.best_params_ = dict(grid[best_i])

        # ... and the winner, trained before each older tail too, gets its round count from
        # the curves averaged over all tails (one odd period cannot decide it alone)
        older = [self._run_tail(self.best_params_, d_all, tail) for tail in tails[:-1]]
        boosters = [b for b, _ in older] + [runs[best_i][0]]
        curves = [c for _, c in older] + [runs[best_i][1]]
        self.best_iteration_, _ = self._best_round(_mean_curve(curves))
        self.tuning_ = tuning
        self.timings_ = {"tuning": time.perf_counter() - started}

        # 2. the tails' out-of-fold scores choose and fit the calibration map; each score is
        # relative to the base rate its booster learned from (see `Calibrator`)
        z, p_raw, y_oof = [], [], []
        for booster, (start, stop) in zip(boosters, tails, strict=True):
            raw = booster.predict(
                frame.iloc[start:stop], raw_score=True,
                num_iteration=min(self.best_iteration_, booster.current_iteration()),
            )
            z.append(raw - _logit_rate(y_arr[:start]))
            p_raw.append(_expit(raw))
            y_oof.append(y_arr[start:stop])
        z_oof, y_cat = np.concatenate(z), np.concatenate(y_oof)
        self.valid_auc_ = roc_auc(y_cat, z_oof)
        kind, self.calibration_report_ = self.calibration, {}
        if kind == "auto":
            # a map replaces LightGBM's own probability only if, fitted on older tails, it
            # lowers the Brier score on every later tail and clearly overall (by more than two
            # standard errors of the paired difference): it has to carry forward in time
            kinds = ("none", "sigmoid", "isotonic")
            errors = {k: _forward_errors(k, z, p_raw, y_oof) for k in kinds}
            self.calibration_report_ = {
                f"brier_{k}": float(np.mean(np.concatenate(v))) for k, v in errors.items()
            }
            kind = min(
                (k for k in ("sigmoid", "isotonic") if _clearly_better(errors[k], errors["none"])),
                key=lambda k: self.calibration_report_[f"brier_{k}"], default="none",
            )

        # 3. the final model learns from every row - the newest matter most when behaviour
        # drifts - for the chosen rounds scaled by how many more rows it sees than the tails'
        mean_rows = float(np.mean([start for start, _ in tails]))
        rounds = max(1, int(round(self.best_iteration_ * n / mean_rows)))
        self.booster_ = lgb.train(
            self._lgb_params(self.best_params_), d_all, num_boost_round=rounds
        )
        self.offset_ = _logit_rate(y_arr)
        self.calibrator_ = (
            Calibrator("none", b=self.offset_)
            if kind == "none"
            else Calibrator.fit(kind, z_oof, y_cat)
        )
        self.n_rounds_ = rounds
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = len(self.schema_.columns)
        self.feature_names_in_ = np.array(self.schema_.columns, dtype=object)
        self.n_train_, self.n_valid_ = n, n - tails[0][0]
        self.window_ = {
            "train": [_jsonable(order_sorted[0]), _jsonable(order_sorted[-1])],
            "valid": [_jsonable(order_sorted[tails[0][0]]), _jsonable(order_sorted[-1])],
        }
        self.base_rate_ = float(y_arr.mean())
        self.fit_seconds_ = self.timings_["total"] = time.perf_counter() - started
        return self

    def _run_tail(
        self, setting: Mapping[str, Any], d_all: lgb.Dataset, tail: tuple[int, int]
    ) -> tuple[lgb.Booster, np.ndarray]:
        """Train on the rows before `tail`, scoring the tail after every round until early
        stopping; the booster keeps its rounds past the best, and the per-round curve."""
        start, stop = tail
        history: dict[str, Any] = {}
        booster = lgb.train(
            {**self._lgb_params(setting), "metric": self.stopping_metric},
            d_all.subset(np.arange(start)),
            num_boost_round=self.max_rounds,
            valid_sets=[d_all.subset(np.arange(start, stop))],
            valid_names=["tail"],
            callbacks=[
                # patient enough that every curve reaches min_rounds
                lgb.early_stopping(max(self.early_stopping_rounds, self.min_rounds), verbose=False),
                lgb.record_evaluation(history),
            ],
            keep_training_booster=True,
        )
        return booster, np.asarray(history["tail"][self.stopping_metric])

    def _best_round(self, curve: np.ndarray) -> tuple[int, float]:
        """(rounds, score) of the best round of a metric curve, at `min_rounds` or later."""
        gain = curve if self.stopping_metric == "auc" else -curve
        floor = min(max(1, self.min_rounds), gain.size) - 1
        i = floor + int(np.argmax(gain[floor:]))
        return i + 1, float(curve[i])

    def _tails(self, y: np.ndarray) -> list[tuple[int, int]]:
        """(start, stop) of each validation tail: the newest `valid_fraction` of the rows cut
        into `n_tails` consecutive blocks; each is scored by a model of the rows before it."""
        n = y.size
        n_val = int(round(self.valid_fraction * n))
        edges = np.linspace(n - n_val, n, self.n_tails + 1).round().astype(int)
        tails = list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))
        for start, stop in tails:
            for name, part in (("training part", y[:start]), ("validation tail", y[start:stop])):
                if part.size < MIN_ROWS or not _both(part):
                    raise TrainingDataError(
                        f"a {name} has {part.size} rows and {int(part.sum())} conversions; need "
                        f"at least {MIN_ROWS} rows with both outcomes in each of the "
                        f"{self.n_tails} validation tail(s) and the rows before it ({n} rows "
                        "in all; lower n_tails or add history)"
                    )
        return tails

    # ------------------------------------------------------------- predict

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """The raw boosted score (log-odds, before calibration)."""
        check_is_fitted(self, "booster_")
        return np.asarray(self.booster_.predict(self.schema_.transform(X), raw_score=True))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of conversion, as an (n, 2) array like scikit-learn's."""
        check_is_fitted(self, "booster_")
        p = self.calibrator_.apply(self.decision_function(X) - self.offset_)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    @property
    def feature_importances_(self) -> pd.Series:
        """Total gain per feature, largest first."""
        check_is_fitted(self, "booster_")
        gain = self.booster_.feature_importance(importance_type="gain")
        return pd.Series(gain, index=self.schema_.columns).sort_values(ascending=False)

    def explain(self, X: pd.DataFrame, top: int = 3) -> list[Explanation]:
        """Top `top` positive and negative factors per row, in words. Explain only the rows you
        show (the top of a list, one person's page): exact contributions cost ~1 ms per row."""
        check_is_fitted(self, "booster_")
        frame = self.schema_.transform(X)
        contrib = np.asarray(self.booster_.predict(frame, pred_contrib=True))
        proba = self.calibrator_.apply(contrib.sum(axis=1) - self.offset_)
        return top_factors(contrib, frame, proba, self.describer or FeatureDescriber(), top)

    # ----------------------------------------------------------- save/load

    def save(self, path: str | Path, card: Any = None) -> Path:
        """Write the model to directory `path` (created; files inside are overwritten)."""
        check_is_fitted(self, "booster_")
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        booster_text = self.booster_.model_to_string()
        (root / "booster.txt").write_text(booster_text, encoding="utf-8")
        params = {k: v for k, v in self.get_params().items() if k != "describer"}
        params["param_grid"] = (
            None if self.param_grid is None else [dict(s) for s in self.param_grid]
        )
        params["params"] = None if self.params is None else dict(self.params)
        labels = self.describer.labels if self.describer is not None else {}
        saved_labels = {
            k: v if isinstance(v, str) else {str(key): str(text) for key, text in v.items()}
            for k, v in labels.items()
            if isinstance(v, str | Mapping)
        }
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "lightgbm_version": lgb.__version__,
            "params": params,
            "describer_labels": saved_labels,  # templates and value maps; callables are not saved
            "schema": self.schema_.to_dict(),
            "calibrator": asdict(self.calibrator_),
            "learned": {
                "best_params": self.best_params_,
                "learning_rate": self.learning_rate_,
                "best_iteration": self.best_iteration_,
                "n_rounds": self.n_rounds_,
                "offset": self.offset_,
                "valid_auc": self.valid_auc_,
                "tuning": self.tuning_,
                "calibration_report": self.calibration_report_,
                "n_train": self.n_train_,
                "n_valid": self.n_valid_,
                "window": self.window_,
                "base_rate": self.base_rate_,
                "fit_seconds": self.fit_seconds_,
            },
            "files": {"booster.txt": hashlib.sha256(booster_text.encode()).hexdigest()},
        }
        if card is not None:
            card_dict = card.to_dict() if hasattr(card, "to_dict") else dict(card)
            (root / "card.json").write_text(json.dumps(card_dict, indent=2, default=_jsonable))
            if hasattr(card, "to_markdown"):
                (root / "card.md").write_text(card.to_markdown(), encoding="utf-8")
        (root / "manifest.json").write_text(
            json.dumps(manifest, indent=2, default=_jsonable), encoding="utf-8"
        )
        return root

    @classmethod
    def load(cls, path: str | Path, describer: FeatureDescriber | None = None) -> LeadModel:
        """Read a model saved by `save`. `describer` replaces the saved feature labels (pass it
        when the labels used callables, which are not saved)."""
        root = Path(path)
        try:
            manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
            booster_text = (root / "booster.txt").read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise ModelFileError(
                f"not a saved model: {exc.filename} is missing", path=str(root)
            ) from exc
        except json.JSONDecodeError as exc:
            raise ModelFileError(
                f"manifest.json is not valid JSON ({exc})", path=str(root)
            ) from exc
        if manifest.get("format") != FORMAT:
            raise ModelFileError(
                f"not a LeadModel directory (format {manifest.get('format')!r})", path=str(root)
            )
        if manifest.get("format_version", 0) > FORMAT_VERSION:
            raise ModelFileError(
                f"saved with model format {manifest['format_version']}, this version reads up to "
                f"{FORMAT_VERSION}; upgrade leadrefinery",
                path=str(root),
            )
        digest = hashlib.sha256(booster_text.encode()).hexdigest()
        if manifest.get("files", {}).get("booster.txt") != digest:
            raise ModelFileError(
                "booster.txt does not match its hash in manifest.json", path=str(root)
            )
        labels = manifest.get("describer_labels") or {}
        if describer is None and labels:
            describer = FeatureDescriber(labels)
        known = set(cls._get_param_names())  # parameters retired since the file was saved
        model = cls(
            **{k: v for k, v in manifest["params"].items() if k in known}, describer=describer
        )
        model.schema_ = FeatureSchema.from_dict(manifest["schema"])
        model.calibrator_ = Calibrator(**manifest["calibrator"])
        model.booster_ = lgb.Booster(model_str=booster_text)
        learned = manifest["learned"]
        model.best_params_ = learned["best_params"]
        model.learning_rate_ = learned.get("learning_rate", model.learning_rate)
        model.best_iteration_ = learned["best_iteration"]
        model.n_rounds_ = learned["n_rounds"]
        model.offset_ = learned["offset"]
        model.valid_auc_ = learned["valid_auc"]
        model.tuning_ = learned["tuning"]
        model.calibration_report_ = learned["calibration_report"]
        model.n_train_ = learned["n_train"]
        model.n_valid_ = learned["n_valid"]
        model.window_ = learned["window"]
        model.base_rate_ = learned["base_rate"]
        model.fit_seconds_ = learned["fit_seconds"]
        model.classes_ = np.array([0, 1])
        model.n_features_in_ = len(model.schema_.columns)
        model.feature_names_in_ = np.array(model.schema_.columns, dtype=object)
        return model


def _jsonable(value: Any) -> Any:
    """numpy scalars and timestamps as plain JSON values."""
    if isinstance(value, pd.Timestamp | datetime | np.datetime64):
        return pd.Timestamp(value).isoformat()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.DataFrame):
        return value.to_dict(orient="records")
    if isinstance(value, set | tuple):
        return list(value)
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)
