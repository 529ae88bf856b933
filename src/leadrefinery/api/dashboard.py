"""The web dashboard: server-rendered pages (Jinja2) over the `report` queries.

    /login  /logout            sign in and out (CSRF-protected forms)
    /leads                     the ranked list, filters, pagination; /leads.csv the current view
    /people/{person_id}        one lead: profile, account, breakdown, stage, predictive, alerts,
                               timeline (the link alerts carry: [alerts].person_url)
    /overview                  grades over time, MQLs by source, conversion by grade, funnel
    /campaigns                 leads, good leads, conversions and cost per good lead by key
    /abuse                     flags with evidence, who is active now and what they run
    /model                     rule model, backtest, predictive model card, alerts outbox

Every page needs a login (api/auth.py); a rep sees only their own leads. Charts are Vega-Lite
specs rendered by the vendored bundle in /static/vendor.
"""

from __future__ import annotations

import contextlib
import json
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from ..errors import AuthError, InputError, LeadRefineryError, NotFound
from ..report import abuse as abuse_report
from ..report import campaigns as campaign_report
from ..report import model_report
from ..report import overview as overview_report
from ..report import person as person_report
from ..report.common import reference_time, utcnow
from ..report.export import csv_chunks, export_rows
from ..report.leads import LeadFilter, facets, lead_page
from . import dashboard_charts as charts
from .auth import LOGIN_CSRF_COOKIE, SESSION_COOKIE, User, check_csrf
from .dashboard_state import DashboardState

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

router = APIRouter(include_in_schema=False)

CSP = ("default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
       "form-action 'self'")


# -- template helpers -------------------------------------------------------------------------


def _num(v: Any, digits: int = 0) -> str:
    if v is None:
        return "–"
    return f"{v:,.{digits}f}"


def _pct(v: Any, digits: int = 1) -> str:
    return "–" if v is None else f"{100 * v:.{digits}f}%"


def _money(v: Any) -> str:
    if v is None:
        return "–"
    return f"${v:,.0f}" if abs(v) >= 100 else f"${v:,.2f}"


def _dt(v: Any, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if v is None or v == "":
        return "–"
    if isinstance(v, str):
        try:
            v = datetime.fromisoformat(v)
        except ValueError:
            return v
    return v.strftime(fmt)


def _ago(v: Any, ref: datetime | None = None) -> str:
    if v is None:
        return "–"
    if isinstance(v, str):
        try:
            v = datetime.fromisoformat(v)
        except ValueError:
            return v
    s = ((ref or utcnow()) - v).total_seconds()
    if s < 0:
        return v.strftime("%Y-%m-%d")
    for unit, n in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= n:
            return f"{int(s // n)} {unit} ago"
    return "just now"


def _val(v: Any) -> str:
    """An evidence value: whole numbers without decimals, times to the second."""
    if isinstance(v, bool) or v is None:
        return str(v).lower() if isinstance(v, bool) else "–"
    if isinstance(v, int | float):
        return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}"
    if isinstance(v, str) and len(v) >= 19 and v[4] == "-" and v[10] in " T":
        return v[:19].replace("T", " ")
    return str(v)


def _chart(spec: dict, label: str = "chart") -> Markup:
    """A chart placeholder: the spec as JSON in a data attribute, rendered by dashboard.js."""
    payload = json.dumps(spec, separators=(",", ":")).replace("&", "&amp;").replace(
        "'", "&#39;").replace("<", "&lt;")
    return Markup(f"<div class=\"chart\" role=\"img\" aria-label=\"{label}\" "
                  f"data-spec='{payload}'></div>")


def _json(v: Any) -> str:
    return json.dumps(v, default=str, ensure_ascii=False)


def make_env() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(val=_val, num=_num, pct=_pct, money=_money, dt=_dt, ago=_ago,
                       tojson_text=_json)
    env.globals.update(chart=_chart, charts=charts)
    return env


ENV = make_env()


def state(request: Request) -> DashboardState:
    return request.app.state.dashboard


def _headers(started: float | None = None) -> dict[str, str]:
    h = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY",
         "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
         "Cache-Control": "no-store"}
    if started is not None:
        h["Server-Timing"] = f"app;dur={1000 * (time.perf_counter() - started):.1f}"
    return h


def render(request: Request, template: str, *, user: User | None, status: int = 200,
           started: float | None = None, **ctx: Any) -> HTMLResponse:
    st = state(request)
    html = ENV.get_template(template).render(
        request=request, user=user, project=st.project.settings.project.name,
        path=request.url.path, **ctx)
    return HTMLResponse(html, status_code=status, headers=_headers(started))


def _login_redirect(request: Request) -> RedirectResponse:
    nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?{urlencode({'next': nxt})}", status_code=303)


def page_user(request: Request, what: str) -> User | Response:
    """The signed-in user allowed to see `what`; else a redirect to log in, or a 403 page."""
    user = request.app.state.auth.user_for(request)
    if user is None or user.via in ("basic", "token"):
        return _login_redirect(request) if user is None else _forbidden(request, user)
    if not user.can(what):
        return _forbidden(request, user)
    return user


def page_model(request: Request, user: User):
    """The published model, or an explanatory page when there is none (or it is invalid)."""
    try:
        return state(request).model(), None
    except LeadRefineryError as exc:
        return None, render(request, "error.html", user=user, status=503,
                            title="No scoring model yet",
                            message=f"{exc} — write model.yaml (see `leadrefinery validate`), "
                                    "then `leadrefinery score`.")


def open_page(request: Request, what: str):
    """What every page needs first: (user, state, model, None), or (…, the response to send
    instead) when the visitor must log in, may not see `what`, or there is no model yet."""
    user = page_user(request, what)
    if not isinstance(user, User):
        return None, None, None, user
    model, problem = page_model(request, user)
    return user, state(request), model, problem


def _forbidden(request: Request, user: User) -> HTMLResponse:
    return render(request, "error.html", user=user, status=403, title="Not allowed",
                  message=f"Your role ({user.role}) cannot open this page.")


def _not_found(request: Request, user: User, message: str) -> HTMLResponse:
    return render(request, "error.html", user=user, status=404, title="Not found",
                  message=message)


def _safe_next(nxt: str | None) -> str:
    if not nxt or not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt:
        return "/"
    return nxt


# -- login / logout ---------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def home(request: Request):
    user = request.app.state.auth.user_for(request)
    if user is None:
        return _login_redirect(request)
    return RedirectResponse("/overview" if user.can("campaigns") else "/leads", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None, error: str | None = None):  # noqa: A002
    import secrets

    token = secrets.token_urlsafe(24)
    no_users = not request.app.state.auth.users()
    resp = render(request, "login.html", user=None, csrf=token, next=_safe_next(next),
                  error=error, no_users=no_users, status=401 if error else 200)
    resp.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict",
                    secure=request.app.state.auth.secure_cookies, max_age=3600, path="/login")
    return resp


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, username: str = Form(""), password: str = Form(""),
          csrf: str = Form(""), next: str = Form("/")):  # noqa: A002
    import hmac

    auth = request.app.state.auth
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie, csrf):
        return login_form(request, next=next, error="The form expired; please try again.")
    client = request.client.host if request.client else ""
    try:
        user = auth.login(username.strip(), password, client)
    except AuthError as exc:
        return login_form(request, next=next, error=str(exc))
    if user is None:
        return login_form(request, next=next, error="Wrong user name or password.")
    value, ttl = auth.make_session(user.name)
    resp = RedirectResponse(_safe_next(next) if next != "/" else "/", status_code=303)
    resp.set_cookie(SESSION_COOKIE, value, max_age=ttl, httponly=True, samesite="lax",
                    secure=auth.secure_cookies, path="/")
    resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return resp


@router.post("/logout")
def logout(request: Request, csrf: str = Form("")):
    auth = request.app.state.auth
    user = auth.user_for(request)
    if user is not None and user.via == "session":
        if not check_csrf(user, csrf):
            return _forbidden(request, user)
        auth.revoke(user)
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp


# -- leads ------------------------------------------------------------------------------------


def _date(text: str | None, field: str, *, end: bool = False) -> datetime | None:
    if not text:
        return None
    try:
        d = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(f"{field}: {text!r} is not a date (YYYY-MM-DD)", field=field) from None
    if end and len(text.strip()) <= 10:
        d += timedelta(days=1)  # `until` a day: include that whole day
    return d.replace(tzinfo=None)


def _flag(v: str | None) -> bool | None:
    return None if v in (None, "", "any") else v in ("1", "true", "yes", "on")


def lead_filter(request: Request) -> LeadFilter:
    q = request.query_params
    multi = {k: [v for v in q.getlist(k) if v] for k in ("grade", "bucket", "stage", "segment")}
    return LeadFilter(
        **multi, owner=q.get("owner") or None, source=q.get("source") or None,
        since=_date(q.get("since"), "since"), until=_date(q.get("until"), "until", end=True),
        q=q.get("q") or None, abuse=_flag(q.get("abuse")), mql=_flag(q.get("mql")),
        sort=q.get("sort") or "score")


def _query_without(request: Request, *drop: str) -> str:
    items = [(k, v) for k, v in request.query_params.multi_items() if k not in drop and v]
    return urlencode(items)


@router.get("/leads", response_class=HTMLResponse)
def leads_page(request: Request, page: int = 1):
    started = time.perf_counter()
    user, st, model, early = open_page(request, "leads")
    if early is not None:
        return early
    try:
        f = lead_filter(request)
    except InputError as exc:
        return render(request, "error.html", user=user, status=400, title="Bad filter",
                      message=str(exc))
    per_page = st.project.settings.dashboard.page_size
    result = lead_page(st.engine, model, f, page=page, per_page=per_page, scope=user.scope)
    scope_key = ",".join(user.scope.owners or ()) if user.limited else "*"
    opts = st.cached(f"facets:{model.name}:{scope_key}", 300,
                     lambda: facets(st.engine, model, user.scope))
    ref = st.cached("ref", 10, lambda: reference_time(st.engine))
    grades = opts["grade"]
    return render(request, "leads.html", user=user, started=started, result=result, f=f,
                  opts=opts, grades=grades, ref=ref,
                  query=_query_without(request, "page"),
                  csv_query=_query_without(request, "page"),
                  raw=request.query_params)


@router.get("/leads.csv")
def leads_csv(request: Request, layout: str = "generic"):
    user, st, model, early = open_page(request, "leads")
    if early is not None:
        return early
    f = lead_filter(request)
    rows = export_rows(st.engine, model, layout=layout, flt=f, scope=user.scope)
    name = f"leads-{datetime.now():%Y%m%d-%H%M}.csv"
    return StreamingResponse(csv_chunks(rows, layout), media_type="text/csv; charset=utf-8",
                             headers={**_headers(),
                                      "Content-Disposition": f'attachment; filename="{name}"'})


# -- a person ---------------------------------------------------------------------------------


@router.get("/people/{person_id}", response_class=HTMLResponse)
def person_page(request: Request, person_id: str, before: str | None = None):
    started = time.perf_counter()
    user, st, model, early = open_page(request, "people")
    if early is not None:
        return early
    try:
        r = person_report.person_report(st.engine, model, person_id, scope=user.scope)
    except NotFound as exc:
        return _not_found(request, user, str(exc))
    if before:
        r["timeline"] = person_report.timeline(st.engine, r["person"]["person_id"],
                                               before=_date(before, "before"), limit=50)
    ref = st.cached("ref", 10, lambda: reference_time(st.engine))
    grades = model.spec.grades.names() if model.spec.grades else []
    return render(request, "person.html", user=user, started=started, r=r, ref=ref,
                  grades=grades, mql=list(model.spec.grades.mql) if model.spec.grades else [])


# -- overview, campaigns, abuse, model ----------------------------------------------------------


@router.get("/overview", response_class=HTMLResponse)
def overview_page(request: Request, days: int = 90):
    started = time.perf_counter()
    user, st, model, early = open_page(request, "overview")
    if early is not None:
        return early
    days = max(7, min(days, 730))
    o = overview_report.overview(st.engine, model, scope=user.scope, days=days)
    return render(request, "overview.html", user=user, started=started, o=o, days=days)


@router.get("/campaigns", response_class=HTMLResponse)
def campaigns_page(request: Request, by: str = "campaign", days: int = 0):
    started = time.perf_counter()
    user, st, model, early = open_page(request, "campaigns")
    if early is not None:
        return early
    if by not in campaign_report.DIMENSIONS:
        by = "campaign"
    ref = st.cached("ref", 10, lambda: reference_time(st.engine))
    since, until = campaign_report.window(days, ref)
    dash = st.project.settings.dashboard
    # a marketing report over slowly-changing data: kept for two minutes (the page says so)
    scope_key = ",".join(user.scope.owners or ()) if user.limited else "*"
    c = st.cached(f"campaigns:{model.name}:{by}:{days}:{scope_key}", 120, lambda: {
        **campaign_report.campaigns(st.engine, model, by=by, since=since, until=until,
                                    good_grades=dash.good_grades,
                                    good_buckets=dash.good_buckets, scope=user.scope),
        "computed_at": utcnow()})
    return render(request, "campaigns.html", user=user, started=started, c=c, by=by, days=days,
                  dims=list(campaign_report.DIMENSIONS), ref=ref)


@router.get("/abuse", response_class=HTMLResponse)
def abuse_page(request: Request, page: int = 1):
    started = time.perf_counter()
    user, st, model, early = open_page(request, "abuse")
    if early is not None:
        return early
    a = abuse_report.abuse(st.engine, model, scope=user.scope,
                           active_minutes=st.project.settings.dashboard.active_minutes,
                           page=page)
    return render(request, "abuse.html", user=user, started=started, a=a)


@router.get("/model", response_class=HTMLResponse)
def model_page(request: Request):
    started = time.perf_counter()
    user, st, model, early = open_page(request, "model")
    if early is not None:
        return early
    bt = model_report.cached_backtest(st.project.root)
    card = model_report.predictive_card(st.project, st.engine)
    alerts = model_report.alerts_status(st.engine)
    ref = st.cached("ref", 10, lambda: reference_time(st.engine))
    return render(request, "model.html", user=user, started=started, ref=ref,
                  m=model_report.model_summary(model), bt=bt, job=st.backtest, card=card,
                  alerts=alerts)


@router.post("/model/backtest")
def model_backtest(request: Request, csrf: str = Form(""), weeks: int = Form(12)):
    user = page_user(request, "run_backtest")
    if not isinstance(user, User):
        return user
    if not check_csrf(user, csrf):
        return _forbidden(request, user)
    state(request).start_backtest(weeks=max(1, min(weeks, 104)))
    return RedirectResponse("/model#backtest", status_code=303)


def install(app, project) -> None:
    """Add the dashboard, the REST API and their static files to `app` (api/app.py)."""
    from fastapi.staticfiles import StaticFiles

    from .auth import Auth
    from .rest import router as rest_router

    dash = project.settings.dashboard
    app.state.auth = Auth(project.root, session_hours=dash.session_hours,
                          secure_cookies=dash.secure_cookies)
    app.state.dashboard = DashboardState(project)
    with contextlib.suppress(LeadRefineryError):  # no model yet: the pages explain it
        app.state.dashboard.model()  # parse and validate it now, not in the first request
    for name in ("leads.html", "person.html", "overview.html", "campaigns.html", "abuse.html",
                 "model.html", "login.html", "error.html"):
        ENV.get_template(name)  # compile now, not in the first visitor's request
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(rest_router)
    app.include_router(router)
