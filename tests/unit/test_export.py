"""CRM export: generic and Salesforce-style layouts, CSV and JSON lines, `--since`, and the
push of score changes to a webhook through the outbox."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from leadrefinery import Project
from leadrefinery.cli import app as cli
from leadrefinery.errors import InputError
from leadrefinery.report.common import reference_time
from leadrefinery.report.export import (
    GENERIC,
    SALESFORCE,
    export_rows,
    push_changes,
    rating,
    write_csv,
    write_json,
)
from leadrefinery.report.leads import LeadFilter

from .test_report import PEOPLE, demo_copy


@pytest.fixture
def demo(tmp_path):
    p = Project(demo_copy(tmp_path))
    yield p
    p.close()


def read_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_generic_csv(demo):
    buf = io.StringIO()
    n = write_csv(export_rows(demo.engine, demo.model()), buf, "generic")
    rows = read_csv(buf.getvalue())
    assert n == len(rows) == PEOPLE
    assert list(rows[0]) == list(GENERIC)
    assert [int(r["rank"]) for r in rows] == list(range(1, PEOPLE + 1))
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert all(r["grade"] for r in rows) and {r["mql"] for r in rows} <= {"true", "false"}
    assert any(" | " in r["reasons"] for r in rows)
    flagged = [r for r in rows if r["abuse"]]
    assert flagged and all(r["abuse"] for r in flagged)
    owned = [r for r in rows if r["owner"]]
    assert owned and all("@" in r["owner"] for r in owned)


def test_salesforce_layout(demo):
    m = demo.model()
    buf = io.StringIO()
    write_csv(export_rows(demo.engine, m, layout="salesforce",
                          flt=LeadFilter(grade=["1", "2", "3"])), buf, "salesforce")
    rows = read_csv(buf.getvalue())
    assert rows and list(rows[0]) == list(SALESFORCE)
    for r in rows:
        assert r["LastName"] and r["Company"]  # required on the Lead object
        assert r["Rating"] == {"1": "Hot", "2": "Hot", "3": "Warm"}[r["LR_Grade__c"]]
        assert r["Status"] == "Open - Not Contacted" and r["LR_Person_Id__c"]
        assert len(r["LR_Reasons__c"]) <= 1000 and " | " not in r["LR_Reasons__c"]
        assert 0 <= float(r["LR_Score__c"]) <= 100
    assert rating("7", m) == "Cold" and rating(None, m) == "Cold"
    with pytest.raises(InputError):
        list(export_rows(demo.engine, m, layout="hubspot"))


def test_json_lines(demo):
    buf = io.StringIO()
    n = write_json(export_rows(demo.engine, demo.model(), limit=25), buf)
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert n == len(lines) == 25
    assert isinstance(lines[0]["reasons"], list) and isinstance(lines[0]["segments"], list)
    assert lines[0]["rank"] == 1 and lines[0]["score"] >= lines[-1]["score"]


def test_since_keeps_only_changes(demo):
    e, m = demo.engine, demo.model()
    runs = [r[0] for r in e.query("SELECT as_of FROM score_runs ORDER BY as_of")]
    assert len(runs) == 2
    everyone = list(export_rows(e, m))
    changed = list(export_rows(e, m, since=runs[0] + timedelta(hours=1)))
    assert 0 < len(changed) < len(everyone)
    before = {p: (g, s, st) for p, g, s, st in e.query(
        "SELECT person_id, grade, score, stage FROM scores s JOIN score_runs r USING (run_id) "
        "WHERE r.as_of = ?", [runs[0]])}
    for r in changed:
        old = before.get(r["person_id"])
        assert old is None or old[0] != r["grade"] or old[2] != r["stage"] or \
            abs(old[1] - r["score"]) >= 0.5 or r["first_seen"] >= (runs[0] + timedelta(hours=1)
                                                                   ).isoformat()
    # before any run: everyone counts as changed
    assert len(list(export_rows(e, m, since=runs[0] - timedelta(days=400)))) == len(everyone)


def test_push_score_changes_through_the_outbox(demo):
    e, m = demo.engine, demo.model()
    settings = demo.settings.model_copy(deep=True)
    with pytest.raises(InputError):
        push_changes(e, m, settings, webhook="crm")
    from leadrefinery.config import WebhookEndpoint

    settings.alerts.webhooks["crm"] = WebhookEndpoint(url="http://127.0.0.1:9/hook")
    runs = [r[0] for r in e.query("SELECT as_of FROM score_runs ORDER BY as_of")]
    ids = push_changes(e, m, settings, webhook="crm", since=runs[0] + timedelta(hours=1))
    assert ids
    rows = e.query("SELECT trigger_kind, channel, recipient, status, payload FROM alerts "
                   "WHERE alert_id IN (SELECT unnest(?))", [ids])
    assert len(rows) == len(ids)
    kind, channel, recipient, status, payload = rows[0]
    assert (kind, channel, recipient, status) == ("score_changed", "webhook", "crm", "pending")
    body = json.loads(payload)
    assert body["change"]["grade"] and body["link"].endswith(body["data"]["crm"]["LR_Person_Id__c"])
    again = push_changes(e, m, settings, webhook="crm", since=runs[0] + timedelta(hours=1))
    assert sorted(again) == sorted(ids)  # same changes: the same alerts, stored once
    assert e.scalar("SELECT count(*) FROM alerts WHERE trigger_kind = 'score_changed'") == len(ids)


def test_cli_export(demo, tmp_path):
    root = str(demo.root)
    demo.close()
    out = tmp_path / "leads.csv"
    runner = CliRunner()
    r = runner.invoke(cli, ["export", "--format", "csv", "--layout", "salesforce", "--out",
                            str(out), "--mql", "--project", root])
    assert r.exit_code == 0, r.output
    rows = read_csv(out.read_text(encoding="utf-8"))
    assert rows and {x["LR_MQL__c"] for x in rows} == {"true"}
    r = runner.invoke(cli, ["export", "--format", "json", "--limit", "5", "--project", root])
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in r.stdout.strip().splitlines()]
    assert len(lines) == 5 and lines[0]["rank"] == 1
    p = Project(root, read_only=True)
    ref = reference_time(p.engine)
    p.close()
    r = runner.invoke(cli, ["export", "--since", ref.isoformat(), "--format", "json",
                            "--project", root])
    assert r.exit_code == 0 and r.stdout.strip() == ""  # nothing changed after the last run
    r = runner.invoke(cli, ["export", "--format", "xml", "--project", root])
    assert r.exit_code == 2
    r = runner.invoke(cli, ["export", "--push", "nohook", "--limit", "1", "--project", root])
    assert r.exit_code == 2 and "nohook" in r.output


def test_rest_export(demo):
    import base64
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from leadrefinery.api.app import create_app

    auth = {"Authorization": "Basic " + base64.b64encode(b"analyst:demo").decode()}
    with TestClient(create_app(demo)) as c:
        r = c.get("/api/export?layout=salesforce&grade=1&grade=2", headers=auth)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        rows = read_csv(r.text)
        assert rows and {x["LR_Grade__c"] for x in rows} <= {"1", "2"}
        r = c.get("/api/export?format=json&per_page=3", headers=auth)
        assert len(r.text.strip().splitlines()) == PEOPLE
