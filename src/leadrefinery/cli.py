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
    if hasattr(p, "leads"):
        show_leads(p.leads(top=15), title="top leads")
    url = f"http://{p.settings.server.host}:{p.settings.server.port}/"
    if serve and "serve" in {c.name for c in app.registered_commands}:
        console.print(f"\n[bold green]open {url}[/] (Ctrl-C stops the server)")
        p.close()
        serve_project(p.root)  # noqa: F821 - defined with the serve command
    else:
        console.print(f"\nproject: {p.root}\nstart the dashboard with "
                      f"`leadrefinery serve --project {p.root}` and open {url}")
        p.close()


def main() -> None:  # pragma: no cover
    sys.exit(app())
