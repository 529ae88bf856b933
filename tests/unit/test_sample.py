"""The LabCloud demo-data generator: valid Segment lines, realism the product relies on, seeds."""

from __future__ import annotations

import csv
import gzip
import re
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from leadrefinery.errors import InputError
from leadrefinery.sample import GeneratedBusiness, ceiling_auc, generate
from leadrefinery.sample import business as B

PEOPLE = 300
ISO = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TRACK_EVENTS = {
    "Signed Up",
    "Logged In",
    "Environment Launched",
    "Environment Stopped",
    "Environment Resumed",
    "Email Opened",
    "Email Clicked",
    "Documentation Purchased",
    "Training Registered",
    "Contact Sales Requested",
    "Subscription Started",
}
SIGNUP_TRAITS = {
    "email",
    "firstName",
    "lastName",
    "company",
    "title",
    "phone",
    "phoneCountry",
    "country",
    "emailVerified",
    "phoneVerified",
    "referralSource",
    "referralCode",
    "companySize",
    "productInterest",
    "plan",
    "createdAt",
}


@pytest.fixture(scope="module")
def biz(tmp_path_factory: pytest.TempPathFactory) -> GeneratedBusiness:
    return generate(tmp_path_factory.mktemp("a"), people=PEOPLE, seed=11)


@pytest.fixture(scope="module")
def lines(biz: GeneratedBusiness) -> list[bytes]:
    return biz.events_path.read_bytes().splitlines()


@pytest.fixture(scope="module")
def messages(lines: list[bytes]) -> list[dict]:
    return [orjson.loads(line) for line in lines]


@pytest.fixture(scope="module")
def truth(biz: GeneratedBusiness) -> list[dict[str, str]]:
    with open(biz.truth_path, newline="") as f:
        return list(csv.DictReader(f))


def _final_ids(messages: list[dict]) -> dict[str, str]:
    """user id as sent -> final user id (legacy ids resolved through alias)."""
    return {m["previousId"]: m["userId"] for m in messages if m["type"] == "alias"}


def _by_user(messages: list[dict]) -> dict[str, list[dict]]:
    final = _final_ids(messages)
    out: dict[str, list[dict]] = defaultdict(list)
    for m in messages:
        if "userId" in m:
            out[final.get(m["userId"], m["userId"])].append(m)
    return out


def _csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


# ---- files and determinism ------------------------------------------------------------------


def test_same_seed_gives_byte_identical_files(biz: GeneratedBusiness, tmp_path: Path) -> None:
    again = generate(tmp_path / "again", people=PEOPLE, seed=11)
    for name in (
        "events_path",
        "opportunities_path",
        "campaigns_path",
        "accounts_path",
        "truth_path",
    ):
        assert getattr(again, name).read_bytes() == getattr(biz, name).read_bytes(), name
    assert again.counts == biz.counts
    other = generate(tmp_path / "other", people=PEOPLE, seed=12)
    assert other.events_path.read_bytes() != biz.events_path.read_bytes()


def test_gzip_holds_the_same_lines_and_is_deterministic(
    biz: GeneratedBusiness, tmp_path: Path
) -> None:
    one = generate(tmp_path / "one", people=PEOPLE, seed=11, gzip=True)
    two = generate(tmp_path / "two", people=PEOPLE, seed=11, gzip=True)
    assert one.events_path.name == "events.jsonl.gz"
    assert one.events_path.read_bytes() == two.events_path.read_bytes()
    assert gzip.decompress(one.events_path.read_bytes()) == biz.events_path.read_bytes()


def test_output_does_not_depend_on_the_chunking(
    biz: GeneratedBusiness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadrefinery.sample import writer

    monkeypatch.setattr(writer, "CHUNK_ROWS", 997)  # many chunks, rendered by parallel threads
    small = generate(tmp_path / "small", people=PEOPLE, seed=11)
    assert small.events_path.read_bytes() == biz.events_path.read_bytes()


def test_bad_arguments_are_rejected_with_the_field(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="people"):
        generate(tmp_path, people=0)
    with pytest.raises(InputError, match="abusers"):
        generate(tmp_path, people=10, abusers=0.9)
    with pytest.raises(InputError, match="start"):
        generate(tmp_path, people=10, start="March")


# ---- Segment messages ------------------------------------------------------------------------


def test_every_line_is_a_valid_segment_message(lines: list[bytes], messages: list[dict]) -> None:
    assert len(lines) == len(messages) > PEOPLE * 10
    for m in messages:
        assert m["type"] in {"identify", "track", "page", "group", "alias"}, m
        assert isinstance(m["messageId"], str) and m["messageId"]
        assert ISO.match(m["timestamp"].encode()), m["timestamp"]
        assert m.get("userId") or m.get("anonymousId"), m
        if m["type"] == "identify":
            assert isinstance(m["traits"], dict) and m["traits"] and m.get("userId")
        elif m["type"] == "track":
            assert m["event"] in TRACK_EVENTS, m["event"]
            assert isinstance(m["properties"], dict)
        elif m["type"] == "page":
            assert isinstance(m["name"], str)
            assert set(m["properties"]) == {"path", "url", "title", "referrer"}
            assert m["properties"]["url"].endswith(m["properties"]["path"])
        elif m["type"] == "group":
            assert m["groupId"].startswith("acct-")
            assert set(m["traits"]) == {"name", "employees", "industry", "website"}
        elif m["type"] == "alias":
            assert m["previousId"] and m["userId"] and m["previousId"] != m["userId"]


def test_lines_pass_the_ingest_validator(messages: list[dict]) -> None:
    segment = pytest.importorskip("leadrefinery.ingest.segment")
    for m in messages:
        segment.validate(m)


def test_sorted_by_time_with_unique_message_ids(messages: list[dict]) -> None:
    stamps = [m["timestamp"] for m in messages]  # fixed-width UTC text sorts like time
    assert stamps == sorted(stamps)
    ids = [m["messageId"] for m in messages]
    assert len(set(ids)) == len(ids)


def test_vocabulary_is_complete(biz: GeneratedBusiness, messages: list[dict]) -> None:
    events = {m["event"] for m in messages if m["type"] == "track"}
    assert events == TRACK_EVENTS
    big = generate(biz.out_dir.parent / "vocab", people=3000, seed=3)
    kinds = {k for k, v in big.counts.items() if k.startswith("kind:") and v == 0}
    assert not kinds, f"never generated: {kinds}"
    paths = {m["properties"]["path"] for m in messages if m["type"] == "page"}
    for prefix in (
        "/blog/",
        "/features/",
        "/case-studies/",
        "/pricing",
        "/docs/getting-started",
        "/trial/",
        "/docs/api",
        "/integrations/",
        "/docs/security",
        "/contact-sales",
    ):
        assert any(p.startswith(prefix) for p in paths), prefix


def test_signup_identify_then_signed_up_with_anonymous_history(messages: list[dict]) -> None:
    first_identify: dict[str, dict] = {}
    for m in messages:
        if m["type"] == "identify" and "anonymousId" in m:
            first_identify.setdefault(m["userId"], m)
    assert len(first_identify) == PEOPLE
    for m in first_identify.values():
        assert set(m["traits"]) >= SIGNUP_TRAITS
        assert m["traits"]["plan"] == "trial"
        assert m["traits"]["createdAt"] == m["timestamp"]
        assert isinstance(m["traits"]["emailVerified"], bool)
        assert len(m["traits"]["phoneCountry"]) == 2
    anon_pages = {m["anonymousId"] for m in messages if m["type"] == "page" and "userId" not in m}
    assert {m["anonymousId"] for m in first_identify.values()} <= anon_pages
    campaigns = [m for m in messages if "context" in m]
    assert campaigns and all(m["type"] == "page" and "userId" not in m for m in campaigns)
    assert all(set(m["context"]["campaign"]) == {"source", "medium", "name"} for m in campaigns)


def test_realistic_population(messages: list[dict]) -> None:
    traits = [m["traits"] for m in messages if m["type"] == "identify" and "anonymousId" in m]
    domains = [t["email"].split("@")[1] for t in traits]
    webmail = sum(d in dict(B.WEBMAIL) for d in domains) / len(domains)
    assert 0.3 < webmail < 0.7
    risky = sum(t["phoneCountry"] in B.RISKY_PHONE_COUNTRIES for t in traits) / len(traits)
    assert 0.01 < risky < 0.2
    titles = {t["title"] for t in traits}
    assert {"CTO", "Student"} & titles and len(titles) > 10
    assert len({t["referralSource"] for t in traits}) >= 5
    assert sum(1 for m in messages if m["type"] == "alias") >= PEOPLE // 200
    updates = [m for m in messages if m["type"] == "identify" and "anonymousId" not in m]
    assert any("phoneVerified" in m["traits"] for m in updates)


def test_alias_links_a_legacy_id_used_before_it(messages: list[dict]) -> None:
    aliases = [m for m in messages if m["type"] == "alias"]
    assert aliases
    for a in aliases:
        before = [m for m in messages if m.get("userId") == a["previousId"]]
        assert before and all(m["timestamp"] <= a["timestamp"] for m in before)
        assert any(m["type"] == "identify" and "anonymousId" in m for m in before)


# ---- truth, conversion, abuse ---------------------------------------------------------------


def test_truth_has_a_row_for_every_identified_person(
    messages: list[dict], truth: list[dict[str, str]]
) -> None:
    final = _final_ids(messages)
    identified = {final.get(m["userId"], m["userId"]) for m in messages if m["type"] == "identify"}
    assert identified == {r["user_id"] for r in truth}
    assert len(truth) == PEOPLE


def test_conversion_rate_is_plausible_and_matches_the_events(
    biz: GeneratedBusiness, messages: list[dict], truth: list[dict[str, str]]
) -> None:
    mean_p = sum(float(r["true_probability"]) for r in truth) / len(truth)
    assert 0.02 < mean_p < 0.05
    converted = {r["user_id"] for r in truth if r["converted"] == "1"}
    assert 0.005 < len(converted) / len(truth) < 0.1
    subs = [m for m in messages if m.get("event") == "Subscription Started"]
    assert sorted(m["userId"] for m in subs) == sorted(converted)
    assert all(m["properties"]["plan"] in B.PLANS and m["properties"]["amount"] > 0 for m in subs)
    assert biz.counts["conversions"] == len(converted)


def test_spurious_signups_never_log_in_and_never_convert(
    messages: list[dict], truth: list[dict[str, str]]
) -> None:
    spurious = {r["user_id"] for r in truth if r["is_spurious"] == "1"}
    assert spurious
    by_user = _by_user(messages)
    for uid in spurious:
        assert not any(m.get("event") == "Logged In" for m in by_user[uid])
    assert all(r["converted"] == "0" for r in truth if r["user_id"] in spurious)


def _env_facts(events: list[dict]) -> dict[str, dict]:
    envs: dict[str, dict] = defaultdict(lambda: {"resumes": [], "stops": []})
    for m in events:
        p = m.get("properties", {})
        if m.get("event") == "Environment Launched":
            envs[p["environment_id"]].update(launch=m["timestamp"], **p)
        elif m.get("event") == "Environment Stopped":
            envs[p["environment_id"]]["stops"].append((m["timestamp"], p))
        elif m.get("event") == "Environment Resumed":
            envs[p["environment_id"]]["resumes"].append(m["timestamp"])
    return envs


def _ms(ts: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)


def test_abusers_leave_over_limit_evidence(
    messages: list[dict], truth: list[dict[str, str]]
) -> None:
    abusers = {r["user_id"] for r in truth if r["is_abuser"] == "1"}
    assert abusers
    by_user = _by_user(messages)
    for uid in abusers:
        envs = _env_facts(by_user[uid]).values()
        assert any(e["guests"] > B.ALLOWED_GUESTS for e in envs), uid
        assert any(
            p["duration_minutes"] > e["max_duration_minutes"] for e in envs for _, p in e["stops"]
        ), uid
        # several at once: some environment launched while another one still runs
        spans = sorted((_ms(e["launch"]), max(_ms(t) for t, _ in e["stops"])) for e in envs)
        assert any(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False)), uid
        # resumed like clockwork, right after an auto-suspend
        regular = False
        for e in envs:
            r = [_ms(t) for t in e["resumes"]]
            gaps = {b - a for a, b in zip(r, r[1:], strict=False)}
            regular |= len(r) >= 5 and len(gaps) == 1
        assert regular, uid


def test_ordinary_people_stay_within_limits(
    messages: list[dict], truth: list[dict[str, str]]
) -> None:
    abusers = {r["user_id"] for r in truth if r["is_abuser"] == "1"}
    for uid, events in _by_user(messages).items():
        if uid in abusers:
            continue
        for e in _env_facts(events).values():
            assert e["guests"] <= B.ALLOWED_GUESTS
            assert all(p["duration_minutes"] <= e["max_duration_minutes"] for _, p in e["stops"])


def test_ceiling_auc(biz: GeneratedBusiness) -> None:
    assert 0.6 < biz.ceiling_auc < 1.0
    assert ceiling_auc(biz.truth_path) == biz.ceiling_auc


def test_behaviour_separates_converters(messages: list[dict], truth: list[dict[str, str]]) -> None:
    ordinary = {
        r["user_id"]: r["converted"] == "1"
        for r in truth
        if r["is_abuser"] == "0" and r["is_spurious"] == "0"
    }
    logins: dict[str, int] = defaultdict(int)
    for uid, events in _by_user(messages).items():
        logins[uid] = sum(m.get("event") == "Logged In" for m in events)
    conv = [logins[u] for u, c in ordinary.items() if c]
    rest = [logins[u] for u, c in ordinary.items() if not c]
    assert conv and sum(conv) / len(conv) > 1.5 * sum(rest) / len(rest)


# ---- CRM files -------------------------------------------------------------------------------


def test_opportunities_agree_with_conversions(
    biz: GeneratedBusiness, messages: list[dict], truth: list[dict[str, str]]
) -> None:
    header, opps = _csv(biz.opportunities_path)
    assert header == [
        "opportunity_id",
        "email",
        "account",
        "created",
        "stage",
        "won",
        "amount",
        "closed",
        "owner",
    ]
    assert opps and len({o["opportunity_id"] for o in opps}) == len(opps)
    converted_email = {r["email"] for r in truth if r["converted"] == "1"}
    amounts = {}
    email_of = {r["user_id"]: r["email"] for r in truth}
    final = _final_ids(messages)
    for m in messages:
        if m.get("event") == "Subscription Started":
            amounts[email_of[final.get(m["userId"], m["userId"])]] = m["properties"]["amount"]
    for o in opps:
        assert o["won"] in ("true", "false", "")
        if o["won"] == "true":
            assert o["stage"] == "Closed Won" and o["email"] in converted_email
            assert int(o["amount"]) == amounts[o["email"]]
        else:
            assert o["email"] not in converted_email
        assert (o["closed"] == "") == (o["won"] == "")
        if o["closed"]:
            assert o["created"] <= o["closed"]
        assert o["owner"].endswith("@labcloud.io")


def test_campaign_costs_cover_every_campaign_month(
    biz: GeneratedBusiness, messages: list[dict]
) -> None:
    header, rows = _csv(biz.campaigns_path)
    assert header == ["campaign", "source", "medium", "period_start", "period_end", "cost"]
    assert len(rows) == 6 * len(B.CAMPAIGN_CHANNELS)
    assert all(float(r["cost"]) > 0 and r["period_start"] < r["period_end"] for r in rows)
    landed = {m["context"]["campaign"]["name"] for m in messages if "context" in m}
    assert landed <= {r["campaign"] for r in rows}


def test_accounts_match_group_calls(biz: GeneratedBusiness, messages: list[dict]) -> None:
    header, rows = _csv(biz.accounts_path)
    assert header == ["account_id", "domain", "name", "employees", "industry", "owner"]
    ids = {r["account_id"] for r in rows}
    assert len(ids) == len(rows) == len({r["domain"] for r in rows})
    groups = {m["groupId"]: m["traits"]["name"] for m in messages if m["type"] == "group"}
    assert set(groups) == ids
    by_id = {r["account_id"]: r for r in rows}
    assert all(by_id[g]["name"] == name for g, name in groups.items())


def test_webmail_domains_are_known_to_ingest() -> None:
    webmail = pytest.importorskip("leadrefinery.ingest.webmail")
    assert {d for d, _ in B.WEBMAIL} <= webmail.WEBMAIL_DOMAINS
