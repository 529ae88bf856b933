"""`leadrefinery evaluate`: the bench protocol on a public dataset, or on a generated business.

Public datasets (`predict/datasets.py`): every model is trained on the same older rows and scored
on the same newer rows; predictions are pooled over folds. The demo business: generate, ingest,
train through `Project.train` and put the test AUC next to the generator's ceiling AUC.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .baselines import HGBBaseline, LogisticBaseline, OdooNaiveBayes
from .card import comparison_table
from .datasets import LOADERS
from .metrics import evaluate
from .model import LeadModel


def evaluate_dataset(name: str, root: str | Path | None = None, n_jobs: int = 2) -> dict[str, Any]:
    ds = LOADERS[name](root)
    makers = {
        "LeadModel (ours)": lambda: LeadModel(n_jobs=n_jobs, min_rounds=20),
        "HistGradientBoosting": HGBBaseline,
        "logistic regression": LogisticBaseline,
        "Odoo naive Bayes": OdooNaiveBayes,
    }
    preds = {k: np.full(len(ds.y), np.nan) for k in makers}
    for fold in ds.folds():
        X_tr, y_tr, X_te = ds.X.iloc[fold.train], ds.y[fold.train], ds.X.iloc[fold.test]
        for k, make in makers.items():
            est = make()
            if isinstance(est, LeadModel):
                est.fit(X_tr, y_tr, order=ds.order[fold.train])
            else:
                est.fit(X_tr, y_tr)
            preds[k][fold.test] = est.predict_proba(X_te)[:, 1]
    tested = ~np.isnan(preds["LeadModel (ours)"])
    evals = {k: evaluate(ds.y[tested], p[tested]) for k, p in preds.items()}
    return {"dataset": name, "protocol": ds.protocol, "rows": int(tested.sum()),
            "table": comparison_table(evals),
            "verdict": evals["LeadModel (ours)"].verdict.text}


def evaluate_demo(people: int = 3000, months: int = 4, seed: int = 7,
                  horizon_days: float = 30) -> dict[str, Any]:
    from ..demo import run_demo

    with tempfile.TemporaryDirectory() as tmp:
        res = run_demo(Path(tmp) / "demo", people=people, months=months, seed=seed,
                       say=lambda _s: None)
        with res.project as p:
            tr = p.train(horizon_days=horizon_days)
        card = tr.card
        return {"dataset": f"demo business ({people} people, {months} months, seed {seed})",
                "auc": card.metrics["auc"], "ceiling_auc": res.ceiling_auc,
                "gap": res.ceiling_auc - card.metrics["auc"],
                "baselines": {b["model"]: b["auc"] for b in card.baselines},
                "verdict": card.verdict}
