"""The true conversion probability: a logistic function of observable fit and behaviour.

The formula (coefficients below, written out in the package docstring) only uses facts a scoring
model can see in the generated files, never the hidden intent that drove the behaviour, so a
model that sees the same facts can reach the ceiling. `b0` is found by bisection so that the
mean probability over everybody (abusers and spurious sign-ups included) equals `TARGET_RATE`.
Abusers get a moderate probability instead (uniform 0.35..0.55: about half convert once sales
calls them), spurious sign-ups ~0.
"""

from __future__ import annotations

import numpy as np

from . import business as B
from .behaviour import Observed

TARGET_RATE = 0.035
SPURIOUS_P = 0.0002


def fit_score(pop: B.Population) -> np.ndarray:
    size = np.where(pop.company_size >= 0, pop.company_size, 0)
    return (
        0.75 * pop.company_domain
        + 0.3 * pop.company_match
        + 0.35 * pop.seniority
        + 0.2 * np.log10(1 + size)
        - 1.1 * B.RISKY_IDX[pop.phone_country]
        + 0.3 * pop.email_verified
        + 0.35 * pop.phone_verified
        + 0.8 * B.CHANNEL_QUALITY[pop.channel]
    )


def behaviour_score(obs: Observed) -> np.ndarray:
    return (
        0.45 * np.log1p(obs.logins)
        + 0.35 * np.log1p(obs.environments)
        + 0.35 * obs.class_use
        + 0.35 * np.maximum(obs.depth - 2, 0)
        + 0.5 * obs.pricing
        + 1.2 * obs.contact_sales
        + 0.8 * obs.docs
        + 0.65 * obs.training
        + 0.3 * np.log1p(obs.email_clicks)
    )


def true_probability(
    pop: B.Population, obs: Observed, seed: int, target: float = TARGET_RATE
) -> np.ndarray:
    rng = B.stream(seed, "probability")
    score = fit_score(pop) + behaviour_score(obs)
    ordinary = ~pop.spurious & ~pop.abuser
    p = np.zeros(pop.n)
    p[pop.spurious] = SPURIOUS_P
    p[pop.abuser] = rng.uniform(0.35, 0.55, int(pop.abuser.sum()))
    fixed = p[~ordinary].sum()
    need = target * pop.n - fixed  # expected conversions the ordinary people must bring
    s = score[ordinary]
    lo, hi = -20.0, 5.0
    if len(s) and need > 0:
        for _ in range(60):
            mid = (lo + hi) / 2
            if (1 / (1 + np.exp(-(mid + s)))).sum() > need:
                hi = mid
            else:
                lo = mid
    p[ordinary] = 1 / (1 + np.exp(-(lo + s)))
    return p


def sample_labels(p: np.ndarray, seed: int) -> np.ndarray:
    return B.stream(seed, "labels").random(len(p)) < p
