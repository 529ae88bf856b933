"""The shape of a feature frame, learned once at fit time and enforced at scoring time.

A feature frame is a pandas DataFrame with one row per lead: numeric columns (ints, floats,
booleans) and categorical columns (pandas `category`, or strings/objects, which become
categories). `FeatureSchema` remembers the column order and each categorical column's
categories, so a frame scored later gets exactly the codes the model was trained with; a value
never seen in training becomes missing rather than being mapped to some other category.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .errors import TrainingDataError


def _is_numeric(s: pd.Series) -> bool:
    return (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)) and not isinstance(
        s.dtype, pd.CategoricalDtype
    )


@dataclass
class FeatureSchema:
    """Column order, numeric columns and the categories of each categorical column."""

    columns: list[str]
    categorical: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_frame(cls, X: pd.DataFrame) -> FeatureSchema:
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"features must be a pandas DataFrame, got {type(X).__name__}")
        if X.shape[1] == 0:
            raise TrainingDataError("the feature frame has no columns")
        dupes = X.columns[X.columns.duplicated()].tolist()
        if dupes:
            raise TrainingDataError(f"duplicate feature columns: {dupes}")
        categorical: dict[str, list[str]] = {}
        for name in X.columns:
            s = X[name]
            if not _is_numeric(s):
                values = s.astype("string").dropna().unique()
                categorical[str(name)] = sorted(str(v) for v in values)
        return cls(columns=[str(c) for c in X.columns], categorical=categorical)

    @property
    def numeric(self) -> list[str]:
        return [c for c in self.columns if c not in self.categorical]

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """A copy of X with the training column order, floats for numerics and fixed categories."""
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"features must be a pandas DataFrame, got {type(X).__name__}")
        missing = [c for c in self.columns if c not in X.columns]
        if missing:
            raise TrainingDataError(
                f"the feature frame lacks {len(missing)} column(s) the model was trained on: "
                f"{missing[:10]}"
            )
        out: dict[str, Any] = {}
        for name in self.columns:
            s = X[name]
            if name in self.categorical:
                out[name] = pd.Categorical(s.astype("string"), categories=self.categorical[name])
            else:
                try:
                    out[name] = pd.to_numeric(s, errors="raise").to_numpy(
                        dtype=np.float64, na_value=np.nan
                    )
                except (TypeError, ValueError) as exc:
                    raise TrainingDataError(
                        f"column {name!r} was numeric in training but holds non-numbers now"
                    ) from exc
        return pd.DataFrame(out, index=X.index)

    def to_dict(self) -> dict[str, Any]:
        return {"columns": list(self.columns), "categorical": dict(self.categorical)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSchema:
        categorical = {k: list(v) for k, v in d["categorical"].items()}
        return cls(columns=list(d["columns"]), categorical=categorical)
