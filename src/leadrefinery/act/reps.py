"""Sales reps and teams: the roster routing hands leads to.

Reps come from two places, merged into the `reps` table:

* `[[reps]]` in refinery.toml (`source = 'config'`): reviewed with the project; re-synced on
  every routing run, so removing a rep there removes it here;
* `leadrefinery reps import reps.csv`: a roster exported from the CRM or HR system. A CSV row
  for a rep the config declares is skipped (the config wins) and reported.

Columns of the CSV (headers matched case-insensitively; lists split on `;` or `|`):
`email, name, team, territory, sizes, types, per_day, per_week, weight, active`.

A rep whose `[teams.NAME]` declares a territory / sizes / types and who declares none of their
own inherits the team's. Away reps (`active = false`, or `reps away EMAIL --until ...`) are
skipped by routing until they are back.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from ..config import RepConfig, Settings
from ..errors import InputError, NotFound
from ..store.engine import Engine

REP_COLUMNS = (
    "email", "name", "team", "territory", "sizes", "types", "per_day", "per_week", "weight",
    "active", "away_until", "source", "updated_at",
)
_LIST_SPLIT = re.compile(r"[;|,]")


@dataclass(frozen=True)
class Rep:
    email: str
    team: str
    name: str = ""
    territory: tuple[str, ...] = ()
    sizes: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    per_day: int | None = None
    per_week: int | None = None
    weight: float = 1.0
    active: bool = True
    away_until: datetime | None = None
    source: str = "config"

    def away(self, now: datetime) -> bool:
        return not self.active or (self.away_until is not None and self.away_until > now)

    def as_dict(self) -> dict:
        return {
            "email": self.email, "name": self.name, "team": self.team,
            "territory": list(self.territory), "sizes": list(self.sizes),
            "types": list(self.types), "per_day": self.per_day, "per_week": self.per_week,
            "weight": self.weight, "active": self.active, "away_until": self.away_until,
            "source": self.source,
        }


@dataclass
class RepImport:
    """What `import_reps` did."""

    added: int = 0
    updated: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line, why)


def rep_from_config(cfg: RepConfig) -> Rep:
    return Rep(
        email=cfg.email.strip().lower(), team=cfg.team, name=cfg.name or cfg.email,
        territory=tuple(cfg.territory), sizes=tuple(cfg.sizes), types=tuple(cfg.types),
        per_day=cfg.per_day, per_week=cfg.per_week, weight=cfg.weight, active=cfg.active,
    )


def _json_list(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = orjson.loads(value)
    return tuple(str(v) for v in value)


def _stored(engine: Engine) -> dict[str, Rep]:
    rows = engine.query(f"SELECT {', '.join(REP_COLUMNS)} FROM reps")
    out = {}
    for r in rows:
        d = dict(zip(REP_COLUMNS, r, strict=True))
        out[d["email"]] = Rep(
            email=d["email"], team=d["team"], name=d["name"] or d["email"],
            territory=_json_list(d["territory"]), sizes=_json_list(d["sizes"]),
            types=_json_list(d["types"]), per_day=d["per_day"], per_week=d["per_week"],
            weight=d["weight"] if d["weight"] is not None else 1.0,
            active=d["active"] if d["active"] is not None else True,
            away_until=d["away_until"], source=d["source"] or "csv",
        )
    return out


def _with_team_defaults(rep: Rep, settings: Settings) -> Rep:
    team = settings.teams.get(rep.team)
    if team is None:
        return rep
    return replace(
        rep, territory=rep.territory or tuple(team.territory),
        sizes=rep.sizes or tuple(team.sizes), types=rep.types or tuple(team.types),
    )


def roster(engine: Engine, settings: Settings) -> list[Rep]:
    """Every rep routing may use, with team defaults applied, sorted by email.

    Read-only: config reps are merged in memory (so a dry run writes nothing); the away
    status set with `set_away` is kept for them.
    """
    stored = _stored(engine)
    merged: dict[str, Rep] = {e: r for e, r in stored.items() if r.source != "config"}
    for cfg in settings.reps:
        rep = rep_from_config(cfg)
        old = stored.get(rep.email)
        if old is not None and old.away_until is not None:
            rep = replace(rep, away_until=old.away_until)
        merged[rep.email] = rep
    return [_with_team_defaults(merged[e], settings) for e in sorted(merged)]


def _write(engine: Engine, reps: Iterable[Rep], now: datetime) -> None:
    for rep in reps:
        engine.execute("DELETE FROM reps WHERE email = ?", [rep.email])
        engine.execute(
            f"INSERT INTO reps ({', '.join(REP_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(REP_COLUMNS))})",
            [rep.email, rep.name, rep.team, orjson.dumps(list(rep.territory)).decode(),
             orjson.dumps(list(rep.sizes)).decode(), orjson.dumps(list(rep.types)).decode(),
             rep.per_day, rep.per_week, rep.weight, rep.active, rep.away_until, rep.source, now],
        )


def sync_config_reps(engine: Engine, settings: Settings, now: datetime) -> None:
    """Make the `reps` table hold exactly the config's reps (plus imported ones)."""
    declared = {rep_from_config(c).email for c in settings.reps}
    with engine.transaction():
        stored = _stored(engine)
        gone = [e for e, r in stored.items() if r.source == "config" and e not in declared]
        for e in gone:
            engine.execute("DELETE FROM reps WHERE email = ?", [e])
        fresh = []
        for cfg in settings.reps:
            rep = rep_from_config(cfg)
            old = stored.get(rep.email)
            if old is not None and old.away_until is not None:
                rep = replace(rep, away_until=old.away_until)
            if old != rep:
                fresh.append(rep)
        _write(engine, fresh, now)


def _split(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in _LIST_SPLIT.split(text) if p.strip())


def _int_or_none(text: str, column: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{column} must be a whole number, got {text!r}") from None
    if value < 0:
        raise ValueError(f"{column} must not be negative")
    return value


def parse_reps_csv(text: str, source: str) -> list[tuple[int, Rep]]:
    """Parse a roster CSV; every problem is reported at once (file:line), nothing half-read."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip().lower().replace(" ", "_") for h in next(reader)]
    except StopIteration:
        raise InputError("the file is empty (no header row)", file=source) from None
    for need in ("email", "team"):
        if need not in header:
            raise InputError(
                f"no {need!r} column (have {', '.join(header)}); a roster needs email and team",
                file=source, line=1,
            )
    out: list[tuple[int, Rep]] = []
    problems: list[str] = []
    for row in reader:
        n = reader.line_num
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            problems.append(f"line {n}: {len(row)} fields, the header has {len(header)}")
            continue
        d = dict(zip(header, row, strict=True))
        email = d["email"].strip().lower()
        try:
            if "@" not in email:
                raise ValueError(f"email {d['email']!r} is not an address")
            if not d["team"].strip():
                raise ValueError("team is empty")
            weight = float(d.get("weight") or 1.0)
            if weight <= 0:
                raise ValueError("weight must be above 0")
            active_text = (d.get("active") or d.get("status") or "yes").strip().lower()
            if active_text not in ("yes", "y", "true", "1", "active", "no", "n", "false", "0",
                                   "away", "inactive"):
                raise ValueError(f"active must be yes/no (or active/away), got {active_text!r}")
            rep = Rep(
                email=email, team=d["team"].strip(), name=(d.get("name") or "").strip() or email,
                territory=_split(d.get("territory", "")), sizes=_split(d.get("sizes", "")),
                types=_split(d.get("types", "")),
                per_day=_int_or_none(d.get("per_day", ""), "per_day"),
                per_week=_int_or_none(d.get("per_week", ""), "per_week"),
                weight=weight, active=active_text in ("yes", "y", "true", "1", "active"),
                source=source,
            )
        except ValueError as exc:
            problems.append(f"line {n}: {exc}")
            continue
        out.append((n, rep))
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InputError(f"{problems[0]}{more}; nothing was imported", file=source)
    return out


def import_reps(engine: Engine, settings: Settings, path: str | Path, now: datetime) -> RepImport:
    """Upsert the reps of a roster CSV. Reps declared in refinery.toml are left as declared."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"cannot read the roster: {exc.strerror}", file=str(path)) from exc
    rows = parse_reps_csv(text, path.name)
    declared = {rep_from_config(c).email for c in settings.reps}
    result = RepImport()
    with engine.transaction():
        stored = _stored(engine)
        fresh = []
        for line, rep in rows:
            if rep.email in declared:
                result.skipped.append((line, f"{rep.email} is declared in refinery.toml"))
                continue
            old = stored.get(rep.email)
            if old is not None and old.away_until is not None:
                rep = replace(rep, away_until=old.away_until)
            if old is None:
                result.added += 1
            else:
                result.updated += 1
            fresh.append(rep)
        _write(engine, fresh, now)
    return result


FOREVER = datetime(9999, 12, 31)


def set_away(engine: Engine, settings: Settings, email: str, until: datetime | None,
             now: datetime) -> Rep:
    """Mark a rep away until `until` (`FOREVER` = until told otherwise; None = back now)."""
    email = email.strip().lower()
    known = {r.email: r for r in roster(engine, settings)}
    if email not in known:
        raise NotFound(f"no rep {email!r}; see `leadrefinery reps list`")
    with engine.transaction():
        sync_config_reps(engine, settings, now)
        engine.execute("UPDATE reps SET away_until = ?, updated_at = ? WHERE email = ?",
                       [until, now, email])
    return next(r for r in roster(engine, settings) if r.email == email)
