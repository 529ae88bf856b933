"""The CRM side of LabCloud: accounts, opportunities and what each campaign cost per month.

Opportunities exist for people who engaged with sales: everyone who asked to be contacted, every
abuser (sales is alerted while the abuse happens and calls them), and converters from companies of
100+ employees or with an executive title (sales-assisted deals). Won opportunities are exactly the
converted people among them, with the subscription's amount and date; converters without an
opportunity bought self-serve. Opportunities that would close after the export are still open.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np

from . import business as B
from .behaviour import DAY, Conversions, Observed

OPPORTUNITY_HEADER = (
    "opportunity_id",
    "email",
    "account",
    "created",
    "stage",
    "won",
    "amount",
    "closed",
    "owner",
)
CAMPAIGN_HEADER = ("campaign", "source", "medium", "period_start", "period_end", "cost")
ACCOUNT_HEADER = ("account_id", "domain", "name", "employees", "industry", "owner")
OPEN_STAGES = ("Discovery", "Demo", "Proposal", "Negotiation")


def _date(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def _owner(pop: B.Population, i: int) -> str:
    if pop.account[i] >= 0:
        return B.REPS[pop.accounts.owner[pop.account[i]]][0]
    region = B.COUNTRIES[pop.country[i]].region
    reps = [r[0] for r in B.REPS if r[1] == region]
    return reps[i % len(reps)]


def account_rows(pop: B.Population) -> Iterator[tuple[object, ...]]:
    acc = pop.accounts
    for i, aid in enumerate(B.account_ids(len(acc))):
        yield (
            aid,
            acc.domain[i],
            acc.name[i],
            int(acc.employees[i]),
            B.INDUSTRIES[acc.industry[i]],
            B.REPS[acc.owner[i]][0],
        )


def opportunity_rows(
    pop: B.Population, obs: Observed, conv: Conversions, export_ms: int, seed: int
) -> list[tuple[object, ...]]:
    rng = B.stream(seed, "crm")
    n = pop.n
    size = np.where(pop.company_size >= 0, pop.company_size, 0)
    assisted = conv.converted & ((size >= 100) | (pop.seniority >= 1.5))
    engaged = obs.contact_sales | pop.abuser | assisted
    created = np.where(
        obs.contact_ms >= 0,
        obs.contact_ms,
        np.where(
            obs.abuse_ms >= 0,
            obs.abuse_ms + DAY // 4,
            conv.conv_ms - (rng.uniform(3, 12, n) * DAY).astype(np.int64),
        ),
    )
    created = np.maximum(created, pop.signup_ms + 3_600_000)
    created = np.where(conv.converted, np.minimum(created, conv.conv_ms - 3_600_000), created)
    lost_close = created + (rng.uniform(5, 45, n) * DAY).astype(np.int64)
    stage_pick = rng.integers(0, len(OPEN_STAGES), n)
    expected = np.where(size >= 1000, 36000, np.where(size >= 100, 14388, 4788))
    rows: list[tuple[object, ...]] = []
    for k, i in enumerate(np.flatnonzero(engaged)):
        account = pop.accounts.name[pop.account[i]] if pop.account[i] >= 0 else ""
        if conv.converted[i]:
            stage, won, amount, closed = (
                "Closed Won",
                "true",
                int(conv.amount[i]),
                _date(int(conv.conv_ms[i])),
            )
        elif lost_close[i] <= export_ms:
            stage, won, amount, closed = (
                "Closed Lost",
                "false",
                int(expected[i]),
                _date(int(lost_close[i])),
            )
        else:
            stage, won, amount, closed = OPEN_STAGES[stage_pick[i]], "", int(expected[i]), ""
        rows.append(
            (
                f"opp-{k + 1:06d}",
                pop.email[i],
                account,
                _date(int(created[i])),
                stage,
                won,
                amount,
                closed,
                _owner(pop, int(i)),
            )
        )
    return rows


def campaign_rows(
    pop: B.Population, months: int, start: str, seed: int
) -> Iterator[tuple[object, ...]]:
    """Monthly spend per paid campaign: a fixed fee plus a cost per sign-up it brought, +-15 %."""
    rng = B.stream(seed, "campaign-costs")
    edges = B.month_starts(start, months)
    edge_ms = edges.astype("datetime64[ms]").astype(np.int64)
    month = np.searchsorted(edge_ms, pop.signup_ms, side="right") - 1
    for ci in B.CAMPAIGN_CHANNELS:
        c = B.CHANNELS[ci]
        signups = np.bincount(month[pop.channel == ci], minlength=months)
        noise = rng.uniform(0.85, 1.15, months)
        for m in range(months):
            cost = (c.monthly_fee + c.cost_per_signup * signups[m]) * noise[m]
            last_day = edges[m + 1] - np.timedelta64(1, "D")
            yield (c.campaign, c.source, c.medium, str(edges[m]), str(last_day), f"{cost:.2f}")
