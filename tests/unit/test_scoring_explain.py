"""Explanations, the ranked lead list, the backtest and the commands, on small hand-made data."""

from __future__ import annotations

import json
import textwrap
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from leadrefinery import Project
from leadrefinery.cli import app
from leadrefinery.errors import NotFound

pytestmark = pytest.mark.filterwarnings("ignore:Arrow output on a DB-API result:UserWarning")

T = datetime(2024, 6, 1, 12, 0)
MODEL = """\
version: 3
name: trial
categories:
  engagement: {cap: 25}
rules:
  - {id: webmail, description: signed up with a webmail address, on: person, when: webmail, points: -5}
  - {id: company, on: person, when: NOT webmail, points: 10}
  - id: pricing
    description: visited the pricing page
    on: page
    when: "path = '/pricing'"
    points: 4
    half_life: 7d
    cap: 10
  - {id: login, on: track, event: Logged In, points: 3}
grades:
  levels: [{grade: "1", min: 20}, {grade: "2", min: 5}, {grade: "3"}]
  mql: ["1"]
stages:
  evidence:
    Evaluate: [{on: page, when: "path = '/pricing'"}]
    Sample: [{on: track, event: Environment Launched}]
abuse:
  - {id: guests, kind: event, on: track, event: Environment Launched, when: properties.guests > 10,
     measure: properties.guests}
segments:
  commercial: NOT webmail
  engaged: category.engagement >= 10
"""

_n = iter(range(10_000))


def msg(kind: str, user: str, t: datetime, **kw) -> dict:
    return {
        "type": kind,
        "userId": user,
        "timestamp": t.isoformat() + "Z",
        "messageId": f"x{next(_n)}",
        **kw,
    }


def business(project: Project) -> None:
    (project.root / "model.yaml").write_text(MODEL, encoding="utf-8")
    d = timedelta(days=1)
    msgs = [
        msg(
            "identify",
            "ann",
            T - 9 * d,
            traits={"email": "ann@acme.com", "company": "Acme", "name": "Ann"},
        ),
        *[
            msg("page", "ann", T - k * d, name="Pricing", properties={"path": "/pricing"})
            for k in (1, 2, 3, 4)
        ],
        *[msg("track", "ann", T - k * d, event="Logged In") for k in range(1, 10)],
        msg("track", "ann", T - 2 * d, event="Environment Launched", properties={"guests": 25}),
        msg("identify", "bob", T - 9 * d, traits={"email": "bob@gmail.com"}),
        msg("track", "bob", T - 2 * d, event="Logged In"),
        msg("identify", "cy", T - 9 * d, traits={"email": "cy@initech.com"}),
    ]
    report = project.ingestor.ingest_messages(msgs, source="test")
    assert report.quarantined == 0


def test_explain_breaks_the_score_down(project: Project) -> None:
    business(project)
    x = project.explain("ANN@acme.com", as_of=T)
    assert x["person"]["person_id"] == "ann" and x["model"] == "trial"
    comps = {c["rule"]: c for c in x["components"]}
    assert set(comps) == {"company", "pricing", "login"}
    p = comps["pricing"]
    assert p["n"] == 4 and p["raw"] == 16
    assert p["decayed"] == pytest.approx(4 * sum(0.5 ** (k / 7) for k in (1, 2, 3, 4)))
    assert (
        p["points"] == 10 and p["capped"] and p["reason"] == "visited the pricing page (4×): +10.0"
    )
    assert comps["login"]["points"] == 27 and comps["login"]["reason"].startswith("Logged In (9×)")
    eng = next(c for c in x["categories"] if c["category"] == "engagement")
    assert eng["before_cap"] == 37 and eng["points"] == 25 and eng["capped"]
    assert x["score"] == 35 and x["grade"] == "1" and x["mql"]
    assert x["stage"]["stage"] == "Sample" and x["stage"]["evidence"]["events"] == 1
    assert x["abuse"]["guests"]["max"] == 25 and x["abuse"]["guests"]["count"] == 1
    assert x["segments"] == ["commercial", "engaged"]
    assert len(x["timeline"]) == 15 and x["timeline"][0]["ts"].startswith("2024-05-31")
    # as of an earlier time: only what was known then
    early = project.explain("ann", as_of=T - timedelta(days=3, hours=1))
    assert {c["rule"]: c["n"] for c in early["components"]}["pricing"] == 1
    with pytest.raises(NotFound):
        project.explain("nobody@nowhere.org")


def test_leads_are_ranked_filtered_and_give_reasons(project: Project) -> None:
    business(project)
    project.score(as_of=T)
    rows = project.leads()
    assert [r["person_id"] for r in rows] == ["ann", "cy", "bob"]
    assert rows[0]["reasons"][0] == "Logged In (9×): +27.0"
    assert rows[0]["abuse"] == ["guests"] and rows[0]["segments"] == ["commercial", "engaged"]
    assert [r["person_id"] for r in project.leads(grade=["2"])] == ["cy"]
    assert [r["person_id"] for r in project.leads(stage=["Sample"])] == ["ann"]
    assert [r["person_id"] for r in project.leads(segment=["commercial"], top=1)] == ["ann"]
    with pytest.raises(NotFound):
        project.leads(segment=["nope"])


# -- backtest on a tiny hand-made history --------------------------------------------------------

BT_MODEL = """\
version: 1
rules: [{id: pt, on: track, event: Point, points: 10}]
grades:
  levels: [{grade: "1", min: 20}, {grade: "2", min: 10}, {grade: "3"}]
  mql: ["1"]
"""


def history(project: Project) -> datetime:
    start = datetime(2024, 3, 1)
    d = timedelta(days=1)
    msgs = []
    for user, points in (("a", 3), ("b", 1), ("c", 0), ("d", 2)):
        msgs.append(msg("identify", user, start - 20 * d, traits={"email": f"{user}@x{user}.com"}))
        msgs += [msg("track", user, start - 5 * d, event="Point") for _ in range(points)]
    # conversions (the project's conversion event): a at +10d, b at +3d, c at +40d
    for user, days in (("a", 10), ("b", 3), ("c", 40)):
        msgs.append(
            msg(
                "track",
                user,
                start + days * d,
                event="Subscription Started",
                properties={"amount": 100},
            )
        )
    assert project.ingestor.ingest_messages(msgs, source="history").quarantined == 0
    (project.root / "model.yaml").write_text(BT_MODEL, encoding="utf-8")
    return start


def test_backtest_figures(project: Project) -> None:
    start = history(project)
    # candidate: one point is enough for grade 1
    (project.root / "candidate.yaml").write_text(
        BT_MODEL.replace("min: 20", "min: 10").replace(
            'min: 10}, {grade: "3"}', 'min: 5}, {grade: "3"}'
        ),
        encoding="utf-8",
    )
    rep = project.backtest(
        start=start,
        end=start + timedelta(days=7),
        step_days=7,
        horizon_days=30,
        model="candidate.yaml",
    )
    pub = rep["published"]
    grades = {g["grade"]: g for g in pub["grades"]}
    # cut-off 1: a(1) b(2) c(3) d(1); a and b convert within 30 days. cut-off 2: b is a customer.
    assert (grades["1"]["leads"], grades["1"]["converted"]) == (4, 2)
    assert (grades["2"]["leads"], grades["2"]["converted"]) == (1, 1)
    assert (grades["3"]["leads"], grades["3"]["converted"]) == (2, 0)
    assert grades["1"]["conversion_rate"] == 0.5
    assert grades["1"]["share_of_conversions"] == pytest.approx(2 / 3)
    assert pub["mql"] == {
        "grades": ["1"],
        "leads": 4,
        "converted": 2,
        "conversion_rate": 0.5,
        "share_of_conversions": pytest.approx(2 / 3),
    }
    assert [(w["mql"], w["new_mql"]) for w in pub["weeks"]] == [(2, 2), (2, 0)]
    cand = {g["grade"]: g for g in rep["candidate"]["grades"]}
    assert (cand["1"]["leads"], cand["1"]["converted"]) == (5, 3)  # b joins grade 1 at cut-off 1
    assert rep["candidate"]["mql"]["share_of_conversions"] == 1.0


def test_backtest_never_uses_the_future(project: Project) -> None:
    start = history(project)
    before = project.backtest(start=start, end=start + timedelta(days=7), compare=False)
    d = timedelta(days=1)
    later = [msg("track", "c", start + 8 * d, event="Point") for _ in range(5)]
    project.ingestor.ingest_messages(later, source="later")
    after = project.backtest(start=start, end=start + timedelta(days=7), compare=False)
    assert after["candidate"]["grades"] == before["candidate"]["grades"]


# -- the commands --------------------------------------------------------------------------------


def test_commands(project: Project, tmp_path: Path) -> None:
    business(project)
    root = str(project.root)
    project.close()
    runner = CliRunner()

    def run(*args, **kw):
        result = runner.invoke(*args, **kw)
        result.flat = " ".join(result.output.split())  # rich wraps long lines at 80 columns
        return result

    r = run(app, ["validate", "--project", root])
    assert r.exit_code == 0 and "model trial version 3+" in r.flat
    r = run(app, ["compile", "--engine", "postgres", "--project", root, "--as-of", "2024-06-01"])
    assert r.exit_code == 0 and "#>> '{path}'" in r.output and "DOUBLE PRECISION" in r.output
    r = run(app, ["compile", "--engine", "spark", "--model", str(project.root / "model.yaml")])
    assert r.exit_code == 0 and "GET_JSON_OBJECT" in r.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(MODEL.replace("half_life: 7d", "half_lif: 7d"), encoding="utf-8")
    r = run(app, ["validate", "--model", str(bad)])
    assert (
        r.exit_code == 2
        and f"{bad}:13 (rule 'pricing'): unknown key 'half_lif'" in r.flat
    )
    r = run(app, ["score", "--project", root, "--as-of", "2024-06-01T12:00:00Z", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["people"] == 3 and out["grades"] == {"1": 1, "2": 1, "3": 1}
    r = run(app, ["explain", "ann@acme.com", "--project", root, "--as-of", "2024-06-01T12:00:00"])
    assert (
        r.exit_code == 0 and "pricing" in r.flat and "abuse guests" in r.flat and "capped" in r.flat
    )
    r = run(app, ["leads", "--project", root, "--format", "json", "--top", "2"])
    assert r.exit_code == 0
    rows = [json.loads(line) for line in r.output.splitlines()]
    assert [x["person_id"] for x in rows] == ["ann", "cy"]
    r = run(app, ["leads", "--project", root, "--format", "csv", "--grade", "1"])
    assert r.exit_code == 0 and r.output.splitlines()[1].startswith("ann,ann@acme.com")
    r = run(
        app,
        [
            "backtest",
            "--project",
            root,
            "--from",
            "2024-05-01",
            "--to",
            "2024-05-20",
            "--horizon",
            "30d",
        ],
    )
    assert r.exit_code == 0 and "MQL volume per cut-off" in r.flat
    r = run(app, ["explain", "nobody", "--project", root])
    assert r.exit_code == 6 and "no person" in r.flat


def test_demo_model_scores_a_generated_business(tmp_path: Path) -> None:
    from leadrefinery.sample import generate

    biz = generate(tmp_path / "data", people=150, months=2, seed=5, start="2026-03-01")
    p = Project.init(tmp_path / "demo", name="demo")
    try:
        (p.root / "model.yaml").write_text(
            (Path(__file__).resolve().parents[2] / "src/leadrefinery/sample/model.yaml").read_text()
        )
        p.ingest([biz.accounts_path], kind="accounts")
        p.ingest([biz.events_path], kind="events")
        run = p.score(as_of=datetime(2026, 4, 15))
        assert run.people > 100
        grades = dict(p.engine.query("SELECT grade, count(*) FROM scores GROUP BY grade"))
        assert set(grades) <= set("1234567") and len(grades) >= 4
        assert p.leads(top=5)[0]["reasons"]
    finally:
        p.close()


def test_model_loads_from_project_by_name(project: Project) -> None:
    (project.root / "model.yaml").write_text(MODEL, encoding="utf-8")
    (project.root / "other.yaml").write_text(textwrap.dedent(BT_MODEL), encoding="utf-8")
    assert project.model().name == "trial"
    assert project.model("other").name == "other"
    assert project.model("other.yaml").name == "other"
