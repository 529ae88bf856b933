"""The logical data model, as data: tables, their columns and logical types.

Every engine maps the logical types to its own (see `TYPES` in each engine) and
`ensure_schema` creates or migrates the tables, so no DDL is written per engine.
Migrations are additive: a column added here is added to existing stores on open.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_VERSION = 1

# Logical column types. Engines map them (see engine.TYPE_NAMES).
TEXT, DOUBLE, BIGINT, BOOLEAN, TIMESTAMP, JSON = "text", "double", "bigint", "boolean", "timestamp", "json"


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]
    doc: str = ""

    @property
    def column_names(self) -> list[str]:
        return [c for c, _ in self.columns]


# a person's score in one run: the `scores` history and the `latest_scores` view of it
SCORE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", TEXT),
    ("model", TEXT),
    ("model_version", TEXT),
    ("as_of", TIMESTAMP),
    ("person_id", TEXT),
    ("account_id", TEXT),
    ("score", DOUBLE),
    ("grade", TEXT),
    ("mql", BOOLEAN),
    ("stage", TEXT),
    ("stage_rank", BIGINT),  # 1 = first stage of the journey; 0 = none
    ("flagged", BOOLEAN),  # any abuse flag
    ("engaged", BOOLEAN),
    ("categories", JSON),  # {"fit": 12.0, "engagement": 30.5}
    ("segments", JSON),  # ["commercial", "developer"]
    ("abuse", JSON),  # {"rule": {evidence...}} for raised flags only
    ("components", JSON),  # {"rule": {"n", "raw", "decayed", "points"}} for rules that matched
    ("stage_evidence", JSON),  # {"n", "first", "last"} of the current stage's fresh evidence
)


def _t(name: str, doc: str, *columns: tuple[str, str]) -> Table:
    return Table(name, tuple(columns), doc)


TABLES: dict[str, Table] = {
    t.name: t
    for t in [
        _t(
            "events",
            "Append-only log of Segment-spec messages; everything else is derived from it.",
            ("message_id", TEXT),
            ("type", TEXT),  # identify | track | page | screen | group | alias
            ("event", TEXT),  # track event name, or page/screen name
            ("user_id", TEXT),
            ("anonymous_id", TEXT),
            ("person_id", TEXT),  # resolved identity (re-pointed when ids merge)
            ("group_id", TEXT),
            ("previous_id", TEXT),
            ("ts", TIMESTAMP),  # when it happened (UTC)
            ("received_at", TIMESTAMP),
            ("properties", JSON),
            ("traits", JSON),
            ("context", JSON),
            ("source", TEXT),  # file path or write-key source name
        ),
        _t(
            "identities",
            "Every known id (anonymous id, alias, user id) -> the person it belongs to.",
            ("alias_id", TEXT),
            ("person_id", TEXT),
            ("kind", TEXT),  # anonymous | alias
            ("first_seen", TIMESTAMP),
        ),
        _t(
            "trait_history",
            "Every trait value ever set on a person (identify, CSV, key=value logs); newest wins.",
            ("person_id", TEXT),
            ("key", TEXT),
            ("value", JSON),
            ("ts", TIMESTAMP),
            ("message_id", TEXT),
        ),
        _t(
            "account_trait_history",
            "Every trait value ever set on an account (group calls, account CSV).",
            ("account_id", TEXT),
            ("key", TEXT),
            ("value", JSON),
            ("ts", TIMESTAMP),
            ("message_id", TEXT),
        ),
        _t(
            "people",
            "Current profile of each person, derived from trait_history and events.",
            ("person_id", TEXT),
            ("email", TEXT),
            ("first_name", TEXT),
            ("last_name", TEXT),
            ("name", TEXT),
            ("company", TEXT),
            ("domain", TEXT),  # email domain
            ("webmail", BOOLEAN),
            ("title", TEXT),
            ("phone", TEXT),
            ("country", TEXT),
            ("source", TEXT),  # first referral / utm source
            ("campaign", TEXT),  # first utm campaign / referral code
            ("owner", TEXT),
            ("account_id", TEXT),
            ("traits", JSON),
            ("first_seen", TIMESTAMP),
            ("last_seen", TIMESTAMP),
        ),
        _t(
            "accounts",
            "Companies: from `group` calls, account CSVs, or the email domain of their people.",
            ("account_id", TEXT),
            ("domain", TEXT),
            ("name", TEXT),
            ("size", BIGINT),
            ("industry", TEXT),
            ("owner", TEXT),
            ("traits", JSON),
            ("first_seen", TIMESTAMP),
        ),
        _t(
            "outcomes",
            "Conversions and opportunities from the CRM or from a configured conversion event.",
            ("outcome_id", TEXT),
            ("kind", TEXT),  # conversion | opportunity
            ("person_id", TEXT),
            ("account_id", TEXT),
            ("created_at", TIMESTAMP),
            ("stage", TEXT),
            ("won", BOOLEAN),
            ("amount", DOUBLE),
            ("closed_at", TIMESTAMP),
            ("owner", TEXT),
            ("source", TEXT),
        ),
        _t(
            "campaigns",
            "Campaign cost per period, for cost per good lead.",
            ("campaign", TEXT),
            ("source", TEXT),
            ("medium", TEXT),
            ("period_start", TIMESTAMP),
            ("period_end", TIMESTAMP),
            ("cost", DOUBLE),
        ),
        _t(
            "quarantine",
            "Input that was rejected, with where it came from and why; can be fixed and retried.",
            ("id", BIGINT),
            ("source", TEXT),
            ("line", BIGINT),
            ("item", BIGINT),  # index inside a batch envelope, else null
            ("message_id", TEXT),
            ("kind", TEXT),  # events | people | accounts | conversions | ...
            ("reason", TEXT),
            ("raw", TEXT),
            ("quarantined_at", TIMESTAMP),
            ("status", TEXT),  # open | resolved
        ),
        _t(
            "ingest_log_offsets",
            "How far each append-only ingestion log has been loaded (exactly-once replay).",
            ("log", TEXT),
            ("loaded_bytes", BIGINT),
        ),
        _t("meta", "Store metadata such as the schema version.", ("key", TEXT), ("value", TEXT)),
        _t(
            "alerts",
            "Outbox: one row per alert and channel; deliverers send pending rows (act/outbox.py).",
            ("alert_id", TEXT),  # stable: receivers de-duplicate by it (at-least-once delivery)
            ("created_at", TIMESTAMP),
            ("person_id", TEXT),
            ("account_id", TEXT),
            ("trigger_id", TEXT),
            ("trigger_kind", TEXT),  # grade_reached | score_crossed | abuse | unusual_usage | ...
            ("severity", TEXT),  # info | warning | critical
            ("title", TEXT),
            ("payload", JSON),  # who, what changed, why (reasons, evidence), link
            ("channel", TEXT),  # webhook | email | feed
            ("recipient", TEXT),  # webhook name, email address(es) or feed name
            ("status", TEXT),  # pending | delivered | dead
            ("attempts", BIGINT),
            ("next_attempt_at", TIMESTAMP),
            ("claimed_at", TIMESTAMP),  # set while a deliverer is sending it, else null
            ("claimed_by", TEXT),  # which deliverer (process) is sending it
            ("last_error", TEXT),
            ("delivered_at", TIMESTAMP),
        ),
        _t(
            "alert_feed",
            "Alerts delivered to the dashboard's feed (the `feed` channel), newest first.",
            ("alert_id", TEXT),
            ("created_at", TIMESTAMP),
            ("delivered_at", TIMESTAMP),
            ("recipient", TEXT),  # feed name ("" = everyone's feed)
            ("person_id", TEXT),
            ("account_id", TEXT),
            ("trigger_id", TEXT),
            ("severity", TEXT),
            ("title", TEXT),
            ("text", TEXT),
            ("payload", JSON),  # the webhook body (see docs/webhooks.md)
            ("seen_at", TIMESTAMP),
        ),
        _t(
            "reps",
            "Sales reps: from [[reps]] in refinery.toml (source 'config') or `reps import` CSV.",
            ("email", TEXT),  # the rep's id (lower case); assignments name reps by it
            ("name", TEXT),
            ("team", TEXT),
            ("territory", JSON),  # country codes and/or region names; [] = anywhere
            ("sizes", JSON),  # company-size bands served; [] = all
            ("types", JSON),  # customer types served (oem, direct, ...); [] = all
            ("per_day", BIGINT),  # capacity: new leads per day / per week; null = unlimited
            ("per_week", BIGINT),
            ("weight", DOUBLE),  # share of A/B leads relative to teammates
            ("active", BOOLEAN),
            ("away_until", TIMESTAMP),  # set by `reps away`; null = not away
            ("source", TEXT),  # config | csv file name
            ("updated_at", TIMESTAMP),
        ),
        _t(
            "assignments",
            "Who owns each routed lead and why (act/routing.py); one row per hand-off.",
            ("assignment_id", TEXT),
            ("person_id", TEXT),
            ("account_id", TEXT),
            ("rep", TEXT),  # reps.email
            ("team", TEXT),
            ("rule", TEXT),  # routing rule name, or account_owner / person_owner / account_team
            ("trigger", TEXT),  # qualified | fast_track | contact_request | manual
            ("grade", TEXT),
            ("score", DOUBLE),
            ("reason", JSON),  # rule, rep, why this rep, capacity left, candidates, skipped reps
            ("assigned_at", TIMESTAMP),
            ("run_id", TEXT),
        ),
        _t(
            "routing_queue",
            "Qualified leads nobody could take yet, with why; retried on every routing run.",
            ("person_id", TEXT),
            ("team", TEXT),
            ("rule", TEXT),
            ("trigger", TEXT),
            ("grade", TEXT),
            ("score", DOUBLE),
            ("why", TEXT),  # no_rule | team_unavailable | owner_unavailable | ...
            ("detail", JSON),  # each rep considered and why it was skipped
            ("queued_at", TIMESTAMP),  # first time it had to wait
            ("last_tried_at", TIMESTAMP),
            ("run_id", TEXT),
        ),
        _t(
            "lead_activities",
            "What reps did with routed leads, from the CRM (CSV kind `activities`, later REST).",
            ("activity_id", TEXT),
            ("person_id", TEXT),
            ("rep", TEXT),
            ("kind", TEXT),  # accepted | rejected | touched | opportunity | won | lost
            ("ts", TIMESTAMP),  # when the rep did it
            ("reason", TEXT),  # rejection / loss reason
            ("opportunity_id", TEXT),
            ("amount", DOUBLE),
            ("source", TEXT),
            ("imported_at", TIMESTAMP),
        ),
        _t(
            "sequences",
            "Nurture sequence definitions as loaded (act/nurture.py); a new version per change.",
            ("sequence", TEXT),
            ("version", TEXT),  # hash of the definition
            ("definition", JSON),
            ("file", TEXT),
            ("loaded_at", TIMESTAMP),
        ),
        _t(
            "enrollments",
            "A person's way through a nurture sequence: where they are, when the next step is due.",
            ("enrollment_id", TEXT),
            ("person_id", TEXT),
            ("sequence", TEXT),
            ("track", TEXT),  # main, or the branch (sub-sequence) taken
            ("step", BIGINT),  # index of the next step on the track
            ("anchor_at", TIMESTAMP),  # step days count from here (enrolment / branch time)
            ("resume_step", BIGINT),  # main-track step to go back to after a branch, if any
            ("fired", JSON),  # branches already taken
            ("status", TEXT),  # active | completed | exited | fast_tracked
            ("exit_reason", TEXT),
            ("enrolled_at", TIMESTAMP),
            ("next_at", TIMESTAMP),  # when the next step is due (before its send window)
            ("updated_at", TIMESTAMP),
        ),
        _t(
            "sends",
            "Every nurture message: rendered, then sent, suppressed (with why) or skipped.",
            ("send_id", TEXT),  # stable per enrollment and step: never sent twice
            ("enrollment_id", TEXT),
            ("person_id", TEXT),
            ("sequence", TEXT),
            ("track", TEXT),
            ("step", TEXT),  # step id
            ("category", TEXT),
            ("to_email", TEXT),
            ("subject", TEXT),
            ("body", TEXT),
            ("due_at", TIMESTAMP),  # inside the send window
            ("status", TEXT),  # queued | sent | failed | suppressed | skipped
            ("why", TEXT),
            ("attempts", BIGINT),
            ("sent_at", TIMESTAMP),
            ("opened_at", TIMESTAMP),
            ("clicked_at", TIMESTAMP),
        ),
        _t(
            "preferences",
            "Per-person mail preferences by content category ('*' = all), newest row wins.",
            ("person_id", TEXT),
            ("category", TEXT),
            ("subscribed", BOOLEAN),
            ("ts", TIMESTAMP),
            ("source", TEXT),  # unsubscribe_link | import | api
        ),
        _t(
            "score_runs",
            "One row per scoring run: which model (version + content hash), as of when, how many.",
            ("run_id", TEXT),
            ("model", TEXT),  # model name (file stem unless `name:` is set)
            ("model_version", TEXT),  # `version:` + '+' + content hash prefix
            ("model_hash", TEXT),
            ("as_of", TIMESTAMP),  # only events up to this time were used; decay measured from it
            ("created_at", TIMESTAMP),
            ("engine", TEXT),
            ("people", BIGINT),
            ("restricted", BOOLEAN),  # true: only some people were rescored (real-time path)
            ("cutoffs", JSON),  # volume grading: lowest score of each grade in this run
            ("seconds", DOUBLE),
        ),
        _t(
            "scores",
            "Score snapshots: one row per person and run (history; see latest_scores).",
            *SCORE_COLUMNS,
        ),
        _t(
            "latest_scores",
            "The newest score of each person per model (same columns as scores).",
            *SCORE_COLUMNS,
        ),
        _t(
            "account_scores",
            "Account roll-up of each run: members' scores summed and maxed, engaged people.",
            ("run_id", TEXT),
            ("model", TEXT),
            ("as_of", TIMESTAMP),
            ("account_id", TEXT),
            ("people", BIGINT),
            ("engaged_people", BIGINT),
            ("mql_people", BIGINT),
            ("score_sum", DOUBLE),
            ("score_max", DOUBLE),
            ("best_stage_rank", BIGINT),
            ("flagged_people", BIGINT),
        ),
        _t(
            "person_state",
            "The last state of each person that triggers compared (act/realtime.py), per model.",
            ("model", TEXT),
            ("person_id", TEXT),
            ("as_of", TIMESTAMP),  # the evaluation this state comes from
            ("run_id", TEXT),  # its score run (scores.run_id)
            ("score", DOUBLE),
            ("grade", TEXT),
            ("stage", TEXT),
            ("stage_rank", BIGINT),
            ("segments", JSON),  # ["commercial", ...]
            ("flags", JSON),  # raised abuse rule ids, sorted
            ("bucket", TEXT),  # predictive bucket, when predictions are published
            ("categories", JSON),  # {"engagement": 31.5, ...}
            ("memo", JSON),  # per trigger: surge samples, last buy-readiness action seen
            ("updated_at", TIMESTAMP),
        ),
        _t(
            "trigger_episodes",
            "Each time a person entered a trigger's condition (and left it); alerts fire once "
            "per episode, and not again within the trigger's cool-down.",
            ("episode_id", TEXT),
            ("model", TEXT),
            ("trigger_id", TEXT),
            ("person_id", TEXT),
            ("key", TEXT),  # what inside the trigger: segment, abuse rule, stage ("" = none)
            ("status", TEXT),  # open | closed
            ("opened_at", TIMESTAMP),
            ("closed_at", TIMESTAMP),
            ("fired_at", TIMESTAMP),  # when it alerted on entering (null: it did not)
            ("leave_fired_at", TIMESTAMP),  # when it alerted on leaving (null: it did not)
            ("outcome", TEXT),  # fired | cooled_down | baseline | edge | ...
            ("alert_key", TEXT),  # AlertIn.key of its alert(s)
            ("detail", JSON),  # what changed, as in the alert
        ),
    ]
}

# -- predictive scoring (predict/) ------------------------------------------------------------
TABLES.update(
    {
        t.name: t
        for t in [
            _t(
                "predictive_models",
                "Trained predictive model versions (files in models/predictive/<version>/).",
                ("version", TEXT),
                ("created_at", TIMESTAMP),
                ("path", TEXT),
                ("horizon_days", DOUBLE),
                ("auc", DOUBLE),  # on the time-ordered test part
                ("published", BOOLEAN),
                ("card", JSON),
            ),
            _t(
                "predictions",
                "Latest predictive score per person: probability, bucket, holdout, reasons, surge.",
                ("person_id", TEXT),
                ("model_version", TEXT),
                ("as_of", TIMESTAMP),
                ("probability", DOUBLE),
                ("bucket", TEXT),  # A | B | C | D by volume
                ("holdout", BOOLEAN),  # control holdout: stays in the sales queue
                ("surge", BOOLEAN),  # low bucket whose last 7 days jump vs the 21 before
                ("factors", JSON),  # {"positive": [...], "negative": [...]} for explained rows
                ("created_at", TIMESTAMP),
            ),
        ]
    }
)
