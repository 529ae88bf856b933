"""Identity resolution and the derived profile tables, as set-based SQL over a batch.

* `identify`/`track` carrying both ids, and `alias`, link an anonymous id (or an old user id)
  to a person; events seen before the link are re-pointed to that person.
* `identify` traits go to `trait_history` (every value, with time); `people` shows the newest
  value of each trait, and the *first* touch for campaign attribution.
* `group` ties a person to an account; otherwise a company email domain does (never webmail).

Everything here runs against the DuckDB store on temp tables the loader prepares.
"""

from __future__ import annotations

from ..store.engine import Engine

# normalised trait key -> people column; the first listed key that has a value wins
PROFILE_FIELDS: dict[str, tuple[str, ...]] = {
    "email": ("email", "email_address", "e_mail"),
    "first_name": ("first_name", "firstname"),
    "last_name": ("last_name", "lastname", "surname"),
    "name": ("name", "full_name"),
    "company": ("company", "company_name", "organization", "organisation"),
    "title": ("title", "job_title", "role", "position"),
    "phone": ("phone", "phone_number", "mobile"),
    "country": ("country", "country_code", "address"),
    "owner": ("owner", "lead_owner", "owner_email"),
    "source": ("source", "lead_source", "referral_source", "utm_source"),
    "campaign": ("campaign", "referral_code", "utm_campaign"),
}
ACCOUNT_FIELDS: dict[str, tuple[str, ...]] = {
    "name": ("name", "company", "company_name"),
    "domain": ("domain", "website"),
    "size": ("employees", "size", "company_size", "number_of_employees"),
    "industry": ("industry", "sector"),
    "owner": ("owner", "account_owner"),
}

# camelCase / "Job Title" -> job_title
NKEY = "lower(regexp_replace(regexp_replace(key, '([a-z0-9])([A-Z])', '\\1_\\2', 'g'), '[^A-Za-z0-9]+', '_', 'g'))"
# a JSON trait value as text; objects give their name (company) or country (address)
JTEXT = (
    "CASE WHEN json_type(value) = 'OBJECT' "
    "THEN coalesce(json_extract_string(value, '$.name'), json_extract_string(value, '$.country')) "
    "ELSE json_extract_string(value, '$') END"
)


def _pivot(fields: dict[str, tuple[str, ...]], cast: dict[str, str] | None = None) -> str:
    cols = []
    for col, keys in fields.items():
        options = ", ".join(
            f"max(txt) FILTER (WHERE nkey = '{k}')" for k in keys
        )
        expr = f"nullif(trim(coalesce({options})), '')"
        if cast and col in cast:
            expr = f"try_cast({expr} AS {cast[col]})"
        cols.append(f"{expr} AS {col}")
    return ",\n         ".join(cols)


def link_identities(engine: Engine) -> None:
    """Record new id links found in `_new` and re-point everything known under the old ids."""
    if not engine.scalar(
        "SELECT count(*) FROM _new "
        "WHERE (user_id IS NOT NULL AND anonymous_id IS NOT NULL) OR type = 'alias'"
    ):  # nothing to link (server-side tracking): no look through every known id
        engine.execute("CREATE OR REPLACE TEMP TABLE _moves (old_id VARCHAR, new_id VARCHAR)")
        return
    engine.execute(
        """
        CREATE OR REPLACE TEMP TABLE _links AS
        SELECT alias_id, arg_min(target, ts) AS target, arg_min(kind, ts) AS kind,
               min(ts) AS first_seen
        FROM (
          SELECT anonymous_id AS alias_id, user_id AS target, 'anonymous' AS kind, ts
          FROM _new WHERE user_id IS NOT NULL AND anonymous_id IS NOT NULL
          UNION ALL
          SELECT previous_id, user_id, 'alias', ts
          FROM _new WHERE type = 'alias' AND user_id IS NOT NULL AND previous_id <> user_id
        )
        WHERE alias_id NOT IN (SELECT alias_id FROM identities)
        GROUP BY alias_id
        """
    )
    _resolve_chains(engine)
    # the target may itself be an alias of an earlier id: point at its person
    engine.execute(
        """
        UPDATE _links SET target = i.person_id FROM identities i
        WHERE _links.target = i.alias_id
        """
    )
    engine.execute(
        "INSERT INTO identities SELECT alias_id, target, kind, first_seen FROM _links"
    )
    # what was known under the old id (anonymous or a previous user id) moves to the person
    engine.execute(
        """
        CREATE OR REPLACE TEMP TABLE _moves AS
        SELECT DISTINCT old_id, target AS new_id
        FROM (SELECT target, unnest([alias_id, 'anon:' || alias_id]) AS old_id FROM _links)
        WHERE old_id <> target
        """
    )
    if not engine.scalar("SELECT count(*) FROM _moves"):
        return
    for table in ("identities", "events", "trait_history", "outcomes"):
        engine.execute(
            f"""
            UPDATE {table} SET person_id = m.new_id FROM _moves m
            WHERE {table}.person_id = m.old_id
            """
        )


# From each new link, follow the batch's other links to the id at the end of the chain.
_WALK = """
    WITH RECURSIVE walk(start, reached, depth) AS (
      SELECT alias_id, target, 1 FROM _links
      UNION ALL
      SELECT w.start, l.target, w.depth + 1 FROM walk w JOIN _links l ON l.alias_id = w.reached
      WHERE w.reached <> w.start AND w.depth < 64
    )
"""


def _resolve_chains(engine: Engine) -> None:
    """a -> b and b -> c in one batch make a -> c and b -> c. A link that closes a cycle
    (a -> b, then b -> a) is dropped — the later one — rather than swapping the two ids."""
    if not engine.scalar("SELECT count(*) FROM _links l JOIN _links m ON m.alias_id = l.target"):
        return  # no chain (the usual micro-batch): one cheap query
    while True:
        closing = engine.scalar(
            f"{_WALK} SELECT arg_max(alias_id, first_seen) FROM _links "
            "WHERE alias_id IN (SELECT start FROM walk WHERE reached = start)"
        )
        if closing is None:
            break
        engine.execute("DELETE FROM _links WHERE alias_id = ?", [closing])
    engine.execute(
        f"""
        UPDATE _links SET target = ends.target FROM (
          {_WALK} SELECT start, arg_max(reached, depth) AS target FROM walk GROUP BY start
        ) ends
        WHERE _links.alias_id = ends.start
        """
    )


# The batch `_new` joined to what is known of its ids, and the person each message belongs to:
# the user id (or the person it aliases), else the anonymous id's person, else the anonymous id.
RESOLVED_FROM = (
    "_new n LEFT JOIN identities iu ON iu.alias_id = n.user_id "
    "LEFT JOIN identities ia ON ia.alias_id = n.anonymous_id"
)
PERSON_ID = "coalesce(iu.person_id, n.user_id, ia.person_id, 'anon:' || n.anonymous_id)"


def record_traits(engine: Engine) -> None:
    """Traits of identify/group calls, and first-touch campaign context, into the histories."""
    engine.execute(
        """
        INSERT INTO trait_history
        SELECT r.person_id, e.key, e.value, r.ts, r.message_id
        FROM _resolved r, json_each(r.traits) e
        WHERE r.type = 'identify'
        UNION ALL
        SELECT person_id, '$account_id', to_json(group_id), ts, message_id
        FROM _resolved WHERE type = 'group'
        UNION ALL
        SELECT person_id, '$first_' || e.key, e.value, ts, message_id
        FROM _resolved r, json_each(r.context, '$.campaign') e
        WHERE json_type(r.context, '$.campaign') = 'OBJECT' AND e.key IN ('source', 'name', 'medium')
        """
    )
    engine.execute(
        """
        INSERT INTO account_trait_history
        SELECT r.group_id, e.key, e.value, r.ts, r.message_id
        FROM _resolved r, json_each(r.traits) e
        WHERE r.type = 'group'
        """
    )


def rebuild_people(
    engine: Engine, touched: str, webmail: str, removed: str | None = None, *, batch: bool = False
) -> None:
    """Recompute `people` rows for the person ids in table `touched` from their history.

    `webmail` names a one-column table of webmail domains; `removed` a table of person ids
    (`old_id`) that were merged into others (`new_id`) and must disappear. `_people` is left
    with the rows written anew, `_left_accounts` with the accounts they (and the removed ids)
    belonged to before.

    `batch`: `touched` is an event micro-batch's people with the times of the events it
    stored (`first_ts`, `last_ts`), and `_resolved` holds its profile-changing messages.
    Stored events never change, so most people only need their last seen moved on, in place;
    a scan of every stored event (10 M at the scale targets) and of the trait history is for
    those with new traits, an event older than their first seen, or another id's history
    taken over. New people the batch brought no traits for get a row without a profile.
    """
    moved = bool(removed) and bool(engine.scalar(f"SELECT count(*) FROM {removed}"))
    ids = touched
    seen = f"""
          SELECT person_id, min(ts) AS first_seen, max(ts) AS last_seen FROM events
          WHERE person_id IN (SELECT person_id FROM {touched}) GROUP BY person_id"""
    if batch:
        took_over = f"OR t.person_id IN (SELECT new_id FROM {removed})" if moved else ""
        engine.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _plan AS
            SELECT t.*, p.first_seen, p.last_seen, p.person_id IS NOT NULL AS known,
                   coalesce(t.person_id IN (SELECT person_id FROM _resolved)
                            OR (known AND (p.first_seen IS NULL OR t.first_ts < p.first_seen))
                            {took_over}, FALSE) AS rebuild
            FROM {touched} t LEFT JOIN people p ON p.person_id = t.person_id
            """
        )
        engine.execute(
            "CREATE OR REPLACE TEMP VIEW _reprofile AS SELECT person_id FROM _plan WHERE rebuild"
        )
        ids = "_reprofile"
        history = (
            f"UNION ALL SELECT person_id, ts FROM events "
            f"WHERE person_id IN (SELECT new_id FROM {removed})"
            if moved else ""
        )
        seen = f"""
          SELECT person_id, min(t) AS first_seen, max(t) AS last_seen FROM (
            SELECT person_id, unnest([first_ts, last_ts, first_seen, last_seen]) AS t
            FROM _plan WHERE rebuild
            {history}
          ) GROUP BY person_id"""
    engine.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _people AS
        WITH th AS (
          SELECT *, {NKEY} AS nkey FROM trait_history
          WHERE person_id IN (SELECT person_id FROM {ids})
        ),
        latest AS (
          SELECT person_id, key, nkey, arg_max(value, ts) AS value, max(ts) AS ts
          FROM th WHERE NOT starts_with(key, '$') GROUP BY ALL
        ),
        first_touch AS (
          SELECT person_id,
                 arg_min(json_extract_string(value, '$'), ts) FILTER (WHERE key = '$first_source') AS source,
                 arg_min(json_extract_string(value, '$'), ts) FILTER (WHERE key = '$first_name') AS campaign,
                 arg_max(json_extract_string(value, '$'), ts) FILTER (WHERE key = '$account_id') AS account_id,
                 min(ts) AS first_trait
          FROM th GROUP BY person_id
        ),
        piv AS (
          SELECT person_id, json_group_object(key, value) AS traits,
          {_pivot(PROFILE_FIELDS)}
          FROM (SELECT *, {JTEXT} AS txt FROM latest) GROUP BY person_id
        ),
        seen AS ({seen}
        ),
        ids AS (SELECT DISTINCT person_id FROM {ids})
        SELECT ids.person_id,
               lower(piv.email) AS email, piv.first_name, piv.last_name,
               coalesce(piv.name, nullif(trim(concat_ws(' ', piv.first_name, piv.last_name)), ''))
                 AS name,
               piv.company,
               nullif(lower(split_part(piv.email, '@', 2)), '') AS domain,
               piv.title, piv.phone, piv.country,
               coalesce(piv.source, ft.source) AS source,
               coalesce(piv.campaign, ft.campaign) AS campaign,
               piv.owner,
               ft.account_id,
               coalesce(piv.traits, '{{}}')::JSON AS traits,
               least(seen.first_seen, ft.first_trait) AS first_seen,
               greatest(seen.last_seen, ft.first_trait) AS last_seen
        FROM ids
        LEFT JOIN piv USING (person_id)
        LEFT JOIN first_touch ft USING (person_id)
        LEFT JOIN seen USING (person_id)
        """
    )
    if batch:
        # new people the batch brought no traits for: no profile yet
        engine.execute(
            """
            INSERT INTO _people BY NAME
            SELECT person_id, '{}'::JSON AS traits, first_ts AS first_seen, last_ts AS last_seen
            FROM _plan WHERE NOT known AND NOT rebuild
            """
        )
        # the others (most): only seen for longer
        engine.execute(
            """
            UPDATE people SET last_seen = p.last_ts FROM _plan p
            WHERE people.person_id = p.person_id AND p.known AND NOT p.rebuild
              AND (p.last_seen IS NULL OR p.last_ts > p.last_seen)
            """
        )
    gone = f"OR person_id IN (SELECT old_id FROM {removed})" if removed else ""
    engine.execute(  # a person who moved to another account leaves this one changed too
        f"""
        CREATE OR REPLACE TEMP TABLE _left_accounts AS
        SELECT DISTINCT account_id FROM people
        WHERE (person_id IN (SELECT person_id FROM _people) {gone}) AND account_id IS NOT NULL
        """
    )
    engine.execute("DELETE FROM people WHERE person_id IN (SELECT person_id FROM _people)")
    if removed:
        engine.execute(f"DELETE FROM people WHERE person_id IN (SELECT old_id FROM {removed})")
    engine.execute(
        f"""
        INSERT INTO people BY NAME
        SELECT * EXCLUDE (account_id),
               domain IN (SELECT domain FROM {webmail}) AS webmail,
               coalesce(account_id,
                        CASE WHEN domain IS NOT NULL
                              AND domain NOT IN (SELECT domain FROM {webmail})
                             THEN 'domain:' || domain END) AS account_id
        FROM _people
        """
    )


def rebuild_accounts(engine: Engine, account_ids: str) -> None:
    """Recompute `accounts` rows for the ids in table `account_ids` (one column account_id)."""
    engine.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _accounts AS
        WITH ath AS (
          SELECT *, {NKEY} AS nkey FROM account_trait_history
          WHERE account_id IN (SELECT account_id FROM {account_ids})
        ),
        latest AS (
          SELECT account_id, key, nkey, arg_max(value, ts) AS value, min(ts) AS ts
          FROM ath GROUP BY ALL
        ),
        piv AS (
          SELECT account_id, json_group_object(key, value) AS traits, min(ts) AS first_seen,
          {_pivot(ACCOUNT_FIELDS, cast={"size": "BIGINT"})}
          FROM (SELECT *, {JTEXT} AS txt FROM latest) GROUP BY account_id
        ),
        ppl AS (
          -- the most common company (a tie: the first by name) and the earliest member's
          -- domain: mode() and any_value() would depend on the rows' order
          SELECT account_id,
                 first(company ORDER BY n DESC, company) FILTER (WHERE company IS NOT NULL)
                   AS company,
                 first(domain ORDER BY first_seen, person_id) FILTER (WHERE domain IS NOT NULL)
                   AS domain,
                 min(first_seen) AS first_seen
          FROM (
            SELECT *, count(*) OVER (PARTITION BY account_id, company) AS n FROM people
            WHERE account_id IN (SELECT account_id FROM {account_ids})
          )
          GROUP BY account_id
        ),
        ids AS (SELECT DISTINCT account_id FROM {account_ids} WHERE account_id IS NOT NULL)
        SELECT ids.account_id,
               coalesce(lower(regexp_replace(piv.domain, '^(https?://)?(www\\.)?', '')), ppl.domain)
                 AS domain,
               coalesce(piv.name, ppl.company, ppl.domain) AS name,
               piv.size, piv.industry, piv.owner,
               coalesce(piv.traits, '{{}}')::JSON AS traits,
               least(piv.first_seen, ppl.first_seen) AS first_seen
        FROM ids LEFT JOIN piv USING (account_id) LEFT JOIN ppl USING (account_id)
        """
    )
    engine.execute(
        f"DELETE FROM accounts WHERE account_id IN (SELECT account_id FROM {account_ids})"
    )
    engine.execute("INSERT INTO accounts BY NAME SELECT * FROM _accounts")
