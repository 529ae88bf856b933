"""Training examples beyond the cap: every example of a stable random share of people."""

from __future__ import annotations

import pandas as pd

from leadrefinery.predict.training import sample_people


def test_sample_people_keeps_whole_people_stably_near_the_cap() -> None:
    ex = pd.DataFrame({"person_id": [f"p{i // 6}" for i in range(60_000)], "offset": 1.0})
    got = sample_people(ex, 15_000)
    assert 13_500 < len(got) < 16_500
    assert (got.groupby("person_id").size() == 6).all()  # all of a person's examples, or none
    pd.testing.assert_frame_equal(got, sample_people(ex, 15_000))  # same people every time
    assert sample_people(ex, None) is ex and sample_people(ex, 60_000) is ex
