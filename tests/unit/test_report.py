"""The report queries behind the dashboard, the REST API and the CRM export, on a small
generated demo store (built once per test process, copied for each test)."""

from __future__ import annotations

import json

import atexit
import functools
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest

from leadrefinery import Project
from leadrefinery.errors import InputError, NotFound
from leadrefinery.report import abuse, campaigns, model_report, overview, person
from leadrefinery.report.common import Scope, reference_time
from leadrefinery.report.leads import LeadFilter, facets, iter_leads, lead_page

PEOPLE = 400


@functools.cache
def _template() -> Path:
    """A demo project scored at two weekly cut-offs, with demo logins (built once)."""
    from leadrefinery.api.auth import ensure_demo_users
    from leadrefinery.demo import run_demo

    base = Path(tempfile.mkdtemp(prefix="lr-report-"))
    atexit.register(shutil.rmtree, base, True)
    p = run_demo(base / "demo", people=PEOPLE, say=lambda m: None).project
    for t in ("scores", "score_runs", "latest_scores", "account_scores"):
        p.engine.execute(f"DELETE FROM {t}")
    ref = reference_time(p.engine)
    p.score(as_of=ref - timedelta(days=7))
    p.score(as_of=ref)
    ensure_demo_users(p.root, p.engine)
    p.close()
    return base / "demo"


def demo_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "demo"
    shutil.copytree(_template(), dst, ignore=shutil.ignore_patterns("log", "serve.json"))
    return dst


@pytest.fixture
def demo(tmp_path):
    p = Project(demo_copy(tmp_path))
    yield p
    p.close()


def rep_of(p: Project) -> str:
    return next(u.rep for u in p.settings.users.values() if u.role == "rep")


def test_lead_page_ranks_filters_and_pages(demo):
    e, m = demo.engine, demo.model()
    first = lead_page(e, m, page=1, per_page=10)
    assert first.total == PEOPLE and len(first.rows) == 10 and first.pages == PEOPLE // 10
    scores = [r["score"] for r in first.rows]
    assert scores == sorted(scores, reverse=True)
    second = lead_page(e, m, page=2, per_page=10)
    assert not {r["person_id"] for r in first.rows} & {r["person_id"] for r in second.rows}
    assert all(isinstance(r["reasons"], list) for r in first.rows)
    assert any(r["reasons"] for r in first.rows)
    graded = lead_page(e, m, LeadFilter(grade=["3", "4"]), per_page=1000)
    assert graded.rows and {r["grade"] for r in graded.rows} <= {"3", "4"}
    assert graded.total == e.scalar("SELECT count(*) FROM latest_scores WHERE grade IN ('3','4')")
    src = lead_page(e, m, LeadFilter(source="partner", abuse=False), per_page=1000)
    assert src.rows and all(r["source"] == "partner" and not r["abuse"] for r in src.rows)
    seg = lead_page(e, m, LeadFilter(segment=["commercial"]), per_page=1000)
    assert seg.rows and all("commercial" in r["segments"] for r in seg.rows)
    staged = lead_page(e, m, LeadFilter(stage=["-"]), per_page=1000)
    assert staged.rows and all(r["stage"] is None for r in staged.rows)
    company = first.rows[0]["company"] or first.rows[0]["email"]
    found = lead_page(e, m, LeadFilter(q=company.upper()[:6]))
    assert first.rows[0]["person_id"] in {r["person_id"] for r in found.rows} or found.total
    # every row of the chunked iterator, in the same order as the pages
    everyone = [r["person_id"] for r in iter_leads(e, m, chunk=37)]
    assert len(everyone) == PEOPLE and everyone[:10] == [r["person_id"] for r in first.rows]


def test_date_filter_and_sort(demo):
    e, m = demo.engine, demo.model()
    mid = e.scalar("SELECT min(first_seen) + (max(first_seen) - min(first_seen)) / 2 FROM people")
    late = lead_page(e, m, LeadFilter(since=mid, sort="new"), per_page=1000)
    assert late.rows and all(r["first_seen"] >= mid for r in late.rows)
    firsts = [r["first_seen"] for r in late.rows]
    assert firsts == sorted(firsts, reverse=True)
    early = lead_page(e, m, LeadFilter(until=mid), per_page=1000)
    assert early.total + late.total == PEOPLE


def test_rep_scope(demo):
    e, m = demo.engine, demo.model()
    rep = rep_of(demo)
    scope = Scope.of_rep([rep])
    mine = lead_page(e, m, scope=scope, per_page=1000)
    assert 0 < mine.total < PEOPLE
    assert all(r["owner"] == rep for r in mine.rows)
    others = e.query("SELECT p.person_id FROM people p JOIN accounts a USING (account_id) "
                     "WHERE a.owner <> ? LIMIT 1", [rep])[0][0]
    with pytest.raises(NotFound):
        person.person_report(e, m, others, scope=scope)
    assert person.find(e, mine.rows[0]["person_id"], scope) == mine.rows[0]["person_id"]
    assert lead_page(e, m, scope=Scope.of_rep([]), per_page=5).total == 0
    assert facets(e, m, scope)["owner"] == [rep]
    ov = overview.overview(e, m, scope=scope)
    assert ov["kpis"]["people"] == mine.total


def test_person_report(demo):
    e, m = demo.engine, demo.model()
    pid = e.scalar("SELECT person_id FROM latest_scores WHERE flagged ORDER BY score DESC LIMIT 1")
    r = person.person_report(e, m, pid)
    assert r["person"]["person_id"] == pid and r["score"]["grade"]
    assert r["score"]["components"] and all("reason" in c for c in r["score"]["components"])
    assert r["score"]["abuse"] and r["score"]["abuse"][0]["evidence"]
    assert r["timeline"] and r["timeline"][0]["ts"] >= r["timeline"][-1]["ts"]
    assert len(r["history"]) == 2  # two scoring runs
    older = person.timeline(e, pid, before=r["timeline"][-1]["ts"], limit=5)
    assert all(x["ts"] < r["timeline"][-1]["ts"] for x in older)
    by_email = person.person_report(e, m, r["person"]["email"])
    assert by_email["person"]["person_id"] == pid
    with pytest.raises(NotFound):
        person.person_report(e, m, "nobody@nowhere.test")


def test_overview(demo):
    e, m = demo.engine, demo.model()
    o = overview.overview(e, m, days=365)
    assert o["kpis"]["people"] == PEOPLE
    assert sum(r["leads"] for r in o["new_by_grade"]) > 0
    runs = {r["as_of"] for r in o["grade_history"]}
    assert len(runs) == 2 and sum(r["people"] for r in o["grade_history"]) == 2 * PEOPLE
    conv = {r["grade"]: r for r in o["conversion_by_grade"]}
    assert list(conv) == m.spec.grades.names()
    assert sum(r["leads"] for r in conv.values()) == PEOPLE
    assert sum(r["converted"] for r in conv.values()) == o["kpis"]["converted"] > 0
    funnel = [f["reached"] for f in o["funnel"]]
    assert funnel == sorted(funnel, reverse=True) and [f["stage"] for f in o["funnel"]] == \
        m.spec.stages.order


def test_campaigns_cost_per_good_lead(demo):
    e, m = demo.engine, demo.model()
    c = campaigns.campaigns(e, m, by="campaign")
    rows = {r["key"]: r for r in c["rows"]}
    assert c["has_costs"]
    spent = e.scalar("SELECT sum(cost) FROM campaigns")
    assert c["total"]["cost"] == pytest.approx(spent, rel=1e-6)
    paid = [r for r in rows.values() if r["cost"] and r["good_leads"]]
    assert paid
    for r in paid:
        assert r["cost_per_good_lead"] == pytest.approx(r["cost"] / r["good_leads"])
    assert sum(r["leads"] for r in rows.values()) == e.scalar("SELECT count(*) FROM people")
    src = campaigns.campaigns(e, m, by="source")
    assert src["total"]["cost"] == pytest.approx(spent, rel=1e-6)
    # a window pro-rates the spend
    ref = reference_time(e)
    recent = campaigns.campaigns(e, m, by="medium", since=ref - timedelta(days=30))
    assert (recent["total"]["cost"] or 0) < spent
    with pytest.raises(InputError):
        campaigns.campaigns(e, m, by="colour")


def test_cost_proration():
    from datetime import datetime

    import pyarrow as pa

    from leadrefinery.store.duckdb_engine import DuckDBEngine

    e = DuckDBEngine()
    e.ensure_schema()
    e.append("campaigns", pa.table({
        "campaign": ["c"], "source": ["s"], "medium": ["m"],
        "period_start": pa.array([datetime(2026, 1, 1)], pa.timestamp("us")),
        "period_end": pa.array([datetime(2026, 1, 10)], pa.timestamp("us")),  # 10 days
        "cost": [1000.0]}))
    assert campaigns.cost_by(e, "campaign")["c"] == pytest.approx(1000)
    half = campaigns.cost_by(e, "campaign", since=datetime(2026, 1, 6))["c"]
    assert half == pytest.approx(500)
    e.close()


def test_abuse_report(demo):
    e, m = demo.engine, demo.model()
    a = abuse.abuse(e, m, active_minutes=60 * 24 * 3, limit=10)
    assert a["flagged"] == e.scalar("SELECT count(*) FROM latest_scores WHERE flagged") > 0
    assert len(a["flags"]) == min(10, a["flagged"])
    assert all(f["rules"] and f["rules"][0]["description"] for f in a["flags"])
    assert a["active"] and all(x["doing"] for x in a["active"])
    page2 = abuse.abuse(e, m, limit=10, page=2)
    assert not {f["person_id"] for f in a["flags"]} & {f["person_id"] for f in page2["flags"]}


def test_model_report(demo):
    e, m = demo.engine, demo.model()
    s = model_report.model_summary(m)
    assert s["rules"] == len(m.spec.rules) and s["mql"] == ["1", "2"]
    assert model_report.cached_backtest(demo.root) is None
    bt = model_report.run_backtest(demo, weeks=1)
    assert model_report.cached_backtest(demo.root)["candidate"]["grades"] == \
        bt["candidate"]["grades"]
    card = model_report.predictive_card(demo, e)  # the demo trains and publishes one
    assert card["counts"]["test"] > 0 and 0.5 < card["metrics"]["auc"] <= 1
    st = model_report.alerts_status(e)
    assert set(st["counts"]) == {"pending", "delivered", "dead"}


def test_predictions_table_is_picked_up(demo):
    """The demo publishes predictive scores: buckets appear in the list, filters and person page."""
    e, m = demo.engine, demo.model()
    page = lead_page(e, m, LeadFilter(bucket=["A"], sort="probability"), per_page=1000)
    assert page.has_predictions and page.rows and {r["bucket"] for r in page.rows} == {"A"}
    probabilities = [r["probability"] for r in page.rows]
    assert probabilities == sorted(probabilities, reverse=True)
    assert "A" in facets(e, m)["bucket"]
    top = page.rows[0]["person_id"]
    r = person.person_report(e, m, top)
    assert r["predictive"]["bucket"] == "A"
    stored = json.loads(e.scalar("SELECT factors FROM predictions WHERE person_id = ?", [top]))
    assert [f["text"] for f in r["predictive"]["factors"]] == \
        [f["text"] for f in stored["positive"] + stored["negative"]]
