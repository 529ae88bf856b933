"""Hand-off SLAs and refinery health: what happened to the leads routed to reps.

CRM feedback arrives as `lead_activities` rows: a CSV (`leadrefinery ingest FILE --kind
activities`: person or email, rep, kind, time, reason) or `record_activities` (what the REST
route will call). Kinds: accepted, rejected, touched (first touch: a call, an email, a meeting),
opportunity (created), won, lost. Won/lost opportunities and conversions from the `outcomes`
table count too.

The checks, over leads routed in the last `[sla].window_days` (`health` runs them all):

    check                  finding                         says
    first_touch_sla        first_touch_breach (per lead)   touched later than the grade's SLA,
                                                           or not yet and the SLA has passed
    never_touched          never_touched (per lead)        no activity at all `never_touched_days`
                                                           after the hand-off
    lost_after_handoff     lost_after_handoff (per lead)   opportunity lost within
                           qualification_too_loose         `lost_after_handoff_days`; the share of
                                                           opportunities lost that fast reaches
                                                           `too_loose_rate`
    win_rate               qualification_too_strict        won / decided (won + lost + rejected)
                                                           of routed leads above
                                                           `too_strict_win_rate`: good leads are
                                                           being kept from sales
    rejections             rejections (summary)            rep rejections by reason and rep

A time to first touch is measured from the hand-off (the assignment) to the first activity of
any kind the rep recorded on the lead (a rejection is a touch too: the rep looked at it).
Rates need `min_sample` decided leads; below that the summary says so and no finding is made.

Each `Finding` carries what an alert needs (`as_alert()` builds an outbox `AlertIn`): the
person, the rep, a stable key (so re-running the check does not alert twice), a title and data.
`rejection_labels` turns rep verdicts into labels for the predictive model.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa

from ..config import Settings
from ..errors import InputError
from ..ingest.tables import ACTIVITY_KINDS, parse_activity
from ..store.engine import Engine
from .clock import Clock, as_utc_naive, resolve_now

ACTIVITY_COLUMNS = ("activity_id", "person_id", "rep", "kind", "ts", "reason", "opportunity_id",
                    "amount", "source", "imported_at")


@dataclass
class Finding:
    check: str  # first_touch_breach | never_touched | lost_after_handoff | ...
    severity: str  # info | warning | critical
    title: str
    message: str
    at: datetime
    person_id: str | None = None
    rep: str | None = None
    team: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Stable identity: the same breach found again has the same key."""
        who = self.person_id or self.rep or self.team or "all"
        episode = self.data.get("assignment_id") or self.data.get("period") or ""
        return f"sla:{self.check}:{who}:{episode}"

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "severity": self.severity, "title": self.title,
                "message": self.message, "at": self.at, "person_id": self.person_id,
                "rep": self.rep, "team": self.team, "data": self.data, "key": self.key}

    def as_alert(self, default: str = "feed"):  # -> act.outbox.AlertIn
        """An outbox alert: a finding about one lead goes to its rep (when the rep is an email
        address), a refinery-wide one to `default` (an outbox address; the dashboard feed)."""
        from .outbox import AlertIn, Recipient, parse_address

        to = parse_address(self.rep) if self.rep and self.person_id else None
        to = to or parse_address(default) or Recipient("feed", "")
        return AlertIn.to(
            to, trigger_id=f"sla.{self.check}", trigger_kind="sla", title=self.title,
            person_id=self.person_id, severity=self.severity, key=self.key,
            change={"check": self.check}, reasons=[{"rule": self.check, "detail": self.message}],
            data=orjson.loads(orjson.dumps(self.data, default=str)), created_at=self.at,
        )


@dataclass
class HealthReport:
    at: datetime
    window_days: int
    summaries: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    def by_check(self, check: str) -> list[Finding]:
        return [f for f in self.findings if f.check == check]

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at, "window_days": self.window_days, "summaries": self.summaries,
                "findings": [f.as_dict() for f in self.findings]}


# -- feedback in ------------------------------------------------------------------------------


def record_activities(engine: Engine, rows: Iterable[Mapping[str, Any]], *, source: str = "api",
                      now: datetime | None = None, clock: Clock | None = None) -> int:
    """Store CRM feedback given as dicts (what `POST /v1/activities` will call).

    Each row: person_id, kind (or a synonym such as "Closed Won"), at; optional rep, reason,
    opportunity_id, amount, activity_id (an id already stored is replaced). -> rows stored.
    """
    now = resolve_now(now, clock)
    cols: dict[str, list[Any]] = {c: [] for c in ACTIVITY_COLUMNS}
    for i, r in enumerate(rows):
        pid = str(r.get("person_id") or "").strip()
        if not pid:
            raise InputError(f"activity #{i}: person_id is required", field="person_id")
        try:
            kind = parse_activity(str(r.get("kind") or ""))
        except ValueError as exc:
            raise InputError(f"activity #{i}: {exc}", field="kind") from None
        at = r.get("at")
        if isinstance(at, str):
            try:
                at = datetime.fromisoformat(at.replace("Z", "+00:00"))
            except ValueError:
                raise InputError(f"activity #{i}: at {at!r} is not an ISO-8601 time",
                                 field="at") from None
        if not isinstance(at, datetime):
            raise InputError(f"activity #{i}: at (the time it happened) is required", field="at")
        rep = r.get("rep")
        values = {
            "activity_id": str(r.get("activity_id") or f"{source}-{pid}-{kind}-{at.isoformat()}"),
            "person_id": pid, "rep": str(rep).lower() if rep else None, "kind": kind,
            "ts": as_utc_naive(at), "reason": r.get("reason"),
            "opportunity_id": r.get("opportunity_id"),
            "amount": float(r["amount"]) if r.get("amount") is not None else None,
            "source": source, "imported_at": now,
        }
        for c in ACTIVITY_COLUMNS:
            cols[c].append(values[c])
    if not cols["activity_id"]:
        return 0
    types = {"ts": pa.timestamp("us"), "imported_at": pa.timestamp("us"), "amount": pa.float64()}
    with engine.transaction():
        engine.execute("DELETE FROM lead_activities WHERE activity_id = ANY(?)",
                       [cols["activity_id"]])
        engine.append("lead_activities", pa.table(
            {c: pa.array(v, types.get(c, pa.string())) for c, v in cols.items()}))
    return len(cols["activity_id"])


# -- reading ----------------------------------------------------------------------------------


@dataclass
class _Lead:
    """One routed lead and what became of it."""

    person_id: str
    rep: str
    team: str | None
    grade: str | None
    assigned_at: datetime
    assignment_id: str
    first_touch: datetime | None = None
    accepted: datetime | None = None
    rejected: datetime | None = None
    reject_reason: str | None = None
    opportunity: datetime | None = None
    won: datetime | None = None
    lost: datetime | None = None


def _routed(engine: Engine, since: datetime, now: datetime) -> dict[str, _Lead]:
    """The latest hand-off of each person routed in [since, now], with its feedback."""
    leads: dict[str, _Lead] = {}
    for pid, rep, team, grade, at, aid in engine.query(
        "SELECT person_id, rep, team, grade, assigned_at, assignment_id FROM assignments "
        "WHERE assigned_at >= ? AND assigned_at <= ? ORDER BY assigned_at, assignment_id",
        [since, now],
    ):
        leads[pid] = _Lead(pid, rep, team, grade, at, aid)
    if not leads:
        return leads
    ids = sorted(leads)
    for pid, kind, at, reason in engine.query(
        "SELECT person_id, kind, ts, reason FROM lead_activities "
        "WHERE person_id = ANY(?) AND ts <= ? ORDER BY ts, activity_id", [ids, now],
    ):
        lead = leads[pid]
        lead.first_touch = lead.first_touch or at
        if kind == "accepted":
            lead.accepted = lead.accepted or at
        elif kind == "rejected":
            lead.rejected, lead.reject_reason = at, reason
        elif kind == "opportunity":
            lead.opportunity = lead.opportunity or at
        elif kind == "won":
            lead.won = lead.won or at
        elif kind == "lost":
            lead.lost = lead.lost or at
    # outcomes from the CRM's opportunity / conversion imports count as decisions too
    for pid, kind, created, won, closed in engine.query(
        "SELECT person_id, kind, created_at, won, closed_at FROM outcomes "
        "WHERE person_id = ANY(?) AND coalesce(closed_at, created_at) <= ? "
        "ORDER BY coalesce(closed_at, created_at)", [ids, now],
    ):
        lead = leads[pid]
        when = closed or created
        if kind == "opportunity":
            lead.opportunity = lead.opportunity or created
        if when is None or when < lead.assigned_at:
            continue
        if kind == "conversion" or won is True:
            lead.won = lead.won or when
        elif won is False:
            lead.lost = lead.lost or when
    return leads


def _hours(delta: timedelta) -> float:
    return round(delta.total_seconds() / 3600, 2)


# -- the checks -------------------------------------------------------------------------------


def _sla_hours(settings: Settings, grade: str | None) -> float:
    cfg = settings.sla
    return cfg.first_touch_hours.get(grade or "", cfg.default_first_touch_hours)


def first_touch(engine: Engine, settings: Settings, *, now: datetime | None = None,
                clock: Clock | None = None) -> tuple[dict[str, Any], list[Finding]]:
    """Time to first touch against the SLA of each grade, and leads never touched."""
    now = resolve_now(now, clock)
    cfg = settings.sla
    leads = _routed(engine, now - timedelta(days=cfg.window_days), now)
    per_grade: dict[str, dict[str, Any]] = {}
    findings: list[Finding] = []
    hours_by_grade: dict[str, list[float]] = {}
    for lead in leads.values():
        grade = lead.grade or "?"
        sla = _sla_hours(settings, lead.grade)
        deadline = lead.assigned_at + timedelta(hours=sla)
        g = per_grade.setdefault(grade, {"sla_hours": sla, "routed": 0, "touched": 0,
                                         "within_sla": 0, "breached": 0, "untouched": 0})
        g["routed"] += 1
        base = {"assignment_id": lead.assignment_id, "grade": lead.grade, "sla_hours": sla,
                "assigned_at": lead.assigned_at, "deadline": deadline}
        if lead.first_touch is not None:
            took = max(timedelta(), lead.first_touch - lead.assigned_at)
            g["touched"] += 1
            hours_by_grade.setdefault(grade, []).append(_hours(took))
            if lead.first_touch <= deadline:
                g["within_sla"] += 1
                continue
            g["breached"] += 1
            findings.append(Finding(
                "first_touch_breach", "warning",
                f"{lead.person_id}: first touch after {_hours(took)} h (SLA {sla:g} h)",
                f"grade {grade} lead routed to {lead.rep} at {lead.assigned_at:%Y-%m-%d %H:%M} "
                f"was first touched {_hours(took - timedelta(hours=sla))} h past its SLA",
                now, lead.person_id, lead.rep, lead.team,
                {**base, "first_touch": lead.first_touch, "hours_to_touch": _hours(took)}))
            continue
        g["untouched"] += 1
        age = now - lead.assigned_at
        if now > deadline:
            g["breached"] += 1
            findings.append(Finding(
                "first_touch_breach",
                "critical" if lead.grade in settings.routing.parity_grades else "warning",
                f"{lead.person_id}: not touched {_hours(age)} h after hand-off (SLA {sla:g} h)",
                f"grade {grade} lead routed to {lead.rep} at {lead.assigned_at:%Y-%m-%d %H:%M} "
                f"has no recorded touch; its SLA passed {_hours(now - deadline)} h ago",
                now, lead.person_id, lead.rep, lead.team,
                {**base, "first_touch": None, "hours_since_handoff": _hours(age)}))
        if age >= timedelta(days=cfg.never_touched_days):
            findings.append(Finding(
                "never_touched", "critical",
                f"{lead.person_id}: never touched in {age.days} days",
                f"routed to {lead.rep} on {lead.assigned_at:%Y-%m-%d}; no activity since — "
                "reassign it or tell us why (reject with a reason)",
                now, lead.person_id, lead.rep, lead.team,
                {**base, "days_since_handoff": round(age.total_seconds() / 86400, 1)}))
    for grade, g in per_grade.items():
        hs = hours_by_grade.get(grade, [])
        g["median_hours_to_touch"] = statistics.median(hs) if hs else None
        g["within_sla_rate"] = round(g["within_sla"] / g["routed"], 3) if g["routed"] else None
    return {"by_grade": dict(sorted(per_grade.items())), "routed": len(leads)}, findings


def qualification(engine: Engine, settings: Settings, *, now: datetime | None = None,
                  clock: Clock | None = None) -> tuple[dict[str, Any], list[Finding]]:
    """Too loose (opportunities lost right after hand-off) and too strict (win rate too high)."""
    now = resolve_now(now, clock)
    cfg = settings.sla
    leads = _routed(engine, now - timedelta(days=cfg.window_days), now)
    findings: list[Finding] = []
    quick = timedelta(days=cfg.lost_after_handoff_days)
    opportunities = [x for x in leads.values() if x.opportunity or x.won or x.lost]
    lost_fast = [x for x in opportunities
                 if x.lost and not x.won and x.lost - x.assigned_at <= quick]
    for x in lost_fast:
        days = round((x.lost - x.assigned_at).total_seconds() / 86400, 1)  # type: ignore[operator]
        findings.append(Finding(
            "lost_after_handoff", "info",
            f"{x.person_id}: opportunity lost {days} days after hand-off",
            f"grade {x.grade or '?'} lead routed to {x.rep} on {x.assigned_at:%Y-%m-%d} was lost "
            f"on {x.lost:%Y-%m-%d}",  # type: ignore[union-attr]
            now, x.person_id, x.rep, x.team,
            {"assignment_id": x.assignment_id, "grade": x.grade, "days_to_loss": days}))
    loose_rate = len(lost_fast) / len(opportunities) if opportunities else None
    decided = [x for x in leads.values() if x.won or x.lost or x.rejected]
    won = [x for x in decided if x.won]
    win_rate = len(won) / len(decided) if decided else None
    period = f"{(now - timedelta(days=cfg.window_days)):%Y-%m-%d}..{now:%Y-%m-%d}"
    summary = {
        "routed": len(leads), "opportunities": len(opportunities),
        "lost_after_handoff": len(lost_fast),
        "lost_after_handoff_rate": round(loose_rate, 3) if loose_rate is not None else None,
        "decided": len(decided), "won": len(won),
        "win_rate": round(win_rate, 3) if win_rate is not None else None,
        "min_sample": cfg.min_sample, "period": period,
        "by_grade": _win_by_grade(decided),
    }
    if loose_rate is not None and len(opportunities) >= cfg.min_sample \
            and loose_rate >= cfg.too_loose_rate:
        findings.append(Finding(
            "qualification_too_loose", "warning",
            f"qualification too loose: {loose_rate:.0%} of opportunities lost within "
            f"{cfg.lost_after_handoff_days:g} days of hand-off",
            f"{len(lost_fast)} of {len(opportunities)} opportunities from routed leads were lost "
            f"within {cfg.lost_after_handoff_days:g} days (threshold {cfg.too_loose_rate:.0%}): "
            "leads reach sales before they are ready — raise the qualifying grade or score",
            now, data={"period": period, "rate": round(loose_rate, 3),
                       "threshold": cfg.too_loose_rate, "lost": len(lost_fast),
                       "opportunities": len(opportunities)}))
    elif opportunities and len(opportunities) < cfg.min_sample:
        summary["note_loose"] = (f"only {len(opportunities)} opportunities; need "
                                 f"{cfg.min_sample} to judge")
    if win_rate is not None and len(decided) >= cfg.min_sample \
            and win_rate > cfg.too_strict_win_rate:
        findings.append(Finding(
            "qualification_too_strict", "warning",
            f"qualification too strict: routed leads win {win_rate:.0%} of the time",
            f"{len(won)} of {len(decided)} decided routed leads were won (threshold "
            f"{cfg.too_strict_win_rate:.0%}): good leads are probably kept from sales — "
            "lower the qualifying grade or score",
            now, data={"period": period, "win_rate": round(win_rate, 3),
                       "threshold": cfg.too_strict_win_rate, "won": len(won),
                       "decided": len(decided)}))
    elif decided and len(decided) < cfg.min_sample:
        summary["note_strict"] = (f"only {len(decided)} decided leads; need {cfg.min_sample} "
                                  "to judge")
    return summary, findings


def _win_by_grade(decided: Sequence[_Lead]) -> dict[str, Any]:
    out: dict[str, dict[str, Any]] = {}
    for x in decided:
        g = out.setdefault(x.grade or "?", {"decided": 0, "won": 0})
        g["decided"] += 1
        g["won"] += bool(x.won)
    for g in out.values():
        g["win_rate"] = round(g["won"] / g["decided"], 3)
    return dict(sorted(out.items()))


def rejections(engine: Engine, settings: Settings, *, now: datetime | None = None,
               clock: Clock | None = None) -> dict[str, Any]:
    """Rep rejections in the window by reason and by rep."""
    now = resolve_now(now, clock)
    since = now - timedelta(days=settings.sla.window_days)
    rows = engine.query(
        "SELECT coalesce(nullif(trim(lower(reason)), ''), '(no reason)') AS reason, rep, "
        "count(DISTINCT person_id) FROM lead_activities "
        "WHERE kind = 'rejected' AND ts >= ? AND ts <= ? GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2",
        [since, now],
    )
    by_reason: dict[str, int] = {}
    by_rep: dict[str, dict[str, int]] = {}
    for reason, rep, n in rows:
        by_reason[reason] = by_reason.get(reason, 0) + n
        by_rep.setdefault(rep or "(unknown)", {})[reason] = n
    return {"total": sum(by_reason.values()),
            "by_reason": dict(sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))),
            "by_rep": by_rep}


def rejection_labels(engine: Engine, settings: Settings, *, as_of: datetime | None = None,
                     clock: Clock | None = None) -> dict[str, int]:
    """person_id -> label from the rep's verdict, known at `as_of` (point in time):
    1 = accepted, turned into an opportunity or won; 0 = rejected (for a reason that speaks
    about the lead) or lost. Rejections for `[sla].label_ignore_reasons` (duplicate, existing
    customer, ...) give no label. The latest verdict wins."""
    as_of = resolve_now(as_of, clock)
    ignore = {r.strip().lower() for r in settings.sla.label_ignore_reasons}
    labels: dict[str, int] = {}
    for pid, kind, reason in engine.query(
        "SELECT person_id, kind, reason FROM lead_activities "
        "WHERE kind IN ('accepted', 'rejected', 'opportunity', 'won', 'lost') AND ts <= ? "
        "ORDER BY ts, activity_id", [as_of],
    ):
        if kind == "rejected":
            if (reason or "").strip().lower() in ignore:
                labels.pop(pid, None)
                continue
            labels[pid] = 0
        elif kind == "lost":
            labels[pid] = 0
        else:
            labels[pid] = 1
    return labels


def health(engine: Engine, settings: Settings, *, now: datetime | None = None,
           clock: Clock | None = None) -> HealthReport:
    """Every check at once: summaries for the dashboard and findings for the outbox."""
    now = resolve_now(now, clock)
    report = HealthReport(at=now, window_days=settings.sla.window_days)
    summary, findings = first_touch(engine, settings, now=now)
    report.summaries["first_touch"] = summary
    report.findings += findings
    summary, findings = qualification(engine, settings, now=now)
    report.summaries["qualification"] = summary
    report.findings += findings
    report.summaries["rejections"] = rejections(engine, settings, now=now)
    report.summaries["activity_kinds"] = list(ACTIVITY_KINDS)
    return report


def alerts_for(findings: Iterable[Finding], *, default: str = "feed") -> list:
    """Findings -> outbox alerts (`act.outbox.enqueue(engine, alerts_for(report.findings))`)."""
    return [f.as_alert(default) for f in findings]
