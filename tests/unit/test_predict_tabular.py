"""A CRM export through the documented import path, as a tabular dataset (predict/tabular.py)."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leadrefinery import Project
from leadrefinery.ingest import guess_csv_kind
from leadrefinery.predict.errors import TrainingDataError
from leadrefinery.predict.tabular import store_dataset


def write_leads(path: Path, n: int = 1200, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = datetime(2025, 1, 1)
    rows = []
    for i in range(n):
        source = rng.choice(["Referral", "Google", "Ads"])
        visits = int(rng.poisson(3))
        p = {"Referral": 0.6, "Google": 0.25, "Ads": 0.05}[source] + 0.04 * visits
        won = bool(rng.random() < min(p, 0.95))
        rows.append({
            "Lead ID": f"L{i:04d}",
            "Created": str(start + timedelta(days=i // 12, hours=int(rng.integers(24)))),
            "Lead Number": 1000 + i,
            "Source": source,
            "Visits": visits,
            # written by sales after the outcome: a leak the guard must catch
            "Tags": "closed - enrolled" if won else "no reply",
            "Converted": int(won),
        })
    frame = pd.DataFrame(rows)
    frame.to_csv(path, index=False, quoting=csv.QUOTE_MINIMAL)
    return frame


@pytest.fixture()
def leads(project: Project, tmp_path: Path) -> pd.DataFrame:
    path = tmp_path / "leads.csv"
    frame = write_leads(path)
    assert project.ingest([path], kind="people").stored == len(frame)
    assert project.ingest([path], kind="opportunities", columns={"won": "Converted"}).stored == len(
        frame
    )
    return frame


def test_people_and_outcomes_become_a_time_ordered_frame(project: Project, leads) -> None:
    ds = store_dataset(project.engine, drop=["Tags"])
    assert len(ds.y) == len(leads)
    truth = dict(zip(leads["Lead ID"], leads["Converted"], strict=True))
    assert [truth[i] for i in ds.ids] == list(ds.y)  # labels follow their people
    assert list(ds.order) == sorted(ds.order)  # oldest first (first seen = the Created column)
    assert set(ds.X.columns) == {"Source", "Visits", "Lead Number"}
    assert isinstance(ds.X["Source"].dtype, pd.CategoricalDtype)
    assert ds.X["Visits"].dtype == "float64"
    fold = next(ds.folds())
    assert max(ds.order[fold.train]) <= min(ds.order[fold.test])


def test_a_column_that_is_the_outcome_is_dropped_and_said(project: Project, leads) -> None:
    ds = store_dataset(project.engine)
    assert "Tags" not in ds.X.columns and "Converted" not in ds.X.columns
    assert {"Tags", "Converted"} <= set(ds.dropped)
    assert "Tags" in ds.notes and "Converted" in ds.notes
    kept = store_dataset(project.engine, drop=["Converted"], keep=["Tags"])
    assert "Tags" in kept.X.columns and "Tags" not in kept.notes


def test_order_by_a_column_and_monthly_windows(project: Project, leads) -> None:
    ds = store_dataset(project.engine, order="Lead Number", drop=["Tags"])
    assert "Lead Number" not in ds.X.columns
    assert [int(v) for v in ds.order] == sorted(leads["Lead Number"])
    monthly = store_dataset(project.engine, drop=["Tags"], monthly_from=2)
    folds = list(monthly.folds())
    assert len(folds) >= 1 and all(len(f.train) and len(f.test) for f in folds)
    assert "monthly" in monthly.protocol


def test_unknown_columns_are_named(project: Project, leads) -> None:
    with pytest.raises(TrainingDataError, match="'Tagz'"):
        store_dataset(project.engine, drop=["Tagz"])
    with pytest.raises(TrainingDataError, match="'Source'.*number or a date"):
        store_dataset(project.engine, order="Source")


def test_an_outcome_file_is_told_by_its_name(tmp_path: Path) -> None:
    path = tmp_path / "crm_conversions.csv"
    path.write_text("person_id,when\np1,2025-01-01\n")
    assert guess_csv_kind(path) == "conversions"
    path = tmp_path / "export.csv"
    path.write_text("person_id,when\np1,2025-01-01\n")
    assert guess_csv_kind(path) == "people"


def test_evaluate_a_crm_export_from_the_command_line(project: Project, leads) -> None:
    from typer.testing import CliRunner

    from leadrefinery.cli import app

    out = CliRunner().invoke(
        app, ["evaluate", "--dataset", "project", "--project", str(project.root),
              "--order", "Lead Number"])
    assert out.exit_code == 0, out.output
    assert "dropped as leaks" in out.output and "Tags" in out.output
    assert "LeadModel (ours)" in out.output and "Odoo naive Bayes" in out.output
    assert "LeadModel: better than chance" in out.output
