"""Progressive profiling: which questions a form should ask this person next.

Each form asks only for what is still missing, and more valuable assets may ask for more:

    [profiling]
    tiers = [
      { min_value = 0,  fields = ["email", "first_name", "last_name"] },   # entry-level
      { min_value = 20, fields = ["country", "company", "title"] },        # valuable assets
      { min_value = 50, fields = ["company_size", "project_status"] },     # the most valuable
    ]
    values = { entry = 0, standard = 20, premium = 50 }
    max_questions = 4
    [profiling.forms.admin-guide]
    asset_value = "premium"

`next_fields(person, form, asset_value)` takes the person's profile (a dict: people columns,
`traits`, `account`) and returns a `FormPlan`: the fields to ask, in tier order, unlocked by the
asset's value, minus those already known, at most `max_questions` (an unknown visitor is always
asked for their email, which identifies them next time). `form_fields(engine, settings, form,
person_ref)` is what `GET /v1/forms/{form}/fields?person=...` calls: it finds the person by
person id, user id, anonymous id or email and returns JSON-ready data.

The answer names fields only, never their values: the endpoint is public (forms live on the
website) and must not reveal what we know about someone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import FormConfig, ProfileFieldConfig, Settings
from ..errors import InputError, NotFound
from ..store.engine import Engine
from .routing import parse_json

BUILTIN_FIELDS: dict[str, ProfileFieldConfig] = {
    "email": ProfileFieldConfig(label="Work email", type="email", sources=["email"]),
    "first_name": ProfileFieldConfig(label="First name", sources=["first_name", "name"]),
    "last_name": ProfileFieldConfig(label="Last name", sources=["last_name", "name"]),
    "phone": ProfileFieldConfig(label="Phone", type="tel", sources=["phone"]),
    "country": ProfileFieldConfig(label="Country", sources=["country"]),
    "company": ProfileFieldConfig(label="Company", sources=["company"]),
    "title": ProfileFieldConfig(label="Job title", sources=["title", "traits.role"]),
    "company_size": ProfileFieldConfig(
        label="Company size", type="select",
        options=["1-49", "50-199", "200-999", "1000-4999", "5000+"],
        sources=["account.size", "traits.company_size", "traits.employees"]),
    "project_status": ProfileFieldConfig(
        label="Where is your project?", type="select",
        options=["Just researching", "Evaluating tools", "Budget approved",
                 "Buying this quarter"],
        sources=["traits.project_status"]),
}


@dataclass
class FormField:
    name: str
    label: str
    type: str
    options: list[str] = field(default_factory=list)
    required: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "type": self.type,
                "options": self.options, "required": self.required}


@dataclass
class FormPlan:
    form: str | None
    asset_value: float
    known_person: bool
    ask: list[FormField]
    known: list[str]  # unlocked fields already known (names only)
    later: list[str]  # still unknown, for a later form or a more valuable asset

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.ask]

    def as_dict(self) -> dict[str, Any]:
        return {"form": self.form, "asset_value": self.asset_value,
                "known_person": self.known_person, "fields": [f.as_dict() for f in self.ask],
                "known": self.known, "later": self.later}


def catalog(settings: Settings) -> dict[str, ProfileFieldConfig]:
    return {**BUILTIN_FIELDS, **settings.profiling.fields}


def _value_at(person: Mapping[str, Any], source: str) -> Any:
    if source.startswith("traits."):
        traits = parse_json(person.get("traits")) or {}
        return traits.get(source[len("traits."):]) if isinstance(traits, Mapping) else None
    if source.startswith("account."):
        account = person.get("account") or {}
        return account.get(source[len("account."):])
    return person.get(source)


def is_known(person: Mapping[str, Any], spec: ProfileFieldConfig, name: str) -> bool:
    for source in spec.sources or [name, f"traits.{name}"]:
        value = _value_at(person, source)
        if value is not None and str(value).strip() != "":
            return True
    return False


def asset_value_of(value: float | str | None, settings: Settings) -> float:
    if value is None:
        return 0.0
    if isinstance(value, int | float):
        return float(value)
    named = settings.profiling.values
    if value in named:
        return float(named[value])
    try:
        return float(value)
    except ValueError:
        raise InputError(f"asset value {value!r} is neither a number nor one of "
                         f"{', '.join(named)} ([profiling].values)", field="asset_value") from None


def next_fields(person: Mapping[str, Any] | None, form: str | FormConfig | None = None,
                asset_value: float | str | None = None, *,
                settings: Settings | None = None) -> FormPlan:
    """The questions to ask `person` (None: an unknown visitor) on `form` for an asset worth
    `asset_value` (default: the form's `[profiling.forms.NAME].asset_value`)."""
    settings = settings or Settings()
    cfg = settings.profiling
    fields = catalog(settings)
    if isinstance(form, FormConfig):
        form_name, form_cfg = None, form
    else:
        form_name, form_cfg = form, cfg.forms.get(form or "", FormConfig())
    value = asset_value_of(asset_value if asset_value is not None else form_cfg.asset_value,
                           settings)
    person = person or {}
    known_person = bool(person.get("email"))
    unlocked: list[str] = []
    for tier in sorted(cfg.tiers, key=lambda t: t.min_value):
        if tier.min_value <= value:
            unlocked += [f for f in tier.fields if f not in unlocked]
    unknown_fields = [f for f in (*unlocked, *form_cfg.always) if f not in fields]
    if unknown_fields:
        raise InputError(f"unknown profile field(s) {', '.join(unknown_fields)}; declare them "
                         "under [profiling.fields.NAME]", field="fields")
    missing = [f for f in unlocked if not is_known(person, fields[f], f)]
    limit = form_cfg.max_questions or cfg.max_questions
    ask = missing[:limit]
    if not known_person and "email" in fields and "email" not in ask:
        ask = ["email", *ask[: max(limit - 1, 0)]]
    for f in form_cfg.always:
        if f not in ask:
            ask.append(f)
    every = [f for t in sorted(cfg.tiers, key=lambda t: t.min_value) for f in t.fields]
    later = [f for f in dict.fromkeys(every)
             if f not in ask and not is_known(person, fields[f], f)]
    return FormPlan(
        form=form_name, asset_value=value, known_person=known_person,
        ask=[FormField(f, fields[f].label, fields[f].type, list(fields[f].options))
             for f in ask],
        known=[f for f in unlocked if f not in missing], later=later,
    )


def resolve_person(engine: Engine, ref: str) -> str | None:
    """A person id, user id, anonymous id or email -> the person id (None if unknown)."""
    ref = (ref or "").strip()
    if not ref:
        return None
    for sql, arg in (
        ("SELECT person_id FROM people WHERE person_id = ?", ref),
        ("SELECT person_id FROM identities WHERE alias_id = ?", ref),
        ("SELECT person_id FROM people WHERE person_id = ?", f"anon:{ref}"),
        ("SELECT min(person_id) FROM people WHERE email = ?", ref.lower()),
    ):
        rows = engine.query(sql, [arg])
        if rows and rows[0][0]:
            return rows[0][0]
    return None


def person_profile(engine: Engine, person_id: str) -> dict[str, Any]:
    cols = ["person_id", "email", "first_name", "last_name", "name", "company", "title",
            "phone", "country", "traits"]
    rows = engine.query(
        f"SELECT {', '.join('p.' + c for c in cols)}, a.name, a.domain, a.size, a.industry "
        "FROM people p LEFT JOIN accounts a ON a.account_id = p.account_id "
        "WHERE p.person_id = ?", [person_id])
    if not rows:
        raise NotFound(f"no person {person_id!r}")
    r = rows[0]
    out = dict(zip(cols, r[: len(cols)], strict=True))
    out["traits"] = parse_json(out["traits"]) or {}
    out["account"] = dict(zip(("name", "domain", "size", "industry"), r[len(cols):],
                              strict=True))
    return out


def form_fields(engine: Engine, settings: Settings, form: str, person: str | None = None,
                asset_value: float | str | None = None) -> dict[str, Any]:
    """What the route `GET /v1/forms/{form}/fields?person=...` returns (JSON-ready).

    An unknown person (or none) is treated as a new visitor, never as an error: the form must
    render either way."""
    pid = resolve_person(engine, person) if person else None
    profile = person_profile(engine, pid) if pid else None
    plan = next_fields(profile, form, asset_value, settings=settings)
    return plan.as_dict()
