"""Invalid model files fail at load with `file:line (rule 'id'): what — what to do`."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from leadrefinery.errors import ModelError
from leadrefinery.model import load_model, parse_model

DEMO = Path(__file__).resolve().parents[2] / "src" / "leadrefinery" / "sample" / "model.yaml"


def model_text(rules: str, extra: str = "") -> str:
    return (
        textwrap.dedent("""\
        version: 1
        sets:
          risky: [NG, PK]
        facts:
          logins: {on: track, event: Logged In}
        rules:
        """)
        + textwrap.indent(textwrap.dedent(rules), "  ")
        + textwrap.dedent(extra)
    )


def fails(text: str) -> ModelError:
    with pytest.raises(ModelError) as info:
        parse_model(text, "m.yaml")
    return info.value


OK_RULE = """\
- id: pricing
  on: page
  when: path LIKE '/pricing%'
  points: 5
"""


def test_a_valid_model_loads_and_is_versioned() -> None:
    m = parse_model(model_text(OK_RULE), "m.yaml")
    assert m.spec.rules[0].id == "pricing"
    assert m.version.startswith("1+") and len(m.hash) == 64
    # formatting and comments do not change the content hash; content does
    same = parse_model("# comment\n" + model_text(OK_RULE), "m.yaml")
    assert same.hash == m.hash
    other = parse_model(model_text(OK_RULE.replace("points: 5", "points: 6")), "m.yaml")
    assert other.hash != m.hash


def test_the_demo_model_is_valid() -> None:
    m = load_model(DEMO)
    assert m.spec.grades is not None and m.spec.grades.names() == [
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
        "7",
    ]
    assert {r.id for r in m.spec.rules} >= {
        "webmail",
        "domain_matches_company",
        "risky_phone_country",
        "strong_referral",
        "logged_in_twice",
        "environment_launched",
        "email_click",
        "pricing_page",
    }


def test_typo_of_a_key_suggests_the_right_one() -> None:
    e = fails(model_text(OK_RULE + "  half_lfe: 14d\n"))
    assert e.line == 11 and e.rule == "pricing"
    assert "unknown key 'half_lfe'" in str(e) and "did you mean 'half_life'?" in str(e)
    assert str(e).startswith("m.yaml:11 (rule 'pricing'): ")


def test_unknown_top_level_key() -> None:
    e = fails("version: 1\nrulez: []\n")
    assert e.line == 2 and "did you mean 'rules'?" in str(e)


def test_unknown_field_in_a_condition_names_the_field_line_and_rule() -> None:
    e = fails(
        model_text("""\
        - id: guests
          on: track
          event: Environment Launched
          when: propertes.guests > 5
          points: 5
        """)
    )
    assert e.rule == "guests" and e.line == 10
    assert "propertes.guests" in str(e) and "did you mean 'properties'?" in str(e)


def test_unknown_plain_field_suggests() -> None:
    e = fails(
        model_text("""\
        - id: mail
          on: person
          when: webmial
          points: -5
        """)
    )
    assert "unknown field 'webmial'" in str(e) and "did you mean 'webmail'?" in str(e)
    assert e.line == 9


def test_bad_expression_syntax() -> None:
    e = fails(
        model_text("""\
        - id: broken
          on: page
          when: "path LIKE AND"
          points: 5
        """)
    )
    assert e.rule == "broken" and e.line == 9 and "cannot parse the condition" in str(e)


def test_unknown_set_lists_the_declared_ones() -> None:
    e = fails(
        model_text("""\
        - id: risky_phone
          on: person
          when: traits.phoneCountry IN @riskee
          points: -10
        """)
    )
    assert "unknown set @riskee" in str(e) and "did you mean 'risky'?" in str(e)
    assert "@webmail" in str(e) and e.rule == "risky_phone"


def test_disallowed_function() -> None:
    e = fails(
        model_text("""\
        - id: sneaky
          on: person
          when: read_csv('/etc/passwd') IS NOT NULL
          points: 1
        """)
    )
    assert "function read_csv() is not allowed" in str(e) and e.rule == "sneaky"


@pytest.mark.parametrize(
    "when, message",
    [
        ("email IN (SELECT email FROM people)", "IN (SELECT"),
        ("(SELECT 1) = 1", "sub-queries are not allowed"),
        ("email = 'x'; DROP TABLE people", "one condition"),
        ("DROP TABLE people", "not a condition"),
        ("CAST(email AS INT) > 1", "CAST is not allowed"),
        ("email > 3", "compares text with number"),
        ("title", "not a condition"),
        ('company = "Acme"', "single quotes"),
        ("facts.logons >= 2", "did you mean 'logins'?"),
        ("@risky", "after IN"),
    ],
)
def test_conditions_that_are_rejected(when: str, message: str) -> None:
    rule = yaml.safe_dump(
        [{"id": "r1", "on": "person", "when": when, "points": 1}], sort_keys=False
    )
    e = fails(model_text(rule))
    assert message in str(e), str(e)
    assert e.rule == "r1" and e.line is not None


def test_duplicate_rule_ids() -> None:
    e = fails(model_text(OK_RULE + OK_RULE))
    assert "used twice" in str(e) and e.line == 11


def test_duplicate_yaml_keys() -> None:
    e = fails(model_text(OK_RULE + "  points: 6\n"))
    assert "appears twice" in str(e) and e.line == 11


def test_missing_version_and_missing_required_keys() -> None:
    assert "version" in str(fails("rules: []\n"))
    e = fails(model_text("- id: x\n  when: webmail\n  points: 1\n"))
    assert "missing required key 'on'" in str(e) and e.rule == "x"


def test_bad_values() -> None:
    e = fails(model_text(OK_RULE + "  frequency: weekly\n"))
    assert "frequency is once, each" in str(e) and e.line == 11
    e = fails(model_text(OK_RULE.replace("on: page", "on: pgae")))
    assert "did you mean 'page'?" in str(e) and e.line == 8
    e = fails(model_text(OK_RULE + "  half_life: two weeks\n"))
    assert "duration" in str(e) and e.line == 11
    e = fails(model_text(OK_RULE.replace("id: pricing", "id: Pricing Page")))
    assert "not a valid name" in str(e)
    e = fails(model_text("- id: p\n  on: person\n  when: webmail\n  points: 1\n  half_life: 3d\n"))
    assert "only apply to rules on events" in str(e)


def test_grades_stages_and_abuse_are_checked() -> None:
    e = fails(
        model_text(OK_RULE, "grades:\n  levels: [{grade: A, min: 10}, {grade: B}]\n  mql: [C]\n")
    )
    assert "mql names grade 'C'" in str(e)
    e = fails(
        model_text(
            OK_RULE, "grades:\n  levels: [{grade: A, min: 10}, {grade: B, min: 20}, {grade: C}]\n"
        )
    )
    assert "highest min down" in str(e)
    e = fails(
        model_text(
            OK_RULE, "grades:\n  method: volume\n  levels: [{grade: A, min: 1}, {grade: B}]\n"
        )
    )
    assert "use `top`" in str(e)
    e = fails(model_text(OK_RULE, "stages:\n  evidence:\n    Evalute: [{on: page}]\n"))
    assert "unknown stage 'Evalute'" in str(e) and "did you mean 'Evaluate'?" in str(e)
    assert e.line == 13 and e.rule == "stage:Evalute"
    e = fails(model_text(OK_RULE, "abuse:\n  - {id: a, kind: sesion, key: x}\n"))
    assert "'sesion'" in str(e) and "did you mean 'session'?" in str(e)
    e = fails(
        model_text(
            OK_RULE,
            "abuse:\n  - id: a\n    kind: session\n    start: {on: track}\n"
            "    stop: {on: track}\n    key: properties.id\n    max_minuts: 4\n",
        )
    )
    assert "did you mean 'max_minutes'?" in str(e) and e.rule == "a" and e.line == 17
    e = fails(model_text(OK_RULE, "segments:\n  hot: scroe > 3\n"))
    assert "did you mean 'score'?" in str(e) and e.rule == "segment:hot" and e.line == 12


def test_yaml_syntax_error_has_a_line() -> None:
    e = fails("version: 1\nrules:\n  - id: x\n   on: page\n")
    assert e.line is not None and "YAML" in str(e)


def test_on_is_a_key_not_a_boolean() -> None:
    # YAML 1.1 reads `on` as true; the loader must not
    m = parse_model(model_text(OK_RULE), "m.yaml")
    assert m.spec.rules[0].on == "page"


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no model file"):
        load_model(tmp_path / "nope.yaml")


def test_session_fields_are_checked_with_file_line_and_rule() -> None:
    session = (
        "abuse:\n  - id: long\n    kind: session\n    start: {on: track, event: Started}\n"
        "    stop: {on: track, event: Stopped}\n    key: properties.id\n    max_minutes: 60\n"
    )
    ok = parse_model(model_text(OK_RULE, session + "    resume_within: 5m\n"), "m.yaml")
    assert ok.spec.abuse[0].resume_within == pytest.approx(5 / 1440)
    e = fails(model_text(OK_RULE, session + "    resume_within: soon\n"))
    assert "'soon' is not a duration" in str(e) and e.rule == "long" and e.line == 18
    e = fails(model_text(OK_RULE, session + "    min_minutes: 30\n"))
    assert "belong to kind: concurrent" in str(e) and e.rule == "long"
    e = fails(model_text(OK_RULE, session + "    resume_whithin: 5m\n"))
    assert "did you mean 'resume_within'?" in str(e) and e.line == 18
    e = fails(
        model_text(
            OK_RULE,
            session.replace("kind: session", "kind: concurrent").replace("max_minutes: 60", "")
            + "    min_minutes: -1\n",
        )
    )
    assert "min_minutes" in str(e) and e.rule == "long"
