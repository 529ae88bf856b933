"""Point-in-time features: nothing after as_of may change a feature (leakage probes)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest

from leadrefinery.predict.features import FeatureSpec, build_features
from leadrefinery.predict.icp import wilson
from leadrefinery.predict.training import make_examples
from leadrefinery.project import Project

AS_OF = datetime(2026, 3, 10)


def _msgs(user: str, day: int, n: int = 1, event: str = "Logged In", **kw) -> list[dict]:
    return [
        {"type": "track", "userId": user, "event": event, "messageId": f"{user}-{event}-{day}-{i}",
         "timestamp": f"2026-03-{day:02d}T10:{i:02d}:00Z", **kw}
        for i in range(n)
    ]


def _identify(user: str, day: int, **traits) -> dict:
    return {"type": "identify", "userId": user, "messageId": f"{user}-id-{day}",
            "timestamp": f"2026-03-{day:02d}T09:00:00Z",
            "traits": {"email": f"{user}@acme.com", **traits}}


@pytest.fixture
def store(project):
    project.settings.ingest.conversion_events = ["Subscription Started"]
    project.close()
    past = [_identify("u1", 1, title="CTO"), _identify("u2", 2, title="Student")]
    past += _msgs("u1", 2, 3) + _msgs("u1", 8, 2) + _msgs("u2", 5, 1)
    past += [{"type": "page", "userId": "u1", "name": "Pricing", "messageId": "pg1",
              "timestamp": "2026-03-09T10:00:00Z", "properties": {"path": "/pricing/plans"}}]
    project.ingestor.ingest_messages(past, source="t")
    return project


def _features(project, spec=None):
    ex = pd.DataFrame({"person_id": ["u1", "u2"], "as_of": [AS_OF, AS_OF]})
    spec = spec or FeatureSpec.learn(project.engine, ex, exclude_events=["Subscription Started"])
    return spec, build_features(project.engine, ex, spec)


def test_features_are_counted_before_as_of(store):
    spec, X = _features(store)
    assert X.loc[0, "track_7d.Logged In"] == 2 and X.loc[0, "track_30d.Logged In"] == 5
    assert X.loc[0, "page_30d./pricing/plans"] == 1
    assert X.loc[0, "trait.title"] == "CTO" and X.loc[1, "trait.title"] == "Student"
    assert X.loc[0, "webmail"] == 0
    assert 0.5 < X.loc[0, "days_since_last"] < 1.0


def test_events_after_as_of_change_no_feature(store):
    spec, before = _features(store)
    # the future: more logins, a page view, a changed trait, a conversion and paid-user activity
    future = _msgs("u1", 10, 5) + _msgs("u2", 12, 9) + _msgs("u1", 11, 1, "Subscription Started")
    future += [_identify("u1", 11, title="Student", email="u1@gmail.com"),
               {"type": "page", "userId": "u2", "name": "Pricing", "messageId": "pg2",
                "timestamp": "2026-03-10T00:00:00Z", "properties": {"path": "/pricing/plans"}}]
    store.ingestor.ingest_messages(future, source="t")
    _, after = _features(store, spec)
    pd.testing.assert_frame_equal(before, after)
    # the vocabulary learned before as_of does not pick up the conversion event either
    spec2, _ = _features(store)
    assert "Subscription Started" not in spec2.events


def test_examples_exclude_converted_and_unlabelled(store):
    store.ingestor.ingest_messages(_msgs("u1", 6, 1, "Subscription Started"), source="t")
    store.ingestor.ingest_messages(_msgs("u2", 30, 1), source="t")  # data end: 2026-03-30
    ex = make_examples(store.engine, horizon_days=7, offsets=(1.0, 10.0, 25.0))
    u1 = ex[ex.person_id == "u1"]
    # u1 converted on day 6: the day-2 example is positive, later ones are left out
    assert list(u1["label"]) == [1]
    # as_of + horizon past the end of data: not labelled yet, left out
    assert (ex["as_of"] + pd.Timedelta(days=7) <= pd.Timestamp("2026-03-30T10:00:01")).all()


def _business(project, with_leak: bool):
    """30 trials: the active half converts; with `with_leak`, every converter then pays an
    invoice - an event that only ever happens after conversion, so a perfect (leaky) signal."""
    project.settings.ingest.conversion_events = ["Subscription Started"]
    msgs = []
    for i in range(30):
        user, active = f"t{i}", i % 2 == 0
        msgs += [_identify(user, 1 + i % 3)] + _msgs(user, 2 + i % 3, 4 if active else 1)
        if active:
            msgs += _msgs(user, 12 + i % 5, 1, "Subscription Started")
            if with_leak:
                msgs += _msgs(user, 13 + i % 5, 2, "Invoice Paid")
    msgs += _msgs("t1", 31, 1)  # data end
    project.ingestor.ingest_messages(msgs, source="t")
    ex = make_examples(project.engine, horizon_days=7, offsets=(1.0, 5.0, 9.0, 12.0, 15.0))
    spec = FeatureSpec.learn(project.engine, ex, exclude_events=["Subscription Started"])
    return ex, spec, build_features(project.engine, ex, spec)


def test_a_post_conversion_event_cannot_help(project, tmp_path):
    """Leakage probe: the store with post-conversion invoices yields exactly the examples and
    features of the store without them, so no model trained on them can use the leak."""
    ex_leak, spec_leak, X_leak = _business(project, with_leak=True)
    clean = Project.init(tmp_path / "clean", name="clean", write_key="k")
    try:
        ex_clean, _, X_clean = _business(clean, with_leak=False)
    finally:
        clean.close()
    assert ex_leak["label"].sum() > 0 and (ex_leak["label"] == 0).sum() > 0
    assert "Invoice Paid" not in spec_leak.events
    assert not [c for c in X_leak.columns if "Invoice" in c]
    pd.testing.assert_frame_equal(ex_leak, ex_clean)
    pd.testing.assert_frame_equal(X_leak, X_clean)


def test_wilson_interval():
    lo, hi = wilson(5, 10)
    assert 0.23 < lo < 0.24 and 0.76 < hi < 0.77
