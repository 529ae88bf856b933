"""File ingestion: Segment JSONL, key=value logs, CSV imports, quarantine, identity."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from leadrefinery.errors import InputError
from leadrefinery.ingest.keyvalue import parse_pairs

from ..conftest import write_lines


def msg(**kw) -> str:
    base = {"timestamp": "2026-01-01T10:00:00Z"}
    return json.dumps({**base, **kw})


def rows(project, sql: str) -> list[tuple]:
    return project.engine.query(sql)


def test_counts_add_up_with_duplicates_and_bad_lines(project, tmp_path: Path):
    path = write_lines(
        tmp_path / "ev.jsonl",
        [
            msg(type="track", userId="u1", event="Logged In", messageId="m1"),
            msg(type="track", userId="u1", event="Logged In", messageId="m1"),  # dup in file
            "{not json",
            msg(type="track", userId="u1", messageId="m2"),  # no event
            msg(type="page", messageId="m3", properties={"path": "/"}),  # no ids
            msg(type="track", userId="u1", event="X", messageId="m4", properties=[1]),
            msg(type="track", userId="u1", event="X", messageId="m5", timestamp="yesterday"),
            "",
            json.dumps({"batch": [
                {"type": "identify", "userId": "u2", "messageId": "b1", "traits": {"a": 1}},
                {"type": "nonsense", "userId": "u2", "messageId": "b2"},
            ]}),
        ],
    )
    report = project.ingest([path])
    assert (report.read, report.stored, report.duplicates, report.quarantined) == (9, 2, 1, 6)
    assert report.balanced and report.blank_lines == 1
    reasons = {r["line"]: r["reason"] for r in project.quarantine()}
    assert reasons[3] == "not valid JSON"
    assert reasons[4] == "field 'event' is required for track"
    assert reasons[5] == "one of 'userId' or 'anonymousId' is required"
    assert reasons[6] == "field 'properties' must be an object"
    assert reasons[7] == "field 'timestamp' must be an ISO-8601 time"
    batch_reject = [r for r in project.quarantine() if r["line"] == 9]
    assert batch_reject[0]["item"] == 1 and "type" in batch_reject[0]["reason"]

    again = project.ingest([path])  # idempotent: everything good is now a duplicate
    assert (again.stored, again.duplicates, again.quarantined) == (0, 3, 6)
    assert len(project.quarantine()) == 6  # the same rejects are not stored twice
    assert rows(project, "SELECT count(*) FROM events") == [(2,)]



def test_duplicates_are_looked_for_near_the_chunks_times(project, tmp_path: Path):
    """A messageId seen within `dedupe_window_days` of the new chunk's times is a duplicate;
    the same id a month apart is a different event (0 compares with the whole history)."""
    first = write_lines(tmp_path / "a.jsonl", [msg(type="track", userId="u", event="E",
                                                   messageId="same")])
    assert project.ingest([first]).stored == 1
    retry = write_lines(tmp_path / "b.jsonl", [msg(type="track", userId="u", event="E",
                                                   messageId="same",
                                                   timestamp="2026-01-03T09:00:00Z")])
    assert project.ingest([retry]).duplicates == 1
    later = write_lines(tmp_path / "c.jsonl", [msg(type="track", userId="u", event="E",
                                                   messageId="same",
                                                   timestamp="2026-02-15T09:00:00Z")])
    project.settings.ingest.dedupe_window_days = 0
    assert project.ingest([later]).duplicates == 1
    project.settings.ingest.dedupe_window_days = 7
    assert project.ingest([later]).stored == 1

def test_gzip_and_glob(project, tmp_path: Path):
    for i in range(2):
        with gzip.open(tmp_path / f"part{i}.jsonl.gz", "wt") as f:
            f.write(msg(type="track", userId="u", event="E", messageId=f"g{i}") + "\n")
    report = project.ingest([str(tmp_path / "part*.jsonl.gz")])
    assert report.stored == 2
    with pytest.raises(InputError, match="no file matches"):
        project.ingest([str(tmp_path / "nothing*.jsonl")])


def test_non_utf8_line_is_quarantined_and_rest_loaded(project, tmp_path: Path):
    path = tmp_path / "ev.jsonl"
    path.write_bytes(
        msg(type="track", userId="u", event="E", messageId="a").encode() + b"\n"
        + b'{"type":"track","userId":"\xff\xfe","event":"E"}\n'
        + msg(type="track", userId="u", event="E", messageId="b").encode() + b"\n"
    )
    report = project.ingest([path])
    assert (report.read, report.stored, report.quarantined) == (3, 2, 1)
    assert project.quarantine()[0]["reason"] == "line is not valid UTF-8"
    assert project.quarantine()[0]["line"] == 2


def test_identity_anonymous_browsing_joins_person_on_identify(project, tmp_path: Path):
    path = write_lines(
        tmp_path / "ev.jsonl",
        [
            msg(type="page", anonymousId="a1", messageId="p1", properties={"path": "/pricing"},
                context={"campaign": {"source": "google", "name": "spring"}},
                timestamp="2026-01-01T09:00:00Z"),
            msg(type="identify", userId="u1", anonymousId="a1", messageId="i1",
                traits={"email": "Jo@Acme.com", "firstName": "Jo", "title": "CTO"}),
        ],
    )
    project.ingest([path])
    assert rows(project, "SELECT person_id FROM events ORDER BY ts") == [("u1",), ("u1",)]
    person = rows(project, "SELECT person_id, email, domain, webmail, source, campaign, "
                           "account_id FROM people")
    assert person == [("u1", "jo@acme.com", "acme.com", False, "google", "spring",
                       "domain:acme.com")]
    # a later anonymous event of the same browser belongs to the person too
    project.ingestor.ingest_messages(
        [{"type": "page", "anonymousId": "a1", "messageId": "p2", "properties": {"path": "/"}}],
        source="t",
    )
    assert rows(project, "SELECT person_id FROM events WHERE message_id = 'p2'") == [("u1",)]


def test_alias_merges_previous_user(project):
    project.ingestor.ingest_messages(
        [
            {"type": "identify", "userId": "old", "messageId": "1", "traits": {"plan": "free"},
             "timestamp": "2026-01-01T00:00:00Z"},
            {"type": "track", "userId": "old", "event": "Logged In", "messageId": "2",
             "timestamp": "2026-01-01T00:01:00Z"},
        ],
        source="t",
    )
    project.ingestor.ingest_messages(
        [{"type": "alias", "previousId": "old", "userId": "new", "messageId": "3",
          "timestamp": "2026-01-02T00:00:00Z"}],
        source="t",
    )
    assert rows(project, "SELECT DISTINCT person_id FROM events") == [("new",)]
    assert rows(project, "SELECT person_id FROM people") == [("new",)]
    assert rows(project, "SELECT traits->>'plan' FROM people") == [("free",)]
    # events still arriving under the old id resolve to the merged person
    project.ingestor.ingest_messages(
        [{"type": "track", "userId": "old", "event": "Logged In", "messageId": "4"}], source="t"
    )
    assert rows(project, "SELECT person_id FROM events WHERE message_id = '4'") == [("new",)]


def test_alias_chain_within_one_batch_resolves_to_the_last_id(project):
    """a -> b, then b -> c, in the same micro-batch: everything of a and b ends up on c."""
    project.ingestor.ingest_messages(
        [
            {"type": "identify", "userId": "a", "anonymousId": "anon-1", "messageId": "1",
             "traits": {"plan": "free"}, "timestamp": "2026-01-01T00:00:00Z"},
            {"type": "track", "userId": "a", "event": "Logged In", "messageId": "2",
             "timestamp": "2026-01-01T00:01:00Z"},
            {"type": "alias", "previousId": "a", "userId": "b", "messageId": "3",
             "timestamp": "2026-01-02T00:00:00Z"},
            {"type": "track", "userId": "b", "event": "Logged In", "messageId": "4",
             "timestamp": "2026-01-02T00:01:00Z"},
            {"type": "alias", "previousId": "b", "userId": "c", "messageId": "5",
             "timestamp": "2026-01-03T00:00:00Z"},
        ],
        source="t",
    )
    assert rows(project, "SELECT DISTINCT person_id FROM events") == [("c",)]
    assert rows(project, "SELECT person_id, traits->>'plan' FROM people") == [("c", "free")]
    assert rows(project, "SELECT alias_id, person_id FROM identities ORDER BY alias_id") == [
        ("a", "c"), ("anon-1", "c"), ("b", "c")]
    # later events under any of the old ids belong to c
    project.ingestor.ingest_messages(
        [{"type": "page", "anonymousId": "anon-1", "messageId": "6", "properties": {"path": "/"}},
         {"type": "track", "userId": "a", "event": "Logged In", "messageId": "7"}], source="t")
    assert rows(project, "SELECT DISTINCT person_id FROM events") == [("c",)]


def test_alias_cycle_within_one_batch_links_nothing_and_loses_nothing(project):
    project.ingestor.ingest_messages(
        [{"type": "alias", "previousId": "x", "userId": "y", "messageId": "1",
          "timestamp": "2026-01-01T00:00:00Z"},
         {"type": "alias", "previousId": "y", "userId": "x", "messageId": "2",
          "timestamp": "2026-01-01T00:01:00Z"}],
        source="t",
    )
    assert rows(project, "SELECT count(*) FROM events") == [(2,)]
    assert rows(project, "SELECT alias_id, person_id FROM identities ORDER BY alias_id") == [
        ("x", "y")]


def test_newest_trait_wins_and_history_is_kept(project):
    project.ingestor.ingest_messages(
        [
            {"type": "identify", "userId": "u", "messageId": "2", "traits": {"title": "CEO"},
             "timestamp": "2026-02-01T00:00:00Z"},
            {"type": "identify", "userId": "u", "messageId": "1", "traits": {"title": "Intern"},
             "timestamp": "2026-01-01T00:00:00Z"},
        ],
        source="t",
    )
    assert rows(project, "SELECT title FROM people") == [("CEO",)]
    assert rows(project, "SELECT count(*) FROM trait_history WHERE key = 'title'") == [(2,)]


def test_group_and_domain_tie_people_to_accounts(project):
    project.ingestor.ingest_messages(
        [
            {"type": "identify", "userId": "a", "messageId": "1",
             "traits": {"email": "a@initech.io"}},
            {"type": "identify", "userId": "b", "messageId": "2",
             "traits": {"email": "b@initech.io"}},
            {"type": "identify", "userId": "c", "messageId": "3", "traits": {"email": "c@gmail.com"}},
            {"type": "group", "userId": "c", "groupId": "acct-9", "messageId": "4",
             "traits": {"name": "Hooli", "employees": 900, "industry": "Tech"}},
        ],
        source="t",
    )
    assert rows(project, "SELECT person_id, account_id, webmail FROM people ORDER BY 1") == [
        ("a", "domain:initech.io", False),
        ("b", "domain:initech.io", False),
        ("c", "acct-9", True),
    ]
    assert rows(project, "SELECT account_id, name, size, industry FROM accounts ORDER BY 1") == [
        ("acct-9", "Hooli", 900, "Tech"),
        ("domain:initech.io", "initech.io", None, None),
    ]


def test_conversion_event_records_outcome(project):
    project.settings.ingest.conversion_events = ["Subscription Started"]
    project.close()  # loader reads settings on creation
    project.ingestor.ingest_messages(
        [{"type": "track", "userId": "u", "event": "Subscription Started", "messageId": "c1",
          "properties": {"amount": 49.5}, "timestamp": "2026-03-01T00:00:00Z"}],
        source="t",
    )
    assert rows(project, "SELECT outcome_id, kind, person_id, won, amount FROM outcomes") == [
        ("c1", "conversion", "u", True, 49.5)
    ]


def test_key_value_log(project, tmp_path: Path):
    path = write_lines(
        tmp_path / "web.log",
        [
            'Email=jo@acme.com FirstName=John LoginCount=3 IsEmailVerified=False '
            'LastLoginTime="2013-01-24 00:24:22.6"',
            "this is not a log line",
            'Email=amy@acme.com LoginCount=1 LastLoginTime="2013-01-25 08:00:00"',
        ],
    )
    project.settings.ingest.kv["weblog"] = __import__(
        "leadrefinery.config", fromlist=["KeyValueMapping"]
    ).KeyValueMapping(user_id="Email", timestamp="LastLoginTime", event="Web Activity")
    report = project.ingest([path], mapping="weblog")
    assert (report.read, report.stored, report.quarantined) == (5, 4, 1)
    assert project.quarantine()[0]["line"] == 2
    assert rows(project, "SELECT traits->>'LoginCount', traits->>'IsEmailVerified' FROM people "
                         "WHERE email = 'jo@acme.com'") == [("3", "false")]
    assert rows(project, "SELECT ts FROM events WHERE type = 'track' ORDER BY ts")[0][0].year == 2013
    assert project.ingest([path], mapping="weblog").duplicates == 4


@pytest.mark.parametrize(
    "line,expected",
    [
        ('a=1 b="x y" c=False', {"a": 1, "b": "x y", "c": False}),
        ("k=2.5 e=", {"k": 2.5, "e": None}),
        ("k='q \\' t'", {"k": "q ' t"}),
    ],
)
def test_parse_pairs(line, expected):
    assert parse_pairs(line) == expected


def test_people_csv_with_mapping_and_broken_rows(project, tmp_path: Path):
    path = write_lines(
        tmp_path / "people.csv",
        [
            "Email,Company,Job Title,Signup,Score",
            "jo@acme.com,Acme,CTO,2026-01-05,10",
            "bad row with,too,many,fields,here,x",
            ",NoEmail,CEO,2026-01-05,3",
            "amy@acme.com,Acme,Engineer,not-a-date,4",
            "bo@gmail.com,,Student,2026-01-06,1",
        ],
    )
    report = project.ingest([path], columns={"title": "Job Title", "created_at": "Signup"})
    assert (report.read, report.stored, report.quarantined) == (5, 2, 3)
    reasons = sorted(r["reason"] for r in project.quarantine())
    assert reasons == [
        "column 'Signup': 'not-a-date' is not a date/time",
        "no person id or email to identify the person",
        "row has 6 fields, the header has 5",
    ]
    assert rows(project, "SELECT email, company, title, first_seen::DATE::VARCHAR FROM people "
                         "ORDER BY 1") == [
        ("bo@gmail.com", None, "Student", "2026-01-06"),
        ("jo@acme.com", "Acme", "CTO", "2026-01-05"),
    ]
    assert project.ingest([path], columns={"title": "Job Title", "created_at": "Signup"}
                          ).duplicates == 2


def test_csv_person_joins_existing_segment_person_by_email(project, tmp_path: Path):
    project.ingestor.ingest_messages(
        [{"type": "identify", "userId": "u42", "messageId": "1", "traits": {"email": "x@y.com"}}],
        source="t",
    )
    project.ingest([write_lines(tmp_path / "p.csv", ["email,phone", "x@y.com,+1 555"])],
                   kind="people")
    assert rows(project, "SELECT person_id, phone FROM people") == [("u42", "+1 555")]


def test_opportunities_upsert_and_account_by_name(project, tmp_path: Path):
    header = "opportunity_id,email,account,created,stage,won,amount,closed,owner"
    first = write_lines(tmp_path / "opp1.csv", [
        header, "o1,jo@acme.com,Acme,2026-01-01,Engaging,,,,rep1",
    ])
    project.ingest([first])
    second = write_lines(tmp_path / "opp2.csv", [
        header, "o1,jo@acme.com,Acme,2026-01-01,Won,true,1200,2026-02-01,rep1",
        "o2,,Globex,2026-01-03,Lost,false,,2026-01-20,rep2",
    ])
    report = project.ingest([second])
    assert (report.stored, report.duplicates) == (2, 0)
    assert rows(project, "SELECT outcome_id, kind, person_id, account_id, stage, won, amount "
                         "FROM outcomes ORDER BY 1") == [
        ("o1", "opportunity", "jo@acme.com", "domain:acme.com", "Won", True, 1200.0),
        ("o2", "opportunity", None, "name:globex", "Lost", False, None),
    ]
    assert project.ingest([second]).duplicates == 2


def test_campaign_costs(project, tmp_path: Path):
    path = write_lines(tmp_path / "campaigns.csv", [
        "campaign,source,medium,period_start,period_end,cost",
        "spring,google,cpc,2026-03-01,2026-03-31,1500",
        "spring,google,cpc,2026-04-01,2026-04-30,abc",
    ])
    report = project.ingest([path])
    assert (report.stored, report.quarantined) == (1, 1)
    assert project.ingest([path]).duplicates == 1


def test_quarantine_retry_with_fixed_text(project, tmp_path: Path):
    path = write_lines(tmp_path / "ev.jsonl", [msg(type="track", userId="u", messageId="q1")])
    project.ingest([path])
    [row] = project.quarantine()
    fixed = json.loads(row["raw"]) | {"event": "Logged In"}
    report = project.ingestor.retry_quarantine(fixed={row["id"]: json.dumps(fixed)})
    assert report.stored == 1 and project.quarantine() == []
    assert project.quarantine(status="retried")[0]["id"] == row["id"]


def test_unknown_kind_and_missing_file_are_clear(project, tmp_path: Path):
    with pytest.raises(InputError, match="no such file"):
        project.ingest([tmp_path / "missing.jsonl"])
    (tmp_path / "data.bin").write_text("x")
    with pytest.raises(InputError, match="pass --kind"):
        project.ingest([tmp_path / "data.bin"])


def test_micro_batches_give_the_people_and_accounts_a_full_rebuild_gives(project, tmp_path):
    """Most people of a micro-batch only move their last seen (`rebuild_people(batch=)`);
    a stream loaded in small batches — late events, identifies, anonymous visitors who identify,
    aliases, groups, people first known from a CSV — ends with the rows a rebuild of everyone
    from the history computes."""
    import random

    from leadrefinery.ingest import identity

    csv = ["user_id,email,created_at"] + [f"u{u},u{u}@csv{u}.com,2026-01-10" for u in range(6)]
    project.ingest([write_lines(tmp_path / "people.csv", csv)], kind="people")
    rng = random.Random(7)
    msgs = []
    for i in range(600):
        u = rng.randrange(40)
        ts = f"2026-01-{1 + rng.randrange(20):02d}T{rng.randrange(24):02d}:00:00Z"  # out of order
        m = {"messageId": f"m{i}", "timestamp": ts}
        r = rng.random()
        if r < 0.1:
            m |= {"type": "identify", "userId": f"u{u}", "anonymousId": f"a{u}",
                  "traits": {"email": f"u{u}@co{u % 4}.com", "company": f"Co {u % 4}"}}
        elif r < 0.13:
            m |= {"type": "alias", "previousId": f"u{u}", "userId": f"u{u + 40}"}
        elif r < 0.16:
            m |= {"type": "group", "userId": f"u{u}", "groupId": f"g{u % 3}",
                  "traits": {"name": f"G{u % 3}"}}
        elif r < 0.5:
            m |= {"type": "page", "anonymousId": f"a{u}", "properties": {"path": "/"}}
        else:
            m |= {"type": "track", "userId": f"u{u}", "event": "Logged In"}
        msgs.append(m)
    for i in range(0, len(msgs), 25):
        project.ingestor.ingest_messages(msgs[i:i + 25], source="t")
    e = project.engine
    def rows_of(table: str, key: str) -> list[tuple]:  # traits as dicts: key order varies
        return [(*r[:-1], json.loads(r[-1])) for r in e.query(
            f"SELECT * EXCLUDE (traits), traits::VARCHAR FROM {table} ORDER BY {key}")]

    live = rows_of("people", "person_id"), rows_of("accounts", "account_id")
    # accounts first: their rebuild reads `people` (`any_value`, `mode`: in its row order)
    e.execute("CREATE OR REPLACE TEMP TABLE _all_acc AS SELECT account_id FROM accounts")
    identity.rebuild_accounts(e, "_all_acc")
    e.execute("CREATE OR REPLACE TEMP TABLE _all AS SELECT person_id FROM people")
    identity.rebuild_people(e, "_all", "_webmail")  # (the loader's table of webmail domains)
    assert len(live[0]) > 40 and len(live[1]) > 3
    assert (rows_of("people", "person_id"), rows_of("accounts", "account_id")) == live
