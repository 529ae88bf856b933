"""`leadrefinery demo`: a generated trial business taken through the whole refinery.

Generate (seeded) → ingest events, accounts, CRM opportunities and campaign costs → publish the
demo scoring model → score → (train the predictive model) → ranked leads. Each step is the same
call a user's own project would make; nothing here is demo-only logic but the data.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from .ingest.loader import IngestReport
from .project import Project

Say = Callable[[str], None]


@dataclass
class DemoResult:
    project: Project
    data_dir: Path
    ingest: IngestReport
    steps: list[str] = field(default_factory=list)
    ceiling_auc: float | None = None
    logins: list[tuple[str, str, str]] = field(default_factory=list)


WEEKLY_RUNS = 6


def run_demo(
    root: Path, *, people: int = 5000, months: int = 6, seed: int = 7, reset: bool = True,
    say: Say = print,
) -> DemoResult:
    from .sample import generate

    root = Path(root)
    if reset and root.exists():
        if not (root / "refinery.toml").exists():
            raise FileExistsError(f"{root} exists and is not a Lead Refinery project; not touching it")
        shutil.rmtree(root)
    project = Project.init(root, name="labcloud-demo", write_key="demo-write-key", exist_ok=True)
    data = root / "data"
    say(f"generating a trial business: {people:,} signups over {months} months (seed {seed})")
    biz = generate(data, people=people, months=months, seed=seed)
    report = IngestReport()
    for path, kind in [
        (biz.accounts_path, "accounts"),
        (biz.events_path, "events"),
        (biz.opportunities_path, "opportunities"),
        (biz.campaigns_path, "campaigns"),
    ]:
        say(f"ingesting {path.name}")
        report += project.ingest([path], kind=kind)
    result = DemoResult(project, data, report, ceiling_auc=biz.ceiling_auc)
    shutil.copy(Path(__file__).parent / "sample" / "model.yaml", root / "model.yaml")
    # score as of weekly cut-offs up to the newest event, so the grade history (and its charts)
    # has something to show; the last run is "now" for this data
    newest = project.engine.scalar("SELECT max(ts) FROM events")
    cutoffs = [newest - timedelta(weeks=w) for w in range(WEEKLY_RUNS - 1, -1, -1)]
    for i, as_of in enumerate(cutoffs, 1):
        say(f"scoring with the demo model as of {as_of:%Y-%m-%d} ({i}/{len(cutoffs)})")
        project.score(as_of=as_of)
    result.steps.append("score")
    say("training the predictive model on the conversions so far (models/predictive/)")
    project.train(publish=True)
    project.predict(as_of=newest)
    result.steps.append("predict")
    from .api.auth import ensure_demo_users  # dashboard logins, all with password "demo"

    result.logins = ensure_demo_users(project.root, project.engine)
    return result
