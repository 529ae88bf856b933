"""The public dataset loaders: leaks dropped, time order kept, folds never look back."""

from __future__ import annotations

import numpy as np
import pytest

from leadrefinery.errors import NotFound
from leadrefinery.predict.datasets import (
    X_EDUCATION_LEAKS,
    datasets_dir,
    load_bank_marketing,
    load_maven_crm,
    load_x_education,
)

try:
    datasets_dir()
    HAVE_DATA = True
except NotFound:
    HAVE_DATA = False

needs_data = pytest.mark.skipif(not HAVE_DATA, reason="../shared/datasets not present")


def _folds_look_forward(ds) -> None:
    for fold in ds.folds():
        assert len(fold.train) and len(fold.test)
        assert ds.order[fold.train].max() <= ds.order[fold.test].min()


@needs_data
def test_bank_marketing() -> None:
    ds = load_bank_marketing()
    assert len(ds.y) == 41_188 and ds.y.sum() == 4_640
    assert "duration" not in ds.X.columns and "y" not in ds.X.columns
    assert ds.periods is not None and np.all(np.diff(ds.periods) >= 0)
    assert ds.periods.max() == 30  # May 2008 .. Nov 2010
    folds = list(ds.folds())
    assert all(ds.periods[f.train].max() < ds.periods[f.test].min() for f in folds)
    assert ds.periods[folds[0].test][0] == 12
    assert str(ds.X["job"].dtype) == "category"


@needs_data
def test_x_education() -> None:
    ds = load_x_education()
    assert len(ds.y) == 9_240 and ds.y.sum() == 3_561
    assert not set(X_EDUCATION_LEAKS) & set(ds.X.columns)
    assert not any(c.startswith("Asymmetrique") for c in ds.X.columns)
    assert "Lead Number" not in ds.X.columns and "Prospect ID" not in ds.X.columns
    assert np.all(np.diff(ds.order) > 0)
    for col in ds.X.select_dtypes("category"):
        assert "Select" not in ds.X[col].cat.categories
    _folds_look_forward(ds)


@needs_data
def test_maven_crm_closed_deals_only() -> None:
    ds = load_maven_crm()
    assert len(ds.y) == 4_238 + 2_473 and ds.y.sum() == 4_238
    assert not {"close_value", "close_date", "deal_stage"} & set(ds.X.columns)
    assert "GTXPro" not in ds.X["product"].cat.categories
    assert ds.X["sector"].notna().all()  # every closed deal joins to an account
    _folds_look_forward(ds)


def test_missing_directory_says_what_to_do(tmp_path) -> None:
    with pytest.raises(NotFound, match="LEADREFINERY_DATASETS"):
        datasets_dir(tmp_path / "nope")
