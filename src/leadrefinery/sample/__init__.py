"""Realistic, seeded demo data: **LabCloud**, a free-trial SaaS for cloud labs / virtual classrooms.

    from leadrefinery.sample import generate
    biz = generate(Path("demo"), people=5000, months=6, seed=7)   # same seed -> same bytes
    biz.events_path, biz.truth_path, biz.counts, biz.ceiling_auc

The business
------------
Trainers, sales engineers and IT teams sign up for a free trial (mirroring a real case: ~10k
sign-ups a month, ~2 % convert, behaviour predicts who). Sign-ups are spread from `start` to
the first day of the month `months` months later, weekdays busier than weekends (factor ~0.45
on Saturday), growing ~6 % a month, at office hours in each person's time zone. Anonymous
browsing starts up to ~30 days before a sign-up; trial activity and conversions run up to ~2
months after the last sign-up.

Who signs up (`business.py`): ~47 % company e-mail domains (the rest gmail/yahoo/hotmail/...),
titles from economic buyers (CTO, VP, Director) over managers to developers, trainers and students,
a few percent risky phone countries (NG, PK, BD, VN, ID), channels of different quality (partner
referral codes and webinars good, a coupon site bad; see `business.CHANNELS`), ~3 % spurious
sign-ups (`test@test.com`-like, junk names, never log in, never convert) and a share `abusers` of
free-trial abusers. Companies are accounts (`acct-00001` ...) with domain, size, industry and a
sales owner by territory (accounts of 1000+ employees go to the enterprise reps).

Events (`events.jsonl[.gz]`, Segment spec, one JSON object a line, sorted by `timestamp`)
----------------------------------------------------------------------------------------
Every message has `type`, a unique `messageId` and an ISO-8601 `timestamp` ending in `Z`.

* `page` (`name`, `properties.path/url/title/referrer`) — anonymous (`anonymousId` only) before the
  sign-up, then with `userId` too. Paths follow the buyer journey: Recognize `/`, `/blog/...`;
  Evaluate `/product`, `/features/...`, `/case-studies/...`, `/pricing`; Sample
  `/docs/getting-started`, `/trial/...` (everyone views `/trial/signup`); Integrate `/docs/api...`,
  `/integrations/...`; Test `/docs/security`, `/docs/sso`, `/security`; Deploy `/docs/deployment`,
  `/pricing/enterprise`, `/contact-sales`. The landing page of people who came through a paid or
  partner campaign carries `context.campaign` `{source, medium, name}` (name = campaigns.csv).
* `identify` at sign-up with both `userId` and `anonymousId`, traits `email, firstName, lastName,
  company, title, phone, phoneCountry (ISO-2), country (ISO-2), emailVerified, phoneVerified,
  referralSource, referralCode, companySize, productInterest, plan: "trial", createdAt` (nullable:
  company, title, referralCode, companySize, productInterest). Later identifies (`userId` only)
  change one trait: emailVerified, phoneVerified, title, companySize — the newest value wins.
* `group` (`groupId` = account id, traits `name, employees, industry, website`) for company people.
* `alias` (`previousId` = a `legacy-...` id, `userId`): ~1 % of people (at least one per 200)
  signed up under a legacy id; their events before the alias carry the legacy `userId`.
* `track` events (`event`, `properties`):
  `Signed Up {referral_code, source}`, `Logged In {}`,
  `Environment Launched {environment_id, template, guests, class_id, max_duration_minutes}`
  (templates windows-lab, linux-lab, data-science, kubernetes, sql-sandbox; 10 guests allowed;
  240 minutes allowed, 120 for sql-sandbox; ordinary users are stopped at the limit),
  `Environment Stopped {environment_id, duration_minutes (cumulative), guests, auto_suspended,
  max_duration_minutes}`,
  `Environment Resumed {environment_id}`, `Email Opened {campaign, link: null}`,
  `Email Clicked {campaign, link}`, `Documentation Purchased {title, price, currency}`,
  `Training Registered {course}`, `Contact Sales Requested {topic}`, and the conversion
  `Subscription Started {plan, amount, currency, interval}` (amount in USD per year).

Server-side events (environments, e-mail, purchases, subscription, later identifies, group) carry
`userId` only; browser events (page, Logged In, Signed Up, Contact Sales Requested) carry both ids.

Abusers: besides ordinary use they run classes of 25..40 guests (10 allowed), 2..3 environments
at once, kept alive 360..720 minutes (`max_duration_minutes` 240) by a script that resumes the
environment 4 s after every auto-suspend, at an exact per-abuser interval (mostly 29 minutes):
`Environment Stopped {auto_suspended: true}` then `Environment Resumed`, like clockwork.

How conversion is generated (`behaviour.py`, `conversion.py`)
-------------------------------------------------------------
1. Each person gets a hidden intent ~ Normal(0, 1) + 0.45 (fit - 0.5) + 0.6 channel quality.
2. Behaviour is drawn from intent: activation, number of sessions (Logged In), pages per session
   and how far along the journey they read, environments launched, class use, e-mail opens and
   clicks, pricing views, Contact Sales / Documentation / Training (all rise with intent).
3. The true probability is computed from what was *observed* only (never from intent):

       logit p = b0 + 0.75 company domain + 0.3 company trait matches the domain's company
                    + 0.35 title seniority (-1 student .. 2 executive) + 0.2 log10(1 + companySize)
                    - 1.1 risky phone country + 0.3 emailVerified + 0.35 phoneVerified
                    + 0.8 channel quality
                    + 0.45 ln(1 + logins) + 0.35 ln(1 + environments) + 0.35 ran a class (3..10)
                    + 0.35 journey stages past Sample (0..3) + 0.5 viewed pricing
                    + 1.2 contacted sales + 0.8 bought docs + 0.65 registered for training
                    + 0.3 ln(1 + e-mail clicks)

   `b0` is solved so the mean probability is 3.5 % overall (ordinary trials ~2-2.5 %). Abusers
   instead get p ~ Uniform(0.35, 0.55) (about half convert once sales calls them); spurious
   sign-ups 0.0002. Facts count as of the end of the trial (traits: newest identify).
4. The label is drawn from p; converters get `Subscription Started` 0.5..10 days after their last
   trial event, then a few paid logins (a leak for any feature that ignores point-in-time).

`truth.csv` holds p and the label, so `ceiling_auc` (AUC of p against the label) is the best any
model can do on this data (about 0.94 overall, 0.92 among ordinary trials, with default settings;
a gradient-boosting model on point-in-time features rebuilt from the files reached 0.933 against a
ceiling of 0.943 at 30k people).

CRM files (`crm.py`)
--------------------
* `opportunities.csv` `opportunity_id,email,account,created,stage,won,amount,closed,owner`: for
  everyone who contacted sales, every abuser (sales is alerted and calls) and sales-assisted
  converters (100+ employees or executive title). Won (`won=true`, stage Closed Won) exactly for
  converted people, with their subscription amount and date; converters without an opportunity
  bought self-serve. Lost ones `won=false`; still open at the export: stage Discovery..Negotiation,
  `won` and `closed` empty. Dates are `YYYY-MM-DD`.
* `campaigns.csv` `campaign,source,medium,period_start,period_end,cost`: each paid campaign's
  spend per calendar month (period_end inclusive; a fixed fee + cost per sign-up it brought,
  +-15 %).
* `accounts.csv` `account_id,domain,name,employees,industry,owner`.
* `truth.csv` `user_id,email,true_probability,converted,is_abuser,is_spurious` (0/1 flags; user_id
  is the final id, after any alias).
"""

from .generator import GeneratedBusiness, ceiling_auc, generate

__all__ = ["GeneratedBusiness", "ceiling_auc", "generate"]
