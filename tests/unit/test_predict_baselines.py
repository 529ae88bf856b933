"""Baselines: Odoo's frequency naive Bayes on a hand-worked example, logistic regression."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from leadrefinery.predict import LogisticBaseline, NotFittedError, OdooNaiveBayes
from leadrefinery.predict.baselines import HGBBaseline
from leadrefinery.predict.metrics import roc_auc

# 3 won, 4 lost; country unset on two leads
TINY = pd.DataFrame(
    {
        "source": ["a", "a", "b", "a", "b", "b", "b"],
        "country": ["x", None, "x", "y", "y", None, "x"],
    }
)
WON = np.array([1, 1, 1, 0, 0, 0, 0])


def test_odoo_frequency_table_adds_the_point_one_prior() -> None:
    nb = OdooNaiveBayes().fit(TINY, WON)
    table = nb.frequency_table_.set_index(["field", "value"])
    assert table.loc[("source", "a")].tolist() == pytest.approx([2.1, 1.1])
    assert table.loc[("source", "b")].tolist() == pytest.approx([1.1, 3.1])
    assert table.loc[("country", "x")].tolist() == pytest.approx([2.1, 1.1])
    assert table.loc[("country", "y")].tolist() == pytest.approx([0.1, 2.1])
    assert len(table) == 4  # unset countries are not counted
    assert (nb.team_won_, nb.team_lost_) == pytest.approx((3.1, 4.1))


def test_odoo_probability_by_hand() -> None:
    nb = OdooNaiveBayes().fit(TINY, WON)
    leads = pd.DataFrame(
        {"source": ["a", "b", None], "country": ["y", "z", None]}  # z never seen
    )
    p = nb.predict_proba(leads)[:, 1]
    # S(won) = P(won) * prod P(value | won), each field normalised by its own total
    s_won = 3.1 / 7.2 * (2.1 / 3.2) * (0.1 / 2.2)
    s_lost = 4.1 / 7.2 * (1.1 / 4.2) * (2.1 / 3.2)
    assert p[0] == pytest.approx(s_won / (s_won + s_lost))
    # an unseen value is skipped, like an unset one
    s_won, s_lost = 3.1 * (1.1 / 3.2), 4.1 * (3.1 / 4.2)
    assert p[1] == pytest.approx(s_won / (s_won + s_lost))
    # nothing known: the prior
    assert p[2] == pytest.approx(3.1 / 7.2)


def test_odoo_bins_numeric_fields() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        {"visits": rng.poisson(4, 2000).astype(float), "src": rng.choice(["a", "b"], 2000)}
    )
    y = (rng.random(2000) < 0.1 + 0.08 * X["visits"].clip(upper=8)).astype(int)
    nb = OdooNaiveBayes(n_bins=5).fit(X, y)
    assert set(nb.frequency_table_["field"]) == {"visits", "src"}
    assert (nb.frequency_table_["field"] == "visits").sum() <= 5
    assert roc_auc(y, nb.predict_proba(X)[:, 1]) > 0.6


@pytest.mark.parametrize("cls", [LogisticBaseline, OdooNaiveBayes, HGBBaseline])
def test_baselines_follow_estimator_conventions(cls) -> None:
    rng = np.random.default_rng(1)
    X = pd.DataFrame(
        {
            "n": rng.normal(size=600),
            "m": np.where(rng.random(600) < 0.1, np.nan, rng.normal(size=600)),
            "c": pd.Categorical(rng.choice(["p", "q", "r"], 600)),
        }
    )
    y = (rng.random(600) < 1 / (1 + np.exp(-2 * X["n"]))).astype(int)
    with pytest.raises(NotFittedError):
        cls().predict_proba(X)
    model = cls()
    with threadpool_limits(1):  # OpenMP on a busy 2-core box is slower than one thread
        assert model.fit(X, y) is model
    p = model.predict_proba(X)
    assert p.shape == (600, 2) and np.allclose(p.sum(axis=1), 1)
    assert roc_auc(y, p[:, 1]) > 0.7
    X_new = X.head(3).copy()
    X_new["c"] = ["p", "unseen", None]
    assert np.isfinite(model.predict_proba(X_new)).all()
