"""The `leadrefinery` command line: a thin shell over `Project`.

Every command takes `--project DIR` (default: the folder holding refinery.toml, searched
upward from the working directory, like git). Errors print what was wrong, where, and what to
do, and exit with the code of their class (see errors.py).
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .errors import LeadRefineryError
from .ingest.loader import IngestReport
from .project import Project, expand_paths

app = typer.Typer(
    name="leadrefinery",
    help="Lead Refinery: turn behavioural data about prospects into a ranked, explained "
    "list of leads.\n\nStart with `leadrefinery demo` to see it work on generated data, or "
    "`leadrefinery init DIR` to create a project for your own.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
quarantine_app = typer.Typer(help="List, export and retry rejected input.", no_args_is_help=True)
app.add_typer(quarantine_app, name="quarantine")

console = Console()
err = Console(stderr=True)

ProjectOpt = Annotated[
    Path | None,
    typer.Option("--project", "-p", help="Project folder (default: found upward from here)."),
]


def handle_errors(fn):
    """Print our errors as one clear line and exit with their code; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LeadRefineryError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(exc.exit_code) from None

    return wrapper


def open_project(project: Path | None, **kwargs) -> Project:
    return Project(project, **kwargs) if project else Project.find(**kwargs)


def print_report(report: IngestReport) -> None:
    t = Table(title="ingest", show_header=False)
    for k in ("read", "stored", "duplicates", "quarantined"):
        t.add_row(k, f"{getattr(report, k):,}")
    if report.blank_lines:
        t.add_row("blank lines (skipped)", f"{report.blank_lines:,}")
    console.print(t)
    for reason, n in sorted(report.reasons.items(), key=lambda x: -x[1]):
        console.print(f"  quarantined {n:,} × {reason}", highlight=False)
    if report.quarantined:
        console.print("  see them with `leadrefinery quarantine list`")
    if not report.balanced:  # would be a bug: say so loudly rather than hide it
        err.print("[bold red]counts do not add up: read != stored + duplicates + quarantined")
        raise typer.Exit(1)


@app.command()
@handle_errors
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the project in.")],
    name: Annotated[str | None, typer.Option(help="Project name (default: folder name).")] = None,
) -> None:
    """Create a project: refinery.toml (settings) and the embedded store."""
    p = Project.init(directory, name=name)
    console.print(f"created project [bold]{p.settings.project.name}[/] in {p.root}")
    console.print(f"  settings: {p.root / 'refinery.toml'}")
    console.print(f"  store:    {p.root / p.settings.store.path} (DuckDB)")
    p.close()


@app.command()
@handle_errors
def ingest(
    paths: Annotated[list[str], typer.Argument(help="Files or globs (gzip is fine).")],
    kind: Annotated[
        str | None,
        typer.Option(
            help="events (Segment JSONL) | kv (key=value log) | people | accounts | "
            "conversions | opportunities | campaigns. Default: from the file name/header."
        ),
    ] = None,
    mapping: Annotated[
        str | None, typer.Option(help="A named mapping from refinery.toml [ingest.csv|kv.NAME].")
    ] = None,
    map_: Annotated[
        list[str] | None,
        typer.Option("--map", help="Column mapping for CSV: field=Header (repeatable)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
    project: ProjectOpt = None,
) -> None:
    """Load events, people, accounts, outcomes or campaign costs into the store."""
    columns = {}
    for m in map_ or []:
        field, _, header = m.partition("=")
        if not header:
            raise typer.BadParameter(f"--map needs field=Header, got {m!r}")
        columns[field.strip()] = header.strip()
    with open_project(project) as p:
        files = expand_paths(paths)
        total = sum(f.stat().st_size for f in files if f.is_file())
        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed:,}"),
            TimeElapsedColumn(), console=err, disable=as_json or not err.is_terminal,
        ) as bar:
            task = bar.add_task("ingesting", total=None)
            report = p.ingest(
                files, kind=kind, mapping=mapping, columns=columns,
                progress=lambda n: bar.advance(task, n),
            )
        del total
    if as_json:
        print(json.dumps(report.as_dict()))
    else:
        print_report(report)


@quarantine_app.command("list")
@handle_errors
def quarantine_list(
    status: Annotated[str, typer.Option(help="open | retried | all")] = "open",
    limit: Annotated[int, typer.Option(help="How many rows at most.")] = 50,
    project: ProjectOpt = None,
) -> None:
    """Show rejected input: where it came from (file:line) and why."""
    with open_project(project) as p:
        rows = p.quarantine(status=status, limit=limit)
        total = p.engine.scalar(
            "SELECT count(*) FROM quarantine WHERE (? = 'all' OR status = ?)", [status, status]
        )
    t = Table(title=f"quarantine ({total:,} {status})")
    for c in ("id", "where", "kind", "reason", "raw"):
        t.add_column(c, overflow="fold")
    for r in rows:
        where = f"{r['source']}:{r['line']}" + (f" batch[{r['item']}]" if r["item"] is not None else "")
        t.add_row(str(r["id"]), where, r["kind"], r["reason"], (r["raw"] or "")[:80])
    console.print(t)


@quarantine_app.command("export")
@handle_errors
def quarantine_export(
    out: Annotated[Path, typer.Argument(help="JSONL file to write: one object per row.")],
    project: ProjectOpt = None,
) -> None:
    """Write open quarantined events to a file to fix by hand; then `quarantine retry --from`."""
    with open_project(project) as p:
        rows = p.quarantine(status="open", limit=10_000_000)
    with out.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({k: r[k] for k in ("id", "source", "line", "reason", "raw")}) + "\n")
    console.print(f"wrote {len(rows):,} rows to {out}; edit their `raw`, then "
                  f"`leadrefinery quarantine retry --from {out}`")


@quarantine_app.command("retry")
@handle_errors
def quarantine_retry(
    from_: Annotated[
        Path | None, typer.Option("--from", help="An edited export: its raw texts are used.")
    ] = None,
    ids: Annotated[list[int] | None, typer.Argument(help="Quarantine ids (default: all).")] = None,
    project: ProjectOpt = None,
) -> None:
    """Re-ingest quarantined events (as they are, or fixed). Still-bad ones stay quarantined."""
    fixed = None
    if from_:
        fixed = {}
        for n, line in enumerate(from_.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                    fixed[int(row["id"])] = row["raw"]
                except (ValueError, KeyError, TypeError):
                    err.print(f"[red]{from_}:{n}: not an export row (needs id and raw)")
                    raise typer.Exit(2) from None
    with open_project(project) as p:
        report = p.ingestor.retry_quarantine(fixed=fixed, ids=ids)
    print_report(report)


@app.command()
@handle_errors
def status(project: ProjectOpt = None) -> None:
    """How many rows each table of the store holds."""
    with open_project(project, read_only=True) as p:
        counts = p.counts()
    t = Table(title=str(p.root))
    t.add_column("table")
    t.add_column("rows", justify="right")
    for k, v in counts.items():
        t.add_row(k, f"{v:,}")
    console.print(t)


@app.command()
@handle_errors
def demo(
    directory: Annotated[Path, typer.Argument(help="Where to create the demo project.")] = Path(
        "demo-project"
    ),
    people: Annotated[int, typer.Option(help="Trial signups to generate.")] = 5000,
    months: Annotated[int, typer.Option(help="Months of history.")] = 6,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 7,
    serve: Annotated[
        bool, typer.Option(help="Start the server and dashboard at the end (Ctrl-C to stop).")
    ] = True,
) -> None:
    """Generate a free-trial SaaS business, ingest it, score it, show the ranked leads."""
    from .demo import run_demo

    result = run_demo(directory, people=people, months=months, seed=seed,
                      say=lambda m: console.print(f"[bold cyan]>[/] {m}"))
    print_report(result.ingest)
    p = result.project
    show_leads(p.leads(top=15), title="top leads")
    console.print("dashboard logins: " + ", ".join(f"[bold]{u}[/] / {pw} ({r})"
                                                   for u, pw, r in result.logins), highlight=False)
    url = f"http://{p.settings.server.host}:{p.settings.server.port}/"
    if serve:
        console.print(f"\n[bold green]open {url}[/] (Ctrl-C stops the server)")
        p.close()
        serve_project(p.root)
    else:
        console.print(f"\nproject: {p.root}\nstart the dashboard with "
                      f"`leadrefinery serve --project {p.root}` and open {url}")
        p.close()


def serve_project(
    root: Path | None, *, host: str | None = None, port: int | None = None,
    access_log: bool = False,
) -> None:
    """Serve the project at `root` until Ctrl-C (used by `serve` and by `demo`)."""
    from .api.server import serve as run_server

    p = open_project(root)

    def announce(url: str, service) -> None:
        keys = ", ".join(f"{k} ({v})" for k, v in service.write_keys.items()) or "none"
        err.print(f"[bold green]serving[/] {p.settings.project.name} at [bold]{url}[/]\n"
                  f"  Segment-compatible ingestion: POST {url}/v1/batch (and /v1/track, ...)\n"
                  f"  write keys: {keys}\n  health: {url}/health   Ctrl-C stops", highlight=False)

    run_server(p, host=host, port=port, access_log=access_log, announce=announce)


@app.command("serve")
@handle_errors
def serve(
    host: Annotated[
        str | None, typer.Option(help="Interface to listen on (default: server.host in "
                                      "refinery.toml).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port (default: server.port in refinery.toml).")
    ] = None,
    access_log: Annotated[bool, typer.Option(help="Log every HTTP request.")] = False,
    project: ProjectOpt = None,
) -> None:
    """Run the HTTP server: Segment-compatible event ingestion (/v1/track, /v1/batch, ...).

    Point Segment or RudderStack client libraries at it with a write key from
    server.write_keys in refinery.toml. An event is acknowledged once it is in the fsync'd
    log under log/; it reaches the store a moment later (GET /health shows the lag).
    While the server runs it owns the store.
    """
    serve_project(project, host=host, port=port, access_log=access_log)


@app.command("alerts")
@handle_errors
def alerts(
    status: Annotated[
        str, typer.Option(help="pending | delivered | dead | all")
    ] = "all",
    requeue: Annotated[
        list[str] | None,
        typer.Option("--requeue", help="Send this dead alert again (repeatable).", metavar="ID"),
    ] = None,
    requeue_dead: Annotated[
        bool, typer.Option("--requeue-dead", help="Send every dead alert again.")
    ] = False,
    deliver: Annotated[
        bool,
        typer.Option("--deliver", help="Send the alerts due now from this process "
                     "(when `serve`, which normally sends them, is not running)."),
    ] = False,
    limit: Annotated[int, typer.Option(help="How many rows at most.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print rows as JSON lines.")] = False,
    project: ProjectOpt = None,
) -> None:
    """The alerts outbox: what was sent, what waits for a retry, what gave up (dead).

    Delivery is at least once: a receiver de-duplicates by the alert id (see docs/webhooks.md).
    """
    from .act import outbox

    writes = bool(requeue or requeue_dead or deliver)
    with open_project(project, read_only=not writes) as p:
        if requeue:
            n = outbox.requeue(p.engine, requeue)
            err.print(f"re-queued {n} alert(s)")
        if requeue_dead:
            n = outbox.requeue_dead(p.engine)
            err.print(f"re-queued {n} dead alert(s)")
        if deliver:
            from .act.delivery import Deliverer

            d = Deliverer.for_project(p)
            try:
                sent = d.run_once()
            finally:
                d.close()
            err.print(f"{sent} attempt(s): {d.stats.delivered} delivered, "
                      f"{d.stats.failed} failed ({d.stats.dead} now dead)")
        rows = outbox.list_alerts(p.engine, status=status, limit=limit)
        counts = outbox.status_counts(p.engine)
    if as_json:
        for r in rows:
            print(json.dumps(r.as_dict(), default=str))
        return
    summary = ", ".join(f"{v:,} {k}" for k, v in counts.items())
    t = Table(title=f"alerts ({summary})")
    for c in ("alert id", "created (UTC)", "status", "tries", "to", "trigger", "title", "note"):
        t.add_column(c, overflow="fold")
    for r in rows:
        if r.status == "delivered":
            note = f"delivered {r.delivered_at:%H:%M:%S}" if r.delivered_at else ""
        elif r.status == "pending" and r.next_attempt_at:
            note = f"next try {r.next_attempt_at:%H:%M:%S}" + (
                f"; {r.last_error}" if r.last_error else "")
        else:
            note = r.last_error or ""
        to = f"{r.channel}:{r.recipient}" if r.recipient else r.channel
        t.add_row(r.alert_id, f"{r.created_at:%Y-%m-%d %H:%M:%S}", r.status, str(r.attempts), to,
                  r.trigger_id, r.title, note[:120])
    console.print(t)
    if counts.get("dead"):
        console.print(f"{counts['dead']:,} dead: fix the receiver, then "
                      "`leadrefinery alerts --requeue-dead` (or --requeue ID)", highlight=False)


# -- acting on scores: reps, routing, SLAs, nurture sequences (act/) ---------------------------

reps_app = typer.Typer(help="The sales reps leads are routed to.", no_args_is_help=True)
app.add_typer(reps_app, name="reps")
sequences_app = typer.Typer(help="Nurture sequences: list them, run what is due.",
                            no_args_is_help=True)
app.add_typer(sequences_app, name="sequences")

NowOpt = Annotated[
    str | None,
    typer.Option("--now", help="Act as if it were this time (ISO-8601, UTC if no offset)."),
]


def _now(text: str | None):
    from datetime import datetime

    from .act.clock import SystemClock, as_utc_naive

    if not text:
        return SystemClock().now()
    try:
        return as_utc_naive(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise typer.BadParameter(f"--now {text!r} is not an ISO-8601 time") from None


def _print_json(data) -> None:
    import orjson

    print(orjson.dumps(data, default=str, option=orjson.OPT_INDENT_2).decode())


@reps_app.command("list")
@handle_errors
def reps_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    project: ProjectOpt = None,
) -> None:
    """Every rep: team, territory, segments, capacity and what is left of it today."""
    from .act.reps import roster
    from .act.routing import Router

    with open_project(project, read_only=True) as p:
        reps = roster(p.engine, p.settings)
        now = _now(None)
        capacity = Router(p.engine, p.settings).capacity(now)
    if as_json:
        _print_json([{**r.as_dict(), "capacity": capacity.get(r.email)} for r in reps])
        return
    t = Table(title=f"reps ({len(reps)})")
    for c in ("email", "team", "territory", "sizes/types", "per day", "per week", "left today",
              "status"):
        t.add_column(c, overflow="fold")
    for r in reps:
        cap = capacity.get(r.email) or {}
        left = cap.get("day_left")
        t.add_row(r.email, r.team, ", ".join(r.territory) or "any",
                  ", ".join((*r.sizes, *r.types)) or "all",
                  "-" if r.per_day is None else str(r.per_day),
                  "-" if r.per_week is None else str(r.per_week),
                  "unlimited" if left is None else str(left),
                  "away" if r.away(now) else "active")
    console.print(t)


@reps_app.command("import")
@handle_errors
def reps_import(
    file: Annotated[Path, typer.Argument(help="CSV: email, name, team, territory, sizes, types, "
                                              "per_day, per_week, weight, active.")],
    project: ProjectOpt = None,
) -> None:
    """Add or update reps from a roster CSV (reps declared in refinery.toml win)."""
    from .act.reps import import_reps

    with open_project(project) as p:
        result = import_reps(p.engine, p.settings, file, _now(None))
    console.print(f"reps: {result.added} added, {result.updated} updated")
    for line, why in result.skipped:
        console.print(f"  line {line} skipped: {why}", highlight=False)


@reps_app.command("away")
@handle_errors
def reps_away(
    email: Annotated[str, typer.Argument(help="The rep's email.")],
    until: Annotated[str | None, typer.Option(help="Back at this time (ISO-8601); default: "
                                                   "until `reps back`.")] = None,
    project: ProjectOpt = None,
) -> None:
    """Mark a rep away: routing skips them (their accounts' leads wait for them)."""
    from .act.reps import FOREVER, set_away

    with open_project(project) as p:
        rep = set_away(p.engine, p.settings, email, _now(until) if until else FOREVER, _now(None))
    console.print(f"{rep.email} is away" + (f" until {until}" if until else ""))


@reps_app.command("back")
@handle_errors
def reps_back(email: Annotated[str, typer.Argument(help="The rep's email.")],
              project: ProjectOpt = None) -> None:
    """Mark a rep back from being away."""
    from .act.reps import set_away

    with open_project(project) as p:
        rep = set_away(p.engine, p.settings, email, None, _now(None))
    console.print(f"{rep.email} is back" + ("" if rep.active else
                                            " (but `active = false` in refinery.toml)"))


@app.command("route")
@handle_errors
def route_cmd(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan; write nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    notify: Annotated[bool, typer.Option(
        "--notify", help="Tell reps of their new leads (and the feed of waiting ones) through "
        "the alerts outbox.")] = False,
    now: NowOpt = None,
    project: ProjectOpt = None,
) -> None:
    """Route qualified leads (and the waiting queue) to reps; every choice says why."""
    from .act.routing import route

    with open_project(project, read_only=dry_run) as p:
        plan = route(p.engine, p.settings, dry_run=dry_run, now=_now(now))
        if notify and not dry_run:
            from .act.outbox import enqueue

            enqueue(p.engine, plan.alerts(), now=plan.at)
    if as_json:
        _print_json(plan.as_dict())
        return
    title = "routing plan (dry run: nothing written)" if dry_run else "routed"
    t = Table(title=f"{title}: {len(plan.assignments)} assigned, {len(plan.waiting)} waiting")
    for c in ("person", "grade", "score", "rep", "team", "rule", "why"):
        t.add_column(c, overflow="fold")
    for a in plan.assignments:
        t.add_row(a.person_id, a.grade or "", "" if a.score is None else f"{a.score:.1f}",
                  a.rep, a.team or "", a.rule, str(a.reason.get("why", "")))
    console.print(t)
    if plan.waiting:
        w = Table(title="waiting (visible queue)")
        for c in ("person", "grade", "team", "why", "since"):
            w.add_column(c, overflow="fold")
        for x in plan.waiting:
            w.add_row(x.person_id, x.grade or "", x.team or "", x.why,
                      f"{x.queued_at:%Y-%m-%d %H:%M}")
        console.print(w)
    for note in plan.notes:
        console.print(f"note: {note}", highlight=False)


@app.command("sla")
@handle_errors
def sla_cmd(
    alert: Annotated[bool, typer.Option("--alert", help="Put the findings in the alerts outbox.")]
    = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    now: NowOpt = None,
    project: ProjectOpt = None,
) -> None:
    """Hand-off SLAs and refinery health: first touch, never touched, too loose / too strict."""
    from .act.sla import alerts_for, health

    with open_project(project, read_only=not alert) as p:
        report = health(p.engine, p.settings, now=_now(now))
        if alert and report.findings:
            from .act.outbox import enqueue

            enqueue(p.engine, alerts_for(report.findings), now=report.at)
    if as_json:
        _print_json(report.as_dict())
        return
    ft = report.summaries["first_touch"]
    t = Table(title=f"first touch (last {report.window_days} days, {ft['routed']} routed)")
    for c in ("grade", "SLA h", "routed", "touched", "within SLA", "breached", "median h"):
        t.add_column(c, justify="right")
    for g, s in ft["by_grade"].items():
        t.add_row(g, f"{s['sla_hours']:g}", str(s["routed"]), str(s["touched"]),
                  str(s["within_sla"]), str(s["breached"]),
                  "" if s["median_hours_to_touch"] is None else f"{s['median_hours_to_touch']:g}")
    console.print(t)
    q = report.summaries["qualification"]
    console.print(f"opportunities lost within {p.settings.sla.lost_after_handoff_days:g} days of "
                  f"hand-off: {q['lost_after_handoff']} of {q['opportunities']}; win rate of "
                  f"routed leads: {q['win_rate'] if q['win_rate'] is not None else '-'} "
                  f"({q['won']} of {q['decided']} decided)", highlight=False)
    r = report.summaries["rejections"]
    if r["total"]:
        console.print("rejections by reason: " + ", ".join(f"{k} {v}" for k, v in
                                                           r["by_reason"].items()))
    for f in report.findings:
        colour = {"critical": "red", "warning": "yellow"}.get(f.severity, "cyan")
        console.print(f"[{colour}]{f.severity}[/] {f.title}", highlight=False)
    if alert:
        console.print(f"{len(report.findings)} finding(s) put in the alerts outbox")


@sequences_app.command("list")
@handle_errors
def sequences_list(project: ProjectOpt = None) -> None:
    """The declared sequences, their steps and how many people are in each."""
    from .act.nurture import load_sequences

    with open_project(project, read_only=True) as p:
        specs = load_sequences(p.settings, p.root)
        counts = {(s, st): n for s, st, n in p.engine.query(
            "SELECT sequence, status, count(*) FROM enrollments GROUP BY 1, 2")}
    if not specs:
        console.print(f"no sequences (looked for {', '.join(p.settings.nurture.files)})")
        return
    t = Table(title="sequences")
    for c in ("sequence", "enrols on", "steps (day)", "branches", "active", "done"):
        t.add_column(c, overflow="fold")
    for name, s in specs.items():
        done = sum(n for (seq, st), n in counts.items() if seq == name and st != "active")
        t.add_row(name, s.enroll.event or "(by hand)",
                  ", ".join(f"{x.id} ({x.day:g})" for x in s.steps),
                  ", ".join(b.goto for b in s.branches) or "-",
                  str(counts.get((name, "active"), 0)), str(done))
    console.print(t)


@sequences_app.command("tick")
@handle_errors
def sequences_tick(
    send: Annotated[bool, typer.Option(help="Send due mail through [alerts.smtp].")] = True,
    now: NowOpt = None,
    project: ProjectOpt = None,
) -> None:
    """Enrol, branch, exit, fast-track (to routing) and send what is due now."""
    from .act.nurture import Nurture

    with open_project(project) as p:
        n = Nurture(p.engine, p.settings, root=p.root)
        result = n.tick(_now(now), deliver=send)
    console.print(", ".join(f"{k} {v}" for k, v in result.summary().items()), highlight=False)
    if result.delivery and result.delivery.failed:
        for sid, error in list(result.delivery.failed.items())[:10]:
            err.print(f"[red]failed[/] {sid}: {error}", highlight=False)


# -- the scoring model: compile, validate, score, explain, leads, backtest (model/) -----------

ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Model file or name (default: the published model)."),
]
AsOfOpt = Annotated[
    str | None,
    typer.Option("--as-of", help="Score as of this time (ISO-8601, UTC if no offset; "
                 "default now): later events are not seen, decay is measured from it."),
]


def _time(text: str | None, flag: str):
    from datetime import UTC, datetime

    if not text:
        return None
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{flag} {text!r} is not an ISO-8601 time (2024-05-01 or "
                                 "2024-05-01T12:00:00Z)") from None
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


def _days(text: str, flag: str) -> float:
    from .model.spec import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{flag}: {exc}") from None


def _load_model(model: str | None, project: Path | None):
    """A model by path (no project needed) or by name within the project."""
    from .model import load_model

    if model and Path(model).is_file():
        return load_model(model)
    with open_project(project, read_only=True) as p:
        return load_model(p.model_path(model))


@app.command("compile")
@handle_errors
def compile_model(
    engine: Annotated[str, typer.Option(help="duckdb | postgres | spark")] = "duckdb",
    model: ModelOpt = None,
    as_of: AsOfOpt = None,
    wide: Annotated[bool, typer.Option(help="The per-person query with one column per rule, "
                                       "instead of the snapshot query with JSON columns.")] = False,
    project: ProjectOpt = None,
) -> None:
    """Print the SQL a model compiles to, for review."""
    from .model import build_plan
    from .model.dialects import ENGINES

    if engine not in ENGINES:
        raise typer.BadParameter(f"--engine must be one of {', '.join(ENGINES)}")
    m = _load_model(model, project)
    plan = build_plan(m, as_of=_time(as_of, "--as-of"))
    print(f"-- model {m.name} {m.version} ({m.file}) for {engine}, as of {plan.as_of}")
    print(plan.sql(engine, snapshot=not wide) + ";")


@app.command()
@handle_errors
def validate(model: ModelOpt = None, project: ProjectOpt = None) -> None:
    """Check a model file: shape, every condition, every name. Exit 2 with file:line if wrong."""
    m = _load_model(model, project)
    s = m.spec
    console.print(f"[bold green]ok[/] {m.file}: model {m.name} version {m.version}", highlight=False)
    console.print(f"  {len(s.rules)} rules, {len(s.facts)} facts, {len(s.abuse)} abuse rules, "
                  f"{len(s.segments)} segments, grades: "
                  f"{s.grades.method + ' ' + ', '.join(s.grades.names()) if s.grades else 'none'}, "
                  f"stages: {', '.join(s.stages.order) if s.stages else 'none'}", highlight=False)


@app.command()
@handle_errors
def score(
    as_of: AsOfOpt = None,
    model: ModelOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run as JSON.")] = False,
    project: ProjectOpt = None,
) -> None:
    """Score every person and store the snapshot (history is kept; latest_scores is the newest)."""
    with open_project(project) as p:
        run = p.score(as_of=_time(as_of, "--as-of"), model=model)
        grades = p.engine.query(
            "SELECT grade, count(*), sum(CASE WHEN mql THEN 1 ELSE 0 END) FROM scores "
            "WHERE run_id = ? GROUP BY grade ORDER BY grade", [run.run_id])
    if as_json:
        print(json.dumps({**run.as_dict(), "grades": {g: n for g, n, _ in grades}}))
        return
    console.print(f"scored {run.people:,} people with {run.model} {run.model_version} as of "
                  f"{run.as_of:%Y-%m-%d %H:%M:%S} in {run.seconds:.2f}s (run {run.run_id})",
                  highlight=False)
    t = Table(title="grades")
    t.add_column("grade")
    t.add_column("people", justify="right")
    t.add_column("MQL", justify="right")
    for g, n, mql in grades:
        t.add_row(str(g), f"{n:,}", f"{mql or 0:,}")
    console.print(t)


@app.command()
@handle_errors
def explain(
    person: Annotated[str, typer.Argument(help="Email or person id.")],
    as_of: AsOfOpt = None,
    model: ModelOpt = None,
    events: Annotated[int, typer.Option(help="How many recent events to show.")] = 15,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    project: ProjectOpt = None,
) -> None:
    """Why a person has their score: components, caps, stage evidence, abuse flags, timeline."""
    with open_project(project, read_only=True) as p:
        x = p.explain(person, as_of=_time(as_of, "--as-of"), model=model, events=events)
        x["predictive"] = _with_predictions(p, [{"person_id": x["person"]["person_id"]}])[0]
    if as_json:
        print(json.dumps(x, default=str, indent=2))
        return
    who = x["person"]
    console.print(f"[bold]{who.get('email') or who['person_id']}[/] {who.get('name') or ''} "
                  f"{('· ' + who['company']) if who.get('company') else ''} "
                  f"{('· ' + who['title']) if who.get('title') else ''}", highlight=False)
    rng = x["score_range"]
    clamp = f" (clamped from {rng['before_range']:.1f})" if rng["clamped"] else ""
    console.print(f"score [bold]{x['score']:.1f}[/]{clamp}  grade [bold]{x['grade']}[/]"
                  f"{' (MQL)' if x['mql'] else ''}  model {x['model']} {x['model_version']}, "
                  f"as of {x['as_of'][:19]}", highlight=False)
    t = Table(title="components")
    for c in ("rule", "category", "n", "raw", "decayed", "points", "why"):
        t.add_column(c, justify="right" if c in ("n", "raw", "decayed", "points") else "left",
                     overflow="fold")
    for c in x["components"]:
        note = " (capped)" if c["capped"] else ""
        t.add_row(c["rule"], c["category"], str(c["n"]), f"{c['raw']:.1f}", f"{c['decayed']:.2f}",
                  f"{c['points']:.2f}{note}", c["reason"])
    console.print(t)
    cats = ", ".join(f"{c['category']} {c['points']:.1f}"
                     + (f" (capped from {c['before_cap']:.1f})" if c["capped"] else "")
                     for c in x["categories"])
    console.print(f"categories: {cats}", highlight=False)
    st = x["stage"]
    if st:
        ev = st["evidence"]
        console.print(f"stage: [bold]{st['stage'] or '-'}[/] ({ev['events']} fresh event(s), "
                      f"last {ev['last'] or '-'})", highlight=False)
    for aid, ev in x["abuse"].items():
        console.print(f"[bold red]abuse {aid}[/]: " + ", ".join(f"{k}={v}" for k, v in ev.items()),
                      highlight=False)
    if x["segments"]:
        console.print(f"segments: {', '.join(x['segments'])}", highlight=False)
    pr = x["predictive"]
    if pr["bucket"]:
        console.print(f"predictive: bucket [bold]{pr['bucket']}[/], {pr['probability']:.1%} "
                      f"likely to convert{_predictive_marks(pr)}", highlight=False)
        for sign, mark in (("positive", "+"), ("negative", "-")):
            for f in (pr["factors"] or {}).get(sign, []):
                console.print(f"  {mark} {f['text']}", highlight=False)
    t = Table(title="recent events")
    for c in ("time (UTC)", "type", "event", "detail"):
        t.add_column(c, overflow="fold")
    for e in x["timeline"]:
        t.add_row(str(e["ts"])[:19], e["type"] or "", e["event"] or "", str(e["detail"] or ""))
    console.print(t)


def _with_predictions(p: Project, rows: list[dict]) -> list[dict]:
    """Rows plus their predictive bucket, probability, holdout, surge and top factors; factors
    the `predict` run did not cache are computed for these rows only."""
    from .predict.errors import ModelFileError
    from .predict.training import explain_people
    from .report.leads import with_predictions

    def explain(ids: list[str]) -> dict:
        try:
            return explain_people(p.engine, p.root, ids)
        except ModelFileError as exc:  # the list is still worth showing: say what is missing
            err.print(f"[yellow]predictive factors of {len(ids)} lead(s) not shown: {exc}")
            return {}

    return with_predictions(p.engine, rows, explain_missing=explain)


def _predictive_marks(r: dict) -> str:
    return ("; control holdout" if r.get("holdout") else "") + \
        ("; behavioural surge" if r.get("surge") else "")


def _factor_texts(r: dict, sign: str) -> list[str]:
    return [f["text"] for f in (r.get("factors") or {}).get(sign, [])]


def show_leads(rows: list[dict], title: str = "leads", fmt: str = "table") -> None:
    """Print ranked leads as a table, CSV or JSON lines; with the predictive bucket,
    probability, holdout and surge marks and top factors when a model has scored them."""
    cols = ("person_id", "email", "name", "company", "score", "grade", "stage", "segments",
            "abuse", "reasons", "bucket", "probability", "holdout", "surge")
    if fmt == "json":
        for r in rows:
            out = {k: r.get(k) for k in cols}
            out["factors"] = r.get("factors")
            print(json.dumps(out, default=str))
        return
    if fmt == "csv":
        import csv

        w = csv.writer(sys.stdout)
        w.writerow([*cols, "factors_positive", "factors_negative"])
        for r in rows:
            w.writerow([("; ".join(map(str, r.get(k) or [])) if isinstance(r.get(k), list)
                         else r.get(k)) for k in cols]
                       + ["; ".join(_factor_texts(r, s)) for s in ("positive", "negative")])
        return
    predictive = any(r.get("bucket") for r in rows)
    t = Table(title=f"{title} ({len(rows)})")
    heads = ["#", "lead", "company", "score", "grade", "stage", "top reasons"]
    if predictive:
        heads += ["predictive", "why likely (+)", "why not (-)"]
    for c in heads:
        t.add_column(c, overflow="fold", justify="right" if c in ("#", "score") else "left")
    for i, r in enumerate(rows, 1):
        flag = " [red](abuse)[/]" if r.get("abuse") else ""
        cells = [str(i), f"{r.get('email') or r['person_id']}{flag}", r.get("company") or "",
                 f"{r['score']:.1f}", str(r.get("grade") or ""), str(r.get("stage") or ""),
                 "\n".join(r.get("reasons") or [])]
        if predictive:
            cells.append(f"{r['bucket']} {r['probability']:.1%}{_predictive_marks(r)}"
                         if r.get("bucket") else "")
            cells += ["\n".join(_factor_texts(r, s)) for s in ("positive", "negative")]
        t.add_row(*cells)
    console.print(t)


@app.command()
@handle_errors
def leads(
    grade: Annotated[list[str] | None, typer.Option(help="Only these grades (repeatable).")] = None,
    stage: Annotated[list[str] | None, typer.Option(help="Only these stages (repeatable).")] = None,
    segment: Annotated[list[str] | None, typer.Option(help="Only people in this segment "
                                                      "(repeatable: all must hold).")] = None,
    top: Annotated[int, typer.Option(help="How many leads.")] = 25,
    fmt: Annotated[str, typer.Option("--format", help="table | csv | json")] = "table",
    model: ModelOpt = None,
    project: ProjectOpt = None,
) -> None:
    """The ranked lead list from the newest scores, each with its top reasons (and, when a
    predictive model has scored them, its bucket, probability, holdout/surge marks and top
    factors)."""
    if fmt not in ("table", "csv", "json"):
        raise typer.BadParameter("--format must be table, csv or json")
    with open_project(project, read_only=True) as p:
        rows = _with_predictions(p, p.leads(grade=grade, stage=stage, segment=segment, top=top,
                                            model=model))
    if not rows and fmt == "table":
        err.print("no scored leads match; run `leadrefinery score` first")
    show_leads(rows, fmt=fmt)


@app.command()
@handle_errors
def backtest(
    from_: Annotated[str, typer.Option("--from", help="First cut-off (ISO-8601).")],
    to: Annotated[str, typer.Option("--to", help="Last cut-off (ISO-8601).")],
    model: ModelOpt = None,
    horizon: Annotated[str, typer.Option(help="A conversion counts within this long after "
                                         "the cut-off.")] = "30d",
    step: Annotated[str, typer.Option(help="Time between cut-offs.")] = "7d",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    project: ProjectOpt = None,
) -> None:
    """Replay a model over history: per grade leads, conversions, rate, share captured; MQL
    volume per cut-off; side by side with the published model."""
    from .report.backtest import format_report

    start, end = _time(from_, "--from"), _time(to, "--to")
    with open_project(project, read_only=True) as p:
        if model and Path(model).is_file():
            model = str(Path(model).resolve())
        report = p.backtest(start=start, end=end, model=model,
                            step_days=_days(step, "--step"), horizon_days=_days(horizon, "--horizon"))
    if as_json:
        print(json.dumps(report, default=str, indent=2))
    else:
        print(format_report(report))


def main() -> None:  # pragma: no cover
    sys.exit(app())


# -- dashboard logins and CRM export (api/auth.py, report/export.py) ---------------------------

users_app = typer.Typer(
    help="Logins of the dashboard and REST API (the users tables of refinery.toml).",
    no_args_is_help=True)
app.add_typer(users_app, name="users")


@users_app.command("add")
@handle_errors
def users_add(
    name: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[str, typer.Option(help="admin | analyst | rep")] = "rep",
    rep: Annotated[str | None, typer.Option(help="For a rep: their e-mail as owner / in "
                                            "[[reps]] (whose leads they see).")] = None,
    owner: Annotated[list[str] | None, typer.Option(
        "--owner", help="Also theirs: leads with this CRM owner name (repeatable).")] = None,
    see_all: Annotated[bool, typer.Option(help="A rep who may see every lead.")] = False,
    display_name: Annotated[str | None, typer.Option("--name", help="Shown in the page header.")
                            ] = None,
    password: Annotated[str | None, typer.Option(
        help="The password (default: asked for; or LEADREFINERY_PASSWORD).")] = None,
    project: ProjectOpt = None,
) -> None:
    """Create a login, or change its role or password; stores a salted scrypt hash, never the
    password. A running server picks the change up at the next request."""
    import os

    from .api.auth import hash_password, set_user

    p = open_project(project, read_only=True)
    root = p.root
    password = password or os.environ.get("LEADREFINERY_PASSWORD")
    if not password:
        password = typer.prompt(f"password for {name}", hide_input=True,
                                confirmation_prompt=True)
    set_user(root, name, role=role, rep=rep, owners=list(owner) if owner else None,
             see_all=see_all or None, name=display_name, password_hash=hash_password(password))
    console.print(f"user [bold]{name}[/] ({role}) saved in {root / 'refinery.toml'}",
                  highlight=False)


@users_app.command("list")
@handle_errors
def users_list(project: ProjectOpt = None) -> None:
    """The logins, their roles and which leads they see."""
    p = open_project(project, read_only=True)
    t = Table(title="users")
    for c in ("name", "role", "sees", "password", "API tokens"):
        t.add_column(c)
    for name, u in p.settings.users.items():
        sees = "all leads" if u.role != "rep" or u.see_all else \
            "leads of " + ", ".join(x for x in (u.rep, *u.owners) if x) if (u.rep or u.owners) \
            else "nothing (set --rep)"
        t.add_row(name, u.role, sees, "set" if u.password_hash else "[red]none[/]",
                  str(len(u.token_hashes)))
    console.print(t)


@users_app.command("remove")
@handle_errors
def users_remove(name: Annotated[str, typer.Argument()], project: ProjectOpt = None) -> None:
    """Delete a login (their sessions end at their next request)."""
    from .api.auth import remove_user

    p = open_project(project, read_only=True)
    if not remove_user(p.root, name):
        err.print(f"no user {name!r}")
        raise typer.Exit(6)
    console.print(f"removed {name}")


@users_app.command("token")
@handle_errors
def users_token(name: Annotated[str, typer.Argument()], project: ProjectOpt = None) -> None:
    """Make an API token for scripts (`Authorization: Bearer TOKEN`); only its hash is kept."""
    from .api.auth import new_token, set_user

    p = open_project(project, read_only=True)
    if name not in p.settings.users:
        err.print(f"no user {name!r}; add one with `leadrefinery users add {name}`")
        raise typer.Exit(6)
    token, digest = new_token()
    set_user(p.root, name, token_hashes=[*p.settings.users[name].token_hashes, digest])
    console.print(f"token for {name} (shown once):")
    print(token)


@app.command("export")
@handle_errors
def export(
    fmt: Annotated[str, typer.Option("--format", help="csv | json (JSON lines)")] = "csv",
    layout: Annotated[str, typer.Option(help="generic | salesforce (Lead object API names "
                                        "plus LR_*__c custom fields)")] = "generic",
    since: Annotated[str | None, typer.Option(help="Only leads new or whose score moved since "
                                              "this time (ISO-8601).")] = None,
    out: Annotated[Path | None, typer.Option(help="Write here (default: standard output).")
                   ] = None,
    grade: Annotated[list[str] | None, typer.Option(help="Only these grades (repeatable).")
                     ] = None,
    mql: Annotated[bool, typer.Option("--mql", help="Only MQLs.")] = False,
    limit: Annotated[int | None, typer.Option(help="At most this many leads.")] = None,
    push: Annotated[str | None, typer.Option(
        "--push", help="Also send each changed lead as a `score_changed` alert to this "
        "webhook receiver (alerts.webhooks.NAME), through the outbox.")] = None,
    project: ProjectOpt = None,
) -> None:
    """The ranked lead list for a CRM: grade, bucket, stage, reasons, owner (see
    report/export.py for the layouts)."""
    from .report.export import FORMATS, LAYOUTS, export_rows, push_changes, write_csv, write_json
    from .report.leads import LeadFilter

    if fmt not in FORMATS:
        raise typer.BadParameter(f"--format must be one of {', '.join(FORMATS)}")
    if layout not in LAYOUTS:
        raise typer.BadParameter(f"--layout must be one of {', '.join(LAYOUTS)}")
    t = _time(since, "--since")
    flt = LeadFilter(grade=list(grade or []), mql=True if mql else None)
    with open_project(project, read_only=push is None) as p:
        m = p.model()
        rows = export_rows(p.engine, m, layout=layout, since=t, flt=flt, limit=limit)
        f = out.open("w", encoding="utf-8", newline="") if out else sys.stdout
        try:
            n = write_csv(rows, f, layout) if fmt == "csv" else write_json(rows, f)
        finally:
            if out:
                f.close()
        if out:
            err.print(f"wrote {n:,} leads to {out} ({fmt}, {layout} layout)")
        if push:
            ids = push_changes(p.engine, m, p.settings, webhook=push, since=t, limit=limit)
            err.print(f"queued {len(ids):,} score_changed alert(s) for webhook {push!r}; `serve` "
                      "delivers them (or `leadrefinery alerts --deliver`)")


# -- real time: triggers and sweeps (act/triggers.py, act/realtime.py) --------------------------

triggers_app = typer.Typer(help="Real-time triggers: check the trigger file, see episodes.",
                           no_args_is_help=True)
app.add_typer(triggers_app, name="triggers")


@triggers_app.command("list")
@handle_errors
def triggers_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    project: ProjectOpt = None,
) -> None:
    """Validate the trigger file ([triggers] file, beside the model) and list its triggers."""
    from .act.triggers import for_project

    p = open_project(project)  # the engine is not opened: works while `serve` runs
    ts = for_project(p)
    if ts is None:
        err.print(f"no trigger file {p.settings.triggers.file} in {p.root}; see "
                  "act/triggers.py for the syntax")
        raise typer.Exit(1)
    rows = ts.describe()
    if as_json:
        _print_json({"file": ts.file, "model": ts.model.name, "triggers": rows})
        return
    t = Table(title=f"triggers of {ts.file} (model {ts.model.name})")
    for c in ("id", "kind", "settings", "cool-down", "to", "severity"):
        t.add_column(c, overflow="fold")
    for r in rows:
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items()
                             if k not in ("cooldown", "to", "severity"))
        t.add_row(r["id"] + ("" if r["enabled"] else " (off)"), r["kind"], settings,
                  f"{r['cooldown_hours']:g} h", r["to"], r["severity"])
    console.print(t)


@triggers_app.command("episodes")
@handle_errors
def triggers_episodes(
    person: Annotated[str | None, typer.Option(help="Only this person id.")] = None,
    trigger: Annotated[str | None, typer.Option(help="Only this trigger id.")] = None,
    limit: Annotated[int, typer.Option(help="How many rows at most.")] = 50,
    project: ProjectOpt = None,
) -> None:
    """Recent trigger episodes: who entered which condition, and whether it alerted."""
    cols = ("opened_at", "person_id", "trigger_id", "key", "status", "outcome", "fired_at",
            "closed_at")
    where, params = ["1 = 1"], []
    if person:
        where.append("person_id = ?")
        params.append(person)
    if trigger:
        where.append("trigger_id = ?")
        params.append(trigger)
    with open_project(project, read_only=True) as p:
        rows = p.engine.query(
            f"SELECT {', '.join(cols)} FROM trigger_episodes WHERE {' AND '.join(where)} "
            "ORDER BY opened_at DESC LIMIT ?", [*params, limit])
    t = Table(title="trigger episodes (newest first)")
    for c in cols:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*("" if v is None else str(v)[:19] if hasattr(v, "isoformat") else str(v)
                    for v in r))
    console.print(t)


@app.command("sweep")
@handle_errors
def sweep_cmd(
    kind: Annotated[str, typer.Option(
        help="decay (rescore everyone, store and alert on changes) | abuse (sessions open "
             "past their limit) | unusual (the unusual-usage detector) | all")] = "all",
    now: NowOpt = None,
    deliver: Annotated[bool, typer.Option(
        "--deliver", help="Send the alerts due afterwards (else the next `serve` does).")] = False,
    project: ProjectOpt = None,
) -> None:
    """Rescore everyone and fire the triggers that time alone crossed (decay, expiring
    stages, sessions running past their limit) — what `serve` does periodically; run it from
    cron when the server is not running."""
    from .act.realtime import run_sweep

    if kind not in ("decay", "abuse", "unusual", "all"):
        raise typer.BadParameter("--kind must be decay, abuse, unusual or all")
    with open_project(project) as p:
        out = run_sweep(p, now=_now(now) if now else None, kind=kind, deliver=deliver)
    _print_json(out)


# -- predictive scoring (predict/) ------------------------------------------------------------


@app.command("train")
@handle_errors
def train_cmd(
    horizon: Annotated[str, typer.Option(help="Label window after each as-of time.")] = "30d",
    publish: Annotated[bool, typer.Option("--publish", help="Publish the new version.")] = False,
    threads: Annotated[int, typer.Option(
        help="LightGBM threads. One is the default: on cores shared with other work its "
        "threads wait on each other (ten times slower measured on a busy 2-core box).")] = 1,
    project: ProjectOpt = None,
) -> None:
    """Train the predictive model on this store's history (time-ordered split), save it with
    its model card under models/predictive/<version>/; schedule it with cron to retrain."""
    with open_project(project) as p:
        result = p.train(horizon_days=_days(horizon, "--horizon"), publish=publish,
                         n_jobs=threads)
    _print_json(result.summary())


@app.command("predict")
@handle_errors
def predict_cmd(
    now: Annotated[str | None, typer.Option(help="Score as of this time (default: end of data).")] = None,
    top: Annotated[int, typer.Option(help="Rows to print.")] = 20,
    project: ProjectOpt = None,
) -> None:
    """Score everyone with the published predictive model into table `predictions`."""
    with open_project(project) as p:
        out = p.predict(as_of=_time(now, "--now"))
        rows = p.predictions(top=top)
    counts = out["bucket"].value_counts().to_dict()
    console.print(f"scored {len(out):,} people: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                  + f"; surge {int(out['surge'].sum())}; holdout {int(out['holdout'].sum())}")
    t = Table(title="top predictions")
    for c in ("person", "p", "bucket", "why (+)", "why (-)"):
        t.add_column(c, overflow="fold")
    for r in rows:
        f = r["factors"] or {}
        t.add_row(r["person_id"], f"{r['probability']:.1%}", r["bucket"] + (" surge" if r["surge"] else ""),
                  "; ".join(x["text"] for x in f.get("positive", [])),
                  "; ".join(x["text"] for x in f.get("negative", [])))
    console.print(t)


@app.command("icp")
@handle_errors
def icp_cmd(
    min_count: Annotated[int, typer.Option(help="Least people per trait value/behaviour.")] = 20,
    top: Annotated[int, typer.Option(help="How many highest and lowest lifts.")] = 10,
    project: ProjectOpt = None,
) -> None:
    """Ideal customer profile: lift of each trait value and behaviour among won customers."""
    with open_project(project, read_only=True) as p:
        out = p.icp(min_count=min_count, top=top)
    console.print(f"{out['people']:,} people, {out['won']:,} won")
    for side in ("top", "bottom"):
        t = Table(title=f"{side} lifts")
        for c in ("kind", "what", "people", "won", "lift (95 % CI)"):
            t.add_column(c, overflow="fold")
        for r in out[side]:
            t.add_row(r["kind"], r["what"], str(r["people"]), str(r["won"]),
                      f"{r['lift']:.2f} ({r['lift_low']:.2f}-{r['lift_high']:.2f})")
        console.print(t)


@app.command("evaluate")
@handle_errors
def evaluate_cmd(
    dataset: Annotated[str, typer.Option(
        help="bank-marketing | x-education | maven-crm | demo | project (this project's "
        "imported people and outcomes: a CRM export)")] = "demo",
    people: Annotated[int, typer.Option(help="demo: people to generate.")] = 3000,
    seed: Annotated[int, typer.Option(help="demo: generator seed.")] = 7,
    order: Annotated[str | None, typer.Option(
        help="project: the column giving time order (default: each person's created time).")] = None,
    drop: Annotated[list[str] | None, typer.Option(
        help="project: a column not to learn from (filled in after the outcome); repeatable.")] = None,
    keep: Annotated[list[str] | None, typer.Option(
        help="project: keep a column the leak guard would drop; repeatable.")] = None,
    monthly_from: Annotated[int | None, typer.Option(
        help="project: expanding monthly windows, testing each month from this one on "
        "(months counted from the first); default: the newest 20 % is the test set.")] = None,
    closed_only: Annotated[bool, typer.Option(
        "--closed-only", help="project: only people with a won or lost outcome.")] = False,
    project: ProjectOpt = None,
) -> None:
    """Honest evaluation: our model against baselines under a time-ordered split."""
    from .predict.service import compare, evaluate_dataset, evaluate_demo
    from .predict.tabular import store_dataset

    if dataset == "demo":
        _print_json(evaluate_demo(people=people, seed=seed))
        return
    if dataset == "project":
        with open_project(project) as p:
            ds = store_dataset(p.engine, order=order, drop=drop or [], keep=keep or [],
                               monthly_from=monthly_from, closed_only=closed_only)
        console.print(f"{len(ds.y):,} people, {int(ds.y.sum()):,} converted; "
                      f"{ds.X.shape[1]} columns learnt from; dropped: {', '.join(ds.dropped) or 'none'}")
        if ds.notes:
            console.print(ds.notes)
        out = compare(ds)
    else:
        out = evaluate_dataset(dataset)
    console.print(f"{out['dataset']}: {out['protocol']} ({out['rows']:,} test rows)")
    typer.echo(out["table"].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    console.print(f"LeadModel: {out['verdict']}")
