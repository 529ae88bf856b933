"""The command line over routing, SLAs and sequences: reps, route --dry-run, sla, sequences."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from leadrefinery import Project
from leadrefinery.cli import app

REPS = """
[[reps]]
email = "ann@x.io"
team = "emea"
per_day = 1

[teams.emea]
territory = ["EMEA"]

[routing]
default_team = "emea"
qualify_grades = ["A"]
"""


def make_project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    with Project.init(root, name="cli") as p:
        p.engine.execute("INSERT INTO people (person_id, email, country) VALUES "
                         "('p1', 'p1@acme.de', 'DE'), ('p2', 'p2@acme.de', 'DE')")
        p.engine.execute("INSERT INTO latest_scores (model, as_of, person_id, score, grade) "
                         "VALUES ('m', '2026-03-01', 'p1', 90, 'A'), "
                         "('m', '2026-03-01', 'p2', 80, 'A')")
    with (root / "refinery.toml").open("a", encoding="utf-8") as f:
        f.write(REPS)
    return root


def test_reps_route_and_sla_commands(tmp_path: Path):
    root = make_project(tmp_path)
    runner = CliRunner()
    roster = tmp_path / "reps.csv"
    roster.write_text("email,team,territory,per_day\nbo@x.io,apac,APAC,4\n", encoding="utf-8")
    r = runner.invoke(app, ["reps", "import", str(roster), "--project", str(root)])
    assert r.exit_code == 0, r.output
    assert "1 added" in r.output
    r = runner.invoke(app, ["reps", "list", "--json", "--project", str(root)])
    assert [x["email"] for x in json.loads(r.output)] == ["ann@x.io", "bo@x.io"]

    now = ["--now", "2026-03-02T09:00:00"]
    r = runner.invoke(app, ["route", "--dry-run", "--json", *now, "--project", str(root)])
    assert r.exit_code == 0, r.output
    plan = json.loads(r.output)
    assert plan["dry_run"] and [a["person_id"] for a in plan["assignments"]] == ["p1"]
    assert [w["person_id"] for w in plan["waiting"]] == ["p2"]
    with Project(root, read_only=True) as p:
        assert p.engine.scalar("SELECT count(*) FROM assignments") == 0
    r = runner.invoke(app, ["route", "--notify", *now, "--project", str(root)])
    assert r.exit_code == 0, r.output
    assert "1 assigned, 1 waiting" in r.output and "team_unavailable" in r.output
    with Project(root, read_only=True) as p:
        assert sorted(p.engine.query("SELECT channel, recipient FROM alerts")) == [
            ("email", "ann@x.io"), ("feed", "")]

    r = runner.invoke(app, ["sla", "--alert", "--now", "2026-03-12T09:00:00",
                            "--project", str(root)])
    assert r.exit_code == 0, r.output
    assert "never touched" in r.output and "put in the alerts outbox" in r.output
    with Project(root, read_only=True) as p:
        assert p.engine.scalar("SELECT count(*) FROM alerts WHERE trigger_kind = 'sla'") == 2

    r = runner.invoke(app, ["reps", "away", "nobody@x.io", "--project", str(root)])
    assert r.exit_code == 6 and "no rep 'nobody@x.io'" in r.output


def test_sequences_commands(tmp_path: Path, monkeypatch):
    root = make_project(tmp_path)
    (root / "sequences").mkdir()
    (root / "sequences" / "trial.yaml").write_text(
        "sequence: trial\nenroll: { event: Signed Up }\n"
        "steps:\n  - { id: hi, day: 0, subject: Hi, body: Hello }\n", encoding="utf-8")
    runner = CliRunner()
    r = runner.invoke(app, ["sequences", "list", "--project", str(root)])
    assert r.exit_code == 0 and "trial" in r.output and "hi (0)" in r.output
    r = runner.invoke(app, ["sequences", "tick", "--no-send", "--project", str(root)])
    assert r.exit_code == 3 and "LEADREFINERY_UNSUBSCRIBE_SECRET" in r.output
    monkeypatch.setenv("LEADREFINERY_UNSUBSCRIBE_SECRET", "s")
    r = runner.invoke(app, ["sequences", "tick", "--no-send", "--project", str(root)])
    assert r.exit_code == 0, r.output
    assert "enrolled 0" in r.output
