"""`Project`: the one entry object. It owns the settings, the store and the models.

The CLI, the HTTP API and the dashboard are thin shells over it:

    from leadrefinery import Project
    p = Project.init("acme")            # or Project.find() from inside a project
    p.ingest(["events.jsonl"])
    p.close()
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from .config import DEFAULT_PROJECT_FILE, PROJECT_FILE, Settings, load_settings
from .errors import ConfigError, ProjectNotFound
from .ingest import Ingestor, Progress
from .ingest.loader import IngestReport
from .store import Engine, open_engine

SERVE_LOCK = "serve.json"  # written by `serve`: which process owns the store, and its URL


class Project:
    def __init__(
        self,
        root: str | Path,
        *,
        overrides: dict[str, Any] | None = None,
        read_only: bool = False,
    ) -> None:
        self.root = Path(root).resolve()
        if not (self.root / PROJECT_FILE).exists():
            raise ProjectNotFound(
                f"{self.root} is not a Lead Refinery project (no {PROJECT_FILE}); "
                "create one with `leadrefinery init DIR`"
            )
        self.settings: Settings = load_settings(self.root, overrides)
        self.read_only = read_only

    # -- finding and creating -------------------------------------------------------------

    @classmethod
    def find(cls, start: str | Path | None = None, **kwargs: Any) -> Project:
        """The project containing `start` (default: the working directory), searched upward."""
        here = Path(start or os.getcwd()).resolve()
        for d in (here, *here.parents):
            if (d / PROJECT_FILE).exists():
                return cls(d, **kwargs)
        raise ProjectNotFound(
            f"no {PROJECT_FILE} in {here} or any folder above it; "
            "run `leadrefinery init DIR` or pass --project DIR"
        )

    @classmethod
    def init(
        cls,
        root: str | Path,
        *,
        name: str | None = None,
        write_key: str | None = None,
        exist_ok: bool = False,
    ) -> Project:
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        path = root / PROJECT_FILE
        if path.exists() and not exist_ok:
            raise ConfigError(f"{path} already exists", file=str(path))
        if not path.exists():
            path.write_text(
                DEFAULT_PROJECT_FILE.format(
                    name=name or root.resolve().name,
                    write_key=write_key or secrets.token_urlsafe(18),
                ),
                encoding="utf-8",
            )
        project = cls(root)
        project.engine  # noqa: B018 - creates the store and its schema
        return project

    # -- the store ------------------------------------------------------------------------

    def _owner_hint(self) -> str:
        lock = self.root / SERVE_LOCK
        if not lock.exists():
            return ""
        try:
            info = json.loads(lock.read_text())
        except ValueError:
            return ""
        return f" (`leadrefinery serve`, pid {info.get('pid')}, at {info.get('url')})"

    @cached_property
    def engine(self) -> Engine:
        return open_engine(
            self.settings, self.root, read_only=self.read_only, owner_hint=self._owner_hint()
        )

    @cached_property
    def ingestor(self) -> Ingestor:
        return Ingestor(self.engine, self.settings)

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.close()
            del self.__dict__["engine"]
        self.__dict__.pop("ingestor", None)

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- ingestion ------------------------------------------------------------------------

    def ingest(
        self,
        paths: Iterable[str | Path],
        *,
        kind: str | None = None,
        mapping: str | None = None,
        columns: dict[str, str] | None = None,
        progress: Progress | None = None,
    ) -> IngestReport:
        report = IngestReport()
        for path in expand_paths(paths):
            report += self.ingestor.ingest_file(
                path, kind=kind, mapping=mapping, columns=columns, progress=progress
            )
        return report

    def quarantine(self, *, status: str = "open", limit: int = 100) -> list[dict]:
        cols = ["id", "source", "line", "item", "message_id", "kind", "reason", "raw", "status"]
        rows = self.engine.query(
            f"SELECT {', '.join(cols)} FROM quarantine "
            "WHERE (? = 'all' OR status = ?) ORDER BY id LIMIT ?",
            [status, status, limit],
        )
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def counts(self) -> dict[str, int]:
        from .store.schema import TABLES

        return {t: self.engine.scalar(f"SELECT count(*) FROM {t}") for t in TABLES if t != "meta"}

    # -- the scoring model (model/) -------------------------------------------------------

    def model_path(self, name: str | None = None) -> Path:
        """The model file: `name` as a path, or as a file listed in [model] files (with or
        without .yaml), default the published one."""
        cfg = self.settings.model
        if name is None:
            return self.root / cfg.published
        candidates = [Path(name), self.root / name, self.root / f"{name}.yaml"]
        candidates += [self.root / f for f in cfg.files if Path(f).stem == name]
        for c in candidates:
            if c.is_file():
                return c
        return self.root / name

    def model(self, name: str | None = None):  # -> model.Model
        """The scoring model, validated (a ModelError names file, line and rule if not)."""
        from .model import load_model

        return load_model(self.model_path(name))

    def score(
        self,
        as_of: datetime | None = None,
        model: str | None = None,
        restrict: str | list[str] | None = None,
    ):  # -> model.scoring.ScoreRun
        """Score everyone as of `as_of` (default now) and store the snapshot."""
        from .model.scoring import score

        return score(self.engine, self.model(model), as_of=as_of, restrict=restrict)

    def explain(
        self,
        person: str,
        *,
        as_of: datetime | None = None,
        model: str | None = None,
        events: int = 20,
    ) -> dict:
        from .model.explain import explain

        return explain(self.engine, self.model(model), person, as_of=as_of, events=events)

    def leads(
        self,
        *,
        grade: list[str] | None = None,
        stage: list[str] | None = None,
        segment: list[str] | None = None,
        top: int | None = 50,
        model: str | None = None,
    ) -> list[dict]:
        from .model.explain import leads

        return leads(
            self.engine, self.model(model), grade=grade, stage=stage, segment=segment, top=top
        )

    def backtest(
        self,
        *,
        start: datetime,
        end: datetime,
        model: str | None = None,
        step_days: float = 7,
        horizon_days: float = 30,
        compare: bool = True,
    ) -> dict:
        """Replay `model` (default: the published one) over history; with `compare`, the
        published model side by side."""
        from .errors import ModelError
        from .report.backtest import backtest

        candidate = self.model(model)
        baseline = None
        if compare and self.model_path(None).is_file():
            try:
                baseline = self.model(None)
            except ModelError:
                baseline = None
        return backtest(
            self.engine,
            candidate,
            start=start,
            end=end,
            step_days=step_days,
            horizon_days=horizon_days,
            baseline=baseline,
        )

    # -- predictive scoring (predict/) ---------------------------------------------------

    def train(
        self,
        *,
        horizon_days: float = 30,
        publish: bool = False,
        offsets: tuple[float, ...] | None = None,
        n_jobs: int = 1,  # LightGBM threads wait on each other on shared cores
    ):  # -> TrainResult
        """Train a predictive model on this store's history; see predict/training.py."""
        from .predict.training import DEFAULT_OFFSETS, train

        return train(
            self.engine,
            self.root,
            horizon_days=horizon_days,
            publish=publish,
            offsets=tuple(offsets or DEFAULT_OFFSETS),
            exclude_events=list(self.settings.ingest.conversion_events),
            n_jobs=n_jobs,
        )

    def predict(
        self, *, as_of: datetime | None = None, version: str | None = None, explain_top: int = 500
    ):  # -> pandas.DataFrame
        """Score everyone with the published predictive model into table `predictions`."""
        from .predict.training import predict

        return predict(
            self.engine, self.root, as_of=as_of, version=version, explain_top=explain_top
        )

    def predictions(
        self, *, bucket: list[str] | None = None, top: int | None = 50, person: str | None = None
    ) -> list[dict]:
        cols = [
            "person_id",
            "probability",
            "bucket",
            "holdout",
            "surge",
            "factors",
            "model_version",
            "as_of",
        ]
        where, params = ["TRUE"], []
        if bucket:
            where.append(f"bucket IN ({', '.join('?' for _ in bucket)})")
            params += list(bucket)
        if person:
            where.append("person_id = ?")
            params.append(person)
        limit = f" LIMIT {int(top)}" if top else ""
        rows = self.engine.query(
            f"SELECT {', '.join(cols)} FROM predictions WHERE {' AND '.join(where)} "
            f"ORDER BY probability DESC{limit}",
            params,
        )
        out = []
        for r in rows:
            d = dict(zip(cols, r, strict=True))
            d["factors"] = json.loads(d["factors"]) if d["factors"] else None
            out.append(d)
        return out

    def predictive_card(self, version: str | None = None) -> dict:
        from .predict.training import MODELS_DIR, published_version

        version = version or published_version(self.root)
        return json.loads((self.root / MODELS_DIR / version / "card.json").read_text())

    def icp(self, *, min_count: int = 20, top: int = 10) -> dict:
        from .predict.icp import icp

        return icp(
            self.engine,
            exclude_events=list(self.settings.ingest.conversion_events),
            min_count=min_count,
            top=top,
        )


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Expand globs (`logs/*.jsonl.gz`) and keep plain paths; a glob matching nothing is an error."""
    from glob import glob

    from .errors import InputError

    out: list[Path] = []
    for p in paths:
        text = str(p)
        if any(c in text for c in "*?["):
            matches = sorted(glob(text, recursive=True))
            if not matches:
                raise InputError(f"no file matches {text!r}")
            out += [Path(m) for m in matches]
        else:
            out.append(Path(text))
    return out
