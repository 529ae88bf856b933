"""The REST API (`/api/...`): what the dashboard pages show, as JSON, for scripts and CRMs.

Authenticate with the dashboard's session cookie, HTTP Basic (`user:password`) or an API token
(`Authorization: Bearer lr_...`, from `leadrefinery users token NAME`). A rep sees only their own
leads; someone else's person id answers 404, as if it did not exist. OpenAPI: /docs, /openapi.json.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from ..errors import InputError
from ..model.explain import explain
from ..report import abuse as abuse_report
from ..report import campaigns as campaign_report
from ..report import model_report
from ..report import overview as overview_report
from ..report import person as person_report
from ..report.export import FORMATS, LAYOUTS, csv_chunks, export_rows
from ..report.leads import SORTS, LeadFilter, facets, lead_page
from .auth import Forbidden, User, require_api_user
from .dashboard_state import DashboardState

router = APIRouter(prefix="/api", tags=["REST API (dashboard data)"])
UserDep = Annotated[User, Depends(require_api_user)]


def _st(request: Request) -> DashboardState:
    return request.app.state.dashboard


def _require(user: User, what: str) -> None:
    if not user.can(what):
        raise Forbidden(f"your role ({user.role}) cannot read {what}")


def _filter(grade, bucket, stage, segment, owner, source, since, until, q, abuse, mql,
            sort) -> LeadFilter:
    if sort not in SORTS:
        raise InputError(f"sort must be one of {', '.join(SORTS)}", field="sort")
    return LeadFilter(grade=grade or [], bucket=bucket or [], stage=stage or [],
                      segment=segment or [], owner=owner, source=source, since=since,
                      until=until, q=q, abuse=abuse, mql=mql, sort=sort)


class LeadQuery:
    """The lead-list filters, shared by /api/leads and /api/export."""

    def __init__(
        self,
        grade: Annotated[list[str] | None, Query(description="Grades (repeatable).")] = None,
        bucket: Annotated[list[str] | None, Query(description="Predictive buckets.")] = None,
        stage: Annotated[list[str] | None, Query(description="Stages; `-` = none yet.")] = None,
        segment: Annotated[list[str] | None, Query(description="Segments (all must hold).")] = None,
        owner: Annotated[str | None, Query(description="Owner (rep e-mail / CRM owner); "
                                           "`-` = unowned.")] = None,
        source: Annotated[str | None, Query(description="First-touch source.")] = None,
        since: Annotated[datetime | None, Query(description="First seen at or after.")] = None,
        until: Annotated[datetime | None, Query(description="First seen before.")] = None,
        q: Annotated[str | None, Query(description="Search e-mail, name, company.")] = None,
        abuse: Annotated[bool | None, Query(description="Only flagged / only clean.")] = None,
        mql: Annotated[bool | None, Query(description="Only MQLs / only non-MQLs.")] = None,
        sort: Annotated[str, Query(description="score | recent | new | probability")] = "score",
    ) -> None:
        self.filter = _filter(grade, bucket, stage, segment, owner, source, since, until, q,
                              abuse, mql, sort)


@router.get("/me", summary="Who you are logged in as")
def me(user: UserDep) -> dict[str, Any]:
    return {"name": user.name, "role": user.role, "rep": user.rep, "owners": list(user.owners),
            "sees_all": not user.limited, "via": user.via}


@router.get("/leads", summary="The ranked lead list (one page), each lead with its reasons")
def leads(request: Request, user: UserDep, query: Annotated[LeadQuery, Depends()],
          page: Annotated[int, Query(ge=1)] = 1,
          per_page: Annotated[int, Query(ge=1, le=1000)] = 50) -> dict[str, Any]:
    st = _st(request)
    result = lead_page(st.engine, st.model(), query.filter, page=page, per_page=per_page,
                       scope=user.scope)
    return {**result.as_dict(), "filter": query.filter.as_query()}


@router.get("/leads/facets", summary="The values each lead filter can take")
def lead_facets(request: Request, user: UserDep) -> dict[str, Any]:
    st = _st(request)
    return facets(st.engine, st.model(), user.scope)


@router.get("/export", summary="The ranked list as CSV or JSON lines (CRM upload layouts)",
            response_class=StreamingResponse)
def export(request: Request, user: UserDep, query: Annotated[LeadQuery, Depends()],
           format: Annotated[str, Query(description="csv | json")] = "csv",  # noqa: A002
           layout: Annotated[str, Query(description="generic | salesforce")] = "generic",
           changed_since: Annotated[datetime | None, Query(
               description="Only leads new or changed since then.")] = None):
    if format not in FORMATS or layout not in LAYOUTS:
        raise InputError(f"format: {' | '.join(FORMATS)}; layout: {' | '.join(LAYOUTS)}",
                         field="format")
    st = _st(request)
    rows = export_rows(st.engine, st.model(), layout=layout, since=changed_since,
                       flt=query.filter, scope=user.scope)
    if format == "csv":
        return StreamingResponse(csv_chunks(rows, layout), media_type="text/csv; charset=utf-8")
    import json

    def lines():
        for r in rows:
            yield json.dumps(r, default=str, ensure_ascii=False) + "\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.get("/people/{person}", summary="A lead: profile, account, score breakdown, stage, "
            "predictive probability and factors, alerts, assignments, recent events")
def person(request: Request, person: str, user: UserDep,
           events: Annotated[int, Query(ge=0, le=500)] = 50) -> dict[str, Any]:
    st = _st(request)
    return person_report.person_report(st.engine, st.model(), person, scope=user.scope,
                                       events=events)


@router.get("/people/{person}/scores", summary="A lead's score history (every stored run)")
def scores(request: Request, person: str, user: UserDep) -> list[dict[str, Any]]:
    st = _st(request)
    pid = person_report.find(st.engine, person, user.scope)
    return person_report.score_history(st.engine, st.model(), pid)


@router.get("/people/{person}/explanation",
            summary="Why the lead has its score, recomputed live (optionally as of a time)")
def explanation(request: Request, person: str, user: UserDep,
                as_of: datetime | None = None,
                events: Annotated[int, Query(ge=0, le=500)] = 20) -> dict[str, Any]:
    st = _st(request)
    pid = person_report.find(st.engine, person, user.scope)
    return explain(st.engine, st.model(), pid, as_of=as_of, events=events)


@router.get("/people/{person}/timeline", summary="A lead's events, newest first")
def person_timeline(request: Request, person: str, user: UserDep,
                    before: datetime | None = None,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
    st = _st(request)
    pid = person_report.find(st.engine, person, user.scope)
    return person_report.timeline(st.engine, pid, before=before, limit=limit)


@router.get("/alerts", summary="The alerts outbox: counts, newest alerts, the dashboard feed")
def alerts(request: Request, user: UserDep,
           limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
    st = _st(request)
    if user.limited:  # a rep: only alerts about their own leads
        from ..report.common import scope_sql

        cond, params = scope_sql(user.scope)
        rows = st.engine.query(
            "SELECT al.alert_id, al.created_at, al.person_id, al.trigger_id, al.trigger_kind, "
            "al.severity, al.title, al.channel, al.recipient, al.status, al.attempts, "
            "al.delivered_at FROM alerts al JOIN people p ON p.person_id = al.person_id "
            f"LEFT JOIN accounts a ON a.account_id = p.account_id WHERE {cond} "
            "ORDER BY al.created_at DESC LIMIT ?", [*params, limit])
        cols = ("alert_id", "created_at", "person_id", "trigger_id", "trigger_kind", "severity",
                "title", "channel", "recipient", "status", "attempts", "delivered_at")
        return {"recent": [dict(zip(cols, r, strict=True)) for r in rows]}
    return model_report.alerts_status(st.engine, limit=limit)


@router.get("/overview", summary="Grades over time, MQLs by source, conversion by grade, "
            "stage funnel")
def overview(request: Request, user: UserDep,
             days: Annotated[int, Query(ge=7, le=730)] = 90) -> dict[str, Any]:
    st = _st(request)
    return overview_report.overview(st.engine, st.model(), scope=user.scope, days=days)


@router.get("/campaigns", summary="Leads, good leads, conversions and cost per good lead / per "
            "conversion by source, medium, campaign or referral code")
def campaigns(request: Request, user: UserDep,
              by: Annotated[str, Query(description="source | medium | campaign | "
                                       "referral_code")] = "campaign",
              since: datetime | None = None, until: datetime | None = None) -> dict[str, Any]:
    _require(user, "campaigns")
    st = _st(request)
    dash = st.project.settings.dashboard
    return campaign_report.campaigns(st.engine, st.model(), by=by, since=since, until=until,
                                     good_grades=dash.good_grades,
                                     good_buckets=dash.good_buckets, scope=user.scope)


@router.get("/abuse", summary="Abuse flags with evidence; who is active now and what they run")
def abuse(request: Request, user: UserDep) -> dict[str, Any]:
    st = _st(request)
    return abuse_report.abuse(st.engine, st.model(), scope=user.scope,
                              active_minutes=st.project.settings.dashboard.active_minutes)


@router.get("/model", summary="The rule model, its cached backtest, the predictive model card")
def model(request: Request, user: UserDep) -> dict[str, Any]:
    _require(user, "model")
    st = _st(request)
    return {"rule_model": model_report.model_summary(st.model()),
            "backtest": model_report.cached_backtest(st.project.root),
            "backtest_running": st.backtest.running,
            "predictive_card": model_report.predictive_card(st.project, st.engine)}
