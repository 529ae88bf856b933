"""Public lead datasets for honest evaluation, each with its time order and its leaks removed.

    load_bank_marketing()   UCI bank telemarketing, 41,188 calls May 2008 - Nov 2010, target y.
                            `duration` (call length, known only after the call) is dropped.
                            Rows are in date order; the month index counts month wrap-arounds.
                            Split: expanding monthly window - every month after the first year
                            of history is scored by a model trained on all earlier months.
    load_x_education()      X Education leads, 9,240 rows, target Converted. The columns filled
                            in after sales contact (Tags, Lead Quality, Last Activity, Last
                            Notable Activity, Lead Profile, Asymmetrique *) are dropped; "Select"
                            (an unanswered dropdown) is missing. Pseudo-time: Lead Number.
                            Split: the newest 20 % by Lead Number is the test set.
    load_maven_crm()        Maven CRM pipeline, closed deals only (Won vs Lost), joined with
                            accounts, products and sales teams; close_value and close_date
                            (which reveal the outcome) are dropped. Order: engage_date.
                            SIMULATED data with random labels - the negative control: a model
                            must not claim skill here. Split: newest 20 % by engage_date.

Files are read from `$LEADREFINERY_DATASETS`, else `../shared/datasets` beside the repository.
Each directory's SOURCE.txt documents provenance, licence and the leak columns.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import NotFound

__all__ = [
    "Dataset",
    "Fold",
    "datasets_dir",
    "load_bank_marketing",
    "load_maven_crm",
    "load_x_education",
    "LOADERS",
]

MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]


def datasets_dir(root: str | Path | None = None) -> Path:
    if root is not None:
        path = Path(root)
    elif os.environ.get("LEADREFINERY_DATASETS"):
        path = Path(os.environ["LEADREFINERY_DATASETS"])
    else:
        path = Path(__file__).resolve().parents[3].parent / "shared" / "datasets"
    if not path.is_dir():
        raise NotFound(
            f"dataset directory {path} not found; set LEADREFINERY_DATASETS to the folder "
            "holding bank-marketing/, x-education-leads/ and maven-crm-sales-opportunities/"
        )
    return path


def _file(root: Path, *parts: str) -> Path:
    path = root.joinpath(*parts)
    if not path.is_file():
        raise NotFound(f"dataset file {path} not found (see SOURCE.txt in {path.parent})")
    return path


def _categoricals(X: pd.DataFrame) -> pd.DataFrame:
    X = X.copy()
    for name in X.columns:
        if not pd.api.types.is_numeric_dtype(X[name]):
            X[name] = X[name].astype("category")
    return X


@dataclass(frozen=True)
class Fold:
    """Row positions to train on and to test on; every test row is newer than every train row."""

    name: str
    train: np.ndarray
    test: np.ndarray


@dataclass
class Dataset:
    """A feature frame in time order (oldest first), 0/1 labels and how to split it."""

    name: str
    X: pd.DataFrame
    y: np.ndarray
    order: np.ndarray
    ids: np.ndarray
    protocol: str
    dropped: list[str] = field(default_factory=list)
    periods: np.ndarray | None = None  # month index, for expanding monthly windows
    first_test_period: int = 12
    test_fraction: float = 0.2
    notes: str = ""

    def folds(self) -> Iterator[Fold]:
        """Time-ordered folds: expanding monthly window if `periods`, else one newest holdout."""
        n = len(self.y)
        if self.periods is not None:
            for period in np.unique(self.periods):
                if period < self.first_test_period:
                    continue
                train = np.flatnonzero(self.periods < period)
                test = np.flatnonzero(self.periods == period)
                yield Fold(f"month {int(period)}", train, test)
        else:
            cut = int(round(n * (1 - self.test_fraction)))
            yield Fold(f"newest {self.test_fraction:.0%}", np.arange(cut), np.arange(cut, n))


def load_bank_marketing(root: str | Path | None = None) -> Dataset:
    path = _file(datasets_dir(root), "bank-marketing", "bank-additional-full.csv")
    df = pd.read_csv(path, sep=";")
    month = df["month"].map({m: i for i, m in enumerate(MONTHS)}).to_numpy()
    years = np.r_[0, np.cumsum(np.diff(month) < 0)]  # rows are in date order: a wrap is a new year
    period = years * 12 + month
    period = period - period.min()
    y = (df["y"] == "yes").astype(int).to_numpy()
    X = _categoricals(df.drop(columns=["y", "duration"]))
    return Dataset(
        name="bank-marketing",
        X=X.reset_index(drop=True),
        y=y,
        order=np.arange(len(df)),
        ids=np.arange(len(df)),
        protocol=(
            "expanding monthly window: each month from the 13th month of data on (May 2009 -"
            " Nov 2010) scored by a model trained on all earlier months; predictions pooled"
        ),
        dropped=["duration"],
        periods=period,
        first_test_period=12,
        notes="success rate drifts from ~3 % (2008) to ~50 % (2010)",
    )


X_EDUCATION_LEAKS = [
    "Tags",
    "Lead Quality",
    "Last Activity",
    "Last Notable Activity",
    "Lead Profile",
    "Asymmetrique Activity Index",
    "Asymmetrique Profile Index",
    "Asymmetrique Activity Score",
    "Asymmetrique Profile Score",
]


def load_x_education(root: str | Path | None = None) -> Dataset:
    path = _file(datasets_dir(root), "x-education-leads", "Leads.csv")
    df = pd.read_csv(path).sort_values("Lead Number", kind="stable").reset_index(drop=True)
    leaks = [c for c in df.columns if c in X_EDUCATION_LEAKS or c.startswith("Asymmetrique")]
    y = df["Converted"].astype(int).to_numpy()
    X = df.drop(columns=[*leaks, "Converted", "Prospect ID", "Lead Number"])
    X = X.replace("Select", np.nan)
    return Dataset(
        name="x-education",
        X=_categoricals(X),
        y=y,
        order=df["Lead Number"].to_numpy(),
        ids=df["Prospect ID"].to_numpy(),
        protocol="time-ordered holdout: oldest 80 % by Lead Number to train, newest 20 % to test",
        dropped=leaks,
    )


def load_maven_crm(root: str | Path | None = None) -> Dataset:
    base = datasets_dir(root) / "maven-crm-sales-opportunities"
    pipeline = pd.read_csv(_file(base, "sales_pipeline.csv"))
    accounts = pd.read_csv(_file(base, "accounts.csv"))
    products = pd.read_csv(_file(base, "products.csv"))
    teams = pd.read_csv(_file(base, "sales_teams.csv"))
    closed = pipeline[pipeline["deal_stage"].isin(["Won", "Lost"])].copy()
    closed["product"] = closed["product"].replace({"GTXPro": "GTX Pro"})  # names differ by file
    df = (
        closed.merge(accounts, on="account", how="left")
        .merge(products, on="product", how="left")
        .merge(teams, on="sales_agent", how="left")
    )
    df["engage_date"] = pd.to_datetime(df["engage_date"])
    df = df.sort_values(["engage_date", "opportunity_id"], kind="stable").reset_index(drop=True)
    y = (df["deal_stage"] == "Won").astype(int).to_numpy()
    leaks = ["close_value", "close_date"]
    X = df.drop(columns=[*leaks, "deal_stage", "opportunity_id", "engage_date"])
    return Dataset(
        name="maven-crm",
        X=_categoricals(X),
        y=y,
        order=df["engage_date"].to_numpy(),
        ids=df["opportunity_id"].to_numpy(),
        protocol="time-ordered holdout: oldest 80 % by engage_date to train, newest 20 % to test",
        dropped=leaks,
        notes="simulated pipeline with random outcomes: the negative control",
    )


LOADERS = {
    "bank-marketing": load_bank_marketing,
    "x-education": load_x_education,
    "maven-crm": load_maven_crm,
}
