"""The model page: the rule model and its backtest, the predictive model card, the alerts outbox.

    model_summary(model) -> dict                         rules, grades, stages of the rule model
    run_backtest(project, weeks=12) -> dict              replays the model and caches the report
    cached_backtest(root) -> dict | None                 the last cached report (fast: a file)
    predictive_card(project, engine) -> dict | None      the published model card, if any
    alerts_status(engine, limit=30) -> dict              outbox counts, newest alerts, the feed

A backtest replays the model at every cut-off, which takes seconds to minutes on a large store,
so pages never run it while rendering: it runs on request (or from the CLI) and is cached in
`reports/backtest.json` in the project folder.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..model.load import Model
from ..store.engine import Engine
from .common import reference_time, rows

if TYPE_CHECKING:
    from ..project import Project

CACHE = Path("reports") / "backtest.json"


def model_summary(model: Model) -> dict[str, Any]:
    s = model.spec
    cats: dict[str, int] = {}
    for r in s.rules:
        cat = str(r.category)
        cats[cat] = cats.get(cat, 0) + 1
    return {
        "name": model.name, "version": model.version, "file": str(model.file),
        "description": getattr(s, "description", None),
        "rules": len(s.rules), "rules_by_category": cats, "abuse_rules": len(s.abuse),
        "segments": list(s.segments),
        "grades": [{"grade": lv.grade, "min": getattr(lv, "min", None),
                    "description": getattr(lv, "description", None)}
                   for lv in (getattr(s.grades, "levels", None) or [])] if s.grades else [],
        "grade_method": s.grades.method if s.grades else None,
        "mql": list(s.grades.mql) if s.grades else [],
        "stages": list(s.stages.order) if s.stages else [],
    }


def cached_backtest(root: Path) -> dict[str, Any] | None:
    path = Path(root) / CACHE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None


def run_backtest(project: Project, *, weeks: int = 12, horizon_days: float = 30,
                 step_days: float = 7) -> dict[str, Any]:
    """Backtest the published model over the last `weeks` of history whose conversions are
    known (cut-offs end `horizon_days` before the newest event), and cache the report."""
    engine = project.engine
    ref = reference_time(engine)
    end = ref - timedelta(days=horizon_days)
    start = end - timedelta(weeks=weeks)
    first = engine.scalar("SELECT min(ts) FROM events")
    if first is not None and start < first:
        start = first + timedelta(days=1)
    started = time.perf_counter()
    report = project.backtest(start=start, end=max(start, end), step_days=step_days,
                              horizon_days=horizon_days, compare=False)
    report["computed_at"] = datetime.now().isoformat(timespec="seconds")
    report["seconds"] = time.perf_counter() - started
    path = project.root / CACHE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, default=str, indent=1), encoding="utf-8")
    tmp.replace(path)
    return report


def predictive_card(project: Project | None, engine: Engine) -> dict[str, Any] | None:
    """The published predictive model's card (from `project.predictive_card()` when the predict
    package provides it), as a plain dict; None when no predictive model is published."""
    get = getattr(project, "predictive_card", None) if project is not None else None
    card = None
    if callable(get):
        try:
            card = get()
        except Exception:  # noqa: BLE001 - no published model (its own error class)
            card = None
    if card is None:
        return None
    if hasattr(card, "to_dict"):
        card = card.to_dict()
    return dict(card) if isinstance(card, dict) else None


def alerts_status(engine: Engine, *, limit: int = 30) -> dict[str, Any]:
    from ..act import outbox

    counts = outbox.status_counts(engine)
    by_channel = rows(("channel", "status", "n"), engine.query(
        "SELECT channel, status, count(*) FROM alerts GROUP BY 1, 2 ORDER BY 1, 2"))
    recent = [{k: v for k, v in a.as_dict().items() if k != "payload"}
              for a in outbox.list_alerts(engine, limit=limit)]
    feed = outbox.feed(engine, limit=20)
    return {"counts": counts, "by_channel": by_channel, "recent": recent, "feed": feed}
