"""The unusual-usage detector finds planted outliers and names what makes them unusual."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from leadrefinery.act.unusual import UnusualUsageDetector, robust_scale
from leadrefinery.errors import InputError

# planted trial -> (feature pushed far out, its value)
PLANTED = {
    "abuser-guests": ("guests_max", 42.0),
    "abuser-envs": ("concurrent_envs", 9.0),
    "abuser-overtime": ("minutes_past_limit", 600.0),
    "scripted-logins": ("logins_per_day", 150.0),
}


def population(n: int = 1500, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "logins_per_day": rng.gamma(2.0, 1.5, n).round(1),
            "guests_max": rng.poisson(3, n).astype(float),
            "concurrent_envs": rng.choice([1.0, 1.0, 1.0, 2.0], n),
            # most trials never run past the limit: a mostly-zero count
            "minutes_past_limit": np.where(rng.random(n) < 0.9, 0.0, rng.exponential(10, n)),
            "docs_pages": rng.poisson(6, n).astype(float),
        },
        index=pd.Index([f"p{i}" for i in range(n)], name="person_id"),
    )
    return df


def with_planted(df: pd.DataFrame) -> pd.DataFrame:
    med = df.median()
    rows = []
    for pid, (feature, value) in PLANTED.items():
        row = med.copy()
        row[feature] = value
        rows.append(row.rename(pid))
    return pd.concat([df, pd.DataFrame(rows)])


def test_planted_outliers_are_flagged_with_their_feature_named():
    X = with_planted(population())
    det = UnusualUsageDetector(contamination=0.01, random_state=0).fit(X)
    assert det.fit(X) is det  # fit returns self
    flagged = det.explain(X)
    assert set(PLANTED) <= set(flagged.index)
    assert (flagged["score"] < 0).all() and flagged["unusual"].all()
    assert len(flagged) <= 0.02 * len(X)  # roughly the contamination asked for
    for pid, (feature, value) in PLANTED.items():
        top = flagged.loc[pid, "reasons"][0]
        assert top["feature"] == feature, (pid, flagged.loc[pid, "reasons"])
        assert top["value"] == value
        assert top["z"] > 3 and top["contribution"] > 0
        assert top["detail"].startswith(f"{feature} = ")  # for the alert's evidence
    # predictions agree with explain(); the planted ones are the most unusual of all
    pred = pd.Series(det.predict(X), index=X.index)
    assert set(pred[pred == -1].index) == set(flagged.index)
    assert set(flagged.index[: len(PLANTED)]) == set(PLANTED)


def test_scoring_new_trials_uses_what_was_learned():
    det = UnusualUsageDetector(contamination=0.01, random_state=1).fit(population())
    new = pd.DataFrame(
        {"docs_pages": [6.0, 5.0], "guests_max": [3.0, 60.0], "logins_per_day": [3.0, 2.5],
         "concurrent_envs": [1.0, 1.0], "minutes_past_limit": [0.0, None]},
        index=["usual", "crowded"],
    )  # columns in another order, a missing value: both fine
    assert list(det.predict(new)) == [1, -1]
    assert det.score_samples(new)[1] < det.score_samples(new)[0]
    out = det.explain(new)
    assert list(out.index) == ["crowded"]
    assert out.loc["crowded", "beyond_range"]  # 60 guests: beyond anything seen at fit
    assert out.loc["crowded", "reasons"][0]["feature"] == "guests_max"
    assert len(det.explain(new, only_flagged=False)) == 2


def test_follows_estimator_conventions_and_rejects_bad_input():
    det = UnusualUsageDetector(n_estimators=50)
    assert det.get_params()["n_estimators"] == 50
    with pytest.raises(NotFittedError):
        det.predict(population(20))
    with pytest.raises(InputError, match="numeric"):
        det.fit(population(20).assign(country="DE"))
    det.fit(population(50))
    with pytest.raises(InputError, match="guests_max"):
        det.predict(population(5).drop(columns="guests_max"))


def test_robust_scale_survives_mostly_constant_columns():
    assert robust_scale(np.array([0.0] * 95 + [5.0] * 5)) > 0
    assert robust_scale(np.zeros(10)) == 1.0
    assert robust_scale(np.array([1.0, 2.0, 3.0, 4.0, 100.0])) < 3
