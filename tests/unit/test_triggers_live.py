"""The live path on a real (embedded DuckDB) store: rescoring with the compiled model, state,
episodes and alerts in one transaction, fast-track routing, the sweeps (decay, abuse on an open
session, unusual usage), recovery after a crash, and batch == incremental on a replayed stream.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from leadrefinery import Project
from leadrefinery.act import realtime as realtime_mod
from leadrefinery.act.clock import ManualClock
from leadrefinery.act.live_abuse import run_unusual, usage_features
from leadrefinery.act.realtime import Realtime, Scorer
from leadrefinery.act.triggers import for_project
from leadrefinery.model.scoring import compute

from .test_triggers import MODEL, TRIGGERS

pytestmark = pytest.mark.timeout(600)

T0 = datetime(2026, 3, 2, 12, 0)
SETTINGS = """
[alerts.webhooks.sales]
url = "http://127.0.0.1:9/hooks"
"""
ROUTED = SETTINGS + """
[[reps]]
email = "sam@example.com"
team = "inside"

[routing]
default_team = "inside"
"""


def iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds") + "Z"


def identify(uid: str, at: datetime, **traits) -> dict:
    return {"type": "identify", "userId": uid, "timestamp": iso(at), "messageId": uuid.uuid4().hex,
            "traits": {"email": f"{uid}@acme-{uid}.com", "company": f"Acme {uid}", **traits}}


def track(uid: str, event: str, at: datetime, **props) -> dict:
    return {"type": "track", "userId": uid, "event": event, "timestamp": iso(at),
            "messageId": uuid.uuid4().hex, "properties": props}


def page(uid: str, path: str, at: datetime) -> dict:
    return {"type": "page", "userId": uid, "name": path, "timestamp": iso(at),
            "messageId": uuid.uuid4().hex, "properties": {"path": path}}


def make_project(root: Path, *, model: str = MODEL, triggers: str | None = TRIGGERS,
                 settings: str = SETTINGS) -> Project:
    p = Project.init(root, name="rt", write_key="k")
    with (p.root / "refinery.toml").open("a") as f:
        f.write(settings)
    p.close()
    (root / "model.yaml").write_text(model)
    if triggers is not None:
        (root / "triggers.yaml").write_text(triggers)
    return Project(root)


def wait_for(cond, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


class Hold:
    """A loader hook (`in_transaction`) that keeps its micro-batch open until `go` is set."""

    def __init__(self) -> None:
        self.inside, self.go = threading.Event(), threading.Event()

    def __call__(self, engine) -> None:
        self.inside.set()
        self.go.wait(60)


def ingest(p: Project, events: list[dict]) -> None:
    path = p.root / f"batch-{uuid.uuid4().hex[:8]}.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    report = p.ingest([path])
    assert report.quarantined == 0, report.reasons


def scorer_for(p: Project, clock=None) -> Scorer:
    model = p.model()
    return Scorer(p.engine, p.settings, model, for_project(p, model), clock=clock)


def alerts(p: Project) -> list[dict]:
    cols = ("alert_id", "person_id", "trigger_id", "trigger_kind", "severity", "title",
            "payload", "channel", "recipient")
    rows = p.engine.query(f"SELECT {', '.join(cols)} FROM alerts ORDER BY created_at, alert_id")
    out = []
    for r in rows:
        d = dict(zip(cols, r, strict=True))
        d["payload"] = json.loads(d["payload"])
        out.append(d)
    return out


@pytest.fixture
def proj(tmp_path: Path):
    p = make_project(tmp_path / "proj")
    yield p
    p.close()


# -- one batch, one transaction -------------------------------------------------------------


def test_process_writes_state_episodes_and_alerts_together(proj: Project):
    ingest(proj, [identify("ann", T0 - timedelta(hours=2), owner="rep@example.com"),
                  page("ann", "/pricing", T0 - timedelta(hours=1)),
                  track("ann", "Contact Sales Requested", T0 - timedelta(minutes=5)),
                  track("ann", "Logged In", T0 - timedelta(minutes=6)),
                  identify("bob", T0 - timedelta(hours=2)),
                  track("bob", "Logged In", T0 - timedelta(hours=1))])
    sc = scorer_for(proj)
    sc.sweep(T0 - timedelta(days=1), kind="startup")  # first run: an empty baseline
    res = sc.process(["ann", "bob"], T0)
    assert res.people == 2
    got = alerts(proj)
    by = {(a["person_id"], a["trigger_id"]) for a in got}
    # ann: 10 (company) + 10 (pricing) + 30 (contact sales) + 5 (login), a little decayed:
    # about 55 -> grade B, score over 50, buy-ready
    assert ("ann", "hot") in by and ("ann", "ready") in by and ("ann", "s50") in by
    assert not any(a["person_id"] == "bob" for a in got)  # bob crossed no line
    hot = next(a for a in got if a["trigger_id"] == "hot")
    assert hot["channel"] == "email" and hot["recipient"] == "rep@example.com"  # the owner
    assert hot["trigger_kind"] == "grade_reached" and "reached grade B" in hot["title"]
    reasons = {r["rule"]: r for r in hot["payload"]["reasons"]}
    assert reasons["contact_sales"]["points"] == pytest.approx(30, abs=0.01)
    assert "Contact Sales Requested" in reasons["contact_sales"]["detail"]
    assert hot["payload"]["change"]["to"] == "B"
    assert hot["payload"]["person"]["email"] == "ann@acme-ann.com"
    ready = next(a for a in got if a["trigger_id"] == "ready")
    assert ready["trigger_kind"] == "buy_readiness"
    assert ready["payload"]["evidence"][0]["event"] == "Contact Sales Requested"
    # state and episodes
    st = dict(proj.engine.query("SELECT person_id, grade FROM person_state WHERE model = 't'"))
    assert st == {"ann": "B", "bob": "D"}
    eps = proj.engine.query("SELECT trigger_id, status, outcome FROM trigger_episodes "
                            "WHERE person_id = 'ann' ORDER BY trigger_id")
    assert ("hot", "open", "fired") in eps and ("ready", "closed", "fired") in eps
    # processing the same people again changes nothing and alerts nobody
    n = len(got)
    sc.process(["ann", "bob"], T0 + timedelta(minutes=1))
    assert len(alerts(proj)) == n


def test_live_rescores_keep_history_only_where_the_state_moved(proj: Project):
    """Every live rescore refreshes latest_scores; `scores` (the history) gets a row only
    when the state changed in a way a trigger could see."""
    ingest(proj, [identify("moe", T0 - timedelta(days=1)),
                  track("moe", "Logged In", T0 - timedelta(hours=1))])
    sc = scorer_for(proj)
    sc.sweep(T0 - timedelta(days=2), kind="startup")

    def history() -> list[tuple]:
        return proj.engine.query("SELECT as_of, grade FROM scores WHERE person_id = 'moe' "
                                 "ORDER BY as_of")

    sc.process(["moe"], T0)
    first = history()
    assert first[-1][0] == T0
    sc.process(["moe"], T0 + timedelta(minutes=1))  # nothing moved
    assert history() == first
    assert proj.engine.scalar("SELECT as_of FROM latest_scores WHERE person_id = 'moe'"
                              ) == T0 + timedelta(minutes=1)
    ingest(proj, [page("moe", "/pricing", T0 + timedelta(minutes=2)),
                  track("moe", "Contact Sales Requested", T0 + timedelta(minutes=2))])
    sc.process(["moe"], T0 + timedelta(minutes=3))
    moved = history()
    assert moved[:-1] == first and moved[-1] == (T0 + timedelta(minutes=3), "B")
    # every run is recorded, with how many it rescored
    assert proj.engine.query("SELECT people FROM score_runs WHERE restricted ORDER BY as_of"
                             ) == [(1,), (1,), (1,)]


def test_a_failure_rolls_back_state_episodes_and_alerts(proj: Project, monkeypatch):
    ingest(proj, [identify("ann", T0 - timedelta(hours=2)),
                  track("ann", "Logged In", T0 - timedelta(minutes=6)),
                  track("ann", "Contact Sales Requested", T0 - timedelta(minutes=5))])
    sc = scorer_for(proj)
    sc.sweep(T0 - timedelta(days=1), kind="startup")

    def broken(*a, **k):
        raise RuntimeError("the outbox is on fire")

    monkeypatch.setattr(realtime_mod, "enqueue", broken)
    runs = proj.engine.scalar("SELECT count(*) FROM score_runs")
    with pytest.raises(RuntimeError):
        sc.process(["ann"], T0)
    e = proj.engine
    assert e.scalar("SELECT count(*) FROM person_state") == 0
    assert e.scalar("SELECT count(*) FROM trigger_episodes") == 0
    assert e.scalar("SELECT count(*) FROM alerts") == 0
    assert e.scalar("SELECT count(*) FROM score_runs") == runs
    monkeypatch.undo()
    sc.process(["ann"], T0)  # the retry does it all, once
    assert {a["trigger_id"] for a in alerts(proj)} >= {"hot", "ready"}


def test_buy_readiness_fast_tracks_to_a_rep(tmp_path: Path):
    p = make_project(tmp_path / "proj", settings=ROUTED)
    try:
        ingest(p, [identify("cat", T0 - timedelta(days=1))])
        sc = scorer_for(p)
        sc.sweep(T0 - timedelta(hours=1), kind="startup")
        ingest(p, [track("cat", "Documentation Purchased", T0 - timedelta(minutes=1))])
        res = sc.process(["cat"], T0)
        assert res.fast_tracked == 1
        rows = p.engine.query("SELECT person_id, rep, trigger FROM assignments")
        assert rows == [("cat", "sam@example.com", "fast_track")]
        got = {(a["trigger_id"], a["recipient"]) for a in alerts(p)}
        assert ("ready", "sales") in got  # the buy-readiness alert (no owner yet: default)
        assert ("routing.assigned", "sam@example.com") in got  # the rep hears it at once
    finally:
        p.close()


# -- time passes: the sweeps ----------------------------------------------------------------


def test_decay_sweep_catches_a_grade_decaying_across_a_line(proj: Project):
    ingest(proj, [identify("dan", T0 - timedelta(days=1)),
                  page("dan", "/pricing", T0 - timedelta(hours=3)),
                  *[track("dan", "Logged In", T0 - timedelta(hours=h)) for h in range(1, 8)]])
    sc = scorer_for(proj)
    sc.sweep(T0 - timedelta(days=2), kind="startup")
    sc.process(["dan"], T0)
    # 10 + 10 + 7 x 5 = 55, a little decayed: grade B, over 50
    assert proj.engine.scalar("SELECT grade FROM person_state") == "B"
    before = {a["trigger_id"] for a in alerts(proj)}
    assert {"hot", "s50"} <= before
    # nothing happens for two weeks; the points halve every 7 days
    res = sc.sweep(T0 + timedelta(days=14))
    assert res.changed == 1
    after = [a for a in alerts(proj) if a["trigger_id"] in ("cold", "s50")]
    assert sorted((a["trigger_id"], a["payload"]["change"].get("direction")) for a in after) == [
        ("cold", None), ("s50", "down"), ("s50", "up")]
    cold = next(a for a in after if a["trigger_id"] == "cold")
    assert cold["trigger_kind"] == "grade_left" and cold["payload"]["change"]["to"] == "C"
    # a sweep with nothing new changes nothing
    assert sc.sweep(T0 + timedelta(days=14, minutes=5)).changed == 0


def test_sweep_grades_by_volume_with_the_full_runs_cutoffs(tmp_path: Path):
    """Volume grades (top x %) in a sweep use the newest full run's cut-offs, as the live
    rescoring does: newcomers who outscore everyone do not regrade the people they overtake."""
    volume = MODEL.replace(
        "  levels: [{grade: A, min: 60}, {grade: B, min: 40}, {grade: C, min: 20}, {grade: D}]",
        "  method: volume\n  levels: [{grade: A, top: 0.2}, {grade: B, top: 0.5}, {grade: D}]")
    p = make_project(tmp_path / "proj", model=volume)
    try:
        ingest(p, [e for i in range(10) for e in (
            identify(f"v{i}", T0 - timedelta(days=1)),
            *[track(f"v{i}", "Logged In", T0 - timedelta(hours=h + 1)) for h in range(i)])])
        p.score(as_of=T0)  # the full run: its cut-offs grade everyone after it
        sc = scorer_for(p)
        sc.sweep(T0, kind="startup")
        top = p.engine.scalar("SELECT grade FROM person_state WHERE person_id = 'v9'")
        assert top == "A"
        ingest(p, [e for i in range(10) for e in (
            identify(f"w{i}", T0 - timedelta(days=1)),
            *[track(f"w{i}", "Logged In", T0 - timedelta(minutes=m + 1)) for m in range(12)])])
        res = sc.sweep(T0)  # same time: no decay (v8 and v5 sit right on a cut-off)
        assert res.evaluated == 20 and res.changed == 10  # the newcomers only
        assert p.engine.scalar("SELECT grade FROM person_state WHERE person_id = 'v9'") == "A"
    finally:
        p.close()


def test_abuse_flagged_while_the_session_is_still_running(proj: Project):
    launched = T0 - timedelta(minutes=200)
    ingest(proj, [identify("eve", T0 - timedelta(days=1)),
                  track("eve", "Environment Launched", launched, environment_id="env-7",
                        guests=4, template="windows-lab")])
    sc = scorer_for(proj)
    sc.sweep(T0 - timedelta(days=2), kind="startup")
    sc.process(["eve"], T0)  # 200 minutes in: within the 240 allowed
    assert not [a for a in alerts(proj) if a["trigger_id"] == "abuse"]
    # nothing arrives; the abuse sweep re-evaluates open sessions with "now"
    res = sc.abuse_sweep(T0 + timedelta(minutes=50))  # 250 minutes, no stop event yet
    assert res.evaluated == 1 and res.changed == 1
    got = [a for a in alerts(proj) if a["trigger_id"] == "abuse"]
    assert {a["recipient"] for a in got} == {"sales", "trust@example.com"}  # to + also
    a = got[0]
    assert a["severity"] == "critical" and a["trigger_kind"] == "abuse"
    assert "still running" in a["title"]
    ev = a["payload"]["evidence"][0]
    assert ev["rule"] == "session_too_long" and ev["key"] == "env-7"
    assert ev["still_running"] is True and ev["allowed_minutes"] == 240
    assert 249 < ev["minutes"] < 251
    # later sweeps: the same episode, no second alert
    sc.abuse_sweep(T0 + timedelta(minutes=80))
    assert len([a for a in alerts(proj) if a["trigger_id"] == "abuse"]) == 2


def test_unusual_usage_flags_what_no_rule_describes(tmp_path: Path):
    trig = TRIGGERS + ("  - {id: odd, kind: unusual_usage, contamination: 0.02, "
                       "min_population: 20, features: [facts.launches, facts.max_guests, "
                       "facts.logins]}\n")
    p = make_project(tmp_path / "proj", triggers=trig)
    try:
        evs = []
        for i in range(60):
            u = f"u{i:02d}"
            evs.append(identify(u, T0 - timedelta(days=3)))
            for k in range(1 + i % 3):
                evs.append(track(u, "Logged In", T0 - timedelta(days=2, hours=k)))
                evs.append(track(u, "Environment Launched", T0 - timedelta(days=2, hours=k),
                                 environment_id=f"{u}-{k}", guests=2 + (i + k) % 4))
        ingest(p, evs)
        sc = scorer_for(p)
        sc.sweep(T0, kind="startup")
        first = run_unusual(sc, T0)  # the first run records the flagged few, silently
        assert first is not None and first.evaluated == 60 and first.batch.alerts == 0
        heavy = [identify("zed", T0 - timedelta(days=2))]
        for k in range(40):
            heavy.append(track("zed", "Environment Launched", T0 - timedelta(hours=30 - k / 2),
                               environment_id=f"z{k}", guests=9))
        heavy.append(track("zed", "Logged In", T0 - timedelta(hours=20)))
        ingest(p, heavy)
        run_unusual(sc, T0 + timedelta(hours=1))
        odd = [a for a in alerts(p) if a["trigger_id"] == "odd"]
        assert [a["person_id"] for a in odd] == ["zed"]
        ev = odd[0]["payload"]["evidence"]
        assert ev[0]["feature"] == "facts.launches" and ev[0]["value"] == 40
        assert odd[0]["trigger_kind"] == "unusual_usage"
        X = usage_features(p.engine, sc.model, T0, ["facts.launches", "rules.login"])
        assert X.loc["zed", "facts.launches"] == 40 and X.loc["u01", "rules.login"] == 2
    finally:
        p.close()


def test_startup_sweep_recovers_a_batch_whose_rescore_was_lost(proj: Project):
    clock = ManualClock(T0 - timedelta(hours=1))
    sc = scorer_for(proj, clock)
    ingest(proj, [identify("fay", T0 - timedelta(days=1))])
    sc.sweep(T0 - timedelta(hours=2), kind="startup")
    sc.process(["fay"], T0 - timedelta(hours=1))
    # a micro-batch commits, then the process dies before rescoring it (kill -9)
    ingest(proj, [page("fay", "/pricing", T0 - timedelta(minutes=3)),
                  track("fay", "Contact Sales Requested", T0 - timedelta(minutes=2))])
    assert not alerts(proj)
    # the next start: its first sweep includes people with events received since
    rt = Realtime(sc, settings=proj.settings)
    assert "fay" in sc.unprocessed()
    clock.set(T0)
    rt._startup()
    assert {"hot", "ready"} <= {a["trigger_id"] for a in alerts(proj)}
    n = len(alerts(proj))
    rt._startup()  # and again: nothing twice
    assert len(alerts(proj)) == n


def test_each_lane_recovers_from_its_own_watermark_after_a_restart(proj: Project):
    """The lanes move on independently: the rescoring lane may write states long after the
    fast lane last committed. After a crash the fast lane catches up from its own watermark
    (recorded with its work), however far behind, and announces nothing twice."""
    clock = ManualClock(T0 - timedelta(hours=1))
    sc = scorer_for(proj, clock)
    ingest(proj, [identify("kim", T0 - timedelta(days=1)),
                  identify("lou", T0 - timedelta(days=1))])
    rt = Realtime(sc, settings=proj.settings)
    assert rt.fast_lane
    rt._startup()  # the baseline: both lanes have seen everything so far
    assert sc.through("rescore") == sc.through("actions") == sc.newest_received()
    ingest(proj, [track("kim", "Contact Sales Requested", T0 - timedelta(minutes=2))])
    clock.set(T0)
    # the rescoring lane did its part (no buy-readiness: the fast lane's) and went on for
    # half an hour; the fast lane never committed kim's micro-batch; then the process died
    sc.process(["kim"], T0, actions=False, through=sc.newest_received())
    proj.engine.execute("UPDATE person_state SET updated_at = updated_at + INTERVAL 30 MINUTE")
    assert sc.through("actions") < sc.newest_received() == sc.through("rescore")
    assert not [a for a in alerts(proj) if a["trigger_id"] == "ready"]
    assert "kim" in sc.unprocessed("actions")
    # the restart
    sc2 = scorer_for(proj, clock)
    rt2 = Realtime(sc2, settings=proj.settings)
    rt2._startup()
    assert [a["person_id"] for a in alerts(proj) if a["trigger_id"] == "ready"] == ["kim"]
    assert sc2.through("actions") == sc2.newest_received()
    rt2._startup()  # and again: nothing twice
    assert len([a for a in alerts(proj) if a["trigger_id"] == "ready"]) == 1
    # live, the watermarks follow what the loader reports as handed over with the people
    ingest(proj, [track("lou", "Logged In", T0 - timedelta(minutes=1))])
    loaded = sc2.newest_received()
    rt2.received_through = lambda: loaded
    rt2.start()
    try:
        rt2.on_loaded(["lou"])
        deadline = time.monotonic() + 60
        while sc2.through("actions") != loaded or sc2.through("rescore") != loaded:
            assert time.monotonic() < deadline, rt2.stats.last_error
            time.sleep(0.05)
    finally:
        rt2.stop()
    assert sc2.through("rescore") == sc2.through("actions") == loaded
    assert rt2.stats.errors == 0, rt2.stats.last_error


def test_a_new_trigger_is_baselined_silently(proj: Project):
    ingest(proj, [identify("gus", T0 - timedelta(days=1)),
                  track("gus", "Contact Sales Requested", T0 - timedelta(hours=1)),
                  page("gus", "/pricing", T0 - timedelta(hours=1))])
    sc = scorer_for(proj)
    sc.sweep(T0, kind="startup")  # gus already meets `hot`: recorded, not alerted
    assert not alerts(proj)
    assert sc.new_triggers() == set()
    (proj.root / "triggers.yaml").write_text(
        TRIGGERS + "  - {id: hot2, kind: grade, grades: [B]}\n")
    sc2 = scorer_for(proj)
    assert sc2.new_triggers() == {"hot2"}
    sc2.sweep(T0 + timedelta(minutes=1), kind="startup")
    assert not alerts(proj)
    assert proj.engine.scalar("SELECT outcome FROM trigger_episodes WHERE trigger_id = 'hot2'"
                              ) == "baseline"


# -- batch == incremental -------------------------------------------------------------------


def test_incremental_rescoring_equals_a_batch_rescore(tmp_path: Path):
    """A generated event stream replayed through the live path (the ingestion log, its loader
    thread, the on_loaded hook, the rescoring thread) gives, person by person, the scores,
    grades and stages a batch rescore of the same events gives at the same time."""
    from leadrefinery.api.ingest import prepare_lines
    from leadrefinery.api.service import IngestService
    from leadrefinery.sample import generate

    biz = generate(tmp_path / "data", people=250, months=1, seed=11)
    sample_model = Path(__file__).parents[2] / "src/leadrefinery/sample/model.yaml"
    lines = biz.events_path.read_text().splitlines()
    as_of = datetime.fromisoformat(json.loads(lines[-1])["timestamp"].replace("Z", "")) \
        + timedelta(hours=1)
    live = make_project(tmp_path / "live", model=sample_model.read_text(), triggers=None)
    batch = make_project(tmp_path / "batch", model=sample_model.read_text(), triggers=None)
    try:
        model = live.model()
        rt = Realtime(Scorer(live.engine, live.settings, model, None, clock=ManualClock(as_of)),
                      settings=live.settings)
        service = IngestService(live, load_interval=0.02)
        service.on_loaded.append(rt.on_loaded)
        service.start()
        rt.start()
        try:
            for i in range(0, len(lines), 150):  # requests of 150 events, loaded as they come
                msgs = [json.loads(x) for x in lines[i:i + 150]]
                data, n = prepare_lines({"batch": msgs}, "batch", source="web",
                                        body_bytes=0, max_message_bytes=1 << 20,
                                        received_at=iso(as_of))
                service.log.append(data)
                if i % 3000 == 0:
                    time.sleep(0.3)  # let some micro-batches be rescored while more arrive
        finally:
            service.stop()  # loads the tail; every on_loaded hook has run
            rt.stop()  # processes what is pending
        assert rt.stats.batches >= 3 and rt.stats.errors == 0, rt.stats.last_error
        cols = ("person_id", "score", "grade", "stage", "stage_rank", "segments", "abuse")
        got = {r[0]: r[1:] for r in live.engine.query(
            f"SELECT {', '.join(cols)} FROM latest_scores ORDER BY person_id")}
        assert len(got) > 200
        # 1. the same store rescored in one batch at the same time: identical, person by person
        full = compute(live.engine, model, as_of=as_of).select(list(cols)).to_pylist()
        want = {r["person_id"]: tuple(r[c] for c in cols[1:]) for r in full}
        differ = [(p, got[p], want.get(p)) for p in got if got[p] != want.get(p)]
        assert not differ, differ[:3]
        # ... and nobody is missing but ids merged into others (kept in `people` by ingestion)
        merged = {r[0] for r in live.engine.query(
            "SELECT alias_id FROM identities WHERE alias_id <> person_id UNION "
            "SELECT 'anon:' || alias_id FROM identities")}
        assert set(want) - set(got) <= merged
        # 2. a store that ingested the same file in one go, scored in batch: identical, except
        # people whose events ingestion attributed differently (an anonymous id -> old user id
        # -> aliased user chain inside one live micro-batch; an ingestion issue, not scoring)
        batch.ingest([biz.events_path])
        batch.score(as_of=as_of)
        other = {r[0]: r[1:] for r in batch.engine.query(
            f"SELECT {', '.join(cols)} FROM latest_scores ORDER BY person_id")}
        assert set(other) == set(got)
        chained = {r[0] for r in live.engine.query(
            "SELECT person_id FROM identities WHERE alias_id IN (SELECT alias_id FROM "
            "identities WHERE kind = 'alias') OR person_id IN (SELECT person_id FROM identities "
            "WHERE kind = 'alias')")}
        differ = [(p, got[p], other[p]) for p in other if got[p] != other[p]]
        assert {p for p, *_ in differ} <= chained, differ[:3]
    finally:
        live.close()
        batch.close()


def test_buy_readiness_takes_the_fast_lane_and_is_announced_once(proj: Project):
    ingest(proj, [identify(u, T0 - timedelta(days=1)) for u in ("hal", "ivy", "joe", "kim")])
    clock = ManualClock(T0 - timedelta(hours=1))
    sc = scorer_for(proj, clock)
    sc.sweep(kind="startup")
    ingest(proj, [track("hal", "Documentation Purchased", T0 - timedelta(minutes=1)),
                  track("ivy", "Logged In", T0 - timedelta(minutes=1))])
    clock.set(T0)
    # the fast lane: the live path hands it the people of each loaded micro-batch
    rt = Realtime(sc, settings=proj.settings)
    assert rt.fast_lane and sc.actions_in_batches is False
    rt.start()
    try:
        rt.on_loaded(["hal", "ivy"])
        deadline = time.monotonic() + 60
        while not [a for a in alerts(proj) if a["trigger_id"] == "ready"]:
            assert time.monotonic() < deadline, rt.stats.last_error
            time.sleep(0.05)
        assert rt.wait_idle(60)
    finally:
        rt.stop()
    ready = [a for a in alerts(proj) if a["trigger_id"] == "ready"]
    assert [a["person_id"] for a in ready] == ["hal"]
    assert ready[0]["payload"]["evidence"][0]["event"] == "Documentation Purchased"
    assert ready[0]["payload"]["reasons"]  # the last stored score's reasons
    # the rescoring lane (and a later rescore with every trigger) does not announce it again,
    # not even once the cool-down is over: the event is remembered in trigger_episodes
    for later in (timedelta(minutes=1), timedelta(hours=30)):
        sc.process(["hal"], T0 + later, actions=True)
    assert len([a for a in alerts(proj) if a["trigger_id"] == "ready"]) == 1
    assert rt.stats.errors == 0, rt.stats.last_error


def test_fast_lane_runs_in_the_loaders_transaction_and_falls_back_to_its_thread(
        proj: Project):
    """`act_in_load` evaluates the micro-batch's own events inside the loader's transaction:
    its alert commits (or rolls back) with them. A commit that did not include it (the loader's
    retry after a failure) hands the people to the fast lane's thread instead — once."""
    import pyarrow as pa

    from leadrefinery.ingest.loader import STORED, EventLoader

    ingest(proj, [identify(u, T0 - timedelta(days=1)) for u in ("hal", "ivy", "joe", "kim")])
    clock = ManualClock(T0 - timedelta(hours=1))
    sc = scorer_for(proj, clock)
    sc.sweep(kind="startup")
    clock.set(T0)
    loader = EventLoader(proj.engine, proj.settings)

    def lines(*events: dict) -> pa.Table:
        return pa.table({"line_no": list(range(1, len(events) + 1)),
                         "line": [json.dumps(e) for e in events]})

    def ready() -> list[str]:
        return [a["person_id"] for a in alerts(proj) if a["trigger_id"] == "ready"]

    rt = Realtime(sc, settings=proj.settings)
    rt._ready.set()  # (the startup sweep is done)
    ran = [True]
    rt.acted_in_load = lambda: ran[0]
    # a failure after the fast lane's work rolls its alert back with the events
    with pytest.raises(RuntimeError):
        def fail(e) -> None:
            rt.act_in_load(e)
            raise RuntimeError("the disk is full")

        loader.load_lines(lines(track("hal", "Documentation Purchased", T0)), "t", after=fail)
    assert ready() == []
    # the retry ran without it: `on_loaded` queues hal for the thread, which announces him
    ran[0] = False
    hal = track("hal", "Documentation Purchased", T0)
    loader.load_lines(lines(hal), "t")
    rt.on_loaded(["hal"])
    assert rt._fast == {"hal"}
    res = sc.act_on_actions(rt._fast)
    rt._fast.clear()
    assert res.alerts == 1 and ready() == ["hal"]
    # in the transaction: only the micro-batch's own events count (hal's is not re-announced)
    ran[0] = True
    loader.load_lines(lines(track("ivy", "Documentation Purchased", T0),
                            track("hal", "Logged In", T0)), "t", after=rt.act_in_load)
    rt.on_loaded(["ivy", "hal"])
    assert not rt._fast and sorted(ready()) == ["hal", "ivy"]
    assert rt.stats.alerts == 1 and rt.stats.errors == 0
    assert sc.through("actions") is not None
    assert proj.engine.scalar(f"SELECT count(*) FROM {STORED}") == 2
    # it stood aside for part of a micro-batch (the thread was busy): the thread gets all of
    # it, and announces only what the in-load pass did not
    loader.load_lines(lines(track("joe", "Documentation Purchased", T0)), "t",
                      after=rt.act_in_load)
    rt._fast_busy = True
    loader.load_lines(lines(track("kim", "Documentation Purchased", T0)), "t",
                      after=rt.act_in_load)
    rt._fast_busy = False
    rt.on_loaded(["joe", "kim"])
    assert rt._fast == {"joe", "kim"}
    assert sc.act_on_actions(rt._fast).alerts == 1
    assert sorted(ready()) == ["hal", "ivy", "joe", "kim"]


def test_an_abuse_rule_one_event_raises_is_announced_with_the_event(proj: Project):
    """A class launched with 40 guests (10 allowed) needs no rescore: the fast lane evaluates
    the rule's own compiled matcher on the micro-batch and the alert commits with the event.
    The rescore that follows finds the episode open; without a fast lane, it announces."""
    import pyarrow as pa

    from leadrefinery.act.live_abuse import LiveRules
    from leadrefinery.ingest.loader import EventLoader
    from leadrefinery.model.load import parse_model

    ingest(proj, [identify(u, T0 - timedelta(days=1)) for u in ("eve", "fay")])
    clock = ManualClock(T0 - timedelta(hours=1))
    sc = scorer_for(proj, clock)
    sc.sweep(kind="startup")
    clock.set(T0)
    rt = Realtime(sc, settings=proj.settings)
    rt._ready.set()  # (the startup sweep is done)
    assert list(sc.live_rules.rules) == ["too_many_guests"]  # not the session rule
    loader = EventLoader(proj.engine, proj.settings)

    def load(*events: dict) -> None:
        loader.load_lines(pa.table({"line_no": list(range(1, len(events) + 1)),
                                    "line": [json.dumps(e) for e in events]}),
                          "t", after=rt.act_in_load)

    def abuse(pid: str) -> list[dict]:
        return [a for a in alerts(proj) if a["trigger_id"] == "abuse" and a["person_id"] == pid]

    launch = track("eve", "Environment Launched", T0 - timedelta(seconds=2),
                   environment_id="env-9", guests=40, template="windows-lab", class_id="c-1")
    load(track("eve", "Logged In", T0 - timedelta(seconds=5)), launch,
         track("eve", "Environment Launched", T0, environment_id="env-8", guests=4))
    got = abuse("eve")
    assert {a["recipient"] for a in got} == {"sales", "trust@example.com"}
    a = got[0]
    assert a["severity"] == "critical" and "more than 10 guests" in a["title"]
    ev = a["payload"]["evidence"][0]
    assert ev["rule"] == "too_many_guests" and ev["count"] == 1 and ev["max"] == 40
    assert ev["message_id"] == launch["messageId"] and ev["event"] == "Environment Launched"
    assert ev["properties"] == {"environment_id": "env-9", "guests": 40,
                                "template": "windows-lab", "class_id": "c-1"}
    # nothing was rescored: the alert did not wait for it
    def flags() -> str:
        return proj.engine.scalar("SELECT flags FROM person_state WHERE person_id = 'eve'")

    assert flags() == "[]"
    # the rescore raises the flag, finds the episode open and stays quiet; so does a second
    # oversized class while it is open
    sc.process(["eve"], T0 + timedelta(minutes=1))
    assert flags() == '["too_many_guests"]'
    load(track("eve", "Environment Launched", T0 + timedelta(minutes=2), guests=30))
    sc.process(["eve"], T0 + timedelta(minutes=3))
    assert len(abuse("eve")) == 2  # (one per recipient)
    # without a fast lane (`leadrefinery sweep`, a rescore by hand) the rescore announces
    ingest(proj, [track("fay", "Environment Launched", T0, guests=25)])
    sc.process(["fay"], T0 + timedelta(minutes=1), actions=True)
    assert abuse("fay")[0]["payload"]["evidence"][0]["max"] == 25
    assert rt.stats.errors == 0, rt.stats.last_error
    # a rule reading more than the event, or needing several, waits for the rescore
    for change in ("when: properties.guests > 10 AND title IS NOT NULL",
                   "when: properties.guests > 10\n    min_count: 2"):
        model = parse_model(MODEL.replace("when: properties.guests > 10", change))
        assert not LiveRules(model, ["too_many_guests"])


def test_warm_lane_announces_a_lead_turning_hot_before_the_loader_stores_it(tmp_path: Path):
    """Through the HTTP API, with the loader held inside a micro-batch: wes, 38 points and
    grade C (a line at 40), logs in (+5). The warm lane scores him with the compiled model
    over his stored events and that login, and announces grade B with the score and its
    reasons before it is stored — the score a batch rescore gives once it is. A rescore that
    cannot see the login does not end the episode; the one that can announces nothing more.
    nel, near the line too, sends an event worth nothing: no alert; nor is the score line at
    50 crossed."""
    import contextlib
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from leadrefinery.api.app import create_app

    p = make_project(tmp_path / "proj")
    now = datetime.utcnow().replace(microsecond=0)
    history = []
    for uid in ("wes", "nel"):  # 10 (company e-mail) + 4 logins + 2 launches, recent
        history += [identify(uid, now - timedelta(days=1)),
                    *[track(uid, "Logged In", now - timedelta(minutes=m))
                      for m in (10, 20, 30, 40)],
                    *[track(uid, "Environment Launched", now - timedelta(minutes=m))
                      for m in (15, 25)]]
    ingest(p, history)
    hold = Hold()

    def hot(pid: str) -> list[dict]:  # the grade and score triggers'
        return [a for a in alerts(p) if a["person_id"] == pid
                and a["trigger_id"] in ("hot", "cold", "s50")]

    def open_hot() -> list[tuple]:
        return p.engine.query("SELECT detail FROM trigger_episodes WHERE person_id = 'wes' "
                              "AND trigger_id = 'hot' AND status = 'open'")

    try:
        with TestClient(create_app(p)) as c, contextlib.ExitStack() as stack:
            stack.callback(hold.go.set)
            rt = c.app.state.realtime
            loader = c.app.state.ingest.loader
            assert rt.warm_lane
            wait_for(lambda: {"wes", "nel"} <= rt.near, "wes and nel seen near a line")
            assert p.engine.query("SELECT person_id, grade FROM person_state ORDER BY 1"
                                  ) == [("nel", "C"), ("wes", "C")]
            # as a published predictive model would have it (the warm lane does not score it)
            p.engine.execute("UPDATE person_state SET bucket = 'high' WHERE person_id = 'wes'")
            loader.in_transaction.insert(0, hold)
            assert c.post("/v1/batch", auth=("k", ""), json={"batch": [
                track("amy", "Logged In", now)]}).status_code == 200
            wait_for(hold.inside.is_set, "the loader inside a micro-batch")
            login = track("wes", "Logged In", now)
            assert c.post("/v1/batch", auth=("k", ""), json={"batch": [
                login, track("nel", "Docs Viewed", now)]}).status_code == 200
            wait_for(lambda: hot("wes"), "the warm lane's alert")
            assert p.engine.scalar("SELECT count(*) FROM events WHERE message_id = ?",
                                   [login["messageId"]]) == 0  # not stored yet
            (alert,) = hot("wes")
            assert alert["trigger_id"] == "hot" and alert["trigger_kind"] == "grade_reached"
            change = alert["payload"]["change"]
            assert (change["from"], change["to"]) == ("C", "B") and 40 <= change["score"] < 50
            assert "login" in {r["rule"] for r in alert["payload"]["reasons"]}
            assert alert["payload"]["data"]["state"]["bucket"] == "high"
            (detail,) = open_hot()
            assert json.loads(detail[0])["message_ids"] == [login["messageId"]]
            # a rescore that cannot see the login (18 hours on: his score moved) keeps it open
            rt.scorer.process(["wes"], now + timedelta(hours=18))
            assert len(open_hot()) == 1
            loader.in_transaction.remove(hold)
            hold.go.set()
            wait_for(lambda: p.engine.scalar("SELECT count(*) FROM events WHERE message_id = ?",
                                         [login["messageId"]]) == 1, "the login stored")
            assert rt.wait_idle(60)
            health = c.get("/v1/realtime").json()
            assert health["warm_lag_ms"] and health["errors"] == 0, health["last_error"]
            rt.scorer.process(["wes", "nel"])  # it sees the login now: the same episode
        assert len(hot("wes")) == 1 and len(open_hot()) == 1 and not hot("nel")
        assert p.engine.scalar("SELECT grade FROM person_state WHERE person_id = 'wes'") == "B"
        # the warm lane's score is the batch rescore's at its time, now the login is stored
        at = datetime.fromisoformat(alert["payload"]["data"]["as_of"])
        (row,) = compute(p.engine, p.model(), as_of=at, restrict=["wes"]).to_pylist()
        assert row["score"] == pytest.approx(change["score"], abs=1e-9)
    finally:
        hold.go.set()


def test_the_warm_lanes_score_model_scores_and_grades_as_the_whole_model(tmp_path: Path):
    """The warm lane scores with the model less its segments and the abuse rules worth no
    points (`score_model`: a query DuckDB plans faster): on a generated trial business with
    the demo model (its 40-guest classes made worth -20 points), every person's score, grade,
    stage, categories and reasons are the whole model's."""
    import pyarrow.compute as pc

    from leadrefinery.act.warm_lane import score_model
    from leadrefinery.model.scoring import scoring_sql
    from leadrefinery.sample import generate

    biz = generate(tmp_path / "data", people=250, months=1, seed=11)
    sample_model = Path(__file__).parents[2] / "src/leadrefinery/sample/model.yaml"
    text = sample_model.read_text().replace(
        "    measure: properties.guests\n",
        "    measure: properties.guests\n    points: -20\n    category: engagement\n").replace(
        'engaged: "category.engagement >= 10"',  # (reads a rule the score model drops)
        'engaged: "category.engagement >= 10 AND NOT abuse.session_over_limit"')
    assert "points: -20" in text and "NOT abuse.session_over_limit" in text
    p = make_project(tmp_path / "p", model=text, triggers=None)
    try:
        p.ingest([biz.events_path])
        model = p.model()
        part = score_model(model)
        assert not part.spec.segments and [a.id for a in part.spec.abuse] == ["too_many_guests"]
        as_of = p.engine.scalar("SELECT max(ts) FROM events")
        cols = ["person_id", "score", "grade", "stage", "stage_rank", "categories",
                "components"]
        whole, scored = (compute(p.engine, m, as_of=as_of).select(cols).sort_by("person_id")
                         .to_pylist() for m in (model, part))
        assert len(whole) == 250 and {r["grade"] for r in whole} > {"7"}  # not trivial
        assert compute(p.engine, model, as_of=as_of).filter(  # some lose the 20 points
            pc.match_substring(pc.field("abuse"), "too_many_guests")).num_rows > 0
        # (a rule's decayed sum may differ in its last digit: DuckDB adds in another order)
        comps = [(json.loads(a.pop("components")), json.loads(b.pop("components")))
                 for a, b in zip(whole, scored, strict=True)]
        assert scored == whole
        assert all(b.keys() == a.keys() and all(b[r] == pytest.approx(a[r], rel=1e-12)
                                                for r in a) for a, b in comps)
        # the point of it: a smaller query to plan
        full_sql, part_sql = (scoring_sql(p.engine, m, as_of=as_of, restrict="lr_ids")
                              for m in (model, part))
        assert len(part_sql) < 0.85 * len(full_sql)
    finally:
        p.close()


def test_the_warm_lane_reads_received_messages_as_the_loader_stores_them(proj: Project):
    """The picker keeps the messages of senders near a line (by user or anonymous id);
    `pending_events` turns them into the rows the loader stores, less those stored already;
    the view reads both. The loader, given the same messages, stores those very rows."""
    from leadrefinery.act.received import ActionWatch, Picker, Recent
    from leadrefinery.act.warm_lane import EVENTS_VIEW, PENDING_TABLE, pending_events

    stored = track("wes", "Logged In", T0 - timedelta(minutes=5))
    ingest(proj, [identify("wes", T0 - timedelta(days=1)), stored])
    pick = Picker(ActionWatch([]), Recent(), frozenset({"wes", "a-9"}))
    fresh = [track("wes", "Environment Launched", T0, guests=3),
             {**page("x", "/docs", T0), "userId": None, "anonymousId": "a-9"}]
    for m in [stored, *fresh, track("zoe", "Logged In", T0)]:
        pick({**m, "receivedAt": iso(T0)})
    items = pick.items()
    assert [it.message_id for it in items] == [stored["messageId"], *(m["messageId"]
                                                                      for m in fresh)]
    assert all(it.raw is not None and not it.action for it in items)
    sc = scorer_for(proj)
    people = sc.people_of(items)
    assert people[fresh[1]["messageId"]] == "anon:a-9"
    with proj.engine.transaction():
        pending = pending_events(proj.engine, items, people, T0, max_bytes=32_768)
        rows = proj.engine.query(f"SELECT message_id, type, event, person_id, ts, properties "
                                 f"FROM {PENDING_TABLE} ORDER BY ts, type")
        seen = proj.engine.scalar(f"SELECT count(*) FROM {EVENTS_VIEW} WHERE person_id = 'wes'")
    # the stored login is not pending again; the launch is as the loader will store it
    assert pending == {"wes": [fresh[0]["messageId"]], "anon:a-9": [fresh[1]["messageId"]]}
    assert rows[0][:5] == (fresh[1]["messageId"], "page", "/docs", "anon:a-9", T0)
    assert rows[1][:5] == (fresh[0]["messageId"], "track", "Environment Launched", "wes", T0)
    assert json.loads(rows[1][5]) == {"guests": 3}
    assert seen == 3  # identify, login (stored) and the launch
    ingest(proj, fresh)
    assert proj.engine.query("SELECT message_id, type, event, person_id, ts, properties "
                             "FROM events WHERE message_id = ANY(?) ORDER BY ts, type",
                             [[m["messageId"] for m in fresh]]) == rows
    # who is near: by every id a message may carry (user, linked anonymous, bare anonymous)
    from leadrefinery.act.warm_lane import near_senders

    ingest(proj, [{**track("wes", "Logged In", T0), "anonymousId": "a-1"}])
    sc.process(["wes", "anon:a-9"], T0)
    wes, anon = (proj.engine.scalar("SELECT score FROM latest_scores WHERE person_id = ?",
                                    [pid]) for pid in ("wes", "anon:a-9"))
    assert wes - anon > 5  # (a company e-mail and two logins; a page view)
    assert near_senders(proj.engine, sc.model.name, [wes + 1], 2) == {"wes", "a-1"}
    assert near_senders(proj.engine, sc.model.name, [anon + 1], 2) == {"anon:a-9", "a-9"}
    assert near_senders(proj.engine, sc.model.name, [wes], 2) == set()  # at it: not below


def test_hot_lane_announces_buy_readiness_before_the_loader_stores_it(tmp_path: Path):
    """Through the HTTP API: while the loader is held inside a micro-batch, a new lead's
    identify and contact-sales request is announced (to the owner its identify names, with
    its name and company) and fast-tracked by the hot lane; once the loader stores the events,
    the in-load pass does not announce or route it again. A class of 40 guests is announced
    the same way, and a rescore that cannot see it yet does not end its episode."""
    import contextlib
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from leadrefinery.api.app import create_app

    p = make_project(tmp_path / "proj", settings=ROUTED)
    now = datetime.utcnow()
    ingest(p, [identify("amy", now - timedelta(days=1)),
               *[track("amy", "Logged In", now - timedelta(hours=h)) for h in (1, 2, 3)]])
    hold = Hold()  # the loader's micro-batch stays open until `hold.go`

    def ready(pid: str) -> list[dict]:
        return [a for a in alerts(p) if a["trigger_id"] == "ready" and a["person_id"] == pid]

    def abuse(pid: str) -> list[dict]:
        return [a for a in alerts(p) if a["trigger_id"] == "abuse" and a["person_id"] == pid]

    def open_abuse() -> list[tuple]:
        return p.engine.query("SELECT key FROM trigger_episodes WHERE person_id = 'amy' AND "
                              "trigger_id = 'abuse' AND status = 'open'")

    try:
        with TestClient(create_app(p)) as c, contextlib.ExitStack() as stack:
            stack.callback(hold.go.set)  # (a failure must not leave the loader held)
            rt = c.app.state.realtime
            loader = c.app.state.ingest.loader
            wait_for(rt._ready.is_set, "the startup sweep")
            loader.in_transaction.insert(0, hold)
            assert c.post("/v1/batch", auth=("k", ""), json={"batch": [
                track("amy", "Logged In", now)]}).status_code == 200
            wait_for(hold.inside.is_set, "the loader inside a micro-batch")
            zed = [identify("zed", now, name="Zed Zim", owner="olga@example.com"),
                   track("zed", "Contact Sales Requested", now)]
            assert c.post("/v1/batch", auth=("k", ""), json={"batch": zed}).status_code == 200
            wait_for(lambda: ready("zed"), "the hot lane's alert")
            # announced and routed while the loader has not stored a thing of zed's
            assert p.engine.scalar("SELECT count(*) FROM events WHERE user_id = 'zed'") == 0
            alert = ready("zed")[0]
            assert alert["recipient"] == "olga@example.com" and alert["channel"] == "email"
            assert alert["payload"]["person"]["name"] == "Zed Zim"
            assert alert["payload"]["person"]["company"] == "Acme zed"
            # routed to the owner the identify named (not yet a stored trait)
            assert p.engine.query("SELECT rep FROM assignments WHERE person_id = 'zed'") == [
                ("olga@example.com",)]
            # amy starts a class of 40 guests: announced before it is stored, too
            launch = track("amy", "Environment Launched", now, guests=40, environment_id="e1")
            assert c.post("/v1/batch", auth=("k", ""), json={"batch": [launch]}
                          ).status_code == 200
            wait_for(lambda: len(abuse("amy")) == 2, "the hot lane's abuse alerts")
            assert abuse("amy")[0]["payload"]["evidence"][0]["message_id"] == launch["messageId"]
            # a rescore that cannot see the launch yet finds no flag (and 18 hours' decay,
            # so her state moved): the episode stays open
            rt.scorer.process(["amy"], now + timedelta(hours=18))
            assert open_abuse() == [("too_many_guests",)]
            loader.in_transaction.remove(hold)
            hold.go.set()
            wait_for(lambda: p.engine.scalar(
                "SELECT count(*) FROM events WHERE user_id = 'zed'") == 2, "zed's events stored")
            assert rt.wait_idle(60)
            health = c.get("/v1/realtime").json()
            assert health["hot_lag_ms"] and health["errors"] == 0, health["last_error"]
            rt.scorer.process(["amy"])  # now it sees the flag: the same episode
        assert len(ready("zed")) == 1
        assert p.engine.scalar("SELECT count(*) FROM assignments WHERE person_id = 'zed'") == 1
        assert len(abuse("amy")) == 2 and open_abuse() == [("too_many_guests",)]
        assert p.engine.scalar("SELECT flags FROM person_state WHERE person_id = 'amy'"
                               ) == '["too_many_guests"]'
    finally:
        hold.go.set()
        p.close()


def test_what_the_hot_lane_reads_from_requests_matches_what_the_loader_stores(proj: Project):
    """The hot lane's picks and profile overlay, against the loader on the same messages: the
    same people columns from identify traits, the same person for an anonymous visitor linked
    to a user id by an earlier request, the same `ts`."""
    from leadrefinery.act.received import ActionWatch, Picker, Recent, profile_of
    from leadrefinery.api.ingest import prepare_lines

    ts = for_project(proj, proj.model())
    watch = ActionWatch(ts.of_kind("action"))
    recent = Recent()
    traits = {"Email": "Ann@Acme.io", "firstName": "Ann", "Last Name": "Lee", "jobTitle": "CTO",
              "company": {"name": "Acme"}, "address": {"country": "DE"}, "phone": "  ",
              "lead_owner": "olga@example.com"}
    first = [{**identify("ann", T0, **traits), "anonymousId": "a-9"}]
    second = [{"type": "page", "anonymousId": "a-9", "name": "Pricing",
               "timestamp": "2026-03-02T13:00:00+01:00", "messageId": "p-1",
               "properties": {"path": "/pricing/teams"}},
              track("ann", "Logged In", T0), track("ann", "Contact Sales Requested", T0),
              {"type": "screen", "userId": "ann", "name": "Contact Sales Requested",
               "timestamp": iso(T0), "messageId": "s-1"}]
    picks = []
    for msgs in (first, second):
        picker = Picker(watch, recent)
        prepare_lines({"batch": msgs}, "batch", source="web", body_bytes=0,
                      max_message_bytes=1 << 20, received_at=iso(T0), each=picker)
        picks += picker.items()
    assert [it.message_id for it in picks] == ["p-1", second[2]["messageId"], "s-1"]
    ingest(proj, first + second)
    sc = scorer_for(proj)
    people = sc.people_of(picks)
    stored = dict(proj.engine.query("SELECT message_id, person_id FROM events"))
    assert people == {m: stored[m] for m in people} and set(people.values()) == {"ann"}
    stored_ts = dict(proj.engine.query("SELECT message_id, ts FROM events"))
    assert all(it.ts == stored_ts[it.message_id] for it in picks)
    assert picks[0].path == "/pricing/teams" and picks[0].linked_user == "ann"
    cols = list(profile_of(picks[0].traits))
    row = proj.engine.query(f"SELECT {', '.join(cols)} FROM people WHERE person_id = 'ann'")[0]
    assert dict(zip(cols, row, strict=True)) == profile_of(picks[0].traits)
    assert {"email", "name", "title", "company", "country", "owner"} <= set(cols)


def test_rescoring_behind_takes_those_waiting_longest_first(proj: Project):
    """Under sustained overload a batch takes the people waiting longest (not the first ids
    in sort order, which would leave the last ones waiting for ever)."""
    rt = Realtime(scorer_for(proj), settings=proj.settings)
    rt.cfg = rt.cfg.model_copy(update={"max_batch_people": 2})
    rt.on_loaded(["zoe", "amy", "max"])
    chunk, rest = rt._split(rt._pending)
    assert chunk == ["zoe", "amy"] and list(rest) == ["max"]


def test_the_hot_lane_can_be_turned_off(tmp_path: Path):
    """`[triggers] hot_lane = false`: requests are not picked; buy-readiness goes with the
    loader (the in-load pass), as it did before the hot lane."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from leadrefinery.api.app import create_app

    for on in (True, False):
        p = make_project(tmp_path / f"p{on}", settings=SETTINGS + f"""
[triggers]
hot_lane = {str(on).lower()}
""")
        try:
            with TestClient(create_app(p)) as c:
                assert (c.app.state.ingest.picker is not None) is on
        finally:
            p.close()


def test_the_in_load_pass_and_the_hot_lane_never_evaluate_a_person_side_by_side(
        proj: Project):
    """The in-load pass leaves the hot lane's messages to it (standing aside, to the thread,
    while one is not committed: its watermark would pass it), stands aside for people the hot
    lane committed work for after the micro-batch began (its snapshot cannot see that work),
    and holds the hot lane off its own people until the micro-batch ends — for buy-readiness
    events and abuse hits alike."""
    from leadrefinery.act.live_abuse import Hit
    from leadrefinery.act.received import Received
    from leadrefinery.act.triggers import Action

    sc = scorer_for(proj)
    rt = Realtime(sc, settings=proj.settings)
    t = T0

    def act(mid: str) -> Action:
        return Action(mid, t, "track", "Contact Sales Requested", None)

    def hit(mid: str) -> Hit:
        return Hit("too_many_guests", mid, t, "Environment Launched", {"guests": 40}, 40.0)

    rt.on_received([Received("m1", t, "track", "Contact Sales Requested", None, "hal", None,
                             None)])
    rt.load_began = lambda: 100.0
    # not committed by the hot lane yet: the lane's watermark must not pass it
    assert rt._claim_for_load({"hal": [act("m1")], "ivy": [act("m2")]}, {}) is None
    assert not rt._loading
    rt._hot_ids["m1"] = True  # committed
    # the hot lane's message is its own; hal has nothing else: not evaluated here
    assert rt._claim_for_load({"hal": [act("m1")], "ivy": [act("m2")]}, {"joe": [hit("m5")]}
                              ) == ({"ivy": [act("m2")]}, {"joe": [hit("m5")]})
    assert rt._loading == {"ivy", "joe"} and not rt._hot_ids
    rt.load_ended(True)
    # the hot lane committed for ivy after this micro-batch began: all of it to the thread
    rt._hot_people["ivy"] = 101.0
    assert rt._claim_for_load({}, {"ivy": [hit("m3")]}) is None
    # ... but work committed before the micro-batch began is in its snapshot
    rt._hot_people["ivy"] = 99.0
    assert rt._claim_for_load({"ivy": [act("m3")]}, {}) == ({"ivy": [act("m3")]}, {})
    assert "ivy" not in rt._hot_people
    # while ivy is in the micro-batch, the hot lane waits for its end
    done = threading.Event()
    sc.act_on_received = lambda items, people, hits=None: (
        done.set(), realtime_mod.BatchResult())[1]
    item = Received("m4", t, "track", "Contact Sales Requested", None, "ivy", None, None)
    th = threading.Thread(target=rt._act_on_received, args=([item],))
    th.start()
    assert not done.wait(0.5)
    rt.load_ended(False)
    assert done.wait(10)
    th.join(10)
    assert rt._hot_people["ivy"] > 100.0


def test_the_warm_lane_and_a_rescoring_batch_never_evaluate_a_person_side_by_side(
        proj: Project):
    """Two transactions side by side would not see each other's episodes: a rescoring batch
    waits for the warm lane to be done with its people; the warm lane leaves the people of a
    batch under way — everyone during a sweep — to the urgent lane, and the urgent lane leaves
    the people the warm lane just scored to the ordinary batches (not those whose traits
    changed: the score reads them once the loader has stored them)."""
    from leadrefinery.act.received import ActionWatch, Picker, Recent

    ingest(proj, [track(u, "Logged In", T0 - timedelta(hours=1)) for u in ("wes", "nel")])
    sc = scorer_for(proj)
    rt = Realtime(sc, settings=proj.settings)
    assert rt.warm_lane
    rt._warming = {"wes"}
    entered = threading.Event()

    def batch() -> None:
        with rt._rescoring_claim({"wes", "nel"}):
            entered.set()

    th = threading.Thread(target=batch)
    th.start()
    assert not entered.wait(0.5)
    with rt._claims:
        rt._warming = set()
        rt._claims.notify_all()
    assert entered.wait(10)
    th.join(10)
    assert rt._rescoring == set()

    scored: list[list[str]] = []
    sc.score_received = lambda items, people: (
        scored.append(sorted({people[i.message_id] for i in items})), realtime_mod.BatchResult()
    )[1]
    pick = Picker(ActionWatch([]), Recent(), frozenset({"wes", "nel"}))
    for u in ("wes", "nel"):
        pick(track(u, "Logged In", T0))
    items = pick.items()
    kept = {it.message_id: it for it in items}
    rt._rescoring = {"nel"}  # a batch under way has nel
    rt._warm_round(items, kept)
    rt._rescoring = None  # a sweep: everyone
    rt._warm_round(items, kept)
    assert scored == [["wes"], []] and set(rt._warmed) == {"wes"}
    # new traits reach the score through the loader: nel's rescore after the load is urgent
    pick(identify("nel", T0, title="VP Engineering"))
    items = pick.items()
    rt._rescoring = set()
    rt._warm_round(items, {it.message_id: it for it in items})
    assert scored[-1] == ["nel", "wes"] and set(rt._warmed) == {"wes"}
    # wes's micro-batch loaded: the warm lane saw his events, the urgent lane leaves him be
    rt._pending = dict.fromkeys(["wes", "nel"])
    rt._arrived = [(["wes", "nel"], time.monotonic())]
    sc.near_lines = lambda ids, lines, points: list(ids)
    sc.process = lambda ids, **kw: realtime_mod.BatchResult()
    assert rt._urgent_batch()
    assert list(rt._pending) == ["wes"]  # nel was rescored; wes waits for the ordinary batch


def test_http_routes_forms_activities_unsubscribe_realtime(proj: Project, monkeypatch):
    import warnings

    with warnings.catch_warnings():  # starlette asks for `httpx2`; httpx still works
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from leadrefinery.act.nurture import unsubscribe_token
    from leadrefinery.api.app import create_app

    monkeypatch.setenv("LEADREFINERY_UNSUBSCRIBE_SECRET", "s3cret")
    ingest(proj, [identify("jo", T0 - timedelta(days=1))])
    with TestClient(create_app(proj)) as c:
        r = c.get("/v1/forms/trial/fields", params={"person": "jo"})
        assert r.status_code == 200 and r.json()["known_person"] is True
        assert "email" not in [f["name"] for f in r.json()["fields"]]  # known already
        act = [{"person_id": "jo", "kind": "accepted", "at": iso(T0), "rep": "sam@x.io"}]
        assert c.post("/v1/activities", json=act).status_code == 401
        r = c.post("/v1/activities", json=act, auth=("k", ""))
        assert r.status_code == 200 and r.json() == {"stored": 1}
        token = unsubscribe_token("s3cret", "jo", "newsletter")
        page = c.get("/v1/unsubscribe", params={"token": token})
        assert page.status_code == 200 and "<form" in page.text and "newsletter" in page.text
        assert proj.engine.scalar("SELECT count(*) FROM preferences") == 0  # a GET changes nothing
        r = c.post(f"/v1/unsubscribe?token={token}", content=b"List-Unsubscribe=One-Click",
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 200 and "Done" in r.text
        assert c.post("/v1/unsubscribe?token=forged.x").status_code == 400
        rt = c.get("/v1/realtime").json()
        assert rt["enabled"] is True and rt["model"] == "t" and "hot" in rt["triggers"]
    rows = proj.engine.query("SELECT person_id, category, subscribed FROM preferences")
    assert rows == [("jo", "newsletter", False)]
    assert proj.engine.scalar("SELECT kind FROM lead_activities") == "accepted"


def test_a_lead_just_below_a_line_is_rescored_at_once_ahead_of_the_rest(proj: Project):
    """The urgent lane: of the people a micro-batch touched, those whose latest score is less
    than `urgent_points` below a line an alert fires on are rescored at once, while the
    ordinary batch still waits for ingestion to catch up — so a lead turning hot is
    announced without waiting behind everyone else."""
    clock = ManualClock(T0)
    sc = scorer_for(proj, clock)
    assert sc.triggers is not None and sc.triggers.rising_lines() == [40, 50, 60]
    near = [identify("ann", T0 - timedelta(hours=1)), page("ann", "/pricing", T0)]
    near += [track("ann", "Logged In", T0 - timedelta(minutes=k)) for k in (1, 2, 3)]
    ingest(proj, [*near, identify("bob", T0 - timedelta(hours=1))])
    sc.sweep(T0 - timedelta(days=1), kind="startup")
    sc.process(["ann", "bob"])  # ann about 35, 5 below grade B; bob 10
    rt = Realtime(sc, settings=proj.settings)
    rt.cfg = rt.cfg.model_copy(update={"yield_seconds": 60.0})
    rt.ingest_behind = lambda: True  # the ordinary batch would wait its full minute
    clock.advance(minutes=5)
    ingest(proj, [track("ann", "Environment Launched", T0 + timedelta(minutes=k))
                  for k in (1, 2)])  # + 8: grade B
    assert "hot" not in {a["trigger_id"] for a in alerts(proj)}
    rt.on_loaded(["bob", "ann"])
    assert rt._urgent_batch()
    assert "hot" in {a["trigger_id"] for a in alerts(proj) if a["person_id"] == "ann"}
    assert list(rt._pending) == ["bob"] and not rt._urgent_batch()  # bob can wait
    # new arrivals cut the ordinary batch's wait short (they may be urgent), not restart it
    rt.on_loaded(["cy"])
    assert rt._others_first() is False and rt._yield_until is not None
    until = rt._yield_until
    assert not rt._urgent_batch()
    rt.on_loaded(["dee"])
    assert rt._others_first() is False and rt._yield_until == until
    # `urgent_points = 0`: no such lane
    off = proj.settings.model_copy(deep=True)
    off.triggers.urgent_points = 0
    assert Realtime(sc, settings=off)._lines == []
