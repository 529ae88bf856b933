"""A CRM export, imported like any other, as a tabular dataset: one row per person.

The path a user with a spreadsheet of leads takes (no events needed):

    leadrefinery ingest leads.csv --kind people            # one row per lead; every column a trait
    leadrefinery ingest leads.csv --kind opportunities --map won=Converted   # the outcomes
    leadrefinery evaluate --dataset project --order "Lead Number" --drop Tags --drop "Lead Quality"

Features are the people's traits as imported (numbers where a column only holds numbers,
categories otherwise); the label is "has a won outcome". Rows are put in time order by a trait
(`order`) or by the time the person was first seen (the CSV's created column), and split by time.

Two guards, because a spreadsheet mixes what was known before and after the sale: the columns the
user names are dropped, and a column that on its own separates the training labels almost
perfectly is dropped too and reported — it is the outcome or written after it (a leak).
"""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd

from ..store.engine import Engine
from .datasets import Dataset
from .errors import TrainingDataError
from .metrics import roc_auc

# identity and bookkeeping traits: who the person is, not what predicts a sale
IDENTITY_TRAITS = frozenset(
    {"email", "name", "first_name", "last_name", "firstName", "lastName", "phone", "person_id",
     "user_id", "userId", "created_at", "createdAt"}
)
LEAK_AUC = 0.99  # one column alone ranking the training labels this well is the outcome itself


def _frame(engine: Engine, closed_only: bool) -> pd.DataFrame:
    rows = engine.query_arrow(
        f"""
        SELECT p.person_id, p.first_seen, p.traits, o.won
        FROM people p
        {"JOIN" if closed_only else "LEFT JOIN"} (
            SELECT person_id, bool_or(coalesce(won, false)) AS won,
                   bool_or(won IS NOT NULL) AS closed
            FROM outcomes WHERE person_id IS NOT NULL GROUP BY person_id
        ) o ON o.person_id = p.person_id {"AND o.closed" if closed_only else ""}
        """
    ).to_pandas()
    if rows.empty:
        raise TrainingDataError(
            "no people with outcomes in the store; import people and their outcomes first"
        )
    return rows


def _typed(traits: pd.DataFrame) -> pd.DataFrame:
    """Numbers where every present value is a number, categories otherwise."""
    out = {}
    for name in traits.columns:
        col = traits[name]
        numeric = pd.to_numeric(col, errors="coerce")
        if numeric.notna().sum() == col.notna().sum():
            out[name] = numeric.astype("float64")
        else:
            out[name] = col.astype("string").astype("category")
    return pd.DataFrame(out, index=traits.index)


def _leaks(X: pd.DataFrame, y: np.ndarray, train: np.ndarray) -> dict[str, float]:
    """Columns that alone rank the training labels (near) perfectly, with that AUC."""
    found = {}
    yt = y[train]
    if yt.min() == yt.max():
        return found
    for name in X.columns:
        col = X[name].iloc[train]
        if isinstance(col.dtype, pd.CategoricalDtype):
            # each category scored by its training conversion rate
            rate = pd.Series(yt).groupby(col.cat.codes.to_numpy()).mean()
            score = rate.reindex(col.cat.codes.to_numpy()).to_numpy()
        else:
            score = col.to_numpy(dtype="float64")
        fill = np.nanmean(score) if np.isfinite(score).any() else 0.0
        score = np.where(np.isnan(score), fill, score)
        auc = roc_auc(yt, score)
        auc = max(auc, 1 - auc)
        if auc >= LEAK_AUC:
            found[name] = round(float(auc), 4)
    return found


def store_dataset(
    engine: Engine,
    *,
    order: str | None = None,
    drop: list[str] | tuple[str, ...] = (),
    closed_only: bool = False,
    monthly_from: int | None = None,
    test_fraction: float = 0.2,
    keep: list[str] | tuple[str, ...] = (),
) -> Dataset:
    """The store's people as a Dataset (see the module doc). `monthly_from`: expanding monthly
    windows by first-seen month, testing each month from that one on; else the newest
    `test_fraction` is the test set. `keep` overrides the leak guard for named columns."""
    rows = _frame(engine, closed_only)
    traits = pd.DataFrame.from_records(
        [orjson.loads(t) if isinstance(t, str | bytes) else (t or {}) for t in rows["traits"]]
    )
    unknown = [c for c in [*drop, *keep, *([order] if order else [])] if c not in traits.columns]
    if unknown:
        known = ", ".join(sorted(traits.columns)[:40])
        raise TrainingDataError(f"no imported column named {', '.join(map(repr, unknown))} "
                                f"(columns: {known})")
    if order:
        key = pd.to_numeric(traits[order], errors="coerce")
        if key.isna().any():
            key = pd.to_datetime(traits[order], errors="coerce", format="mixed")
        if key.isna().any():
            raise TrainingDataError(f"order column {order!r} must hold a number or a date in "
                                    f"every row ({int(key.isna().sum())} rows do not)")
    else:
        key = rows["first_seen"]
    internal = [c for c in traits.columns if c.startswith("$") or c in IDENTITY_TRAITS]
    X = _typed(traits.drop(columns=[*drop, *internal, *([order] if order else [])]))
    pos = np.lexsort((rows["person_id"].to_numpy(), key.to_numpy()))
    X = X.iloc[pos].reset_index(drop=True)
    y = rows["won"].fillna(False).astype(bool).to_numpy()[pos].astype(int)
    first_seen = pd.to_datetime(rows["first_seen"]).iloc[pos]
    periods = None
    if monthly_from is not None:
        months = (first_seen.dt.year * 12 + first_seen.dt.month).to_numpy()
        periods = months - months.min()
    ds = Dataset(
        name="project",
        X=X,
        y=y,
        order=key.to_numpy()[pos],
        ids=rows["person_id"].to_numpy()[pos],
        protocol="",
        dropped=[*drop],
        periods=periods,
        first_test_period=monthly_from or 0,
        test_fraction=test_fraction,
    )
    # judged on the first fold's training rows only: no test label chooses a column
    first = next(ds.folds(), None)
    if first is None:
        raise TrainingDataError("nothing to test: no month from the one asked for on")
    leaks = {k: v for k, v in _leaks(X, y, first.train).items() if k not in keep}
    if leaks:
        ds.X = X.drop(columns=list(leaks))
        ds.dropped += list(leaks)
    ds.notes = (
        "dropped as leaks (one column alone separates the training labels, AUC "
        + ", ".join(f"{k} {v}" for k, v in leaks.items()) + "); pass --keep to keep them"
        if leaks else ""
    )
    by = f"by {order!r}" if order else "by first seen"
    ds.protocol = (
        f"expanding monthly window {by}: each month from month {monthly_from} on scored by a "
        "model trained on all earlier months"
        if periods is not None
        else f"time-ordered holdout {by}: oldest {1 - test_fraction:.0%} to train, newest "
        f"{test_fraction:.0%} to test"
    )
    return ds

