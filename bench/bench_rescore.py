"""Full rescore with the compiled demo model vs a hand-written DuckDB query (the floor).

    .venv/bin/python bench/bench_rescore.py            # 20 k people (~1 M events), a minute or two
    .venv/bin/python bench/bench_rescore.py --full     # 200 k people (~10 M events)
    options: --people N  --no-spark  --python-events N  --runs N  --rebuild  --data DIR
    (the generated store is kept in $TMPDIR/leadrefinery-bench/ and reused; --rebuild redoes it)

What runs, each measurement in a fresh subprocess (so its peak RSS, VmHWM, is its own), on the
same DuckDB store (2 threads, memory_limit 1536MB):

  compiled/score      `Project.score`-equivalent: the compiled model -> scores snapshot,
                      latest_scores, account roll-up (everything: components, categories,
                      grade, stage, abuse flags with evidence, segments)
  compiled/same       the compiled query of the demo model *without* stages, abuse rules and
                      segments: the same per-person outputs as the floor, materialised
  hand-written        a DuckDB query written by hand for the demo model's rules: decayed points
                      per rule and category, total, grade (materialised); the floor
  python per-event    every event through the demo model's rules written by hand in Python, the
                      way application-side point engines (Mautic-style) work: every rule, its
                      decay, frequency limit and cap, the profile rules, categories, grade; run
                      on a sample of people (extrapolated) and checked against the compiled scores
  spark local         the compiled Spark SQL through SparkEngine (shared CTEs computed once and
                      cached) on local[2] over Parquet copies of the tables; checked against DuckDB

The compiled results are checked against the hand-written ones (score and grade per person).
Targets (DESIGN.md): the full score run <= 1.5x the floor, peak RSS <= 2 GiB.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_MODEL = ROOT / "src" / "leadrefinery" / "sample" / "model.yaml"
MEMORY = "1536MB"
THREADS = 2

# -- the floor: the demo model's scoring, written by hand for DuckDB -------------------------

HAND_WRITTEN = """
CREATE OR REPLACE TEMP TABLE hand AS
WITH cut AS (SELECT TIMESTAMP '{as_of}' AS t, epoch_us(TIMESTAMP '{as_of}') AS us),
pop AS (SELECT person_id, first_seen FROM people, cut WHERE first_seen <= cut.t),
th AS (
  SELECT person_id, key, json_extract_string(arg_max(value, (ts, message_id)), '$') AS v,
         json_extract_string(arg_min(value, (ts, message_id)), '$') AS v_first
  FROM trait_history, cut
  WHERE ts <= cut.t AND key IN ('email', 'company', 'title', 'phoneCountry', 'emailVerified',
        'phoneVerified', 'referralSource', 'referralCode', '$account_id', '$first_source', '$first_name')
  GROUP BY ALL
),
prof AS (
  SELECT pop.person_id,
         lower(nullif(trim(max(v) FILTER (WHERE key = 'email')), '')) AS email,
         nullif(trim(max(v) FILTER (WHERE key = 'company')), '') AS company,
         nullif(trim(max(v) FILTER (WHERE key = 'title')), '') AS title,
         max(v) FILTER (WHERE key = 'phoneCountry') AS phone_country,
         coalesce(lower(max(v) FILTER (WHERE key = 'emailVerified')) IN ('true', '1', 'yes'), false) AS email_verified,
         coalesce(lower(max(v) FILTER (WHERE key = 'phoneVerified')) IN ('true', '1', 'yes'), false) AS phone_verified,
         nullif(trim(coalesce(max(v) FILTER (WHERE key = 'referralSource'),
                              max(v_first) FILTER (WHERE key = '$first_source'))), '') AS source,
         nullif(trim(coalesce(max(v) FILTER (WHERE key = 'referralCode'),
                              max(v_first) FILTER (WHERE key = '$first_name'))), '') AS campaign,
         max(v) FILTER (WHERE key = '$account_id') AS group_account
  FROM pop LEFT JOIN th USING (person_id) GROUP BY pop.person_id
),
prof2 AS (
  SELECT *, nullif(lower(split_part(email, '@', 2)), '') AS domain FROM prof
),
prof3 AS (
  SELECT *, coalesce(domain IN (SELECT domain FROM webmail), false) AS webmail FROM prof2
),
person AS (
  SELECT *,
    coalesce(group_account, CASE WHEN domain IS NOT NULL AND NOT webmail THEN 'domain:' || domain END) AS account_id,
    coalesce(NOT webmail AND (
      (length(lower(regexp_replace(company, '[^A-Za-z0-9]', '', 'g'))) >= 3 AND
       strpos(lower(regexp_replace(split_part(domain, '.', 1), '[^A-Za-z0-9]', '', 'g')),
              lower(regexp_replace(company, '[^A-Za-z0-9]', '', 'g'))) > 0)
      OR (length(lower(regexp_replace(split_part(domain, '.', 1), '[^A-Za-z0-9]', '', 'g'))) >= 3 AND
       strpos(lower(regexp_replace(company, '[^A-Za-z0-9]', '', 'g')),
              lower(regexp_replace(split_part(domain, '.', 1), '[^A-Za-z0-9]', '', 'g'))) > 0)), false)
      AS domain_match
  FROM prof3
),
acct AS (
  SELECT account_id, TRY_CAST(json_extract_string(arg_max(value, (ts, message_id)), '$') AS DOUBLE) AS size
  FROM account_trait_history, cut
  WHERE ts <= cut.t AND lower(replace(key, '_', '')) IN ('employees', 'size', 'companysize', 'numberofemployees')
  GROUP BY account_id
),
ev AS (
  SELECT person_id, ts, type, event, ts::DATE AS day,
         (cut.us - epoch_us(ts)) / 86400000000.0 AS age,
         coalesce(properties ->> '$.path', context ->> '$.page.path') AS path,
         properties ->> '$.template' AS template,
         TRY_CAST(properties ->> '$.guests' AS DOUBLE) AS guests
  FROM events, cut
  WHERE ts <= cut.t AND person_id IS NOT NULL AND (type = 'page' OR event IN (
    'Logged In', 'Environment Launched', 'Email Clicked', 'Contact Sales Requested',
    'Documentation Purchased', 'Training Registered') OR type IS NOT NULL)
),
m AS (
  SELECT *,
    type = 'track' AND event = 'Environment Launched' AS m_env,
    type = 'page' AND (path IN ('/product', '/pricing') OR path LIKE '/features/%' OR path LIKE '/case-studies/%') AS m_eval,
    type = 'page' AND (path = '/docs/getting-started' OR path LIKE '/trial/%') AS m_sample,
    type = 'page' AND (path LIKE '/docs/api%' OR path LIKE '/integrations/%') AS m_integ,
    type = 'page' AND path IN ('/docs/security', '/docs/sso', '/security') AS m_sec,
    type = 'page' AND path LIKE '/pricing%' AS m_pricing
  FROM ev
),
-- occurrences of the per-day limited rules, one row per (rule, event); at one instant the
-- larger points count first (the model's rule: no message id needed to break ties)
hits AS (
  SELECT person_id, day, ts, 'env' AS r, 2 AS per_day,
         (CASE WHEN template IN ('windows-lab', 'data-science') THEN 6 ELSE 3 END) * pow(0.5, age / 14) AS p
  FROM m WHERE m_env
  UNION ALL SELECT person_id, day, ts, 'eval', 3, 1 * pow(0.5, age / 21) FROM m WHERE m_eval
  UNION ALL SELECT person_id, day, ts, 'sample', 3, 1.5 * pow(0.5, age / 21) FROM m WHERE m_sample
  UNION ALL SELECT person_id, day, ts, 'integ', 3, 2.5 * pow(0.5, age / 21) FROM m WHERE m_integ
  UNION ALL SELECT person_id, day, ts, 'sec', 2, 3 * pow(0.5, age / 30) FROM m WHERE m_sec
  UNION ALL SELECT person_id, day, ts, 'pricing', 1, 4 * pow(0.5, age / 14) FROM m WHERE m_pricing
),
limited AS (
  SELECT person_id,
    sum(p) FILTER (WHERE r = 'env') AS env, sum(p) FILTER (WHERE r = 'eval') AS eval,
    sum(p) FILTER (WHERE r = 'sample') AS sample, sum(p) FILTER (WHERE r = 'integ') AS integ,
    sum(p) FILTER (WHERE r = 'sec') AS sec, sum(p) FILTER (WHERE r = 'pricing') AS pricing
  FROM (SELECT *, row_number() OVER (PARTITION BY person_id, r, day ORDER BY ts DESC, p DESC) AS rk
        FROM hits) WHERE rk <= per_day
  GROUP BY person_id
),
agg0 AS (
  SELECT person_id,
    max(CASE WHEN m_env AND guests >= 3 THEN 6 * pow(0.5, age / 21) END) AS ran_class,
    sum(CASE WHEN type = 'track' AND event = 'Email Clicked' THEN 2 * pow(0.5, age / 14) END) AS click,
    max(CASE WHEN type = 'track' AND event = 'Contact Sales Requested' THEN 25 * pow(0.5, age / 30) END) AS contact,
    max(CASE WHEN type = 'track' AND event = 'Documentation Purchased' THEN 15 * pow(0.5, age / 45) END) AS docs,
    max(CASE WHEN type = 'track' AND event = 'Training Registered' THEN 12 * pow(0.5, age / 45) END) AS training,
    max(CASE WHEN type = 'page' AND path = '/pricing/enterprise' THEN 6 * pow(0.5, age / 21) END) AS enterprise,
    count(*) FILTER (WHERE type = 'track' AND event = 'Logged In') AS logins,
    count(DISTINCT day) FILTER (WHERE type = 'track' AND event = 'Logged In') AS login_days,
    count(DISTINCT template) FILTER (WHERE m_env) AS templates,
    min(age) AS days_since_active
  FROM m GROUP BY person_id
),
agg AS (SELECT * FROM agg0 LEFT JOIN limited USING (person_id)),
pts AS (
  SELECT p.person_id,
    CASE WHEN NOT webmail AND email IS NOT NULL THEN 10 ELSE 0 END
    + CASE WHEN webmail THEN -8 ELSE 0 END
    + CASE WHEN domain_match THEN 6 ELSE 0 END
    + CASE WHEN phone_country IN ('NG', 'PK', 'BD', 'VN', 'ID') THEN -15 ELSE 0 END
    + CASE WHEN email_verified THEN 3 ELSE 0 END
    + CASE WHEN phone_verified THEN 4 ELSE 0 END
    + CASE WHEN source IN ('partner', 'webinar', 'g2') OR campaign IN ('SKILLFORGE20', 'CLOUDCAMPUS', 'WEBINAR-LABS') THEN 8 ELSE 0 END
    + CASE WHEN source = 'coupon-site' THEN -12 ELSE 0 END
    + CASE WHEN regexp_matches(lower(title), '(^| )(cto|ceo|cfo|vp|vice president|director|head)( |$)') THEN 10
           WHEN title ILIKE '%manager%' THEN 6 WHEN title IN ('Student', 'Intern') THEN -10 ELSE 0 END
    + CASE WHEN a.size >= 1000 THEN 10 WHEN a.size >= 200 THEN 7 WHEN a.size >= 50 THEN 4
           WHEN a.size < 10 THEN -3 ELSE 0 END AS fit_raw,
    CASE WHEN coalesce(g.logins, 0) >= 2 THEN 8 ELSE 0 END
    + CASE WHEN coalesce(g.login_days, 0) >= 5 THEN 6 ELSE 0 END
    + least(coalesce(g.env, 0), 20) + coalesce(g.ran_class, 0)
    + CASE WHEN coalesce(g.templates, 0) >= 3 THEN 4 ELSE 0 END
    + least(coalesce(g.eval, 0), 6) + least(coalesce(g.sample, 0), 6) + least(coalesce(g.integ, 0), 10)
    + least(coalesce(g.sec, 0), 9) + least(coalesce(g.pricing, 0), 12) + least(coalesce(g.click, 0), 6)
    + CASE WHEN g.days_since_active > 21 THEN -10 ELSE 0 END AS engagement_raw,
    coalesce(g.contact, 0) + coalesce(g.docs, 0) + coalesce(g.training, 0) + coalesce(g.enterprise, 0) AS intent_raw
  FROM person p LEFT JOIN agg g USING (person_id) LEFT JOIN acct a ON a.account_id = p.account_id
),
cats AS (
  SELECT person_id,
    floor(greatest(least(fit_raw, 45), -40) * 1e6 + 0.5) / 1e6 AS fit,
    floor(least(engagement_raw, 60) * 1e6 + 0.5) / 1e6 AS engagement,
    floor(least(intent_raw, 35) * 1e6 + 0.5) / 1e6 AS intent
  FROM pts
)
SELECT person_id, fit, engagement, intent, score,
  CASE WHEN score >= 70 THEN '1' WHEN score >= 55 THEN '2' WHEN score >= 42 THEN '3'
       WHEN score >= 30 THEN '4' WHEN score >= 20 THEN '5' WHEN score >= 10 THEN '6' ELSE '7' END AS grade
FROM (SELECT *, floor(greatest(least(fit + engagement + intent, 100), 0) * 1e6 + 0.5) / 1e6 AS score FROM cats)
"""


# -- building the data -------------------------------------------------------------------------


def build(data: Path, people: int, rebuild: bool) -> Path:
    store = data / "store.duckdb"
    if store.exists() and not rebuild:
        return store
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True)
    from leadrefinery.project import Project
    from leadrefinery.sample import generate

    t = time.perf_counter()
    biz = generate(data / "gen", people=people, months=6, seed=7)
    print(
        f"  generated {biz.counts['events']:,} events for {people:,} people in "
        f"{time.perf_counter() - t:.0f}s",
        flush=True,
    )
    t = time.perf_counter()
    p = Project.init(data / "project", name="bench")
    p.ingest([biz.accounts_path], kind="accounts")
    rep = p.ingest([biz.events_path], kind="events")
    p.engine.execute("CHECKPOINT")
    p.close()
    print(f"  ingested {rep.stored:,} events in {time.perf_counter() - t:.0f}s", flush=True)
    shutil.move(str(data / "project" / "store.duckdb"), store)
    shutil.rmtree(data / "gen")
    return store


# -- measurements (each in its own process) ---------------------------------------------------


def vm_hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _engine(store: str):
    from leadrefinery.store.duckdb_engine import DuckDBEngine

    return DuckDBEngine(store, memory_limit=MEMORY, threads=THREADS)


def _without_extras(model):
    from leadrefinery.model.load import Model

    spec = model.spec.model_copy(update={"stages": None, "abuse": [], "segments": {}})
    return Model(spec=spec, file=model.file, lines=model.lines, data=model.data)


def child(kind: str, store: str, as_of: str, extra: str) -> dict:
    from leadrefinery.model import build_plan, load_model
    from leadrefinery.model.scoring import score

    model = load_model(DEMO_MODEL)
    t_as_of = datetime.fromisoformat(as_of)
    e = _engine(store)
    out: dict = {}
    if kind == "compiled_score":
        t = time.perf_counter()
        run = score(e, model, as_of=t_as_of)
        out["seconds"] = time.perf_counter() - t
        out["people"] = run.people
        e.execute(
            f"CREATE OR REPLACE TABLE bench_compiled AS SELECT person_id, score, grade FROM scores "
            f"WHERE run_id = '{run.run_id}'"
        )
        for table in ("scores", "account_scores", "score_runs"):  # the store stays as it was
            e.execute(f"DELETE FROM {table} WHERE run_id = '{run.run_id}'")
    elif kind == "compiled_same":
        plan = build_plan(_without_extras(model), as_of=t_as_of)
        t = time.perf_counter()
        sql = plan.sql("duckdb", snapshot=False, pretty=False)
        out["compile_seconds"] = time.perf_counter() - t
        t = time.perf_counter()
        e.execute(f"CREATE OR REPLACE TEMP TABLE same AS {sql}")
        out["seconds"] = time.perf_counter() - t
        out["people"] = e.scalar("SELECT count(*) FROM same")
    elif kind == "hand":
        from leadrefinery.ingest.webmail import WEBMAIL_DOMAINS

        e.execute(
            "CREATE OR REPLACE TEMP TABLE webmail AS SELECT unnest(?::VARCHAR[]) AS domain",
            [sorted(WEBMAIL_DOMAINS)],
        )
        t = time.perf_counter()
        e.execute(HAND_WRITTEN.format(as_of=t_as_of.isoformat(sep=" ")))
        out["seconds"] = time.perf_counter() - t
        out["people"] = e.scalar("SELECT count(*) FROM hand")
        e.execute("CREATE OR REPLACE TABLE bench_hand AS SELECT * FROM hand")
        diff = e.query("""
            SELECT count(*), count(*) FILTER (WHERE abs(h.score - c.score) > 1e-6),
                   count(*) FILTER (WHERE h.grade <> c.grade)
            FROM bench_hand h JOIN bench_compiled c USING (person_id)""")[0]
        out["checked"], out["score_diffs"], out["grade_diffs"] = diff
    elif kind == "python":
        out.update(python_per_event(e, model, t_as_of, int(extra)))
    elif kind == "spark":
        out.update(spark_time(e, model, t_as_of, extra))
    e.close()
    out["peak_rss_mib"] = vm_hwm_mib()
    return out


def python_per_event(e, model, as_of: datetime, max_events: int) -> dict:
    """Mautic-style: each event through every rule's check in Python, points added as they
    come; the profile rules from the latest traits. The demo model's rules, written by hand in
    Python (as an application-side point engine would have them), on a sample of people, and
    checked against the compiled scores of the same people."""
    import re

    import orjson

    from leadrefinery.ingest.webmail import WEBMAIL_DOMAINS

    total_events = e.scalar("SELECT count(*) FROM events WHERE ts <= ?", [as_of])
    share = min(1.0, max_events / max(total_events, 1))
    sample = f"hash(person_id) % 1000000 < {int(share * 1_000_000)}"
    t0 = time.perf_counter()
    people = {
        pid: {}
        for (pid,) in e.query(
            f"SELECT person_id FROM people WHERE first_seen <= ? AND {sample}", [as_of]
        )
    }
    # the profile: each trait's newest value (first-touch keys: the oldest) up to the as-of time
    for pid, key, value in e.query(
        "SELECT person_id, key, value::VARCHAR FROM trait_history "
        f"WHERE ts <= ? AND {sample} ORDER BY person_id, ts, message_id",
        [as_of],
    ):
        if pid in people and not (key.startswith("$first_") and key in people[pid]):
            people[pid][key] = orjson.loads(value) if value else None
    sizes: dict[str, float] = {}
    for acct, value in e.query(
        "SELECT account_id, value::VARCHAR FROM account_trait_history WHERE ts <= ? AND "
        "lower(replace(key, '_', '')) IN ('employees', 'size', 'companysize', 'numberofemployees') "
        "ORDER BY ts, message_id",
        [as_of],
    ):
        sizes[acct] = _number(orjson.loads(value) if value else None)

    day_us = 86_400_000_000

    def occurrence(
        st: dict,
        rule: str,
        points: float,
        half_life: float,
        age: float,
        per_day: int | None = None,
        day=None,
        once: bool = False,
    ) -> None:
        st["n"][rule] = st["n"].get(rule, 0) + 1
        if per_day is not None:  # events come newest first: the first N of a day are kept
            k = (rule, day)
            st["per_day"][k] = st["per_day"].get(k, 0) + 1
            if st["per_day"][k] > per_day:
                return
        pts = points * 0.5 ** (age / half_life)
        if once:
            st["pts"][rule] = max(st["pts"].get(rule, pts), pts)
        else:
            st["pts"][rule] = st["pts"].get(rule, 0.0) + pts

    as_of_us = _epoch_us(as_of)
    state: dict[str, dict] = {}
    cur = e.cur.execute(
        f"SELECT person_id, epoch_us(ts), ts::DATE, type, event, properties::VARCHAR, "
        f"context::VARCHAR FROM events WHERE ts <= ? AND person_id IS NOT NULL AND {sample} "
        "ORDER BY person_id, ts DESC, message_id DESC",
        [as_of],
    )
    n = 0
    while batch := cur.fetchmany(10_000):
        for pid, ts_us, day, typ, event, props, ctx in batch:
            n += 1
            p = orjson.loads(props) if props else {}
            st = state.setdefault(
                pid,
                {
                    "pts": {},
                    "n": {},
                    "per_day": {},
                    "login_days": set(),
                    "templates": set(),
                    "last_us": ts_us,
                },
            )
            age = (as_of_us - ts_us) / day_us
            if typ == "track":
                if event == "Environment Launched":
                    template = p.get("template")
                    points = 6 if template in ("windows-lab", "data-science") else 3
                    occurrence(st, "environment_launched", points, 14, age, 2, day)
                    if template is not None:
                        st["templates"].add(str(template))
                    if (_number(p.get("guests")) or 0) >= 3:
                        occurrence(st, "ran_a_class", 6, 21, age, once=True)
                elif event == "Logged In":
                    st["n"]["logins"] = st["n"].get("logins", 0) + 1
                    st["login_days"].add(day)
                elif event == "Email Clicked":
                    occurrence(st, "email_click", 2, 14, age)
                elif event == "Contact Sales Requested":
                    occurrence(st, "contact_sales", 25, 30, age, once=True)
                elif event == "Documentation Purchased":
                    occurrence(st, "docs_purchased", 15, 45, age, once=True)
                elif event == "Training Registered":
                    occurrence(st, "training_registered", 12, 45, age, once=True)
            elif typ == "page":
                path = p.get("path")
                if path is None and ctx:
                    path = (orjson.loads(ctx).get("page") or {}).get("path")
                if not isinstance(path, str):
                    continue
                if path in ("/product", "/pricing") or path.startswith(
                    ("/features/", "/case-studies/")
                ):
                    occurrence(st, "evaluate_content", 1, 21, age, 3, day)
                if path == "/docs/getting-started" or path.startswith("/trial/"):
                    occurrence(st, "sample_content", 1.5, 21, age, 3, day)
                if path.startswith(("/docs/api", "/integrations/")):
                    occurrence(st, "integrate_content", 2.5, 21, age, 3, day)
                if path in ("/docs/security", "/docs/sso", "/security"):
                    occurrence(st, "security_content", 3, 30, age, 2, day)
                if path.startswith("/pricing"):
                    occurrence(st, "pricing_page", 4, 14, age, 1, day)
                if path == "/pricing/enterprise":
                    occurrence(st, "enterprise_pricing", 6, 21, age, once=True)
    senior = re.compile(r"(^| )(cto|ceo|cfo|vp|vice president|director|head)( |$)")
    caps = {
        "environment_launched": 20,
        "evaluate_content": 6,
        "sample_content": 6,
        "integrate_content": 10,
        "security_content": 9,
        "pricing_page": 12,
        "email_click": 6,
    }
    scores: dict[str, tuple[float, str]] = {}
    for pid, t in people.items():
        st = state.get(
            pid, {"pts": {}, "n": {}, "login_days": (), "templates": (), "last_us": None}
        )
        email = _text(t.get("email"))
        email = email.lower() if email else None
        domain = (email.split("@")[1] if email and "@" in email else "").lower() or None
        webmail = domain in WEBMAIL_DOMAINS
        company, title = _text(t.get("company")), _text(t.get("title"))
        source = _text(t.get("referralSource")) or _text(t.get("$first_source"))
        campaign = _text(t.get("referralCode")) or _text(t.get("$first_name"))
        account = t.get("$account_id") or (f"domain:{domain}" if domain and not webmail else None)
        size = sizes.get(account)
        fit = 10.0 if email and not webmail else 0.0
        fit -= 8 if webmail else 0
        cn = re.sub("[^A-Za-z0-9]", "", company or "").lower()
        dn = re.sub("[^A-Za-z0-9]", "", (domain or "").split(".")[0]).lower()
        if (
            company
            and domain
            and not webmail
            and ((len(cn) >= 3 and cn in dn) or (len(dn) >= 3 and dn in cn))
        ):
            fit += 6
        fit -= 15 if t.get("phoneCountry") in ("NG", "PK", "BD", "VN", "ID") else 0
        fit += 3 if _truthy(t.get("emailVerified")) else 0
        fit += 4 if _truthy(t.get("phoneVerified")) else 0
        if source in ("partner", "webinar", "g2") or campaign in (
            "SKILLFORGE20",
            "CLOUDCAMPUS",
            "WEBINAR-LABS",
        ):
            fit += 8
        fit -= 12 if source == "coupon-site" else 0
        if title and senior.search(title.lower()):
            fit += 10
        elif title and "manager" in title.lower():
            fit += 6
        elif title in ("Student", "Intern"):
            fit -= 10
        if size is not None:
            fit += (
                10
                if size >= 1000
                else 7
                if size >= 200
                else 4
                if size >= 50
                else -3
                if size < 10
                else 0
            )
        pts = st["pts"]
        eng = sum(min(pts.get(r, 0.0), cap) for r, cap in caps.items()) + pts.get(
            "ran_a_class", 0.0
        )
        eng += 8 if st["n"].get("logins", 0) >= 2 else 0
        eng += 6 if len(st["login_days"]) >= 5 else 0
        eng += 4 if len(st["templates"]) >= 3 else 0
        if st["last_us"] is not None and (as_of_us - st["last_us"]) / day_us > 21:
            eng -= 10
        intent = sum(
            pts.get(r, 0.0)
            for r in (
                "contact_sales",
                "docs_purchased",
                "training_registered",
                "enterprise_pricing",
            )
        )
        total = (
            _round6(max(-40.0, min(45.0, fit)))
            + _round6(min(60.0, eng))
            + _round6(min(35.0, intent))
        )
        score = _round6(max(0.0, min(100.0, total)))
        grade = next(
            (
                g
                for g, low in ((1, 70), (2, 55), (3, 42), (4, 30), (5, 20), (6, 10))
                if score >= low
            ),
            7,
        )
        scores[pid] = (score, str(grade))
    seconds = time.perf_counter() - t0
    diffs = grade_diffs = 0
    for pid, score, grade in e.query("SELECT person_id, score, grade FROM bench_compiled"):
        if pid in scores:
            diffs += abs(scores[pid][0] - score) > 1e-6
            grade_diffs += scores[pid][1] != grade
    return {
        "events_evaluated": n,
        "events_total": total_events,
        "people_sampled": len(people),
        "seconds_sample": seconds,
        "seconds": seconds * total_events / max(n, 1),
        "extrapolated": n < total_events,
        "score_diffs": diffs,
        "grade_diffs": grade_diffs,
    }


def _epoch_us(t: datetime) -> int:
    d = t - datetime(1970, 1, 1)
    return (d.days * 86400 + d.seconds) * 1_000_000 + d.microseconds


def _number(v) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _text(v) -> str | None:
    if v is None:
        return None
    s = (("true" if v else "false") if isinstance(v, bool) else str(v)).strip()
    return s or None


def _truthy(v) -> bool:
    return str(v).lower() in ("true", "1", "yes") if v is not None else False


def _round6(x: float) -> float:
    return math.floor(x * 1e6 + 0.5) / 1e6


def spark_time(e, model, as_of: datetime, workdir: str) -> dict:
    """The compiled Spark SQL through `SparkEngine` (its shared CTEs computed once, cached) on
    local[2], tables read from Parquet copies; its scores checked against DuckDB's."""
    from leadrefinery.model import build_plan
    from leadrefinery.store.spark_engine import SparkEngine, start_session

    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    tables = ["events", "people", "trait_history", "account_trait_history"]
    for t in tables:
        if not (wd / f"{t}.parquet").exists():
            e.execute(f"COPY {t} TO '{wd / t}.parquet' (FORMAT parquet)")
    session, _ = start_session(wd / "warehouse", driver_memory="1500m")
    for t in tables:
        session.read.parquet(str(wd / f"{t}.parquet")).createOrReplaceTempView(t)
    spark = SparkEngine(wd / "warehouse", session=session)
    sql = build_plan(model, as_of=as_of).sql("spark", snapshot=True, pretty=False)
    t0 = time.perf_counter()
    result = spark.query_arrow(sql)
    seconds = time.perf_counter() - t0
    session.stop()
    want = {
        pid: (sc, g) for pid, sc, g in e.query("SELECT person_id, score, grade FROM bench_compiled")
    }
    got = result.select(["person_id", "score", "grade"]).to_pylist()
    diffs = sum(
        1
        for r in got
        if r["person_id"] not in want
        or abs(want[r["person_id"]][0] - r["score"]) > 1e-9
        or want[r["person_id"]][1] != r["grade"]
    )
    return {"seconds": seconds, "people": len(got), "diffs": diffs + abs(len(want) - len(got))}


def run_child(kind: str, store: Path, as_of: str, extra: str = "") -> dict:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, str(store), as_of, extra],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if out.returncode != 0:
        tail = [line for line in out.stderr.splitlines() if line.strip()][-3:]
        raise SystemExit(f"{kind} failed: {' | '.join(tail)}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--full", action="store_true", help="200 k people (~10 M events)")
    ap.add_argument("--people", type=int, default=None)
    ap.add_argument("--data", type=Path, default=None, help="where to keep the generated store")
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--no-spark", action="store_true")
    ap.add_argument(
        "--runs", type=int, default=2, help="runs of each DuckDB measurement (the best counts)"
    )
    ap.add_argument(
        "--python-events",
        type=int,
        default=300_000,
        help="events the Python per-event engine evaluates (extrapolated beyond)",
    )
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, store, as_of, extra = args.child
        print(json.dumps(child(kind, store, as_of, extra), default=str))
        return
    people = args.people or (200_000 if args.full else 20_000)
    data = args.data or Path(tempfile.gettempdir()) / "leadrefinery-bench" / f"rescore-{people}"
    cmd = f"{Path(sys.executable).name} bench/bench_rescore.py " + " ".join(sys.argv[1:])
    print(f"bench_rescore: {people:,} people, DuckDB {THREADS} threads, memory_limit {MEMORY}")
    store = build(data, people, args.rebuild)
    import duckdb

    con = duckdb.connect(str(store), read_only=True)
    n_events, as_of = con.execute("SELECT count(*), max(ts) FROM events").fetchone()
    con.close()
    as_of_s = as_of.isoformat()
    print(
        f"  store {store} ({store.stat().st_size / 2**20:,.0f} MiB): {n_events:,} events, as of {as_of_s}"
    )
    r = {}
    for kind in ("compiled_score", "compiled_same", "hand"):
        best = None
        for _ in range(args.runs):  # the best run (the first warms the OS page cache)
            x = run_child(kind, store, as_of_s)
            best = x if best is None or x["seconds"] < best["seconds"] else best
        r[kind] = best
        print(
            f"  {kind:<15} {best['seconds']:8.2f}s  peak RSS {best['peak_rss_mib']:7.0f} MiB",
            flush=True,
        )
    r["python"] = run_child("python", store, as_of_s, str(args.python_events))
    py = r["python"]
    print(
        f"  python/event    {py['seconds']:8.1f}s  ({py['events_evaluated']:,} of {py['events_total']:,} events in "
        f"{py['seconds_sample']:.1f}s{', extrapolated' if py['extrapolated'] else ''})",
        flush=True,
    )
    if not args.no_spark:
        try:
            r["spark"] = run_child("spark", store, as_of_s, str(data / "spark"))
            sp = r["spark"]
            print(
                f"  spark local[2]  {sp['seconds']:8.1f}s  (query + collect; tables from Parquet; "
                f"{sp['diffs']} of {sp['people']:,} people differ from DuckDB)",
                flush=True,
            )
        except SystemExit as exc:
            print(f"  spark: not measured ({str(exc).splitlines()[0]})")
    floor = r["hand"]["seconds"]
    print()
    print(f"floor (hand-written DuckDB): {floor:.2f}s for {r['hand']['people']:,} people")
    full = r["compiled_score"]["seconds"] / floor
    print(
        f"  FULL SCORE / floor          {full:5.2f}x  (target <= 1.5x: "
        f"{'met' if full <= 1.5 else 'NOT met'}) — the whole `score` run: components, stages, "
        "abuse flags and evidence, segments, scores + latest_scores + account_scores written"
    )
    print(
        f"  compiled same outputs / floor {r['compiled_same']['seconds'] / floor:5.2f}x  "
        "(the floor's outputs only: rule points, categories, total, grade; materialised)"
    )
    print(
        f"  python per-event / floor    {py['seconds'] / floor:5.1f}x  (its scores: "
        f"{py['score_diffs']} score and {py['grade_diffs']} grade differences from the compiled "
        f"ones, on {py['people_sampled']:,} sampled people)"
    )
    if "spark" in r:
        print(f"  spark local[2]              {r['spark']['seconds'] / floor:5.1f}x")
    peak = max(r[k]["peak_rss_mib"] for k in ("compiled_score", "compiled_same", "hand"))
    print(f"peak RSS {peak:,.0f} MiB (target <= 2048 MiB)")
    h = r["hand"]
    print(
        f"check: {h['checked']:,} people compared with the hand-written query: "
        f"{h['score_diffs']} score and {h['grade_diffs']} grade differences"
    )
    print(f"reproduce: {cmd}")
    if not math.isfinite(peak):
        print("(peak RSS not available: no /proc)")


if __name__ == "__main__":
    main()
