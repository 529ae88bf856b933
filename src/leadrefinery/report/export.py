"""CRM export: the ranked lead list as CSV or JSON lines, ready to upload; and a push of score
changes to a webhook through the alerts outbox.

    leadrefinery export --format csv --layout salesforce --out leads.csv
    leadrefinery export --format json --since 2026-10-01          # only what changed since then
    leadrefinery export --push crm --since 2026-10-01             # score changes to a webhook

Layouts
-------
**generic** (`--layout generic`, the default) — one row per lead in rank order:

    rank, person_id, email, first_name, last_name, name, company, title, phone, country,
    account_id, account_name, owner, source, campaign, score, grade, mql, bucket, probability,
    stage, segments, abuse, reasons, first_seen, last_seen, scored_as_of

Lists (segments, abuse flags, reasons) are joined with " | " in CSV and stay lists in JSON.

**salesforce** (`--layout salesforce`) — the standard Lead object's API field names, so the file
maps one-to-one in Data Loader / Data Import Wizard; our fields as custom fields (create them
once on the Lead object with these API names; `LR_Person_Id__c` as an External ID lets an
upsert update the same lead on every export):

    column               content
    FirstName, LastName  first / last name (LastName "[not provided]" when unknown: required)
    Email, Phone, Title  as known
    Company              company name, else the account's, else "[not provided]" (required)
    Country              ISO-3166 alpha-2 code as collected
    LeadSource           first-touch source (utm source / referral source)
    Rating               Hot (an MQL grade), Warm (the next grade down), Cold (the rest)
    Status               "Open - Not Contacted"
    OwnerId              the owner as we know them (rep e-mail or CRM owner name): replace it
                         by the Salesforce user id with a VLOOKUP, or map it on import
    LR_Person_Id__c      our person id (External ID)
    LR_Score__c          rule score, 0-100 (Number(5,1))
    LR_Grade__c          grade (Text(8))
    LR_MQL__c            true / false (Checkbox)
    LR_Bucket__c         predictive bucket A-D when a predictive model is published (Text(4))
    LR_Probability__c    predicted conversion probability, 0-1 (Number(5,4))
    LR_Stage__c          buyer-journey stage (Text(32))
    LR_Reasons__c        top reasons in plain words, "; "-separated (Long Text(1000))
    LR_Abuse__c          abuse flags raised, "; "-separated (Text(255))
    LR_Scored_At__c      when the score was computed, UTC ISO-8601 (Date/Time)

`--since T` keeps only leads that are new since T or whose score moved (grade, stage, or the
score by at least 0.5 points) since the newest full scoring run at or before T.

Push (`--push NAME`): every such change becomes a `score_changed` alert to the webhook receiver
`[alerts.webhooks.NAME]`, through the outbox (signed, retried, at least once, de-duplicated by
alert id — see docs/webhooks.md); `serve` delivers them, or `leadrefinery alerts --deliver`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import IO, Any

from ..errors import InputError
from ..model.load import Model
from ..store.engine import Engine
from .common import Scope
from .leads import LeadFilter, iter_leads

LAYOUTS = ("generic", "salesforce")
FORMATS = ("csv", "json")

GENERIC = ("rank", "person_id", "email", "first_name", "last_name", "name", "company", "title",
           "phone", "country", "account_id", "account_name", "owner", "source", "campaign",
           "score", "grade", "mql", "bucket", "probability", "stage", "segments", "abuse",
           "reasons", "first_seen", "last_seen", "scored_as_of")
SALESFORCE = ("FirstName", "LastName", "Email", "Phone", "Title", "Company", "Country",
              "LeadSource", "Rating", "Status", "OwnerId", "LR_Person_Id__c", "LR_Score__c",
              "LR_Grade__c", "LR_MQL__c", "LR_Bucket__c", "LR_Probability__c", "LR_Stage__c",
              "LR_Reasons__c", "LR_Abuse__c", "LR_Scored_At__c")
NOT_PROVIDED = "[not provided]"


def _iso(v: Any) -> str | None:
    return v.isoformat(sep="T", timespec="seconds") if isinstance(v, datetime) else v


def generic_row(rank: int, r: dict[str, Any]) -> dict[str, Any]:
    return {
        "rank": rank, "person_id": r["person_id"], "email": r["email"],
        "first_name": r["first_name"], "last_name": r["last_name"], "name": r["name"],
        "company": r["company"], "title": r["title"], "phone": r["phone"],
        "country": r["country"], "account_id": r["account_id"],
        "account_name": r["account_name"], "owner": r["owner"], "source": r["source"],
        "campaign": r["campaign"], "score": round(r["score"], 2), "grade": r["grade"],
        "mql": bool(r["mql"]), "bucket": r["bucket"],
        "probability": None if r["probability"] is None else round(r["probability"], 4),
        "stage": r["stage"], "segments": list(r["segments"]), "abuse": list(r["abuse"]),
        "reasons": list(r["reasons"]), "first_seen": _iso(r["first_seen"]),
        "last_seen": _iso(r["last_seen"]), "scored_as_of": _iso(r["as_of"]),
    }


def rating(grade: str | None, model: Model) -> str:
    g = model.spec.grades
    if g is None or grade is None:
        return "Cold"
    if grade in g.mql:
        return "Hot"
    names = g.names()
    worst_mql = max((names.index(m) for m in g.mql if m in names), default=-1)
    if grade in names and names.index(grade) == worst_mql + 1:
        return "Warm"
    return "Cold"


def salesforce_row(r: dict[str, Any], model: Model) -> dict[str, Any]:
    first, last = r["first_name"], r["last_name"]
    if not last and r["name"]:
        first, _, last = r["name"].rpartition(" ")
    return {
        "FirstName": first or None, "LastName": last or NOT_PROVIDED, "Email": r["email"],
        "Phone": r["phone"], "Title": r["title"],
        "Company": r["company"] or r["account_name"] or NOT_PROVIDED, "Country": r["country"],
        "LeadSource": r["source"], "Rating": rating(r["grade"], model),
        "Status": "Open - Not Contacted", "OwnerId": r["owner"],
        "LR_Person_Id__c": r["person_id"], "LR_Score__c": round(r["score"], 1),
        "LR_Grade__c": r["grade"], "LR_MQL__c": bool(r["mql"]), "LR_Bucket__c": r["bucket"],
        "LR_Probability__c": None if r["probability"] is None else round(r["probability"], 4),
        "LR_Stage__c": r["stage"], "LR_Reasons__c": "; ".join(r["reasons"])[:1000],
        "LR_Abuse__c": "; ".join(r["abuse"])[:255], "LR_Scored_At__c": _iso(r["as_of"]),
    }


def changed_since(engine: Engine, model: Model, since: datetime) -> str:
    """A SQL condition on `s` (latest_scores) and `p` (people): new since `since`, or moved
    since the newest full run at or before it. No such run: everyone counts as changed."""
    run = engine.scalar(
        "SELECT run_id FROM score_runs WHERE model = ? AND as_of <= ? AND NOT "
        "coalesce(restricted, false) ORDER BY as_of DESC LIMIT 1", [model.name, since])
    if run is None:
        return "1 = 1"
    safe = str(run).replace("'", "''")
    return (
        f"(p.first_seen >= TIMESTAMP '{since.isoformat(sep=' ')}' OR NOT EXISTS (SELECT 1 FROM "
        f"scores o WHERE o.run_id = '{safe}' AND o.person_id = s.person_id AND "
        "o.grade IS NOT DISTINCT FROM s.grade AND o.stage IS NOT DISTINCT FROM s.stage AND "
        "abs(o.score - s.score) < 0.5))"
    )


def export_rows(engine: Engine, model: Model, *, layout: str = "generic",
                since: datetime | None = None, flt: LeadFilter | None = None,
                scope: Scope | None = None, limit: int | None = None
                ) -> Iterator[dict[str, Any]]:
    if layout not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r}; use {' or '.join(LAYOUTS)}",
                         field="layout")
    extra = changed_since(engine, model, since) if since else None
    for rank, r in enumerate(_leads(engine, model, flt, scope, extra, limit), 1):
        yield generic_row(rank, r) if layout == "generic" else salesforce_row(r, model)


def _leads(engine: Engine, model: Model, flt: LeadFilter | None, scope: Scope | None,
           extra: str | None, limit: int | None) -> Iterator[dict[str, Any]]:
    return iter_leads(engine, model, flt, scope=scope, limit=limit, extra_sql=extra)


def columns(layout: str) -> tuple[str, ...]:
    return GENERIC if layout == "generic" else SALESFORCE


def _cell(v: Any, sep: str) -> Any:
    if isinstance(v, list):
        return sep.join(str(x) for x in v)
    if isinstance(v, bool):
        return "true" if v else "false"
    return "" if v is None else v


def write_csv(rows: Iterable[dict[str, Any]], out: IO[str], layout: str) -> int:
    cols = columns(layout)
    w = csv.DictWriter(out, fieldnames=cols, extrasaction="ignore", lineterminator="\r\n")
    w.writeheader()
    n = 0
    for r in rows:
        w.writerow({k: _cell(r.get(k), " | ") for k in cols})
        n += 1
    return n


def write_json(rows: Iterable[dict[str, Any]], out: IO[str]) -> int:
    n = 0
    for r in rows:
        out.write(json.dumps(r, default=str, ensure_ascii=False) + "\n")
        n += 1
    return n


def csv_chunks(rows: Iterable[dict[str, Any]], layout: str, every: int = 500) -> Iterator[str]:
    """The CSV as text chunks (for a streamed HTTP response)."""
    cols = columns(layout)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\r\n")
    w.writeheader()
    for n, r in enumerate(rows, 1):
        w.writerow({k: _cell(r.get(k), " | ") for k in cols})
        if n % every == 0:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def push_changes(engine: Engine, model: Model, settings: Any, *, webhook: str,
                 since: datetime | None = None, base_url: str | None = None,
                 limit: int | None = None) -> list[str]:
    """Enqueue one `score_changed` alert per changed lead to webhook receiver `webhook`.

    Alert ids derive from the person and their score run, so pushing twice sends each change
    once. Returns the alert ids.
    """
    from ..act.outbox import AlertIn, enqueue

    hooks = settings.alerts.webhooks
    if webhook not in hooks:
        raise InputError(
            f"no webhook receiver {webhook!r}: declare [alerts.webhooks.{webhook}] url = ... in "
            f"refinery.toml (declared: {', '.join(hooks) or 'none'})", field="push")
    base = (base_url or settings.server.public_url
            or f"http://{settings.server.host}:{settings.server.port}").rstrip("/")
    alerts = []
    for r in export_rows(engine, model, since=since, limit=limit):
        pid = r["person_id"]
        alerts.append(AlertIn(
            trigger_id="crm_export", trigger_kind="score_changed",
            title=f"{r['email'] or pid}: score {r['score']:.1f}, grade {r['grade']}",
            channel="webhook", recipient=webhook, person_id=pid, account_id=r["account_id"],
            person={k: r[k] for k in ("email", "name", "company", "title")},
            change={"score": r["score"], "grade": r["grade"], "mql": r["mql"],
                    "stage": r["stage"], "bucket": r["bucket"],
                    "probability": r["probability"], "scored_as_of": r["scored_as_of"]},
            reasons=[{"text": t} for t in r["reasons"]],
            link=settings.alerts.person_url.format(base_url=base, person_id=pid),
            data={"crm": salesforce_like(r)},
            key=f"score_changed\x1f{pid}\x1f{r['scored_as_of']}\x1f{r['score']:.2f}",
        ))
    ids: list[str] = []
    for i in range(0, len(alerts), 2000):
        ids += enqueue(engine, alerts[i:i + 2000])
    return ids


def salesforce_like(r: dict[str, Any]) -> dict[str, Any]:
    """The custom-field part of the Salesforce layout, from a generic row."""
    return {"LR_Person_Id__c": r["person_id"], "LR_Score__c": round(r["score"], 1),
            "LR_Grade__c": r["grade"], "LR_Stage__c": r["stage"],
            "LR_Reasons__c": "; ".join(r["reasons"]), "LR_Bucket__c": r["bucket"]}
