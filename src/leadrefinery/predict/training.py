"""Training from the store: examples, a time-ordered split, the model card, versioned files.

An example is (person, as_of = first_seen + k days for k in `offsets`); its label is whether the
person converted (a won outcome) within `horizon` days after as_of. People converted before
as_of are left out, and so are examples whose horizon reaches past the end of the data (their
label is not known yet). The split is by time: the newest ~20 % of as_of times are the test part;
the training part only keeps examples whose whole label window ends before the test part begins,
so no training label is read from the test period. Beyond `MAX_EXAMPLES` examples, those of a
stable random share of people are used (`sample_people`; the card says so).

`predict` caches factors for the top of the ranked list only; `explain_people` computes them
for any other person when a list or a person page shows them.

Files (in the project): `models/predictive/<version>/` holds `booster.txt`, `manifest.json`,
`card.json`, `card.md` and `features.json`; `models/predictive/published` names the published
version. Older versions stay on disk for comparison. Retrain on a schedule with
`leadrefinery train --publish` (e.g. from cron); nothing here schedules itself.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ..store.engine import Engine
from .baselines import LogisticBaseline, OdooNaiveBayes
from .buckets import BucketScheme, holdout_draw
from .card import ModelCard
from .errors import ModelFileError, TrainingDataError
from .features import FeatureSpec, build_features, describer_for, rule_categories
from .metrics import evaluate
from .model import LeadModel

MODELS_DIR = Path("models") / "predictive"
PUBLISHED = "published"
DEFAULT_OFFSETS = (1.0, 3.0, 7.0, 14.0, 28.0, 56.0)
MAX_EXAMPLES = 100_000  # training on 200 k people stays within a minute on 2 cores


def conversion_times(engine: Engine) -> pd.DataFrame:
    """person_id -> first won outcome time."""
    return engine.query_arrow(
        """SELECT person_id, min(coalesce(closed_at, created_at)) AS converted_at
           FROM outcomes WHERE won AND person_id IS NOT NULL GROUP BY person_id"""
    ).to_pandas()


def data_end(engine: Engine) -> datetime:
    end = engine.scalar("SELECT max(ts) FROM events")
    if end is None:
        raise TrainingDataError("the store holds no events; ingest some first")
    return end + timedelta(microseconds=1)


def make_examples(
    engine: Engine, *, horizon_days: float = 30, offsets: tuple[float, ...] = DEFAULT_OFFSETS,
    end: datetime | None = None,
) -> pd.DataFrame:
    """person_id, as_of, offset_days, label, converted_at for every labelled (person, offset)."""
    end = end or data_end(engine)
    people = engine.query_arrow(
        "SELECT person_id, first_seen FROM people WHERE first_seen IS NOT NULL"
    ).to_pandas()
    conv = conversion_times(engine)
    people = people.merge(conv, on="person_id", how="left")
    horizon = pd.Timedelta(days=horizon_days)
    parts = []
    for k in offsets:
        part = people.copy()
        part["as_of"] = part["first_seen"] + pd.Timedelta(days=k)
        part["offset_days"] = k
        parts.append(part)
    ex = pd.concat(parts, ignore_index=True)
    known = ex["as_of"] + horizon <= pd.Timestamp(end)
    not_yet = ex["converted_at"].isna() | (ex["converted_at"] >= ex["as_of"])
    ex = ex[known & not_yet].copy()
    ex["label"] = (ex["converted_at"].notna() & (ex["converted_at"] < ex["as_of"] + horizon)).astype(int)
    return ex.sort_values(["as_of", "person_id"], kind="stable").reset_index(drop=True)


def sample_people(ex: pd.DataFrame, max_examples: int | None) -> pd.DataFrame:
    """At most ~`max_examples` examples: all of them, or every example of a stable random share
    of people (a hash of the person id, so retraining picks the same people). Beyond a few
    hundred thousand rows a boosted model gains little, and feature SQL and training time grow
    with every row."""
    if max_examples is None or len(ex) <= max_examples:
        return ex
    share = max_examples / len(ex)
    keep = {p for p in ex["person_id"].unique() if holdout_draw(p, seed="training-sample") < share}
    return ex[ex["person_id"].isin(keep)].reset_index(drop=True)


def time_split(ex: pd.DataFrame, horizon_days: float, test_fraction: float = 0.2):
    """(train mask, test mask, cutoff): test = newest as_of; train labels end before cutoff."""
    cutoff = ex["as_of"].quantile(1 - test_fraction)
    test = (ex["as_of"] >= cutoff).to_numpy()
    train = (ex["as_of"] + pd.Timedelta(days=horizon_days) <= cutoff).to_numpy()
    return train, test, cutoff


@dataclass
class TrainResult:
    version: str
    path: Path
    card: ModelCard
    published: bool
    seconds: float
    examples: int
    test: pd.DataFrame  # the test examples: person_id, as_of, offset_days, label, probability

    def summary(self) -> dict[str, Any]:
        m = self.card.metrics
        return {
            "version": self.version, "path": str(self.path), "published": self.published,
            "examples": self.examples, "auc": m["auc"], "pr_auc": m["pr_auc"],
            "capture_20": m["capture_20"], "brier": m["brier"], "verdict": self.card.verdict,
            "baselines": {b["model"]: b["auc"] for b in self.card.baselines},
            "seconds": round(self.seconds, 1),
        }


def train(
    engine: Engine,
    root: Path,
    *,
    horizon_days: float = 30,
    offsets: tuple[float, ...] = DEFAULT_OFFSETS,
    exclude_events: list[str] | None = None,
    publish: bool = False,
    n_jobs: int = 1,
    version: str | None = None,
    max_examples: int | None = MAX_EXAMPLES,
) -> TrainResult:
    started = time.perf_counter()
    ex = make_examples(engine, horizon_days=horizon_days, offsets=offsets)
    all_examples = len(ex)
    ex = sample_people(ex, max_examples)
    if len(ex) < 200 or ex["label"].sum() < 20:
        raise TrainingDataError(
            f"{len(ex)} labelled examples with {int(ex['label'].sum())} conversions; need at "
            "least 200 and 20 (import outcomes, or wait for more history)"
        )
    train_mask, test_mask, cutoff = time_split(ex, horizon_days)
    spec = FeatureSpec.learn(engine, ex[train_mask], exclude_events=exclude_events or [])
    spec.rule_categories = rule_categories(engine)
    X = build_features(engine, ex, spec)
    # the rule model's view only if history has snapshots for most training examples
    rule_cols = [c for c in X.columns if c.startswith("rule")]
    if rule_cols and X.loc[train_mask, "rule_score"].notna().mean() < 0.5:
        spec.use_rule_scores = False
        X = X.drop(columns=rule_cols)
    y = ex["label"].to_numpy()
    X_tr, y_tr, X_te, y_te = X[train_mask], y[train_mask], X[test_mask], y[test_mask]
    if y_te.sum() == 0 or y_te.sum() == len(y_te):
        raise TrainingDataError("the test part has only one outcome; need more history")
    model = LeadModel(n_jobs=n_jobs, describer=describer_for(list(X.columns)))
    model.fit(X_tr, y_tr, order=ex.loc[train_mask, "as_of"].to_numpy())
    p_te = model.predict_proba(X_te)[:, 1]
    baselines = {"LeadModel": evaluate(y_te, p_te)}
    for name, est in (("logistic regression", LogisticBaseline()),
                      ("Odoo naive Bayes", OdooNaiveBayes())):
        try:
            baselines[name] = evaluate(y_te, est.fit(X_tr, y_tr).predict_proba(X_te)[:, 1])
        except Exception as exc:  # a baseline that cannot fit is reported, not fatal
            baselines[f"{name} (failed: {type(exc).__name__})"] = baselines["LeadModel"]
    if "rule_score" in X_te and X_te["rule_score"].notna().mean() > 0.5:
        rs = X_te["rule_score"].fillna(X_te["rule_score"].min()).to_numpy()
        baselines["rule score"] = evaluate(y_te, rs)
    card = ModelCard.build(
        model, y_te, p_te, name="predictive lead model",
        test_window=[ex.loc[test_mask, "as_of"].min(), ex.loc[test_mask, "as_of"].max()],
        person_ids=ex.loc[test_mask, "person_id"].tolist(), baselines=baselines,
        notes=[
            f"label: converted within {horizon_days:g} days after as_of "
            f"(as_of = first seen + {', '.join(f'{o:g}' for o in offsets)} days)",
            f"test part: as_of >= {cutoff}; training labels all end before it",
            *([f"examples of a stable random {len(ex) / all_examples:.0%} of people "
               f"({len(ex):,} of {all_examples:,}), to keep training within a minute"]
              if len(ex) < all_examples else []),
        ],
    )
    version = version or datetime.now(UTC).strftime("v%Y%m%d-%H%M%S")
    path = root / MODELS_DIR / version
    model.save(path, card=card)
    (path / "features.json").write_text(
        json.dumps({"spec": spec.to_dict(), "horizon_days": horizon_days,
                    "offsets": list(offsets)}, indent=2),
        encoding="utf-8",
    )
    _record_model(engine, version, path, card, horizon_days)
    if publish:
        publish_version(engine, root, version)
    test = ex.loc[test_mask, ["person_id", "as_of", "offset_days", "label"]].reset_index(drop=True)
    test["probability"] = p_te
    return TrainResult(version, path, card, publish, time.perf_counter() - started, len(ex), test)


def _record_model(engine: Engine, version: str, path: Path, card: ModelCard, horizon: float) -> None:
    engine.execute("DELETE FROM predictive_models WHERE version = ?", [version])
    engine.append(
        "predictive_models",
        pa.table({
            "version": [version], "created_at": [datetime.now(UTC).replace(tzinfo=None)],
            "path": [str(path)], "horizon_days": [float(horizon)],
            "auc": [float(card.metrics["auc"])], "published": [False],
            "card": [json.dumps(card.to_dict(), default=str)],
        }),
    )


def publish_version(engine: Engine, root: Path, version: str) -> None:
    path = root / MODELS_DIR / version
    if not (path / "manifest.json").is_file():
        raise ModelFileError(f"no predictive model version {version!r}", path=str(path))
    (root / MODELS_DIR / PUBLISHED).write_text(version + "\n", encoding="utf-8")
    engine.execute("UPDATE predictive_models SET published = (version = ?)", [version])


def published_version(root: Path) -> str:
    pointer = root / MODELS_DIR / PUBLISHED
    if not pointer.is_file():
        raise ModelFileError(
            "no published predictive model; run `leadrefinery train --publish`", path=str(pointer)
        )
    return pointer.read_text(encoding="utf-8").strip()


def load_version(root: Path, version: str | None = None) -> tuple[str, LeadModel, FeatureSpec]:
    version = version or published_version(root)
    path = root / MODELS_DIR / version
    if not (path / "manifest.json").is_file() or not (path / "features.json").is_file():
        raise ModelFileError(f"the files of predictive model version {version!r} are missing; "
                             "`leadrefinery train --publish` makes a new one", path=str(path))
    meta = json.loads((path / "features.json").read_text(encoding="utf-8"))
    spec = FeatureSpec.from_dict(meta["spec"])
    model = LeadModel.load(path)
    model.describer = describer_for(model.schema_.columns)
    return version, model, spec


def predict(
    engine: Engine, root: Path, *, as_of: datetime | None = None, version: str | None = None,
    explain_top: int = 500, surge_min: int = 5,
) -> pd.DataFrame:
    """Score everyone not yet converted as of `as_of` (default: end of data) into `predictions`."""
    version, model, spec = load_version(root, version)
    as_of = as_of or data_end(engine)
    people = engine.query_arrow(
        "SELECT person_id FROM people WHERE first_seen IS NOT NULL AND first_seen < ?", [as_of]
    ).to_pandas()
    conv = conversion_times(engine)
    done = set(conv.loc[conv["converted_at"] < pd.Timestamp(as_of), "person_id"])
    people = people[~people["person_id"].isin(done)].reset_index(drop=True)
    people["as_of"] = pd.Timestamp(as_of)
    X = build_features(engine, people, spec)
    p = model.predict_proba(X)[:, 1]
    scheme = BucketScheme().fit(p)
    out = scheme.score(people["person_id"].tolist(), p)
    # behavioural surge: a low-bucket lead whose last 7 days jump against their previous 21
    n7, prev = X["events_n7"].to_numpy(), X["events_prev21"].to_numpy()
    out["surge"] = (np.isin(out["bucket"], ["C", "D"]) & (n7 >= surge_min)
                    & (n7 >= 3.0 * np.maximum(prev / 3.0, 1.0)))
    order = np.argsort(-p, kind="stable")
    # exact contributions cost ~1 ms a row: cache them for the top of the list and the surges
    # only (what sales looks at first); `explain_people` does any other row when it is shown
    explain = set(order[:explain_top].tolist()) | set(np.flatnonzero(out["surge"]).tolist())
    idx = np.array(sorted(explain), dtype=int)
    factors = [None] * len(out)
    if idx.size:
        for i, e in zip(idx, model.explain(X.iloc[idx]), strict=True):
            d = e.to_dict()
            factors[i] = json.dumps({"positive": d["positive"], "negative": d["negative"]},
                                    default=str)
    out["factors"] = factors
    out["model_version"] = version
    out["as_of"] = pd.Timestamp(as_of)
    out["created_at"] = pd.Timestamp(datetime.now(UTC).replace(tzinfo=None))
    out = out.iloc[order].reset_index(drop=True)
    engine.execute("DELETE FROM predictions")
    engine.append("predictions", pa.Table.from_pandas(out, preserve_index=False))
    return out


def explain_people(
    engine: Engine, root: Path, person_ids: list[str], *, version: str | None = None
) -> dict[str, dict[str, Any]]:
    """{person_id: {"positive": [...], "negative": [...]}} for people scored in `predictions`
    whose factors `predict` did not cache (it explains only the top of the list): computed now,
    for these people only, from features as of the time they were scored."""
    ids = [str(i) for i in person_ids]
    if not ids:
        return {}
    marks = ", ".join("?" for _ in ids)
    people = engine.query_arrow(
        f"SELECT person_id, as_of, model_version FROM predictions WHERE person_id IN ({marks})",
        ids,
    ).to_pandas()
    if version is None and len(people):
        version = str(people["model_version"].iloc[0])
    people = people[people["model_version"] == version].reset_index(drop=True)
    if not len(people):
        return {}
    _, model, spec = load_version(root, version)
    X = build_features(engine, people[["person_id", "as_of"]], spec)
    return {
        pid: {"positive": e.to_dict()["positive"], "negative": e.to_dict()["negative"]}
        for pid, e in zip(people["person_id"], model.explain(X), strict=True)
    }
