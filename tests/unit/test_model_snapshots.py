"""The SQL the demo model compiles to, per engine, kept as reviewed snapshot files.

A change to the compiler or to `sample/model.yaml` that changes the SQL fails here until the
snapshots are regenerated and the diff reviewed:

    LEADREFINERY_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/unit/test_model_snapshots.py
    git diff tests/snapshots/
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path

import pytest

from leadrefinery.model import build_plan, load_model
from leadrefinery.model.dialects import ENGINES

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "src" / "leadrefinery" / "sample" / "model.yaml"
SNAPSHOTS = ROOT / "tests" / "snapshots"
AS_OF = datetime(2026, 6, 1)
UPDATE = os.environ.get("LEADREFINERY_UPDATE_SNAPSHOTS") == "1"


def compiled(engine: str, *, restricted: bool = False) -> str:
    model = load_model(DEMO)
    plan = build_plan(model, as_of=AS_OF, restrict="touched_people" if restricted else None)
    head = (
        f"-- demo model {model.spec.version} compiled for {engine}, as of {AS_OF:%Y-%m-%d}"
        f"{', restricted to the people in table touched_people' if restricted else ''}.\n"
        "-- Regenerate: LEADREFINERY_UPDATE_SNAPSHOTS=1 pytest tests/unit/test_model_snapshots.py\n"
    )
    return head + plan.sql(engine) + ";\n"


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("restricted", [False, True], ids=["full", "restricted"])
def test_compiled_sql_matches_the_snapshot(engine: str, restricted: bool) -> None:
    name = f"demo_model.{engine}{'.restricted' if restricted else ''}.sql"
    path = SNAPSHOTS / name
    sql = compiled(engine, restricted=restricted)
    if UPDATE or not path.exists():
        path.write_text(sql, encoding="utf-8")
        if not UPDATE:
            pytest.fail(f"wrote the missing snapshot {path}; review and commit it")
    assert sql == path.read_text(encoding="utf-8"), (
        f"the compiled SQL for {engine} changed; if that is intended, regenerate with "
        "LEADREFINERY_UPDATE_SNAPSHOTS=1 and review `git diff tests/snapshots/`"
    )


def test_restriction_is_one_predicate_on_the_same_query() -> None:
    """The real-time path runs the very same SQL, only with `person_id IN (ids)` added (and
    the accounts' traits read for those people's accounts only)."""
    model = load_model(DEMO)
    full = build_plan(model, as_of=AS_OF).sql("duckdb", pretty=False)
    part = build_plan(model, as_of=AS_OF, restrict="touched_people").sql("duckdb", pretty=False)
    pred = re.compile(r" AND (\w+\.)?person_id IN \(SELECT person_id FROM touched_people\)")
    accounts = " AND account_id IN (SELECT p_account_id FROM lr_person0)"
    assert len(pred.findall(part)) >= 3
    assert part.count(accounts) == 1
    assert pred.sub("", part).replace(accounts, "") == full
