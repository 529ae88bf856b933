"""Progressive profiling: each form asks only for what is missing, more for richer assets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leadrefinery.act.profiling import form_fields, next_fields
from leadrefinery.config import Settings
from leadrefinery.errors import InputError

from ..conftest import write_lines

S = Settings.model_validate({"profiling": {
    "max_questions": 3,
    "forms": {"ebook": {"asset_value": "standard"},
              "admin-guide": {"asset_value": "premium", "max_questions": 4},
              "webinar": {"asset_value": 0, "always": ["country"]}},
}})


def test_an_unknown_visitor_on_an_entry_form_gives_name_and_email():
    plan = next_fields(None, "newsletter", settings=S)
    assert plan.names == ["email", "first_name", "last_name"]
    assert not plan.known_person
    assert plan.ask[0].type == "email" and plan.ask[0].required


def test_a_known_person_is_not_asked_again():
    ann = {"email": "ann@acme.de", "first_name": "Ann", "last_name": "Lee"}
    assert next_fields(ann, "newsletter", settings=S).names == []
    # a more valuable asset unlocks the next questions
    assert next_fields(ann, "ebook", settings=S).names == ["country", "company", "title"]
    ann.update(country="DE", company="Acme", title="CTO")
    plan = next_fields(ann, "ebook", settings=S)
    assert plan.names == [] and plan.known == ["email", "first_name", "last_name", "country",
                                               "company", "title"]
    assert plan.later == ["company_size", "project_status"]
    # the most valuable assets ask for company size and project status
    assert next_fields(ann, "admin-guide", settings=S).names == ["company_size", "project_status"]


def test_answers_known_from_the_account_or_traits_count():
    bob = {"email": "bob@globex.com", "name": "Bob Stone", "country": "US", "company": "Globex",
           "traits": {"role": "Engineer", "project_status": "Evaluating tools"},
           "account": {"size": 1200}}
    assert next_fields(bob, "admin-guide", settings=S).names == []


def test_questions_per_form_are_capped_and_email_always_comes_first():
    plan = next_fields(None, "admin-guide", settings=S)
    assert plan.names == ["email", "first_name", "last_name", "country"]
    assert plan.later == ["company", "title", "company_size", "project_status"]
    # `always` fields are asked even when known (e.g. consent or a per-event choice)
    assert next_fields({"email": "a@b.c", "first_name": "A", "last_name": "B",
                        "country": "DE"}, "webinar", settings=S).names == ["country"]
    # the asset value may be given explicitly, by name or number
    assert next_fields({"email": "a@b.c", "first_name": "A", "last_name": "B"}, "x", 20,
                       settings=S).names == ["country", "company", "title"]
    with pytest.raises(InputError, match="asset value 'gold'"):
        next_fields(None, "x", "gold", settings=S)


def test_form_fields_finds_the_person_and_reveals_no_values(project, tmp_path: Path):
    path = write_lines(tmp_path / "ev.jsonl", [json.dumps({
        "type": "identify", "userId": "u1", "anonymousId": "anon-7", "messageId": "m1",
        "timestamp": "2026-03-02T10:00:00Z",
        "traits": {"email": "ann@acme.de", "firstName": "Ann", "lastName": "Lee",
                   "country": "DE"}})])
    project.ingest([path])
    e = project.engine
    for ref in ("u1", "anon-7", "ANN@acme.de"):
        body = form_fields(e, S, "ebook", ref)
        assert [f["name"] for f in body["fields"]] == ["company", "title"], ref
        assert body["known_person"]
    text = json.dumps(body)
    assert "ann@acme.de" not in text and "Ann" not in text and "DE" not in text
    stranger = form_fields(e, S, "ebook", "nobody-we-know")
    assert [f["name"] for f in stranger["fields"]] == ["email", "first_name", "last_name"]
    assert form_fields(e, S, "ebook")["known_person"] is False
