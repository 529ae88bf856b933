"""Per-lead reasons in plain words: the top positive and negative factors of one score.

The numbers come from LightGBM's exact per-row contributions (`pred_contrib=True`, TreeSHAP):
for each row, one log-odds contribution per feature plus a base value, summing to the raw score.
This module only ranks them and turns (feature, value) into words. Wording is pluggable:

    FeatureDescriber({
        "logins_7d": "{value:g} logins in the last 7 days",        # a format template
        "is_webmail": {1: "webmail address", 0: "company email address"},   # one text per value
        "country": lambda v: f"based in {v}",                         # any callable
    })

A feature without a label reads "field = value"; a missing value reads "field unknown".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

Label = str | Mapping[Any, str] | Callable[[Any], str]


def _plain(value: Any) -> str:
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return f"{value:.4g}"
    return str(value)


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


class FeatureDescriber:
    """Renders one (feature, value) pair as a short phrase; see the module docstring."""

    def __init__(self, labels: Mapping[str, Label] | None = None) -> None:
        self.labels = dict(labels or {})

    def describe(self, feature: str, value: Any) -> str:
        if _is_missing(value):
            return f"{feature} unknown"
        label = self.labels.get(feature)
        try:
            if isinstance(label, str):
                return label.format(value=value, feature=feature)
            if isinstance(label, Mapping):
                for key in (value, _plain(value)):
                    if key in label:
                        return label[key]
                if isinstance(value, float) and value.is_integer() and int(value) in label:
                    return label[int(value)]
            elif callable(label):
                return str(label(value))
        except (ValueError, TypeError, KeyError, IndexError):
            pass  # a template that does not fit this value: fall back to plain words
        return f"{feature} = {_plain(value)}"


@dataclass(frozen=True)
class Factor:
    """One reason: the feature, its value for this lead, its log-odds push and the words."""

    feature: str
    value: Any
    contribution: float
    text: str

    def to_dict(self) -> dict[str, Any]:
        value = None if _is_missing(self.value) else self.value
        if isinstance(value, np.generic):
            value = value.item()
        return {
            "feature": self.feature,
            "value": value,
            "contribution": self.contribution,
            "text": self.text,
        }


@dataclass(frozen=True)
class Explanation:
    """The reasons behind one lead's score; contributions are in log-odds of the raw model."""

    probability: float
    base_value: float
    positive: list[Factor] = field(default_factory=list)
    negative: list[Factor] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "probability": self.probability,
            "base_value": self.base_value,
            "positive": [f.to_dict() for f in self.positive],
            "negative": [f.to_dict() for f in self.negative],
        }

    def __str__(self) -> str:
        plus = "; ".join(f.text for f in self.positive) or "-"
        minus = "; ".join(f.text for f in self.negative) or "-"
        return f"{self.probability:.1%}  + {plus}  |  - {minus}"


def top_factors(
    contributions: np.ndarray,
    values: pd.DataFrame,
    probabilities: np.ndarray,
    describer: FeatureDescriber,
    top: int = 3,
) -> list[Explanation]:
    """Rank each row's contributions (n x (features + 1), last column the base value)."""
    names = [str(c) for c in values.columns]
    feats = contributions[:, :-1]
    raw_values = values.astype(object).to_numpy()
    out = []
    for i in range(feats.shape[0]):
        row = feats[i]
        order = np.argsort(row, kind="stable")
        pos = [j for j in order[::-1][:top] if row[j] > 0]
        neg = [j for j in order[:top] if row[j] < 0]

        def factor(j: int, i: int = i, row: np.ndarray = row) -> Factor:
            value = raw_values[i, j]
            return Factor(names[j], value, float(row[j]), describer.describe(names[j], value))

        out.append(
            Explanation(
                probability=float(probabilities[i]),
                base_value=float(contributions[i, -1]),
                positive=[factor(j) for j in pos],
                negative=[factor(j) for j in neg],
            )
        )
    return out
