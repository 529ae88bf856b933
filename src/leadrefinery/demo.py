"""`leadrefinery demo`: a generated trial business taken through the whole refinery.

Generate (seeded) → ingest events, accounts, CRM opportunities and campaign costs → publish the
demo scoring model → score → (train the predictive model) → ranked leads. Each step is the same
call a user's own project would make; nothing here is demo-only logic but the data.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
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
    model_src = Path(__file__).parent / "sample" / "model.yaml"
    if model_src.exists() and hasattr(project, "score"):
        shutil.copy(model_src, root / "model.yaml")
        say("scoring with the demo model (model.yaml)")
        project.score()
        result.steps.append("score")
    return result
