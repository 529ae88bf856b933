"""What trial users do, as a columnar event table drawn with numpy (no Python loop per event).

Every event is one row of small integer columns: time, person, kind (which message template),
id mode (which of userId / anonymousId it carries) and four kind-specific parameters `a..d`
(page, referrer, environment id, template, guests ...). `writer.py` turns rows into Segment JSON.
Identify traits, the only free-form payloads, are serialised once per person into `bodies`.

Behaviour is drawn from each person's latent intent (see `business.make_population`); the
conversion probability is then computed from what was *observed* (`conversion.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
import orjson

from . import business as B
from .formatting import iso_ms, to_str

DAY = 86_400_000
MIN = 60_000


class Kind(IntEnum):
    PAGE = 0
    PAGE_CAMPAIGN = 1  # landing page view carrying context.campaign
    IDENTIFY = 2
    GROUP = 3
    ALIAS = 4
    SIGNED_UP = 5
    LOGGED_IN = 6
    ENV_LAUNCHED = 7
    ENV_STOPPED = 8
    ENV_RESUMED = 9
    EMAIL_OPENED = 10
    EMAIL_CLICKED = 11
    DOCS_PURCHASED = 12
    TRAINING_REGISTERED = 13
    CONTACT_SALES = 14
    SUBSCRIPTION_STARTED = 15


class Mode(IntEnum):
    """Which identifiers a message carries (OLD_* = the legacy id, before the alias call)."""

    ANON = 0
    USER = 1
    USER_ANON = 2
    OLD_USER = 3
    OLD_USER_ANON = 4


N_MODES = len(Mode)


@dataclass
class EventTable:
    ts: np.ndarray  # int64 ms
    person: np.ndarray  # int32
    kind: np.ndarray  # int8
    mode: np.ndarray  # int8
    a: np.ndarray  # int32 parameters, meaning per kind (see writer.TEMPLATES)
    b: np.ndarray
    c: np.ndarray
    d: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)


@dataclass
class Rows:
    """Collects event rows family by family; `table()` concatenates them."""

    parts: list[tuple[np.ndarray, ...]] = field(default_factory=list)

    def add(
        self,
        kind: Kind,
        person: np.ndarray,
        ts: np.ndarray,
        mode: Mode | np.ndarray,
        a: object = -1,
        b: object = -1,
        c: object = -1,
        d: object = -1,
    ) -> None:
        n = len(person)
        if n == 0:
            return

        def col(v: object, dtype: type) -> np.ndarray:
            arr = np.asarray(v)
            return np.full(n, arr, dtype=dtype) if arr.ndim == 0 else arr.astype(dtype, copy=False)

        self.parts.append(
            (
                col(ts, np.int64),
                col(person, np.int32),
                col(int(kind), np.int8),
                col(mode, np.int8),
                col(a, np.int32),
                col(b, np.int32),
                col(c, np.int32),
                col(d, np.int32),
            )
        )

    def table(self) -> EventTable:
        """Concatenate column by column, releasing the parts as it goes (bounded peak memory)."""
        columns = [list(col) for col in zip(*self.parts, strict=True)]
        self.parts.clear()
        out = []
        for k in range(8):
            out.append(np.concatenate(columns[k]))
            columns[k] = []
        return EventTable(*out)


@dataclass
class Observed:
    """Per-person facts a scoring model can see in the events (inputs of the conversion formula)."""

    logins: np.ndarray
    environments: np.ndarray
    class_use: np.ndarray  # launched an environment for a class of 3..10 guests
    depth: np.ndarray  # furthest buyer-journey stage viewed (index into STAGES)
    pricing: np.ndarray
    contact_sales: np.ndarray
    docs: np.ndarray
    training: np.ndarray
    email_clicks: np.ndarray
    last_ms: np.ndarray  # time of the person's last trial event
    contact_ms: np.ndarray  # first Contact Sales Requested, -1 if none
    abuse_ms: np.ndarray  # first over-limit environment, -1 if none


@dataclass
class Simulation:
    rows: Rows
    bodies: list[str]  # identify payloads (`"traits": {...}` objects), indexed by a
    alias_ms: np.ndarray  # -1 when the person has no legacy id
    n_envs: int = 0


def within(counts: np.ndarray) -> np.ndarray:
    """Position of each repeated row inside its group: counts [2, 3] -> [0, 1, 0, 1, 2]."""
    counts = np.asarray(counts, dtype=np.int64)
    starts = np.cumsum(counts) - counts
    return np.arange(int(counts.sum())) - np.repeat(starts, counts)


def _pick_pages(rng: np.random.Generator, cap: np.ndarray) -> np.ndarray:
    """A random non-special page for each row, from a stage up to `cap` (skewed to the cap)."""
    u = rng.random(len(cap))
    stage = np.minimum(cap, ((cap + 1) * u**0.55).astype(np.int64))
    r = rng.random(len(cap))
    offset = (r * B.STAGE_PAGE_COUNT[stage]).astype(np.int64)
    return B.STAGE_PAGE_LIST[B.STAGE_PAGE_START[stage] + offset]


def _visit(
    rng: np.random.Generator,
    person: np.ndarray,
    start: np.ndarray,
    n: np.ndarray,
    cap: np.ndarray,
    first_ref: np.ndarray,
):
    """Pages of a visit, one after the other, each referred by the previous one."""
    vi = np.repeat(np.arange(len(person)), n)
    j = within(n)
    gap = rng.integers(40_000, 180_000, len(person))
    ts = start[vi] + j * gap[vi] + rng.integers(0, 20_000, len(vi))
    page = _pick_pages(rng, cap[vi])
    prev = np.empty_like(page)
    if len(page):
        prev[1:] = page[:-1]
        prev[0] = 0
    ref = np.where(j == 0, first_ref[vi], B.REF_PAGE0 + prev)
    last = np.full(len(person), -1, dtype=np.int64)
    has = n > 0
    last[has] = page[np.cumsum(n)[has] - 1]
    return person[vi], ts, page, ref, j, last


def _traits(pop: B.Population, i: int, created: str) -> str:
    acc = pop.accounts
    t = pop.title_initial[i]
    title = pop.free_title[i] if t < 0 else B.TITLES[t].name
    traits = {
        "email": pop.email[i],
        "firstName": pop.first_name[i],
        "lastName": pop.last_name[i],
        "company": pop.company[i],
        "title": title,
        "phone": pop.phone[i],
        "phoneCountry": B.COUNTRY_CODES[pop.phone_country[i]],
        "country": B.COUNTRY_CODES[pop.country[i]],
        "emailVerified": bool(pop.email_verified_at_signup[i]),
        "phoneVerified": bool(pop.phone_verified_at_signup[i]),
        "referralSource": B.CHANNELS[pop.channel[i]].source,
        "referralCode": B.CHANNELS[pop.channel[i]].code,
        "companySize": int(pop.size_at_signup[i]) if pop.size_at_signup[i] >= 0 else None,
        "productInterest": B.INTERESTS[pop.interest[i]] if pop.interest[i] >= 0 else None,
        "plan": "trial",
        "createdAt": created,
    }
    if pop.account[i] >= 0 and acc.employees[pop.account[i]] >= 1000 and i % 3 == 0:
        traits["website"] = "https://www." + acc.domain[pop.account[i]]
    # decode: orjson's bytes keep a ~4 KiB allocation each, a str does not
    return orjson.dumps(traits).decode()


def simulate(pop: B.Population, seed: int) -> tuple[Simulation, Observed]:
    """Draw every trial event except the conversion (which needs the probability first)."""
    rng = B.stream(seed, "behaviour")
    n = pop.n
    T = pop.signup_ms
    z = pop.intent
    spur = pop.spurious
    abuser = pop.abuser
    rows = Rows()
    everyone = np.arange(n)

    # furthest buyer-journey stage this person will read up to (Sample = 2 for every sign-up)
    S = 2 + np.clip(np.round(0.2 + 0.9 * z + rng.normal(0, 0.7, n)), 0, 3).astype(np.int64)
    S[spur] = 2
    window = np.clip(rng.lognormal(np.log(9.0) + 0.25 * z, 0.5), 1, 40)  # active trial days
    window[abuser] = rng.uniform(20, 40, int(abuser.sum()))

    # ---- before sign-up: landing visit (maybe a return visit), then the sign-up page ------------
    signup_page_ts = T - rng.integers(15_000, 60_000, n)
    n_land = np.where(spur, 0, 1 + rng.poisson(1.0 + 0.4 * np.clip(z, 0, None)))
    same = spur | (rng.random(n) < 0.4)
    gap = np.minimum(rng.exponential(3.0, n), 30) * DAY + 3_600_000
    n_ret = np.where(same, 0, rng.poisson(0.7, n))
    land_start = np.where(same, signup_page_ts - n_land * 200_000 - 30_000, T - gap)
    ch = pop.channel
    land_ref = B.CHANNEL_REF_IDX[ch]
    lp, lts, lpage, lref, lj, llast = _visit(
        rng, everyone, land_start, n_land, np.ones(n, dtype=np.int64), land_ref
    )
    has_campaign = np.array([c.campaign is not None for c in B.CHANNELS])[ch]
    first_is_campaign = (lj == 0) & has_campaign[lp]
    rows.add(
        Kind.PAGE,
        lp[~first_is_campaign],
        lts[~first_is_campaign],
        Mode.ANON,
        lpage[~first_is_campaign],
        lref[~first_is_campaign],
    )
    rows.add(
        Kind.PAGE_CAMPAIGN,
        lp[first_is_campaign],
        lts[first_is_campaign],
        Mode.ANON,
        lpage[first_is_campaign],
        lref[first_is_campaign],
        ch[lp[first_is_campaign]],
    )
    ret_start = signup_page_ts - n_ret * 200_000 - 20_000
    rcap = np.where(rng.random(n) < 0.15, 2, 1)
    rp, rts, rpage, rref, _, rlast = _visit(
        rng, everyone, ret_start, n_ret, rcap, np.full(n, B.REF_NONE)
    )
    rows.add(Kind.PAGE, rp, rts, Mode.ANON, rpage, rref)
    prev_page = np.where(n_ret > 0, rlast, np.where(same & (n_land > 0), llast, -1))
    sref = np.where(prev_page >= 0, B.REF_PAGE0 + prev_page, B.REF_NONE)
    landing_is_signup = spur & has_campaign
    sref = np.where(spur, land_ref, sref)
    rows.add(
        Kind.PAGE,
        everyone[~landing_is_signup],
        signup_page_ts[~landing_is_signup],
        Mode.ANON,
        B.PAGE_SIGNUP,
        sref[~landing_is_signup],
    )
    rows.add(
        Kind.PAGE_CAMPAIGN,
        everyone[landing_is_signup],
        signup_page_ts[landing_is_signup],
        Mode.ANON,
        B.PAGE_SIGNUP,
        sref[landing_is_signup],
        ch[landing_is_signup],
    )
    depth = np.full(n, 2, dtype=np.int64)  # the sign-up page is a Sample page
    np.maximum.at(depth, lp, B.PAGE_STAGE[lpage])
    np.maximum.at(depth, rp, B.PAGE_STAGE[rpage])
    pricing = np.zeros(n, dtype=bool)
    pricing[lp[B.PRICING_PAGES[lpage]]] = True
    pricing[rp[B.PRICING_PAGES[rpage]]] = True

    # ---- sign-up: identify (+ both ids), Signed Up, group ---------------------------------------
    created = to_str(iso_ms(T))
    bodies = [_traits(pop, i, created[i]) for i in range(n)]
    rows.add(Kind.IDENTIFY, everyone, T, Mode.USER_ANON, everyone)
    rows.add(
        Kind.SIGNED_UP,
        everyone,
        T + 250,
        Mode.USER_ANON,
        B.CHANNEL_CODE_IDX[ch],
        B.CHANNEL_SOURCE_IDX[ch],
    )
    comp = np.flatnonzero(pop.account >= 0)
    rows.add(Kind.GROUP, comp, T[comp] + 500, Mode.USER, pop.account[comp])

    # ---- sessions: Logged In, pages read along the journey --------------------------------------
    active = ~spur & ((rng.random(n) < B.sigmoid(1.3 + 1.0 * z)) | abuser)
    n_sess = np.where(active, 1 + rng.poisson(np.exp(np.clip(1.95 + 0.6 * z, -3, 3.6))), 0)
    n_sess = np.minimum(n_sess + np.where(abuser, rng.poisson(4, n), 0), 90)
    sp = np.repeat(everyone, n_sess)
    sj = within(n_sess)
    frac = rng.random(len(sp)) ** 1.3
    s_ts = np.where(
        sj == 0,
        T[sp] + rng.integers(20_000, 240_000, len(sp)),
        T[sp] + (frac * window[sp] * DAY).astype(np.int64) + 300_000,
    )
    frac = np.where(sj == 0, 0.0, frac)
    rows.add(Kind.LOGGED_IN, sp, s_ts, Mode.USER_ANON)
    logins = n_sess.copy()
    n_pg = rng.poisson(1.2 + 0.4 * (S[sp] - 2))
    cap = 2 + np.round((S[sp] - 2) * np.minimum(1.0, 0.35 + frac)).astype(np.int64)
    pp, pts, ppage, pref, _, _ = _visit(
        rng, sp, s_ts + 30_000, n_pg, cap, np.full(len(sp), B.REF_APP)
    )
    rows.add(Kind.PAGE, pp, pts, Mode.USER_ANON, ppage, pref)
    np.maximum.at(depth, pp, B.PAGE_STAGE[ppage])
    pricing[pp[B.PRICING_PAGES[ppage]]] = True

    def random_session(mask: np.ndarray) -> np.ndarray:
        """Start time of one random session of each person in mask (all have sessions)."""
        idx = np.flatnonzero(mask)
        first = np.cumsum(n_sess) - n_sess
        pick = first[idx] + (rng.random(len(idx)) * n_sess[idx]).astype(np.int64)
        return s_ts[pick]

    # ---- environments ---------------------------------------------------------------------------
    env_counter = 0
    class_counter = 0
    launches = rng.random(len(sp)) < B.sigmoid(-0.5 + 0.8 * z[sp])
    n_env = np.where(launches, 1 + rng.poisson(0.2, len(sp)), 0)
    ep = np.repeat(sp, n_env)
    e0 = np.repeat(s_ts, n_env) + rng.integers(60_000, 15 * MIN, len(ep))
    ne = len(ep)
    env_id = env_counter + np.arange(ne)
    env_counter += ne
    interest = pop.interest[ep]
    mix = B.TEMPLATE_MIX[np.where(interest >= 0, interest, len(B.INTERESTS))]
    tmpl = (rng.random(ne)[:, None] > np.cumsum(mix, axis=1)).sum(axis=1)
    tmpl = np.minimum(tmpl, len(B.TEMPLATES) - 1)
    max_d = B.MAX_DURATION[tmpl]
    is_class = (pop.trainer[ep] | (interest == 0)) & (rng.random(ne) < 0.5)
    guests = np.where(
        is_class,
        rng.integers(3, B.ALLOWED_GUESTS + 1, ne),
        np.where(rng.random(ne) < 0.7, 0, rng.integers(1, 3, ne)),
    )
    class_id = np.where(is_class, class_counter + np.cumsum(is_class) - 1, -1)
    class_counter += int(is_class.sum())
    dur = np.maximum(3, rng.lognormal(np.log(45), 0.8, ne)).astype(np.int64)
    at_cap = dur >= max_d
    dur = np.minimum(dur, max_d)
    idle = ~at_cap & (rng.random(ne) < 0.25)
    resumed = idle & (rng.random(ne) < 0.5)
    stop1 = e0 + dur * MIN + rng.integers(0, 59_000, ne)
    rows.add(Kind.ENV_LAUNCHED, ep, e0, Mode.USER, env_id, tmpl, guests, class_id)
    rows.add(
        Kind.ENV_STOPPED, ep, stop1, Mode.USER, env_id, dur, guests, (at_cap | idle) + 2 * tmpl
    )
    r = np.flatnonzero(resumed)
    res_ts = stop1[r] + rng.lognormal(np.log(60), 1.0, len(r)).astype(np.int64) * MIN + 7_000
    d2 = np.minimum(rng.lognormal(np.log(30), 0.7, len(r)).astype(np.int64) + 1, max_d[r] - dur[r])
    d2 = np.maximum(d2, 1)
    rows.add(Kind.ENV_RESUMED, ep[r], res_ts, Mode.USER, env_id[r])
    rows.add(
        Kind.ENV_STOPPED,
        ep[r],
        res_ts + d2 * MIN + rng.integers(0, 59_000, len(r)),
        Mode.USER,
        env_id[r],
        dur[r] + d2,
        guests[r],
        ((dur[r] + d2) >= max_d[r]) + 2 * tmpl[r],
    )
    environments = np.bincount(ep, minlength=n)
    class_use = np.bincount(ep[is_class], minlength=n) > 0

    # ---- abuse: oversized classes kept alive by a script around auto-suspend --------------------
    ab = np.flatnonzero(abuser)
    abuse_ms = np.full(n, -1, dtype=np.int64)
    if len(ab):
        n_groups = 1 + rng.poisson(0.5, len(ab))
        gp = np.repeat(ab, n_groups)
        g0 = T[gp] + (rng.uniform(0.1, 1.0, len(gp)) * window[gp] * DAY).astype(np.int64)
        per_group = rng.integers(2, 4, len(gp))  # environments running at once
        xp = np.repeat(gp, per_group)
        nx = len(xp)
        x0 = np.repeat(g0, per_group) + within(per_group) * rng.integers(20_000, 180_000, nx)
        interval_choice = np.array([29, 29, 29, 29, 30, 30, 20])
        interval = interval_choice[rng.integers(0, len(interval_choice), n)][xp]
        total = rng.integers(360, 720, nx)
        cycles = (total - 1) // interval
        xid = env_counter + np.arange(nx)
        env_counter += nx
        xt = rng.choice([0, 1, 3], size=nx, p=[0.6, 0.25, 0.15])
        xguests = rng.integers(25, 41, nx)
        xclass = class_counter + np.arange(nx)
        class_counter += nx
        rows.add(Kind.ENV_LAUNCHED, xp, x0, Mode.USER, xid, xt, xguests, xclass)
        ci = np.repeat(np.arange(nx), cycles)
        k = within(cycles) + 1
        t_susp = x0[ci] + k * interval[ci] * MIN
        rows.add(
            Kind.ENV_STOPPED,
            xp[ci],
            t_susp,
            Mode.USER,
            xid[ci],
            k * interval[ci],
            xguests[ci],
            1 + 2 * xt[ci],
        )
        rows.add(Kind.ENV_RESUMED, xp[ci], t_susp + 4_000, Mode.USER, xid[ci])
        rows.add(
            Kind.ENV_STOPPED, xp, x0 + total * MIN + 4_000, Mode.USER, xid, total, xguests, 2 * xt
        )
        environments += np.bincount(xp, minlength=n)
        first_abuse = np.full(n, np.iinfo(np.int64).max)
        np.minimum.at(first_abuse, xp, x0)
        abuse_ms[ab] = first_abuse[ab]

    # ---- e-mail nurture: opens and clicks -------------------------------------------------------
    mailable = np.flatnonzero(~spur)
    ne_c = len(B.EMAIL_CAMPAIGNS)
    mp = np.repeat(mailable, ne_c)
    mc = np.tile(np.arange(ne_c), len(mailable))
    send = T[mp] + (np.array([c[1] for c in B.EMAIL_CAMPAIGNS])[mc] * DAY).astype(np.int64)
    opened = rng.random(len(mp)) < B.sigmoid(-0.9 + 0.7 * z[mp] - 0.08 * mc)
    o_ts = send + rng.exponential(5 * 3_600_000, len(mp)).astype(np.int64) + 30_000
    rows.add(Kind.EMAIL_OPENED, mp[opened], o_ts[opened], Mode.USER, mc[opened])
    clicked = opened & (rng.random(len(mp)) < B.sigmoid(-1.1 + 0.6 * z[mp]))
    rows.add(
        Kind.EMAIL_CLICKED,
        mp[clicked],
        o_ts[clicked] + rng.integers(5_000, 300_000, int(clicked.sum())),
        Mode.USER,
        mc[clicked],
    )
    email_clicks = np.bincount(mp[clicked], minlength=n)

    # ---- buy-readiness --------------------------------------------------------------------------
    company = pop.company_domain
    want_price = active & (rng.random(n) < B.sigmoid(-1.8 + 1.1 * z))
    t = random_session(want_price) + 120_000
    rows.add(Kind.PAGE, everyone[want_price], t, Mode.USER_ANON, B.PAGE_PRICING, B.REF_APP)
    pricing |= want_price
    contact = (
        active
        & ~abuser
        & (rng.random(n) < B.sigmoid(-4.4 + 1.1 * z + 0.45 * pop.seniority + 0.5 * company))
    )
    t = random_session(contact) + 180_000
    cp = everyone[contact]
    rows.add(Kind.PAGE, cp, t, Mode.USER_ANON, B.PAGE_CONTACT, B.REF_PAGE0 + B.PAGE_PRICING)
    rows.add(
        Kind.CONTACT_SALES,
        cp,
        t + 45_000,
        Mode.USER_ANON,
        rng.integers(0, len(B.CONTACT_TOPICS), len(cp)),
    )
    depth[contact] = 5
    contact_ms = np.full(n, -1, dtype=np.int64)
    contact_ms[cp] = t + 45_000
    docs = active & (rng.random(n) < B.sigmoid(-4.6 + 1.0 * z))
    rows.add(
        Kind.DOCS_PURCHASED,
        everyone[docs],
        random_session(docs) + 300_000,
        Mode.USER,
        rng.integers(0, len(B.DOCS), int(docs.sum())),
    )
    training = active & (rng.random(n) < B.sigmoid(-4.4 + 0.9 * z + 1.0 * pop.trainer))
    rows.add(
        Kind.TRAINING_REGISTERED,
        everyone[training],
        random_session(training) + 400_000,
        Mode.USER,
        rng.integers(0, len(B.COURSES), int(training.sum())),
    )

    # ---- later identifies: verification, corrected title, progressive profiling -----------------
    def update(mask: np.ndarray, ts: np.ndarray, make: object) -> None:
        idx = np.flatnonzero(mask)
        start = len(bodies)
        bodies.extend(make(int(i)) for i in idx)  # type: ignore[operator]
        rows.add(Kind.IDENTIFY, idx, ts[idx], Mode.USER, start + np.arange(len(idx)))

    ev_late = pop.email_verified & ~pop.email_verified_at_signup
    update(
        ev_late,
        T + rng.lognormal(np.log(240_000), 1.0, n).astype(np.int64),
        lambda i: '{"emailVerified":true}',
    )
    pv_late = pop.phone_verified & ~pop.phone_verified_at_signup
    update(
        pv_late,
        T + (rng.uniform(0.05, 0.6, n) * window * DAY).astype(np.int64),
        lambda i: '{"phoneVerified":true}',
    )
    t_change = (pop.title != pop.title_initial) & (pop.title >= 0)
    update(
        t_change,
        T + (rng.uniform(0.2, 0.9, n) * window * DAY).astype(np.int64),
        lambda i: orjson.dumps({"title": B.TITLES[pop.title[i]].name}).decode(),
    )
    late_size = (pop.size_at_signup < 0) & (pop.company_size >= 0)
    update(
        late_size,
        T + (rng.uniform(0.1, 0.8, n) * window * DAY).astype(np.int64),
        lambda i: orjson.dumps({"companySize": int(pop.company_size[i])}).decode(),
    )

    # ---- legacy ids merged by alias -------------------------------------------------------------
    alias_ms = np.where(pop.alias, T + (rng.uniform(0.5, 5.0, n) * DAY).astype(np.int64), -1)
    al = np.flatnonzero(pop.alias)
    rows.add(Kind.ALIAS, al, alias_ms[al], Mode.USER)

    last_ms = T.copy()
    for part in rows.parts:
        np.maximum.at(last_ms, part[1], part[0])

    sim = Simulation(rows=rows, bodies=bodies, alias_ms=alias_ms, n_envs=env_counter)
    obs = Observed(
        logins=logins,
        environments=environments,
        class_use=class_use,
        depth=depth,
        pricing=pricing,
        contact_sales=contact,
        docs=docs,
        training=training,
        email_clicks=email_clicks,
        last_ms=last_ms,
        contact_ms=contact_ms,
        abuse_ms=abuse_ms,
    )
    return sim, obs


@dataclass
class Conversions:
    converted: np.ndarray
    conv_ms: np.ndarray  # -1 when not converted
    plan: np.ndarray  # index into PLANS, -1 when not converted
    amount: np.ndarray


def add_conversions(
    sim: Simulation, pop: B.Population, obs: Observed, converted: np.ndarray, seed: int
) -> Conversions:
    """Subscription Started some days after the trial behaviour, then a few paid-user logins."""
    rng = B.stream(seed, "conversion-events")
    n = pop.n
    cv = np.flatnonzero(converted)
    conv_ms = np.full(n, -1, dtype=np.int64)
    conv_ms[cv] = obs.last_ms[cv] + (rng.uniform(0.5, 10, len(cv)) * DAY).astype(np.int64)
    size = np.where(pop.company_size >= 0, pop.company_size, np.where(pop.account >= 0, 50, 5))[cv]
    u = rng.random(len(cv))
    plan_idx = np.where(
        size >= 1000,
        np.where(u < 0.6, 3, 2),
        np.where(
            size >= 100, np.where(u < 0.5, 2, 1), np.where(size >= 10, np.where(u < 0.6, 1, 0), 0)
        ),
    )
    plan_idx = np.where(pop.abuser[cv] & (plan_idx == 0), 1, plan_idx)  # a class needs seats
    amount_cv = B.PLAN_AMOUNT[plan_idx].astype(np.int64)
    ent = plan_idx == 3
    amount_cv[ent] = (np.round(36_000 * rng.lognormal(0, 0.4, int(ent.sum())), -2)).astype(np.int64)
    plan = np.full(n, -1, dtype=np.int64)
    amount = np.zeros(n, dtype=np.int64)
    plan[cv] = plan_idx
    amount[cv] = amount_cv
    sim.rows.add(Kind.SUBSCRIPTION_STARTED, cv, conv_ms[cv], Mode.USER, plan_idx, amount_cv)
    # paying customers keep logging in (a leak for models that ignore point-in-time)
    k = rng.poisson(3, len(cv))
    lp = np.repeat(cv, k)
    lts = np.repeat(conv_ms[cv], k) + (rng.uniform(0.02, 30, len(lp)) * DAY).astype(np.int64)
    sim.rows.add(Kind.LOGGED_IN, lp, lts, Mode.USER_ANON)
    return Conversions(converted=converted, conv_ms=conv_ms, plan=plan, amount=amount)


def finalise(sim: Simulation) -> EventTable:
    """Concatenate, switch pre-alias events to the legacy id, and sort by time (stable)."""
    tbl = sim.rows.table()
    alias_at = sim.alias_ms[tbl.person]
    legacy = (alias_at >= 0) & (tbl.ts < alias_at) & (tbl.mode > 0)
    tbl.mode[legacy] += 2
    order = np.argsort(tbl.ts, kind="stable")
    for name in ("ts", "person", "kind", "mode", "a", "b", "c", "d"):
        setattr(tbl, name, getattr(tbl, name)[order])
    return tbl
