"""The scoring model: a reviewed YAML file, checked at load, compiled to SQL for every engine.

    spec.py       the language, as a pydantic schema (extra keys forbidden)
    yamlload.py   YAML with line numbers, so errors say file:line
    load.py       file -> Model (validated, versioned by `version:` + content hash)
    expr.py       `when:` conditions: parsed by sqlglot, checked against a whitelist, typed
    dialects.py   what differs between DuckDB, PostgreSQL and Spark SQL, as a table
    compile.py    the model -> one SQL query (a sqlglot AST): components, categories, total,
                  grade, stage, abuse flags, segments per person
    scoring.py    running it and keeping snapshots (score_runs, scores, latest_scores,
                  account_scores)
    explain.py    why a person has their score; the ranked lead list with reasons

The language in brief (`sample/model.yaml` is a complete example):

    version: 3                                  # required; with the content hash -> model_version
    name: trial                                 # default: the file name
    sets:                                       # reusable lists: `x IN @risky_countries`
      risky_countries: [NG, PK, VN]             # (built in: @webmail)
    facts:                                      # named per-person aggregates: facts.logins
      logins: {on: track, event: Logged In}                      # agg: count (default)
      templates: {on: track, event: Environment Launched, agg: count_distinct,
                  of: properties.template, window: 30d}
      # agg: count | count_distinct | sum | min | max | avg | days_since_first |
      #      days_since_last | active_days
    categories: {fit: {cap: 40, min: -40}, engagement: {cap: 60}}
    score: {min: 0, max: 100}
    rules:
      - id: pricing_page                        # lower_snake_case, unique
        on: page                                # track | page | screen | identify | group | any
        when: "path LIKE '/pricing%'"           # SQL-like condition (see below)
        points: 5                               # negative allowed; or `cases:` (below)
        half_life: 14d                          # decay from the as-of time; or window: 30d
        frequency: {max_per_day: 1}             # once | each | {max_per_day: N} | {max_total: N}
                                                # (N newest; at one instant, larger points first)
        min_count: 2                            # fires only from the 2nd occurrence on
        cap: 20                                 # at most ±20 points from this rule
        category: engagement                    # default: engagement (events), fit (person)
      - id: env_template
        on: track
        event: [Environment Launched]           # names, or globs: "Environment *"
        cases:                                  # points per occurrence, first match wins
          - {when: "properties.template IN ('windows-lab', 'data-science')", points: 8}
          - {points: 3}                         # otherwise
      - id: webmail
        on: person                              # a condition on the profile, worth its points once
        when: webmail
        points: -10
      - id: logged_in_twice
        on: person
        when: facts.logins >= 2
        points: 10
        category: engagement
      - id: big_company
        on: account
        cases: [{when: "account.size >= 1000", points: 15}, {when: "account.size >= 50", points: 5}]
    grades:                                     # thresholds (first min reached), 1 = best:
      levels: [{grade: "1", min: 70}, {grade: "2", min: 50}, {grade: "3"}]
      mql: ["1", "2"]
      # method: volume -> levels: [{grade: A, top: 0.1}, {grade: B, top: 0.25},
      #                            {grade: C, top: 0.5}, {grade: D}]   (cumulative top shares)
      # method: matrix -> fit: {category: fit, levels: [{label: A, min: 30}, ..., {label: D}]}
      #                   engagement: {category: engagement, levels: [{label: "1", min: 40}, ...]}
    stages:                                     # the furthest stage with fresh evidence
      order: [Recognize, Evaluate, Sample, Integrate, Test, Deploy]     # (the default)
      expires: 90d
      evidence:
        Evaluate: [{on: page, when: "path = '/pricing'"}]
        Sample: {min_count: 2, expires: 60d, any: [{on: track, event: Environment Launched}]}
    abuse:
      - {id: too_many_guests, kind: event, on: track, event: Environment Launched,
         when: "properties.guests > 10", measure: properties.guests}
      - {id: session_too_long, kind: session, key: properties.environment_id, max_minutes: 240,
         start: {on: track, event: [Environment Launched, Environment Resumed]},
         stop: {on: track, event: Environment Stopped},
         resume_within: 5m}             # resumed right after an auto-suspend: same session
      - {id: parallel_envs, kind: concurrent, key: properties.environment_id, max_concurrent: 1,
         min_minutes: 240,              # ... for at least this long in one stretch (optional)
         start: {on: track, event: Environment Launched},
         stop: {on: track, event: Environment Stopped}}
      - {id: scripted_resume, kind: regular, on: track, event: Environment Resumed,
         key: properties.environment_id, min_events: 6, max_cv: 0.1, gap: [20m, 40m]}
    segments:
      commercial: "NOT webmail AND company IS NOT NULL"
      developer: "facts.api_docs >= 2 OR rules.api_docs > 0"
      hot: "grade IN ('1', '2') AND stage_rank >= 4 AND NOT abuse.any"
    accounts: {engaged: "category.engagement >= 10"}

Conditions: `AND OR NOT = <> < <= > >= IN (...) IN @set BETWEEN LIKE ILIKE IS [NOT] NULL
+ - * / || CASE WHEN`, functions lower upper trim length starts_with ends_with contains
matches(x, regex) replace split_part number text abs floor ceil least greatest coalesce
days_since(time). Names: on events `event type ts path url referrer properties.x context.x
traits.x` and the person's fields; on the person `email domain webmail company title phone
country source campaign owner account_id first_seen domain_matches_company traits.x
account.{name,domain,size,industry,owner,traits.x} facts.x`; in segments also `score grade mql
stage stage_rank category.x abuse.x abuse.any rules.x`.
"""

from __future__ import annotations

from .compile import Plan, build_plan
from .load import Model, load_model, parse_model

__all__ = ["Model", "Plan", "build_plan", "load_model", "parse_model"]
