"""CSV imports: people, accounts, CRM outcomes (conversions, opportunities), campaign costs.

Columns map to our fields by a declared mapping (`[ingest.csv.NAME]` in refinery.toml or
`--map field=Header`); headers not mapped explicitly are matched by common synonyms; whatever
is left is kept as a trait under its header. Each broken row (wrong number of fields, a date or
number that does not parse, no way to identify the person) is quarantined with its line number
and the reason; the rest of the file goes in. Re-importing the same file is idempotent.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pyarrow as pa

from ..errors import InputError
from ..store.engine import Engine
from . import identity
from .lines import open_bytes
from .loader import IngestReport, quarantine_rows

OUTCOME_KIND = {"conversions": "conversion", "opportunities": "opportunity"}
KINDS = ("people", "accounts", "conversions", "opportunities", "campaigns", "activities")

TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d", "%m/%d/%Y", "%m/%d/%Y %H:%M", "%d-%m-%Y",
                "%d/%m/%Y", "%Y/%m/%d")


def norm(header: str) -> str:
    out = "".join(c.lower() if c.isalnum() else "_" for c in header.strip())
    return "_".join(p for p in out.split("_") if p)


def parse_time(text: str, fmt: str | None = None) -> datetime:
    text = text.strip()
    if fmt:
        return datetime.strptime(text, fmt)
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t
    except ValueError:
        pass
    for f in TIME_FORMATS:
        try:
            return datetime.strptime(text, f)
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not a date/time")


def parse_bool(text: str) -> bool | None:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "y", "won", "closed won", "t"):
        return True
    if low in ("0", "false", "no", "n", "lost", "closed lost", "f"):
        return False
    if low in ("", "open", "null", "none"):
        return None
    raise ValueError(f"{text!r} is not yes/no")


def parse_float(text: str) -> float:
    return float(text.strip().replace(",", "")) if text.strip() else float("nan")


# what a rep did with a routed lead (CRM feedback -> `lead_activities`, read by act/sla.py)
ACTIVITY_KINDS = ("accepted", "rejected", "touched", "opportunity", "won", "lost")
_ACTIVITY_SYNONYMS = {
    "accept": "accepted", "accepted": "accepted", "qualified": "accepted", "sal": "accepted",
    "reject": "rejected", "rejected": "rejected", "disqualified": "rejected",
    "unqualified": "rejected", "recycled": "rejected",
    "touch": "touched", "touched": "touched", "first_touch": "touched", "contacted": "touched",
    "called": "touched", "call": "touched", "emailed": "touched", "email": "touched",
    "meeting": "touched", "working": "touched",
    "opportunity": "opportunity", "opportunity_created": "opportunity", "opp": "opportunity",
    "sql": "opportunity", "deal_created": "opportunity",
    "won": "won", "closed_won": "won", "win": "won",
    "lost": "lost", "closed_lost": "lost", "loss": "lost",
}


def parse_activity(text: str) -> str:
    kind = _ACTIVITY_SYNONYMS.get(norm(text))
    if kind is None:
        raise ValueError(f"{text!r} is not an activity ({', '.join(ACTIVITY_KINDS)})")
    return kind


@dataclass(frozen=True)
class Field:
    name: str
    synonyms: tuple[str, ...]
    parse: Callable[[str], object] | None = None  # None = text; "time" handled specially
    time: bool = False


def _f(name: str, *syn: str, parse=None, time: bool = False) -> Field:
    return Field(name, (name, *syn), parse, time)


FIELDS: dict[str, tuple[Field, ...]] = {
    "people": (
        _f("person_id", "user_id", "userid", "id", "lead_id", "prospect_id", "contact_id"),
        _f("email", "email_address", "e_mail"),
        _f("created_at", "created", "signup_date", "created_date", "signed_up_at", time=True),
    ),
    "accounts": (
        _f("account_id", "id", "group_id", "company_id"),
        _f("domain", "website"),
        _f("name", "account", "company", "company_name"),
        _f("created_at", "created", time=True),
    ),
    "conversions": (
        _f("outcome_id", "conversion_id", "id", "order_id"),
        _f("person_id", "user_id", "lead_id", "contact_id"),
        _f("email", "email_address"),
        _f("created_at", "time", "date", "converted_at", "conversion_date", "created", time=True),
        _f("amount", "value", "revenue", parse=parse_float),
        _f("owner", "sales_agent", "rep"),
    ),
    "opportunities": (
        _f("outcome_id", "opportunity_id", "opportunity", "id", "deal_id"),
        _f("person_id", "user_id", "lead_id", "contact_id", "prospect_id"),
        _f("email", "email_address", "contact_email"),
        _f("account_id", "group_id", "company_id"),
        _f("account", "account_name", "company"),
        _f("created_at", "created", "engage_date", "created_date", "opened", time=True),
        _f("stage", "deal_stage", "status"),
        _f("won", "is_won", "converted", "is_converted", parse=parse_bool),
        _f("amount", "close_value", "value", "revenue", parse=parse_float),
        _f("closed_at", "closed", "close_date", "closed_date", time=True),
        _f("owner", "sales_agent", "rep", "opportunity_owner"),
    ),
    "campaigns": (
        _f("campaign", "campaign_name", "name"),
        _f("source", "utm_source"),
        _f("medium", "utm_medium", "channel"),
        _f("period_start", "start", "from", "date", "month", time=True),
        _f("period_end", "end", "to", time=True),
        _f("cost", "spend", "amount", parse=parse_float),
    ),
    "activities": (
        _f("activity_id", "id", "event_id", "task_id"),
        _f("person_id", "user_id", "lead_id", "contact_id"),
        _f("email", "email_address", "contact_email", "lead_email"),
        _f("rep", "owner", "sales_agent", "assigned_to", "user", "lead_owner"),
        _f("kind", "activity", "activity_type", "type", "event", "status", parse=parse_activity),
        _f("ts", "at", "time", "date", "timestamp", "activity_date", "created_at", "created",
           time=True),
        _f("reason", "rejection_reason", "loss_reason", "disqualification_reason", "note"),
        _f("opportunity_id", "opportunity", "deal_id"),
        _f("amount", "value", "close_value", parse=parse_float),
    ),
}


def resolve_columns(
    kind: str, header: list[str], mapping: dict[str, str]
) -> tuple[dict[str, int], list[tuple[str, int]]]:
    """-> (field -> column index, [(trait name, column index)] for the rest)."""
    fields = {f.name: f for f in FIELDS[kind]}
    unknown = [k for k in mapping if k not in fields and kind != "people" and kind != "accounts"]
    if unknown:
        raise InputError(
            f"unknown field(s) {', '.join(unknown)} for {kind}; known: {', '.join(fields)}"
        )
    index = {h: i for i, h in enumerate(header)}
    chosen: dict[str, int] = {}
    for fname, col in mapping.items():
        if col not in index:
            raise InputError(f"mapping {fname}={col!r}: no such column (have {', '.join(header)})")
        chosen[fname] = index[col]
    used = set(chosen.values())
    normed = {norm(h): i for i, h in enumerate(header)}
    for f in FIELDS[kind]:
        if f.name in chosen:
            continue
        for syn in f.synonyms:
            if syn in normed and normed[syn] not in used:
                chosen[f.name] = normed[syn]
                used.add(normed[syn])
                break
    rest = [(h, i) for i, h in enumerate(header) if i not in used]
    return chosen, rest


def _digest(row: list[str]) -> str:
    return hashlib.sha1("\x1f".join(row).encode()).hexdigest()[:24]


def read_rows(
    path: Path, kind: str, mapping: dict[str, str], *, delimiter: str = ",",
    time_format: str | None = None,
) -> tuple[list[dict], list[tuple[int, str, str]]]:
    """Parse a CSV into typed records; -> (records, rejects as (line, raw, reason))."""
    with open_bytes(path) as fb:
        text = fb.read().decode("utf-8-sig", errors="strict")
    lines = text.splitlines()
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise InputError("the file is empty (no header row)", file=str(path)) from None
    chosen, rest = resolve_columns(kind, header, mapping)
    fields = {f.name: f for f in FIELDS[kind]}
    records: list[dict] = []
    rejects: list[tuple[int, str, str]] = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            n = reader.line_num
            rejects.append((n, lines[n - 1] if n - 1 < len(lines) else "", f"broken CSV: {exc}"))
            continue
        n = reader.line_num
        raw = lines[n - 1] if n - 1 < len(lines) else delimiter.join(row)
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            rejects.append((n, raw, f"row has {len(row)} fields, the header has {len(header)}"))
            continue
        rec: dict[str, object] = {"_line": n, "_raw": raw, "_digest": _digest(row), "_traits": {}}
        try:
            for fname, i in chosen.items():
                value = row[i].strip()
                f = fields.get(fname)
                if value == "":
                    rec[fname] = None
                elif f is not None and f.time:
                    rec[fname] = parse_time(value, time_format)
                elif f is not None and f.parse:
                    rec[fname] = f.parse(value)
                else:
                    rec[fname] = value
                if f is None:  # an explicitly mapped trait (people/accounts)
                    rec["_traits"][fname] = rec.pop(fname)  # type: ignore[index]
        except ValueError as exc:
            rejects.append((n, raw, f"column {header[i]!r}: {exc}"))
            continue
        for h, i in rest:
            if row[i].strip() != "":
                rec["_traits"][h] = row[i].strip()  # type: ignore[index]
        records.append(rec)
    return records, rejects


class TableImporter:
    """Loads parsed CSV records of one kind into the store."""

    def __init__(self, engine: Engine, webmail_table: str = "_webmail") -> None:
        self.engine = engine
        self.webmail = webmail_table

    def load(self, kind: str, records: list[dict], rejects: list, source: str) -> IngestReport:
        e = self.engine
        report = IngestReport(files=[source], read=len(records) + len(rejects))
        with e.transaction():
            if rejects:
                self._quarantine(kind, rejects, source)
                report.quarantined = len(rejects)
                for r in rejects:
                    report.reasons[r[2]] = report.reasons.get(r[2], 0) + 1
            good, bad = getattr(self, f"_load_{kind}")(records, source)
            if bad:
                self._quarantine(kind, bad, source)
                report.quarantined += len(bad)
                for r in bad:
                    report.reasons[r[2]] = report.reasons.get(r[2], 0) + 1
            report.stored = good
            report.duplicates = report.read - report.quarantined - report.stored
        return report

    def _quarantine(self, kind: str, rejects: list, source: str) -> None:
        t = pa.table(
            {
                "line": pa.array([r[0] for r in rejects], pa.int64()),
                "raw": pa.array([r[1] for r in rejects], pa.string()),
                "reason": pa.array([r[2] for r in rejects], pa.string()),
            }
        )
        self.engine.register("_rejects", t)
        try:
            quarantine_rows(
                self.engine,
                "SELECT ? AS source, line, NULL::BIGINT AS item, NULL AS message_id, ? AS kind, "
                "reason, raw FROM _rejects",
                [source, kind],
            )
        finally:
            self.engine.unregister("_rejects")

    # -- people and accounts: rows become trait history, profiles are rebuilt ---------------

    def _person_ids(self, records: list[dict]) -> tuple[list[dict], list]:
        """Give each record a person id: its own, else the person with that email."""
        emails = sorted({str(r["email"]).lower() for r in records if r.get("email")})
        known: dict[str, str] = {}
        if emails:
            self.engine.register("_emails", pa.table({"email": emails}))
            try:
                known = dict(
                    self.engine.query(
                        "SELECT email, min(person_id) FROM people "
                        "WHERE email IN (SELECT email FROM _emails) GROUP BY email"
                    )
                )
            finally:
                self.engine.unregister("_emails")
        ok, bad = [], []
        for r in records:
            email = str(r["email"]).lower() if r.get("email") else None
            pid = r.get("person_id") or (known.get(email) if email else None) or email
            if not pid:
                bad.append((r["_line"], r["_raw"], "no person id or email to identify the person"))
                continue
            r["person_id"] = str(pid)
            r["email"] = email
            ok.append(r)
        return ok, bad

    def _trait_rows(self, records: list[dict], id_field: str, skip: set[str]) -> pa.Table:
        ids, keys, values, times, mids = [], [], [], [], []
        now = datetime.now(UTC).replace(tzinfo=None)
        for r in records:
            traits = {k: v for k, v in r.items() if not k.startswith("_") and k not in skip}
            traits.update(r["_traits"])
            for k, v in traits.items():
                if v is None:
                    continue
                ids.append(r[id_field])
                keys.append(k)
                values.append(orjson.dumps(v, default=str).decode())
                times.append(r.get("created_at") or now)
                mids.append(f"csv-{r['_digest']}")
        return pa.table(
            {
                id_field: pa.array(ids, pa.string()),
                "key": pa.array(keys, pa.string()),
                "value": pa.array(values, pa.string()),
                "ts": pa.array(times, pa.timestamp("us")),
                "message_id": pa.array(mids, pa.string()),
            }
        )

    def _new_rows(self, rows: pa.Table, history: str) -> int:
        """Append trait rows whose row digest is new; -> number of new source rows."""
        e = self.engine
        e.register("_rows", rows)
        try:
            e.execute(
                f"""
                CREATE OR REPLACE TEMP TABLE _fresh AS SELECT * FROM _rows
                WHERE message_id NOT IN (SELECT message_id FROM {history}
                                         WHERE starts_with(message_id, 'csv-'))
                """
            )
        finally:
            e.unregister("_rows")
        e.execute(f"INSERT INTO {history} SELECT * FROM _fresh")
        return e.scalar("SELECT count(DISTINCT message_id) FROM _fresh")

    def _load_people(self, records: list[dict], source: str) -> tuple[int, list]:
        records, bad = self._person_ids(records)
        new = self._new_rows(self._trait_rows(records, "person_id", {"person_id"}), "trait_history")
        e = self.engine
        e.execute("CREATE OR REPLACE TEMP TABLE _touched AS SELECT DISTINCT person_id FROM _fresh")
        identity.rebuild_people(e, "_touched", self.webmail)
        e.execute(
            """
            CREATE OR REPLACE TEMP TABLE _touched_accounts AS
            SELECT DISTINCT account_id FROM people
            WHERE person_id IN (SELECT person_id FROM _touched) AND account_id IS NOT NULL
            """
        )
        identity.rebuild_accounts(e, "_touched_accounts")
        return new, bad

    def _load_accounts(self, records: list[dict], source: str) -> tuple[int, list]:
        ok, bad = [], []
        for r in records:
            aid = r.get("account_id") or (
                f"domain:{str(r['domain']).lower()}" if r.get("domain") else None
            )
            if not aid:
                bad.append((r["_line"], r["_raw"], "no account id or domain to identify the account"))
                continue
            r["account_id"] = str(aid)
            ok.append(r)
        new = self._new_rows(
            self._trait_rows(ok, "account_id", {"account_id"}), "account_trait_history"
        )
        self.engine.execute(
            "CREATE OR REPLACE TEMP TABLE _touched_accounts AS "
            "SELECT DISTINCT account_id FROM _fresh"
        )
        identity.rebuild_accounts(self.engine, "_touched_accounts")
        return new, bad

    # -- outcomes: upserted by id (an opportunity's later stage replaces its earlier one) ----

    def _outcomes(self, records: list[dict], kind: str, source: str) -> tuple[int, list]:
        records, bad = self._person_ids_optional(records, required=kind == "conversions")
        # a CRM contact we have not seen yet is a lead too: make sure the person exists
        contacts = [
            {"person_id": r["person_id"], "email": r["email"], "_traits": {},
             "_digest": r["_digest"], "created_at": r.get("created_at")}
            for r in records if r.get("person_id")
        ]
        if contacts:
            self._new_rows(self._trait_rows(contacts, "person_id", {"person_id"}), "trait_history")
            self.engine.execute(
                "CREATE OR REPLACE TEMP TABLE _touched AS "
                "SELECT DISTINCT person_id FROM _fresh "
                "WHERE person_id NOT IN (SELECT person_id FROM people)"
            )
            identity.rebuild_people(self.engine, "_touched", self.webmail)
        cols: dict[str, list] = {c: [] for c in (
            "outcome_id", "kind", "person_id", "account_id", "account", "created_at", "stage",
            "won", "amount", "closed_at", "owner", "source")}
        for r in records:
            if kind == "conversions" and r.get("created_at") is None:
                bad.append((r["_line"], r["_raw"], "a conversion needs its time"))
                continue
            won = r.get("won") if kind == "opportunities" else True
            stage = r.get("stage") or ("won" if kind == "conversions" else None)
            if won is None and stage:
                won = parse_bool(stage) if stage.lower() in ("won", "lost") else None
            cols["outcome_id"].append(str(r.get("outcome_id") or f"csv-{r['_digest']}"))
            cols["kind"].append(OUTCOME_KIND[kind])
            cols["person_id"].append(r.get("person_id"))
            cols["account_id"].append(r.get("account_id"))
            cols["account"].append(r.get("account"))
            cols["created_at"].append(r.get("created_at"))
            cols["stage"].append(stage)
            cols["won"].append(won)
            cols["amount"].append(r.get("amount"))
            cols["closed_at"].append(
                r.get("closed_at") or (r.get("created_at") if kind == "conversions" else None)
            )
            cols["owner"].append(r.get("owner"))
            cols["source"].append(source)
        types = {"created_at": pa.timestamp("us"), "closed_at": pa.timestamp("us"),
                 "won": pa.bool_(), "amount": pa.float64()}
        table = pa.table({c: pa.array(v, types.get(c, pa.string())) for c, v in cols.items()})
        table = table.append_column("_pos", pa.array(range(table.num_rows), pa.int64()))
        e = self.engine
        e.register("_rows", table)
        try:
            # an account named rather than identified: match it by name or domain
            e.execute(
                """
                CREATE OR REPLACE TEMP TABLE _out AS
                SELECT r.* EXCLUDE (account, account_id, _pos),
                       coalesce(r.account_id, a.account_id, p.account_id,
                                CASE WHEN r.account IS NOT NULL THEN 'name:' || lower(r.account) END)
                         AS account_id
                FROM (SELECT * FROM _rows QUALIFY row_number() OVER (
                        PARTITION BY outcome_id ORDER BY _pos DESC) = 1) r
                LEFT JOIN (SELECT lower(name) AS n, min(account_id) AS account_id FROM accounts
                           GROUP BY 1) a ON a.n = lower(r.account)
                LEFT JOIN people p ON p.person_id = r.person_id
                """
            )
        finally:
            e.unregister("_rows")
        same = e.scalar(
            """
            SELECT count(*) FROM _out n JOIN outcomes o USING (outcome_id)
            WHERE o.kind IS NOT DISTINCT FROM n.kind AND o.stage IS NOT DISTINCT FROM n.stage
              AND o.won IS NOT DISTINCT FROM n.won AND o.amount IS NOT DISTINCT FROM n.amount
              AND o.closed_at IS NOT DISTINCT FROM n.closed_at
              AND o.person_id IS NOT DISTINCT FROM n.person_id
            """
        )
        e.execute("DELETE FROM outcomes WHERE outcome_id IN (SELECT outcome_id FROM _out)")
        e.execute("INSERT INTO outcomes BY NAME SELECT * FROM _out")
        return table.num_rows - same, bad

    def _person_ids_optional(self, records: list[dict], *, required: bool) -> tuple[list, list]:
        with_person = [r for r in records if r.get("person_id") or r.get("email")]
        ok, bad = self._person_ids(with_person)
        if required:
            return ok, bad
        return ok + [r for r in records if not (r.get("person_id") or r.get("email"))], bad

    def _load_conversions(self, records: list[dict], source: str) -> tuple[int, list]:
        return self._outcomes(records, "conversions", source)

    def _load_opportunities(self, records: list[dict], source: str) -> tuple[int, list]:
        return self._outcomes(records, "opportunities", source)

    def _load_campaigns(self, records: list[dict], source: str) -> tuple[int, list]:
        ok, bad = [], []
        for r in records:
            if not r.get("campaign") or r.get("cost") is None:
                bad.append((r["_line"], r["_raw"], "a campaign row needs campaign and cost"))
                continue
            ok.append(r)
        cols = ("campaign", "source", "medium", "period_start", "period_end", "cost")
        types = {"period_start": pa.timestamp("us"), "period_end": pa.timestamp("us"),
                 "cost": pa.float64()}
        table = pa.table(
            {c: pa.array([r.get(c) for r in ok], types.get(c, pa.string())) for c in cols}
        )
        e = self.engine
        e.register("_rows", table)
        try:
            e.execute(
                """
                CREATE OR REPLACE TEMP TABLE _fresh AS
                SELECT DISTINCT * FROM _rows EXCEPT SELECT * FROM campaigns
                """
            )
        finally:
            e.unregister("_rows")
        e.execute("INSERT INTO campaigns SELECT * FROM _fresh")
        return e.scalar("SELECT count(*) FROM _fresh"), bad

    def _load_activities(self, records: list[dict], source: str) -> tuple[int, list]:
        """CRM feedback on routed leads, upserted by activity id (else the row's digest)."""
        records, bad = self._person_ids(records)
        ok = []
        for r in records:
            if r.get("kind") is None:
                bad.append((r["_line"], r["_raw"],
                            f"an activity needs its kind ({', '.join(ACTIVITY_KINDS)})"))
            elif r.get("ts") is None:
                bad.append((r["_line"], r["_raw"], "an activity needs its time"))
            else:
                ok.append(r)
        cols = ("activity_id", "person_id", "rep", "kind", "ts", "reason", "opportunity_id",
                "amount")
        types = {"ts": pa.timestamp("us"), "amount": pa.float64()}
        data = {c: [r.get(c) for r in ok] for c in cols}
        data["activity_id"] = [str(r.get("activity_id") or f"csv-{r['_digest']}") for r in ok]
        data["rep"] = [str(r["rep"]).lower() if r.get("rep") else None for r in ok]
        table = pa.table({c: pa.array(v, types.get(c, pa.string())) for c, v in data.items()})
        table = table.append_column("source", pa.array([source] * len(ok), pa.string()))
        table = table.append_column("_pos", pa.array(range(len(ok)), pa.int64()))
        e = self.engine
        e.register("_rows", table)
        try:  # the last row of an id wins; a row already stored unchanged is not new
            e.execute(
                """
                CREATE OR REPLACE TEMP TABLE _fresh AS
                SELECT r.* EXCLUDE (_pos)
                FROM (SELECT * FROM _rows QUALIFY row_number() OVER (
                        PARTITION BY activity_id ORDER BY _pos DESC) = 1) r
                WHERE NOT EXISTS (
                  SELECT 1 FROM lead_activities l
                  WHERE l.activity_id = r.activity_id AND l.kind IS NOT DISTINCT FROM r.kind
                    AND l.ts IS NOT DISTINCT FROM r.ts
                    AND l.person_id IS NOT DISTINCT FROM r.person_id
                    AND l.rep IS NOT DISTINCT FROM r.rep AND l.reason IS NOT DISTINCT FROM r.reason)
                """
            )
        finally:
            e.unregister("_rows")
        e.execute("DELETE FROM lead_activities "
                  "WHERE activity_id IN (SELECT activity_id FROM _fresh)")
        e.execute("INSERT INTO lead_activities BY NAME SELECT *, now()::TIMESTAMP AS imported_at "
                  "FROM _fresh")
        return e.scalar("SELECT count(*) FROM _fresh"), bad
