"""`generate()`: draw the LabCloud business and write its files; `ceiling_auc()` on the truth."""

from __future__ import annotations

import contextlib
import csv
import ctypes
import ctypes.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from . import business as B
from . import crm
from .behaviour import Kind, add_conversions, finalise, simulate
from .conversion import sample_labels, true_probability
from .writer import write_csv, write_events

TRUTH_HEADER = ("user_id", "email", "true_probability", "converted", "is_abuser", "is_spurious")


@dataclass(frozen=True)
class GeneratedBusiness:
    """Where the files are and what is in them."""

    out_dir: Path
    events_path: Path
    opportunities_path: Path
    campaigns_path: Path
    accounts_path: Path
    truth_path: Path
    counts: dict[str, int] = field(default_factory=dict)
    ceiling_auc: float = float("nan")


def _give_back_memory() -> None:
    """Return freed heap pages to the OS (glibc keeps them after numpy frees big temporaries)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


def _check(people: int, months: int, abusers: float, start: str) -> None:
    if people < 1:
        raise InputError(f"people must be at least 1 (got {people})", field="people")
    if not 1 <= months <= 120:
        raise InputError(f"months must be between 1 and 120 (got {months})", field="months")
    if not 0.0 <= abusers <= 0.5:
        raise InputError(f"abusers is a share between 0 and 0.5 (got {abusers})", field="abusers")
    try:
        np.datetime64(start, "D")
    except ValueError as exc:
        raise InputError(
            f"start must be a date like 2026-03-01 (got {start!r})", field="start"
        ) from exc


def generate(
    out_dir: Path | str,
    *,
    people: int = 5000,
    months: int = 6,
    seed: int = 7,
    start: str = "2026-03-01",
    abusers: float = 0.03,
    gzip: bool = False,
) -> GeneratedBusiness:
    """Write the demo business into `out_dir`; the same arguments give byte-identical files."""
    _check(people, months, abusers, start)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    pop = B.make_population(seed, people, months, start, abusers)
    sim, obs = simulate(pop, seed)
    p = true_probability(pop, obs, seed)
    converted = sample_labels(p, seed)
    conv = add_conversions(sim, pop, obs, converted, seed)
    n_envs = sim.n_envs
    _give_back_memory()
    tbl = finalise(sim)
    _give_back_memory()
    export_ms = int(tbl.ts[-1])

    events_path = out / ("events.jsonl.gz" if gzip else "events.jsonl")
    write_events(events_path, tbl, pop, sim.bodies, seed, compress=gzip)
    kinds = np.bincount(tbl.kind, minlength=len(Kind))
    n_events = len(tbl)
    del tbl

    truth_path = out / "truth.csv"
    write_csv(
        truth_path,
        TRUTH_HEADER,
        zip(
            pop.user_id,
            pop.email,
            (f"{x:.6f}" for x in p),
            converted.astype(int).tolist(),
            pop.abuser.astype(int).tolist(),
            pop.spurious.astype(int).tolist(),
            strict=True,
        ),
    )
    accounts_path = out / "accounts.csv"
    n_accounts = write_csv(accounts_path, crm.ACCOUNT_HEADER, crm.account_rows(pop))
    opportunities_path = out / "opportunities.csv"
    opps = crm.opportunity_rows(pop, obs, conv, export_ms, seed)
    write_csv(opportunities_path, crm.OPPORTUNITY_HEADER, opps)
    campaigns_path = out / "campaigns.csv"
    n_campaign_rows = write_csv(
        campaigns_path, crm.CAMPAIGN_HEADER, crm.campaign_rows(pop, months, start, seed)
    )

    counts = {
        "events": n_events,
        "people": pop.n,
        "conversions": int(converted.sum()),
        "abusers": int(pop.abuser.sum()),
        "abuser_conversions": int((converted & pop.abuser).sum()),
        "spurious": int(pop.spurious.sum()),
        "aliases": int(pop.alias.sum()),
        "accounts": n_accounts,
        "environments": n_envs,
        "opportunities": len(opps),
        "opportunities_won": sum(1 for o in opps if o[5] == "true"),
        "campaign_rows": n_campaign_rows,
        **{f"kind:{k.name.lower()}": int(kinds[k]) for k in Kind},
    }
    return GeneratedBusiness(
        out_dir=out,
        events_path=events_path,
        opportunities_path=opportunities_path,
        campaigns_path=campaigns_path,
        accounts_path=accounts_path,
        truth_path=truth_path,
        counts=counts,
        ceiling_auc=ceiling_auc(truth_path),
    )


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half); nan without both classes."""
    score = np.asarray(score, dtype=float)
    label = np.asarray(label, dtype=bool)
    n_pos = int(label.sum())
    n_neg = len(label) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    avg_rank = upper - (counts - 1) / 2.0  # 1-based average rank of each distinct score
    ranks = avg_rank[inverse]
    return float((ranks[label].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def ceiling_auc(truth_csv: Path | str) -> float:
    """The AUC the true probabilities reach on the realised labels: the best any model can do."""
    probs: list[float] = []
    labels: list[bool] = []
    with open(truth_csv, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            probs.append(float(row["true_probability"]))
            labels.append(row["converted"].strip().lower() in ("1", "true"))
    return auc(np.array(probs), np.array(labels))
