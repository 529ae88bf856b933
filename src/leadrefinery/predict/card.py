"""The model card saved beside every model: what it was trained on and how good it is.

A `ModelCard` is plain data (`to_dict`/`to_json`) with a short Markdown rendering
(`to_markdown`). It holds the data window and row counts of each slice, the features, the
test-set numbers (AUC with its confidence interval, PR-AUC, Brier, lift and capture at 10 % and
20 %), conversion per bucket (and in the control holdout), the calibration table, the verdict on
whether the model beats chance, and the same numbers for the baselines scored on the same rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .buckets import BucketScheme
from .metrics import Evaluation, calibration_table, conversion_by_bucket, evaluate

__all__ = ["ModelCard", "comparison_table"]

HEADLINE = (
    "auc",
    "auc_low",
    "auc_high",
    "pr_auc",
    "lift_10",
    "capture_10",
    "lift_20",
    "capture_20",
    "brier",
)


def comparison_table(evaluations: Mapping[str, Evaluation]) -> pd.DataFrame:
    """One row per model with the headline numbers and the chance verdict."""
    rows = []
    for name, ev in evaluations.items():
        row = {"model": name, **{k: getattr(ev, k) for k in HEADLINE}}
        row["better_than_chance"] = ev.verdict.better_than_chance
        rows.append(row)
    return pd.DataFrame(rows)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records"))


@dataclass
class ModelCard:
    name: str
    created_at: str
    data_window: dict[str, Any]
    counts: dict[str, int]
    features: dict[str, list[str]]
    top_features: list[dict[str, Any]]
    model: dict[str, Any]
    metrics: dict[str, Any]
    verdict: str
    better_than_chance: bool
    conversion_by_bucket: list[dict[str, Any]]
    bucket_scheme: dict[str, Any]
    calibration: list[dict[str, Any]]
    baselines: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        model: Any,
        y_test: Any,
        p_test: Any,
        *,
        name: str = "lead model",
        test_window: Any = None,
        person_ids: Any = None,
        scheme: BucketScheme | None = None,
        baselines: Mapping[str, Evaluation] | None = None,
        notes: list[str] | None = None,
    ) -> ModelCard:
        """Card for a fitted `LeadModel` scored on a test set newer than all its training rows.

        `scheme` defaults to a `BucketScheme` fitted on the test scores (buckets are volume cuts
        of the scored population); `person_ids` (default: row numbers) drive the holdout draw.
        """
        y = np.asarray(y_test).astype(int).ravel()
        p = np.asarray(p_test, dtype=float).ravel()
        ev = evaluate(y, p)
        scheme = scheme or BucketScheme().fit(p)
        ids = list(person_ids) if person_ids is not None else list(range(y.size))
        scored = scheme.score(ids, p)
        buckets = conversion_by_bucket(y, scored["bucket"], labels=scheme.labels)
        hold = scored["holdout"].to_numpy()
        if hold.any():
            low = np.isin(scored["bucket"].to_numpy(), scheme.holdout_buckets)
            extra = pd.DataFrame(
                [
                    {
                        "bucket": f"{'/'.join(scheme.holdout_buckets)} holdout",
                        "leads": int(hold.sum()),
                        "conversions": int(y[hold].sum()),
                        "share_of_leads": float(hold.mean()),
                        "conversion_rate": float(y[hold].mean()),
                        "share_of_conversions": float(y[hold].sum() / max(y.sum(), 1)),
                    },
                    {
                        "bucket": f"{'/'.join(scheme.holdout_buckets)} not held out",
                        "leads": int((low & ~hold).sum()),
                        "conversions": int(y[low & ~hold].sum()),
                        "share_of_leads": float((low & ~hold).mean()),
                        "conversion_rate": float(y[low & ~hold].mean())
                        if (low & ~hold).any()
                        else 0.0,
                        "share_of_conversions": float(y[low & ~hold].sum() / max(y.sum(), 1)),
                    },
                ]
            )
            buckets = pd.concat([buckets, extra], ignore_index=True)
        importances = model.feature_importances_
        total_gain = float(importances.sum()) or 1.0
        window = dict(getattr(model, "window_", {}))
        if test_window is not None:
            window["test"] = [str(v) for v in test_window]
        return cls(
            name=name,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            data_window={k: [str(v) for v in vs] for k, vs in window.items()},
            counts={
                "train": int(model.n_train_),
                "valid": int(model.n_valid_),
                "test": int(y.size),
            },
            features={
                "numeric": list(model.schema_.numeric),
                "categorical": list(model.schema_.categorical),
            },
            top_features=[
                {"feature": str(f), "gain_share": float(g) / total_gain}
                for f, g in importances.head(10).items()
            ],
            model={
                "best_params": model.best_params_,
                "rounds": int(model.n_rounds_),
                "valid_auc": float(model.valid_auc_),
                "calibration": model.calibrator_.kind,
                "calibration_report": model.calibration_report_,
                "fit_seconds": float(model.fit_seconds_),
            },
            metrics={k: v for k, v in ev.to_dict().items() if k != "verdict"},
            verdict=ev.verdict.text,
            better_than_chance=ev.verdict.better_than_chance,
            conversion_by_bucket=_records(buckets),
            bucket_scheme=scheme.to_dict(),
            calibration=_records(calibration_table(y, p)),
            baselines=_records(comparison_table(dict(baselines))) if baselines else [],
            notes=list(notes or []),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def save(self, path: str | Path) -> None:
        """Write `card.json` and `card.md` into directory `path`."""
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        (root / "card.json").write_text(self.to_json(), encoding="utf-8")
        (root / "card.md").write_text(self.to_markdown(), encoding="utf-8")

    def to_markdown(self) -> str:
        m = self.metrics
        lines = [
            f"# Model card: {self.name}",
            "",
            f"**Verdict: {self.verdict}**",
            "",
            "| slice | rows | window |",
            "| --- | ---: | --- |",
        ]
        shown = {"train": "train (final model)",
                 "valid": "validation tails (newest train rows: rounds, calibration)",
                 "test": "test"}
        for part, label in shown.items():
            w = self.data_window.get(part)
            lines.append(
                f"| {label} | {self.counts.get(part, 0)} | {' .. '.join(w) if w else '-'} |"
            )
        lines += [
            "",
            f"Test set: {m['n']} leads, {m['positives']} conversions ({m['base_rate']:.1%}).",
            "",
            "| AUC (95 % CI) | PR-AUC | lift@10 % | capture@10 % | lift@20 % | capture@20 % "
            "| Brier |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {m['auc']:.3f} ({m['auc_low']:.3f}-{m['auc_high']:.3f}) | {m['pr_auc']:.3f} | "
            f"{m['lift_10']:.2f} | {m['capture_10']:.1%} | {m['lift_20']:.2f} | "
            f"{m['capture_20']:.1%} | {m['brier']:.4f} |",
            "",
            "## Conversion by bucket",
            "",
            "| bucket | leads | share | conversions | rate | share of conversions |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in self.conversion_by_bucket:
            lines.append(
                f"| {r['bucket']} | {r['leads']} | {r['share_of_leads']:.1%} | "
                f"{r['conversions']} | {r['conversion_rate']:.1%} | "
                f"{r['share_of_conversions']:.1%} |"
            )
        lines += [
            "",
            "## Calibration (deciles of predicted probability)",
            "",
            "| bin | n | mean predicted | observed |",
            "| ---: | ---: | ---: | ---: |",
        ]
        for r in self.calibration:
            lines.append(
                f"| {r['bin']} | {r['n']} | {r['mean_predicted']:.3f} | {r['observed_rate']:.3f} |"
            )
        if self.baselines:
            lines += [
                "",
                "## Against baselines (same test rows)",
                "",
                "| model | AUC | PR-AUC | lift@10 % | capture@20 % | Brier | beats chance |",
                "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
            ]
            for r in self.baselines:
                lines.append(
                    f"| {r['model']} | {r['auc']:.3f} | {r['pr_auc']:.3f} | {r['lift_10']:.2f} | "
                    f"{r['capture_20']:.1%} | {r['brier']:.4f} | "
                    f"{'yes' if r['better_than_chance'] else 'no'} |"
                )
        lines += [
            "",
            "## Model",
            "",
            f"- features: {len(self.features['numeric'])} numeric, "
            f"{len(self.features['categorical'])} categorical",
            "- top features by gain: "
            + ", ".join(f"{t['feature']} ({t['gain_share']:.0%})" for t in self.top_features[:5]),
            f"- LightGBM {self.model['best_params']}, {self.model['rounds']} rounds, "
            f"out-of-fold AUC on the validation tails {self.model['valid_auc']:.3f}, "
            f"calibration {self.model['calibration']}, "
            f"trained in {self.model['fit_seconds']:.1f} s",
        ]
        lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"
