"""Probability -> A/B/C/D by volume, and a stable random control holdout of low buckets.

Buckets are cut by *volume*, not by fixed probabilities: with the default cumulative shares
(A 10 %, A+B 25 %, A+B+C 50 %) the top tenth of the scored population is A, the next 15 % B,
the next quarter C and the bottom half D, so A+B+C - the MQL definition - is the top half. The
probability thresholds are learned at fit time on the scored population and then stay fixed, so
a lead's bucket moves only when its probability does.

The control holdout keeps sales honest about what the low buckets hold: a share (default 10 %)
of C/D leads is marked `holdout` and worked anyway. The draw is a hash of the person id and a
seed - no random state - so re-scoring never reshuffles who is in the holdout.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .errors import check_is_fitted

__all__ = ["BucketScheme", "holdout_draw"]


def holdout_draw(person_id: Any, seed: int | str = 0) -> float:
    """A uniform number in [0, 1) fixed by (seed, person id) - the same in every process."""
    digest = hashlib.blake2b(f"{seed}\x00{person_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


class BucketScheme:
    """Volume-quantile buckets plus a control holdout.

    Parameters
    ----------
    cumulative
        cumulative population shares of all but the last bucket, increasing, e.g. (0.1, 0.25,
        0.5): top 10 % -> A, top 25 % -> A or B, top 50 % -> A, B or C, the rest D.
    labels
        bucket names, best first; one more than `cumulative`.
    holdout_share
        share of leads in `holdout_buckets` marked holdout.
    holdout_buckets
        the low buckets a control holdout is drawn from.
    seed
        changes who is drawn; keep it fixed to keep the holdout stable.
    """

    def __init__(
        self,
        cumulative: Sequence[float] = (0.10, 0.25, 0.50),
        labels: Sequence[str] = ("A", "B", "C", "D"),
        holdout_share: float = 0.10,
        holdout_buckets: Sequence[str] = ("C", "D"),
        seed: int | str = 0,
    ) -> None:
        self.cumulative = tuple(cumulative)
        self.labels = tuple(labels)
        self.holdout_share = holdout_share
        self.holdout_buckets = tuple(holdout_buckets)
        self.seed = seed

    def _check(self) -> None:
        c = self.cumulative
        if len(self.labels) != len(c) + 1:
            n = len(self.labels)
            raise ValueError(f"{n} labels need {n - 1} cumulative shares, got {len(c)}")
        if any(not 0 < x < 1 for x in c) or any(b <= a for a, b in zip(c, c[1:], strict=False)):
            raise ValueError(f"cumulative shares must increase strictly within (0, 1), got {c}")
        if not 0 <= self.holdout_share <= 1:
            raise ValueError(f"holdout_share must be within [0, 1], got {self.holdout_share}")
        unknown = set(self.holdout_buckets) - set(self.labels)
        if unknown:
            raise ValueError(
                f"holdout_buckets {sorted(unknown)} are not bucket labels {self.labels}"
            )

    def fit(self, proba: Any) -> BucketScheme:
        """Learn the probability thresholds from a scored population."""
        self._check()
        p = np.asarray(proba, dtype=float).ravel()
        if p.size == 0 or np.isnan(p).any():
            raise ValueError(
                "need a non-empty set of scores without NaN to learn bucket thresholds"
            )
        # threshold i: the score at the (1 - cumulative[i]) quantile; a lead scoring at least
        # that is in bucket i or better
        self.thresholds_ = np.quantile(p, [1 - c for c in self.cumulative], method="higher")
        return self

    def assign(self, proba: Any) -> np.ndarray:
        """Bucket label per score (object array)."""
        check_is_fitted(self, "thresholds_")
        p = np.asarray(proba, dtype=float).ravel()
        # count thresholds strictly above the score: 0 -> best bucket
        idx = (p[:, None] < self.thresholds_[None, :]).sum(axis=1)
        return np.asarray(self.labels, dtype=object)[idx]

    def holdout(self, person_ids: Iterable[Any], buckets: Any) -> np.ndarray:
        """True for leads in a holdout bucket whose stable draw falls under the share."""
        ids = list(person_ids)
        b = np.asarray(buckets, dtype=object).ravel()
        if len(ids) != b.size:
            raise ValueError(f"{len(ids)} person ids for {b.size} buckets")
        draws = np.fromiter((holdout_draw(i, self.seed) for i in ids), dtype=float, count=len(ids))
        return np.isin(b, self.holdout_buckets) & (draws < self.holdout_share)

    def score(self, person_ids: Iterable[Any], proba: Any) -> pd.DataFrame:
        """person_id, probability, bucket and holdout for a scored population."""
        ids = list(person_ids)
        p = np.asarray(proba, dtype=float).ravel()
        buckets = self.assign(p)
        return pd.DataFrame(
            {
                "person_id": ids,
                "probability": p,
                "bucket": buckets,
                "holdout": self.holdout(ids, buckets),
            }
        )

    def to_dict(self) -> dict[str, Any]:
        check_is_fitted(self, "thresholds_")
        return {
            "cumulative": list(self.cumulative),
            "labels": list(self.labels),
            "holdout_share": self.holdout_share,
            "holdout_buckets": list(self.holdout_buckets),
            "seed": self.seed,
            "thresholds": [float(t) for t in self.thresholds_],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BucketScheme:
        scheme = cls(
            cumulative=d["cumulative"],
            labels=d["labels"],
            holdout_share=d["holdout_share"],
            holdout_buckets=d["holdout_buckets"],
            seed=d["seed"],
        )
        scheme.thresholds_ = np.asarray(d["thresholds"], dtype=float)
        return scheme
