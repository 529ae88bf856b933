"""`LeadModel`: gradient boosting trained on your own conversions, honestly validated.

How `fit(X, y, order=...)` uses the rows, oldest to newest (`order` is the time of each row):

    |<--------------- train --------------->|<-- valid -->|<-- calibration -->|
                                              ~15 %          ~15 % (newest)

1. Each setting of a small grid (`param_grid`) is trained on *train* with early stopping on
   *valid*; the setting with the best validation AUC wins (ties: fewer rounds).
2. The winner is retrained on train + valid for the early-stopping rounds scaled by the row
   ratio (`refit="none"` keeps the tuned model instead).
3. That model, which has never seen the calibration slice, scores it; Platt scaling and
   isotonic regression compete there by a two-fold cross-fitted Brier score and the better map
   is fitted on the whole slice. Being the newest rows, the slice also re-anchors probabilities
   to the recent conversion rate. The map reads the raw score minus the log-odds of the base
   rate the booster was trained on, so it carries over to a booster retrained on more rows.
4. `refit="all"` (default): the winning setting is retrained once more on every row - the
   newest ones matter most when behaviour drifts - and the map from step 3 is kept (as
   scikit-learn's `CalibratedClassifierCV(ensemble=False)` does). With `refit="train+valid"`
   the ranker never sees the calibration slice.

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


class LeadModel(ClassifierMixin, BaseEstimator):
    """Calibrated LightGBM conversion model with a time-ordered validation tail.

    Parameters
    ----------
    learning_rate, max_rounds, early_stopping_rounds
        boosting schedule; rounds are found by early stopping on the validation tail.
    min_rounds
        floor on the rounds early stopping may choose (1 = none).
    stopping_metric
        "auc" (default) or "binary_logloss", for early stopping and picking the grid setting.
    param_grid
        LightGBM settings to try (default `DEFAULT_GRID`); each is merged over `params`.
    params
        extra LightGBM parameters applied to every setting.
    valid_fraction, calibration_fraction
        shares of the (time-ordered) training rows for the validation tail and the newest
        calibration slice.
    calibration
        "auto" (choose Platt or isotonic on the calibration slice), "sigmoid", "isotonic" or
        "none" (no calibration slice is held out).
    refit
        "all" (retrain on train + valid, calibrate, retrain on every row), "train+valid"
        (retrain on train + valid, calibrate) or "none"; see the module docstring.
    n_jobs
        LightGBM threads (0 = its default, all cores).
    describer
        `FeatureDescriber` for `explain` (feature label templates).
    """

    def __init__(
        self,
        *,
        learning_rate: float = 0.05,
        max_rounds: int = 3000,
        early_stopping_rounds: int = 100,
        min_rounds: int = 1,
        stopping_metric: str = "auc",
        param_grid: Sequence[Mapping[str, Any]] | None = None,
        params: Mapping[str, Any] | None = None,
        valid_fraction: float = 0.15,
        calibration_fraction: float = 0.15,
        calibration: str = "auto",
        refit: str = "all",
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
        self.calibration_fraction = calibration_fraction
        self.calibration = calibration
        self.refit = refit
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.describer = describer

    # ------------------------------------------------------------------ fit

    def _lgb_params(self, setting: Mapping[str, Any]) -> dict[str, Any]:
        return {
            **BASE_PARAMS,
            "learning_rate": self.learning_rate,
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
        if self.refit not in ("all", "train+valid", "none"):
            raise ValueError(f"refit must be all, train+valid or none, not {self.refit!r}")
        if self.calibration not in ("auto", "sigmoid", "isotonic", "none"):
            raise ValueError(
                f"calibration must be auto, sigmoid, isotonic or none, not {self.calibration!r}"
            )
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
        n_cal = 0 if self.calibration == "none" else int(round(self.calibration_fraction * n))
        n_val = int(round(self.valid_fraction * n))
        n_tr = n - n_val - n_cal
        slices = {
            "train": slice(0, n_tr),
            "valid": slice(n_tr, n_tr + n_val),
            "calibration": slice(n_tr + n_val, n),
        }
        for name, sl in slices.items():
            if name == "calibration" and n_cal == 0:
                continue
            part = y_arr[sl]
            if part.size < MIN_ROWS or not _both(part):
                raise TrainingDataError(
                    f"the {name} slice has {part.size} rows and {int(part.sum())} conversions; "
                    f"need at least {MIN_ROWS} rows with both outcomes in each of train, valid "
                    f"and calibration ({n} rows in all)"
                )
        tr, va, ca = slices["train"], slices["valid"], slices["calibration"]

        # 1. choose a setting and a number of rounds on the validation tail
        d_tr = self._dataset(frame.iloc[tr], y_arr[tr])
        d_va = self._dataset(frame.iloc[va], y_arr[va], reference=d_tr)
        settings = DEFAULT_GRID if self.param_grid is None else self.param_grid
        grid: list[dict[str, Any]] = [dict(s) for s in settings] or [{}]
        tuning: list[dict[str, Any]] = []
        best: tuple[float, int, int] | None = None
        boosters = []
        for i, setting in enumerate(grid):
            params = {**self._lgb_params(setting), "metric": self.stopping_metric}
            booster = lgb.train(
                params,
                d_tr,
                num_boost_round=self.max_rounds,
                valid_sets=[d_va],
                valid_names=["valid"],
                callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
                keep_training_booster=True,  # keep the rounds after the best, for min_rounds
            )
            rounds = min(
                max(1, self.min_rounds, booster.best_iteration), booster.current_iteration()
            )
            p_va = booster.predict(frame.iloc[va], num_iteration=rounds)
            valid_auc = roc_auc(y_arr[va], p_va)
            p_va = np.clip(p_va, 1e-12, 1 - 1e-12)
            valid_logloss = float(
                -np.mean(y_arr[va] * np.log(p_va) + (1 - y_arr[va]) * np.log(1 - p_va))
            )
            tuning.append(
                {
                    "setting": dict(setting),
                    "rounds": rounds,
                    "valid_auc": valid_auc,
                    "valid_logloss": valid_logloss,
                }
            )
            boosters.append(booster)
            score = valid_auc if self.stopping_metric == "auc" else -valid_logloss
            key = (score, -rounds, -i)
            if best is None or key > best:
                best = key
        assert best is not None
        best_i = -best[2]
        self.best_params_ = dict(grid[best_i])
        self.best_iteration_ = int(tuning[best_i]["rounds"])
        self.valid_auc_ = float(tuning[best_i]["valid_auc"])
        self.tuning_ = tuning

        self.timings_ = {"tuning": time.perf_counter() - started}

        # 2. refit on train + valid
        if self.refit in ("all", "train+valid"):
            fit_rows = slice(0, n_tr + n_val)
            rounds = max(1, int(round(self.best_iteration_ * (n_tr + n_val) / n_tr)))
            booster = lgb.train(
                self._lgb_params(self.best_params_),
                self._dataset(frame.iloc[fit_rows], y_arr[fit_rows]),
                num_boost_round=rounds,
            )
        else:
            rounds = self.best_iteration_
            booster = lgb.Booster(model_str=boosters[best_i].model_to_string(num_iteration=rounds))

        offset = _logit_rate(y_arr[: n_tr + n_val] if self.refit != "none" else y_arr[tr])

        # 3. calibrate on the newest slice, which no step above has seen
        self.calibration_report_: dict[str, float] = {}
        if n_cal:
            z = np.asarray(booster.predict(frame.iloc[ca], raw_score=True)) - offset
            y_ca = y_arr[ca]
            kinds = ["sigmoid", "isotonic"] if self.calibration == "auto" else [self.calibration]
            self.calibration_report_ = {
                f"brier_{k}": self._crossfit_brier(k, z, y_ca, offset) for k in ["none", *kinds]
            }
            if len(kinds) > 1:
                kind = min(kinds, key=lambda k: self.calibration_report_[f"brier_{k}"])
            else:
                kind = kinds[0]
            self.calibrator_ = Calibrator.fit(kind, z, y_ca)
        else:
            self.calibrator_ = Calibrator("none", b=offset)

        # 4. refit="all": the final model also learns from the newest rows; the calibration map
        # stays the one fitted on predictions for rows its model had not seen (like
        # scikit-learn's CalibratedClassifierCV(ensemble=False))
        if self.refit == "all" and n_cal:  # (without a calibration slice, step 2 used all rows)
            rounds = max(1, int(round(self.best_iteration_ * n / n_tr)))
            booster = lgb.train(
                self._lgb_params(self.best_params_),
                self._dataset(frame, y_arr),
                num_boost_round=rounds,
            )
            offset = _logit_rate(y_arr)
        self.booster_ = booster
        self.offset_ = offset
        self.timings_["total"] = time.perf_counter() - started
        self.n_rounds_ = rounds

        self.classes_ = np.array([0, 1])
        self.n_features_in_ = len(self.schema_.columns)
        self.feature_names_in_ = np.array(self.schema_.columns, dtype=object)
        self.n_train_, self.n_valid_, self.n_calibration_ = n_tr, n_val, n_cal
        self.window_ = {
            name: [_jsonable(order_sorted[sl][0]), _jsonable(order_sorted[sl][-1])]
            for name, sl in slices.items()
            if sl.stop > sl.start
        }
        self.base_rate_ = float(y_arr.mean())
        self.fit_seconds_ = time.perf_counter() - started
        return self

    @staticmethod
    def _crossfit_brier(kind: str, z: np.ndarray, y: np.ndarray, offset: float) -> float:
        """Brier of a calibration map fitted on one half of the slice, scored on the other."""
        if kind == "none":
            return _brier(y, _expit(z + offset))
        halves = [np.arange(y.size) % 2 == 0, np.arange(y.size) % 2 == 1]
        p = np.empty(y.size)
        for fit_mask, score_mask in (halves, halves[::-1]):
            if not _both(y[fit_mask]):
                return math.inf
            p[score_mask] = Calibrator.fit(kind, z[fit_mask], y[fit_mask]).apply(z[score_mask])
        return _brier(y, p)

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
                "best_iteration": self.best_iteration_,
                "n_rounds": self.n_rounds_,
                "offset": self.offset_,
                "valid_auc": self.valid_auc_,
                "tuning": self.tuning_,
                "calibration_report": self.calibration_report_,
                "n_train": self.n_train_,
                "n_valid": self.n_valid_,
                "n_calibration": self.n_calibration_,
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
        model = cls(**manifest["params"], describer=describer)
        model.schema_ = FeatureSchema.from_dict(manifest["schema"])
        model.calibrator_ = Calibrator(**manifest["calibrator"])
        model.booster_ = lgb.Booster(model_str=booster_text)
        learned = manifest["learned"]
        model.best_params_ = learned["best_params"]
        model.best_iteration_ = learned["best_iteration"]
        model.n_rounds_ = learned["n_rounds"]
        model.offset_ = learned["offset"]
        model.valid_auc_ = learned["valid_auc"]
        model.tuning_ = learned["tuning"]
        model.calibration_report_ = learned["calibration_report"]
        model.n_train_ = learned["n_train"]
        model.n_valid_ = learned["n_valid"]
        model.n_calibration_ = learned["n_calibration"]
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
