"""LabCloud, the demo business: its catalogue (as data) and its population of trial signups.

The catalogue tables (countries, titles, channels, pages, lab templates, e-mail campaigns, plans,
sales reps) are plain tuples, so the event writer, the CSV writers and the documentation read the
same names. `make_population` draws the people (and the companies they work for) with numpy; the
behaviour they show in the trial is drawn in `behaviour.py`.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

# --------------------------------------------------------------------------------------------
# Catalogue
# --------------------------------------------------------------------------------------------

SITE = "https://labcloud.io"
APP = "https://app.labcloud.io/"

SPURIOUS_SHARE = 0.03  # fake sign-ups: never log in, never convert
GROWTH_PER_MONTH = 0.06  # sign-ups grow ~6 % a month
WEEKDAY_FACTOR = (1.10, 1.15, 1.12, 1.05, 0.90, 0.45, 0.50)  # Monday .. Sunday
ALLOWED_GUESTS = 10  # guests a trial class may have


@dataclass(frozen=True)
class Country:
    code: str  # ISO-3166 alpha-2
    calling: str
    weight: float
    utc_offset: float  # hours, for the time of day people sign up
    region: str  # sales territory


RISKY_PHONE_COUNTRIES = ("NG", "PK", "BD", "VN", "ID")

COUNTRIES = (
    Country("US", "1", 0.30, -6, "NA"),
    Country("CA", "1", 0.04, -5, "NA"),
    Country("GB", "44", 0.08, 0, "EMEA"),
    Country("DE", "49", 0.06, 1, "EMEA"),
    Country("FR", "33", 0.04, 1, "EMEA"),
    Country("NL", "31", 0.02, 1, "EMEA"),
    Country("ES", "34", 0.02, 1, "EMEA"),
    Country("IT", "39", 0.02, 1, "EMEA"),
    Country("SE", "46", 0.01, 1, "EMEA"),
    Country("PL", "48", 0.02, 1, "EMEA"),
    Country("IL", "972", 0.01, 2, "EMEA"),
    Country("ZA", "27", 0.01, 2, "EMEA"),
    Country("IN", "91", 0.11, 5.5, "APAC"),
    Country("AU", "61", 0.03, 10, "APAC"),
    Country("SG", "65", 0.01, 8, "APAC"),
    Country("JP", "81", 0.01, 9, "APAC"),
    Country("BR", "55", 0.04, -3, "LATAM"),
    Country("MX", "52", 0.02, -6, "LATAM"),
    Country("NG", "234", 0.020, 1, "EMEA"),
    Country("PK", "92", 0.012, 5, "APAC"),
    Country("BD", "880", 0.010, 6, "APAC"),
    Country("VN", "84", 0.010, 7, "APAC"),
    Country("ID", "62", 0.012, 7, "APAC"),
)
COUNTRY_CODES = tuple(c.code for c in COUNTRIES)
RISKY_IDX = np.array([c.code in RISKY_PHONE_COUNTRIES for c in COUNTRIES])


@dataclass(frozen=True)
class Title:
    name: str | None
    seniority: float  # -1 student .. 2 executive; used by the conversion formula
    persona: str  # buyer | manager | developer | trainer | student | unknown
    w_company: float  # weight among people with a company e-mail
    w_webmail: float  # weight among webmail people


# fmt: off
TITLES = (
    Title("CTO", 2.0, "buyer", 0.03, 0.008),
    Title("CEO", 2.0, "buyer", 0.02, 0.01),
    Title("VP Engineering", 2.0, "buyer", 0.025, 0.004),
    Title("VP Sales", 1.8, "buyer", 0.02, 0.004),
    Title("Director of IT", 1.5, "buyer", 0.035, 0.006),
    Title("Head of Learning & Development", 1.5, "buyer", 0.035, 0.006),
    Title("Director of Training", 1.5, "buyer", 0.025, 0.005),
    Title("IT Manager", 1.0, "manager", 0.07, 0.02),
    Title("Engineering Manager", 1.0, "manager", 0.05, 0.012),
    Title("Training Manager", 1.0, "manager", 0.055, 0.02),
    Title("Sales Engineering Manager", 1.0, "manager", 0.03, 0.006),
    Title("Software Engineer", 0.0, "developer", 0.11, 0.12),
    Title("DevOps Engineer", 0.0, "developer", 0.07, 0.05),
    Title("QA Engineer", 0.0, "developer", 0.05, 0.04),
    Title("Sales Engineer", 0.3, "developer", 0.05, 0.02),
    Title("Solutions Architect", 0.5, "developer", 0.045, 0.015),
    Title("Technical Trainer", 0.5, "trainer", 0.06, 0.07),
    Title("Instructor", 0.3, "trainer", 0.03, 0.07),
    Title("Consultant", 0.2, "developer", 0.03, 0.08),
    Title("Student", -1.0, "student", 0.01, 0.25),
    Title("Intern", -0.8, "student", 0.01, 0.04),
    Title(None, -0.3, "unknown", 0.12, 0.144),
)
# fmt: on
TITLE_SENIORITY = np.array([t.seniority for t in TITLES])
TITLE_TRAINER = np.array([t.persona == "trainer" for t in TITLES])


@dataclass(frozen=True)
class Channel:
    """How a person found LabCloud; `campaign` is None for unpaid channels."""

    key: str
    source: str  # the referralSource trait / Signed Up `source`
    medium: str
    campaign: str | None
    code: str | None  # referral / coupon code typed at sign-up
    quality: float  # added to intent, and (observable via source/code) to the conversion logit
    share: float  # share of ordinary sign-ups
    bad_share: float  # share of spurious sign-ups
    cost_per_signup: float  # USD, drives campaigns.csv
    monthly_fee: float  # USD fixed per month (sponsorships, partner retainers)
    referrer: str  # referrer of the landing page


# fmt: off
CHANNELS = (  # ..., quality, share, bad_share, cost per sign-up, monthly fee, referrer
    Channel("direct", "direct", "none", None, None,
            0.1, 0.2, 0.1, 0, 0, ""),
    Channel("google-organic", "google", "organic", None, None,
            0.0, 0.2, 0.15, 0, 0, "https://www.google.com/"),
    Channel("search-brand", "google", "cpc", "search-brand", None,
            0.4, 0.07, 0.02, 14, 300, "https://www.google.com/"),
    Channel("search-virtual-labs", "google", "cpc", "search-virtual-labs", None,
            -0.2, 0.12, 0.2, 38, 500, "https://www.google.com/"),
    Channel("linkedin-organic", "linkedin", "social", None, None,
            0.2, 0.04, 0.02, 0, 0, "https://www.linkedin.com/"),
    Channel("linkedin-training-leaders", "linkedin", "paid-social",
            "linkedin-training-leaders", None,
            0.3, 0.06, 0.02, 85, 800, "https://www.linkedin.com/"),
    Channel("g2-virtual-labs", "g2", "review-site", "g2-virtual-labs", None,
            0.5, 0.05, 0.02, 45, 1500, "https://www.g2.com/categories/virtual-labs"),
    Channel("partner-skillforge", "partner", "referral", "partner-skillforge", "SKILLFORGE20",
            0.8, 0.04, 0.01, 22, 1000, "https://skillforge.example/partners/labcloud"),
    Channel("partner-cloudcampus", "partner", "referral", "partner-cloudcampus", "CLOUDCAMPUS",
            0.5, 0.03, 0.01, 25, 600, "https://cloudcampus.example/tools"),
    Channel("webinar-hands-on-labs", "webinar", "email", "webinar-hands-on-labs", "WEBINAR-LABS",
            0.6, 0.04, 0.01, 30, 2000, ""),
    Channel("coupon-freelab", "coupon-site", "affiliate", "coupon-freelab", "FREELAB100",
            -1.0, 0.05, 0.35, 4, 0, "https://dealhunter.example/saas/labcloud-free"),
)
# fmt: on
CHANNEL_QUALITY = np.array([c.quality for c in CHANNELS])
CAMPAIGN_CHANNELS = tuple(i for i, c in enumerate(CHANNELS) if c.campaign)
SOURCES = tuple(dict.fromkeys(c.source for c in CHANNELS))
CHANNEL_SOURCE_IDX = np.array([SOURCES.index(c.source) for c in CHANNELS])
CODES = tuple(c.code for c in CHANNELS if c.code)
CHANNEL_CODE_IDX = np.array([CODES.index(c.code) if c.code else -1 for c in CHANNELS])

STAGES = ("Recognize", "Evaluate", "Sample", "Integrate", "Test", "Deploy")


@dataclass(frozen=True)
class Page:
    path: str
    name: str
    stage: int  # index into STAGES
    special: bool = False  # only viewed on purpose (sign-up, contact sales), never at random

    @property
    def url(self) -> str:
        return SITE + self.path

    @property
    def title(self) -> str:
        return f"{self.name} | LabCloud"


PAGES = (
    Page("/", "Home", 0),
    Page("/blog/virtual-labs-for-training", "Virtual labs for training teams", 0),
    Page("/blog/kubernetes-classroom", "Teaching Kubernetes in the browser", 0),
    Page("/blog/sales-demo-environments", "Sales demo environments that never break", 0),
    Page("/blog/cost-of-hands-on-labs", "What hands-on labs really cost", 0),
    Page("/product", "Product", 1),
    Page("/features/virtual-classroom", "Virtual classroom", 1),
    Page("/features/sales-demos", "Sales demos", 1),
    Page("/features/self-paced-labs", "Self-paced labs", 1),
    Page("/case-studies/northwind-university", "Case study: Northwind University", 1),
    Page("/case-studies/globex-sales-engineering", "Case study: Globex sales engineering", 1),
    Page("/pricing", "Pricing", 1),
    Page("/docs/getting-started", "Getting started", 2),
    Page("/trial/first-lab", "Launch your first lab", 2),
    Page("/trial/templates", "Lab templates", 2),
    Page("/trial/signup", "Start your free trial", 2, special=True),
    Page("/docs/api", "API reference", 3),
    Page("/docs/api/environments", "API: environments", 3),
    Page("/integrations/lms", "LMS integrations", 3),
    Page("/integrations/salesforce", "Salesforce integration", 3),
    Page("/integrations/slack", "Slack integration", 3),
    Page("/docs/security", "Security overview", 4),
    Page("/docs/sso", "Single sign-on", 4),
    Page("/security", "Security and compliance", 4),
    Page("/docs/deployment", "Deployment guide", 5),
    Page("/pricing/enterprise", "Enterprise pricing", 5),
    Page("/contact-sales", "Contact sales", 5, special=True),
)
PAGE_STAGE = np.array([p.stage for p in PAGES])
PAGE_SIGNUP = next(i for i, p in enumerate(PAGES) if p.path == "/trial/signup")
PAGE_CONTACT = next(i for i, p in enumerate(PAGES) if p.path == "/contact-sales")
PAGE_PRICING = next(i for i, p in enumerate(PAGES) if p.path == "/pricing")
PRICING_PAGES = np.array([p.path.startswith("/pricing") for p in PAGES])
# random pages per stage (specials excluded): offsets into STAGE_PAGE_LIST
_stage_lists = [
    [i for i, p in enumerate(PAGES) if p.stage == s and not p.special] for s in range(len(STAGES))
]
STAGE_PAGE_LIST = np.array([i for lst in _stage_lists for i in lst])
STAGE_PAGE_START = np.cumsum([0] + [len(lst) for lst in _stage_lists])[:-1]
STAGE_PAGE_COUNT = np.array([len(lst) for lst in _stage_lists])

# Referrers: nothing, the channels' external referrers, the app, then every page's URL.
REFERRERS = ("", APP, *dict.fromkeys(c.referrer for c in CHANNELS if c.referrer))
REF_NONE, REF_APP = 0, 1
CHANNEL_REF_IDX = np.array([REFERRERS.index(c.referrer) for c in CHANNELS])
REF_PAGE0 = len(REFERRERS)
REFERRERS = REFERRERS + tuple(p.url for p in PAGES)

TEMPLATES = ("windows-lab", "linux-lab", "data-science", "kubernetes", "sql-sandbox")
MAX_DURATION = np.array([240, 240, 240, 240, 120])  # minutes a trial environment may run
INTERESTS = ("training", "sales-demos", "support", "qa-testing")
# template preference per product interest (rows) and for no stated interest (last row)
TEMPLATE_MIX = np.array(
    [
        [0.35, 0.30, 0.05, 0.25, 0.05],
        [0.50, 0.15, 0.25, 0.05, 0.05],
        [0.45, 0.25, 0.05, 0.05, 0.20],
        [0.10, 0.40, 0.05, 0.25, 0.20],
        [0.25, 0.30, 0.20, 0.15, 0.10],
    ]
)

INDUSTRIES = (
    "Software",
    "Education",
    "IT Services",
    "Financial Services",
    "Healthcare",
    "Manufacturing",
    "Telecommunications",
    "Government",
    "Retail",
    "Consulting",
)
INDUSTRY_WEIGHTS = np.array([0.24, 0.16, 0.16, 0.08, 0.06, 0.07, 0.05, 0.04, 0.06, 0.08])

EMAIL_CAMPAIGNS = (  # (name, days after sign-up, link people click)
    ("trial-welcome", 0.005, SITE + "/docs/getting-started"),
    ("trial-day-1-first-lab", 1, SITE + "/trial/first-lab"),
    ("trial-day-3-classroom-tips", 3, SITE + "/features/virtual-classroom"),
    ("trial-day-7-integrations", 7, SITE + "/integrations/lms"),
    ("trial-day-10-security", 10, SITE + "/security"),
    ("trial-day-13-ending", 13, SITE + "/pricing"),
)
DOCS = (("LabCloud Administrator Guide", 49), ("Building Hands-on Classes (e-book)", 29))
COURSES = ("Instructor bootcamp", "Automating labs with the API", "Admin certification")
CONTACT_TOPICS = ("pricing", "volume licensing", "security review", "enterprise trial extension")

PLANS = ("starter", "team", "business", "enterprise")
PLAN_AMOUNT = np.array([1188, 4788, 14388, 36000])  # USD per year

REPS = (  # (email, territory); ENT reps own accounts with >= 1000 employees
    ("maria.lopez@labcloud.io", "NA"),
    ("james.chen@labcloud.io", "NA"),
    ("sofia.rossi@labcloud.io", "EMEA"),
    ("lukas.weber@labcloud.io", "EMEA"),
    ("priya.nair@labcloud.io", "APAC"),
    ("kenji.sato@labcloud.io", "APAC"),
    ("ana.souza@labcloud.io", "LATAM"),
    ("david.okafor@labcloud.io", "ENT"),
    ("emma.larsen@labcloud.io", "ENT"),
)

WEBMAIL = (
    ("gmail.com", 0.52),
    ("yahoo.com", 0.10),
    ("hotmail.com", 0.08),
    ("outlook.com", 0.09),
    ("icloud.com", 0.04),
    ("aol.com", 0.01),
    ("gmx.de", 0.03),
    ("yahoo.co.in", 0.03),
    ("rediffmail.com", 0.02),
    ("mail.ru", 0.02),
    ("protonmail.com", 0.02),
    ("qq.com", 0.02),
    ("live.com", 0.02),
)

FIRST_NAMES = (  # noqa: SIM905
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara "
    "Richard Susan Joseph Jessica Thomas Sarah Charles Karen Daniel Lisa Matthew Nancy "
    "Anthony Sandra Mark Ashley Priya Rahul Anjali Vikram Ananya Arjun Wei Li Mei Hiroshi "
    "Yuki Kenji Sakura Lukas Anna Felix Leonie Jonas Sophie Hugo Camille Lucas Chloe Mateo "
    "Lucia Pablo Giulia Marco Chiara Lars Ingrid Piotr Agnieszka Noa Ariel Thabo Naledi "
    "Olivia Liam Emma Noah Ava Ethan Mia Chinedu Ngozi Ayesha Imran Farhan Nusrat Minh Linh "
    "Budi Siti Fatima Omar Carlos Gabriela Rafael Beatriz Diego Valentina"
).split() + ["José", "Zoë", "Łukasz", "Søren", "Dương", "Renée", "Björn", "Ayşe"]
LAST_NAMES = (  # noqa: SIM905
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez "
    "Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Thompson White "
    "Harris Clark Lewis Walker Hall Allen Young King Wright Scott Green Baker Adams Nelson "
    "Patel Sharma Singh Gupta Kumar Iyer Wang Zhang Liu Chen Tanaka Suzuki Sato Mueller "
    "Schmidt Schneider Fischer Weber Dubois Bernard Moreau Rossi Russo Ferrari Jansen deVries "
    "Kowalski Nowak Andersson Larsen Cohen Levi Nkosi Dlamini Okafor Adeyemi Khan Ahmed "
    "Hossain Rahman Nguyen Tran Santoso Wijaya Silva Santos Oliveira Pereira Costa"
).split() + ["Gómez", "Müller", "Żak", "Sørensen", "Ngô"]
_ASCII = str.maketrans("łŁøØđĐżşüéëöóươôễăğ", "lLoOdDzsueeoouooeag")

_SYL_A = (  # noqa: SIM905
    "ve no qua tri zen lu ka mor sta bri cor fa gla hel ix jo lin mer nex or pla ro sol "
    "tav ul vo wex yar zo ar bel cy del e fin gor"
).split()
_SYL_M = ("", "", "", "", "a", "i", "o", "en", "ar", "el", "us", "ma")
_SYL_B = (  # noqa: SIM905
    "rix lumen tek vana dora nix para sys tora quent byte lex mark ora pulse ridge stone "
    "wave field gate loop mint nova path scale tide vox well zeal core"
).split()
_SUFFIX = {  # industry -> name endings
    "Software": ("Software", "Labs", "Technologies", "Inc"),
    "Education": ("University", "Academy", "College", "Institute"),
    "IT Services": ("Systems", "IT Services", "Solutions", "Ltd"),
    "Financial Services": ("Bank", "Capital", "Financial", "Insurance"),
    "Healthcare": ("Health", "Medical", "Care", "Clinics"),
    "Manufacturing": ("Industries", "Manufacturing", "GmbH", "Works"),
    "Telecommunications": ("Telecom", "Networks", "Communications", "Mobile"),
    "Government": ("County", "Agency", "Department", "Authority"),
    "Retail": ("Retail", "Stores", "Commerce", "Brands"),
    "Consulting": ("Consulting", "Partners", "Advisory", "Group"),
}
_TLD = {
    "US": ".com",
    "CA": ".ca",
    "GB": ".co.uk",
    "DE": ".de",
    "FR": ".fr",
    "NL": ".nl",
    "ES": ".es",
    "IT": ".it",
    "SE": ".se",
    "PL": ".pl",
    "IL": ".co.il",
    "ZA": ".co.za",
    "IN": ".in",
    "AU": ".com.au",
    "SG": ".sg",
    "JP": ".jp",
    "BR": ".com.br",
    "MX": ".mx",
}


# --------------------------------------------------------------------------------------------
# Random streams
# --------------------------------------------------------------------------------------------


def stream(seed: int, name: str) -> np.random.Generator:
    """An independent generator per component, so changing one part does not reshuffle others."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def account_ids(n: int) -> list[str]:
    return [f"acct-{i + 1:05d}" for i in range(n)]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def month_starts(start: str, months: int) -> np.ndarray:
    """The first day of each month of the sign-up period, plus the day after it ends."""
    first = np.datetime64(start, "D")
    m0 = first.astype("datetime64[M]")
    starts = [first] + [(m0 + k).astype("datetime64[D]") for k in range(1, months + 1)]
    return np.array(starts, dtype="datetime64[D]")


# --------------------------------------------------------------------------------------------
# Population
# --------------------------------------------------------------------------------------------


@dataclass
class Accounts:
    """Companies people sign up from (only those with at least one sign-up are kept)."""

    name: list[str]
    domain: list[str]
    employees: np.ndarray
    industry: np.ndarray  # index into INDUSTRIES
    country: np.ndarray  # index into COUNTRIES
    owner: np.ndarray  # index into REPS

    def __len__(self) -> int:
        return len(self.name)


@dataclass
class Population:
    """One row per trial sign-up, in sign-up order. Arrays are numpy, text columns are lists."""

    n: int
    signup_ms: np.ndarray  # int64 ms since epoch (UTC)
    spurious: np.ndarray
    abuser: np.ndarray
    intent: np.ndarray  # latent; drives behaviour only, never the probability directly
    country: np.ndarray  # index into COUNTRIES
    phone_country: np.ndarray
    channel: np.ndarray  # index into CHANNELS
    account: np.ndarray  # index into accounts, -1 for webmail / spurious
    company_domain: np.ndarray  # e-mail domain is not webmail
    company_match: np.ndarray  # company trait names the e-mail's company
    title: np.ndarray  # index into TITLES (final value), -1 for spurious free text
    title_initial: np.ndarray  # title given at sign-up (differs for ~5 %: updated later)
    seniority: np.ndarray
    trainer: np.ndarray
    company_size: np.ndarray  # final self-declared employees, -1 = null
    size_at_signup: np.ndarray  # -1 when it was only given later (progressive profiling)
    interest: np.ndarray  # index into INTERESTS, -1 = null
    email_verified: np.ndarray
    email_verified_at_signup: np.ndarray
    phone_verified: np.ndarray
    phone_verified_at_signup: np.ndarray
    alias: np.ndarray  # signed up under a legacy user id, aliased later
    first_name: list[str]
    last_name: list[str]
    email: list[str]
    company: list[str | None]
    phone: list[str]
    free_title: list[str | None]  # the title text (catalogue or spurious junk)
    user_id: list[str]
    old_user_id: list[str]
    anonymous_id: list[str]
    accounts: Accounts


def _hex_ids(rng: np.random.Generator, n: int, nbytes: int) -> list[str]:
    """n distinct lowercase hex strings of 2*nbytes characters."""
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        raw = rng.bytes(nbytes * (n - len(out)))
        for k in range(n - len(out)):
            h = raw[k * nbytes : (k + 1) * nbytes].hex()
            if h not in seen:
                seen.add(h)
                out.append(h)
    return out


def _uuid(h: str) -> str:
    h = h[:12] + "4" + h[13:16] + "89ab"[int(h[16], 16) & 3] + h[17:]
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _make_accounts(rng: np.random.Generator, n: int, used_domains: set[str]) -> Accounts:
    industry = rng.choice(len(INDUSTRIES), size=n, p=INDUSTRY_WEIGHTS / INDUSTRY_WEIGHTS.sum())
    cw = np.array([0.0 if c.code in RISKY_PHONE_COUNTRIES else c.weight for c in COUNTRIES])
    country = rng.choice(len(COUNTRIES), size=n, p=cw / cw.sum())
    employees = np.clip(np.round(rng.lognormal(math.log(120), 1.9, size=n)), 2, 250_000)
    employees = employees.astype(np.int64)
    a = rng.integers(0, len(_SYL_A), size=n)
    m = rng.integers(0, len(_SYL_M), size=n)
    b = rng.integers(0, len(_SYL_B), size=n)
    s = rng.integers(0, 4, size=n)
    form = rng.integers(0, 2, size=n)
    names, domains = [], []
    used_names: set[str] = set()
    for i in range(n):
        stem = (_SYL_A[a[i]] + _SYL_M[m[i]] + _SYL_B[b[i]]).capitalize()
        ind = INDUSTRIES[industry[i]]
        suffix = _SUFFIX[ind][s[i]]
        code = COUNTRIES[country[i]].code
        tld = (
            ".edu"
            if ind == "Education" and code == "US"
            else (_TLD.get(code, ".com") if s[i] % 2 else ".com")
        )
        low, slug = stem.lower(), "".join(ch for ch in suffix.lower() if ch.isalnum())
        candidates = [
            low + tld,
            low + slug + tld,
            f"{low}-{slug}{tld}",
            low + "hq.com",
            "get" + low + ".com",
        ]
        if form[i]:
            candidates[0], candidates[1] = candidates[1], candidates[0]
        domain = next((d for d in candidates if d not in used_domains), None)
        k = 2
        while domain is None:
            domain = f"{low}{slug}{k}{tld}" if f"{low}{slug}{k}{tld}" not in used_domains else None
            k += 1
        used_domains.add(domain)
        options = [f"{stem} {x}" for x in (suffix, *_SUFFIX[ind])]
        options += [f"{stem} {suffix} {x}" for x in ("Group", "International", "Holdings")]
        name = next((x for x in options if x not in used_names), f"{stem} {suffix} ({domain})")
        used_names.add(name)
        names.append(name)
        domains.append(domain)
    owner = np.zeros(n, dtype=np.int64)
    region = np.array([COUNTRIES[c].region for c in country])
    for terr in ("NA", "EMEA", "APAC", "LATAM", "ENT"):
        reps = [i for i, r in enumerate(REPS) if r[1] == terr]
        sel = (employees >= 1000) if terr == "ENT" else ((region == terr) & (employees < 1000))
        idx = np.flatnonzero(sel)
        owner[idx] = np.array(reps)[idx % len(reps)]
    return Accounts(names, domains, employees, industry, country, owner)


def make_population(seed: int, people: int, months: int, start: str, abusers: float) -> Population:
    rng = stream(seed, "population")
    n = people

    # who they are: spurious sign-ups, abusers, everybody else
    kind = rng.random(n)
    spurious = kind < SPURIOUS_SHARE
    abuser = (~spurious) & (kind < SPURIOUS_SHARE + abusers)

    # spurious sign-ups come disproportionately from risky countries, abusers a little more often
    cw = np.array([c.weight for c in COUNTRIES])
    cw_spur = np.where(RISKY_IDX, cw * 6, cw)
    cw_ab = np.where(RISKY_IDX, cw * 1.5, cw)
    country = np.select(
        [spurious, abuser],
        [
            rng.choice(len(COUNTRIES), n, p=cw_spur / cw_spur.sum()),
            rng.choice(len(COUNTRIES), n, p=cw_ab / cw_ab.sum()),
        ],
        rng.choice(len(COUNTRIES), n, p=cw / cw.sum()),
    )

    # when: days weighted by growth and weekday, time of day by local office hours
    edges = month_starts(start, months)
    n_days = int((edges[-1] - edges[0]).astype(int))
    day = np.arange(n_days)
    weekday = ((edges[0] + day).astype(np.int64) + 3) % 7
    w = np.exp(GROWTH_PER_MONTH * day / 30.44) * np.array(WEEKDAY_FACTOR)[weekday]
    sday = rng.choice(n_days, size=n, p=w / w.sum())
    offset = np.array([c.utc_offset for c in COUNTRIES])[country]
    local_h = np.mod(rng.normal(13.0, 3.6, size=n), 24.0)
    utc_h = np.mod(local_h - offset, 24.0)
    t0 = edges[0].astype("datetime64[ms]").astype(np.int64)
    signup_ms = t0 + sday * 86_400_000 + (utc_h * 3_600_000).astype(np.int64)
    # keep people in sign-up order (user ids then follow it too)
    order = np.argsort(signup_ms, kind="stable")
    signup_ms, spurious, abuser, country = (
        signup_ms[order],
        spurious[order],
        abuser[order],
        country[order],
    )

    # channel: spurious sign-ups mostly from coupon sites and generic search; abusers from
    # everywhere (they are real organisations stretching the trial), the coupon site doubled
    share = np.array([c.share for c in CHANNELS])
    bshare = np.array([c.bad_share for c in CHANNELS])
    ashare = share * np.array([2.0 if c.source == "coupon-site" else 1.0 for c in CHANNELS])
    channel = np.select(
        [spurious, abuser],
        [
            rng.choice(len(CHANNELS), n, p=bshare / bshare.sum()),
            rng.choice(len(CHANNELS), n, p=ashare / ashare.sum()),
        ],
        rng.choice(len(CHANNELS), n, p=share / share.sum()),
    )

    # phone country: usually the country, sometimes a risky one (VoIP numbers, agencies)
    risky_codes = np.flatnonzero(RISKY_IDX)
    phone_country = country.copy()
    swap = rng.random(n) < np.select([spurious, abuser], [0.25, 0.04], 0.01)
    phone_country[swap] = rng.choice(risky_codes, size=int(swap.sum()))

    # company e-mail or webmail; companies drawn with a heavy tail so some accounts have many
    p_company = np.where(RISKY_IDX[country], 0.25, 0.47)
    p_company = np.where(abuser, 0.15, p_company)
    company_domain = (~spurious) & (rng.random(n) < p_company)
    n_comp = int(company_domain.sum())
    n_acc = max(3, int(n_comp * 0.75))
    used: set[str] = {d for d, _ in WEBMAIL} | {"test.com", "example.com", "asdf.com"}
    arng = stream(seed, "accounts")
    acc = _make_accounts(arng, n_acc, used)
    aw = acc.employees.astype(float) ** 0.35 * arng.lognormal(0, 0.6, n_acc)
    account = np.full(n, -1, dtype=np.int64)
    account[company_domain] = rng.choice(n_acc, size=n_comp, p=aw / aw.sum())
    # people at a company mostly live where it is
    at_home = company_domain & (rng.random(n) < 0.85)
    country[at_home] = acc.country[account[at_home]]
    phone_country[at_home & ~swap] = country[at_home & ~swap]
    # keep only accounts somebody signed up from, renumbered in order of first sign-up
    used_acc, first_pos = np.unique(account[company_domain], return_index=True)
    used_acc = used_acc[np.argsort(first_pos)]
    remap = np.full(n_acc, -1, dtype=np.int64)
    remap[used_acc] = np.arange(len(used_acc))
    account[company_domain] = remap[account[company_domain]]
    acc = Accounts(
        [acc.name[i] for i in used_acc],
        [acc.domain[i] for i in used_acc],
        acc.employees[used_acc],
        acc.industry[used_acc],
        acc.country[used_acc],
        acc.owner[used_acc],
    )

    # titles
    tw_c = np.array([t.w_company for t in TITLES])
    tw_w = np.array([t.w_webmail for t in TITLES])
    title = np.where(
        company_domain,
        rng.choice(len(TITLES), n, p=tw_c / tw_c.sum()),
        rng.choice(len(TITLES), n, p=tw_w / tw_w.sum()),
    )
    title[spurious] = -1
    seniority = np.where(title >= 0, TITLE_SENIORITY[np.maximum(title, 0)], -1.0)
    trainer = (title >= 0) & TITLE_TRAINER[np.maximum(title, 0)]
    change = (~spurious) & (rng.random(n) < 0.05)
    title_initial = title.copy()
    title_initial[change] = len(TITLES) - 1  # blank at sign-up, filled in later
    promote = change & (rng.random(n) < 0.4)  # or a promotion / correction
    title_initial[promote] = rng.choice(len(TITLES) - 1, size=int(promote.sum()))

    # company size (self-declared; people at companies round their account's size)
    emp = np.where(account >= 0, acc.employees[np.maximum(account, 0)], 0).astype(float)
    scale = 10.0 ** np.clip(np.floor(np.log10(np.maximum(emp, 1))) - 1, 0, 5)
    rounded = np.round(emp / scale) * scale  # two significant digits, as people state it
    size = np.where(
        company_domain,
        np.maximum(rounded, 1),
        np.clip(np.round(rng.lognormal(math.log(15), 1.5, n)), 1, 5000),
    )
    known = np.where(company_domain, rng.random(n) < 0.8, rng.random(n) < 0.35) & ~spurious
    company_size = np.where(known, size, -1).astype(np.int64)
    late = known & (rng.random(n) < 0.18)
    size_at_signup = np.where(late, -1, company_size)

    # product interest (nullable), nudged by persona
    iw = np.array([0.34, 0.22, 0.16, 0.28])
    interest = rng.choice(len(INTERESTS), n, p=iw)
    interest[trainer & (rng.random(n) < 0.6)] = 0
    interest[(rng.random(n) < 0.3) | spurious] = -1

    # fit index and latent intent (the intent is never written anywhere)
    quality = CHANNEL_QUALITY[channel]
    risky = RISKY_IDX[phone_country]
    fit = (
        0.8 * company_domain
        + 0.4 * seniority
        + 0.15 * np.log10(1 + np.maximum(emp, 0))
        - 0.7 * risky
        + 0.3 * trainer
    )
    intent = rng.normal(0, 1, n) + 0.45 * (fit - 0.5) + 0.6 * quality
    intent[abuser] = rng.normal(0.6, 0.5, int(abuser.sum()))

    # verification, driven by intent
    email_verified = (~spurious) & (rng.random(n) < sigmoid(1.0 + 0.9 * intent))
    email_verified_at_signup = email_verified & (rng.random(n) < 0.3)
    phone_verified = (~spurious) & (rng.random(n) < sigmoid(-0.9 + 0.8 * intent - 1.0 * risky))
    phone_verified_at_signup = phone_verified & (rng.random(n) < 0.5)
    alias = (~spurious) & (rng.random(n) < 0.012)
    if n >= 50 and alias.sum() < n // 200:  # at least one alias per 200 people
        cand = np.flatnonzero(~spurious & ~alias)
        alias[rng.choice(cand, size=n // 200 - int(alias.sum()), replace=False)] = True

    # text columns
    fn_i = rng.integers(0, len(FIRST_NAMES), n)
    ln_i = rng.integers(0, len(LAST_NAMES), n)
    email_style = rng.integers(0, 4, n)
    wm_w = np.array([w for _, w in WEBMAIL])
    wm = rng.choice(len(WEBMAIL), n, p=wm_w / wm_w.sum())
    num = rng.integers(1, 999, n)
    phone_num = rng.integers(200_000_000, 999_999_999, n)
    match_kind = rng.random(n)
    junk = rng.integers(0, 1_000_000, n)
    other_acc = rng.integers(0, max(len(acc), 1), n)
    first_name: list[str] = []
    last_name: list[str] = []
    emails: list[str] = []
    company: list[str | None] = []
    phones: list[str] = []
    free_title: list[str | None] = []
    company_match = np.zeros(n, dtype=bool)
    seen_email: set[str] = set()
    fake_names = (
        ("Test", "Test"),
        ("asdf", "asdf"),
        ("Mickey", "Mouse"),
        ("John", "Doe"),
        ("aaa", "bbb"),
        ("x", "x"),
        ("qwerty", "uiop"),
    )
    fake_domains = ("test.com", "example.com", "asdf.com", "mailinator.com", "yopmail.com")
    for i in range(n):
        if spurious[i]:
            f, last = fake_names[junk[i] % len(fake_names)]
            local = ("test", "asdf", "a", "fake", "noreply", "qwerty")[junk[i] % 6]
            dom = fake_domains[(junk[i] // 7) % len(fake_domains)]
            email = f"{local}@{dom}"
            k = 1
            while email in seen_email:
                email = f"{local}{k}@{dom}"
                k += 1
            first_name.append(f)
            last_name.append(last)
            emails.append(email)
            seen_email.add(email)
            company.append((None, "test", "asdf", "none", "N/A")[junk[i] % 5])
            phones.append(("1234567890", "0000000000", "1111111111", "+1 555 0100")[junk[i] % 4])
            free_title.append((None, "test", "x", "asdf")[junk[i] % 4])
            continue
        f, last = FIRST_NAMES[fn_i[i]], LAST_NAMES[ln_i[i]]
        fa, la = f.translate(_ASCII).lower(), last.translate(_ASCII).lower()
        if company_domain[i]:
            dom = acc.domain[account[i]]
            local = (f"{fa}.{la}", f"{fa[0]}{la}", fa, f"{fa}{la[0]}")[email_style[i]]
            m = match_kind[i]
            full = acc.name[account[i]]
            if m < 0.70:
                comp: str | None = full
            elif m < 0.85:
                comp = full.rsplit(" ", 1)[0] if " " in full else full.lower()
            elif m < 0.92:
                comp = None
            else:
                comp = ("Freelance", "Self-employed", "n/a")[junk[i] % 3]
            company_match[i] = m < 0.85
        else:
            dom = WEBMAIL[wm[i]][0]
            local = (
                f"{fa}.{la}{num[i]}",
                f"{fa}{la}",
                f"{fa}_{la}{num[i] % 100}",
                f"{fa[0]}{la}{num[i]}",
            )[email_style[i]]
            m = match_kind[i]
            if m < 0.45 and len(acc):
                comp = acc.name[other_acc[i]]  # works somewhere, signed up with private mail
            elif m < 0.6 and title[i] >= 0 and TITLES[title[i]].persona == "student":
                comp = f"University of {LAST_NAMES[(junk[i] // 3) % len(LAST_NAMES)]}"
            else:
                comp = None
        email = f"{local}@{dom}"
        k = 2
        while email in seen_email:
            email = f"{local}{k}@{dom}"
            k += 1
        seen_email.add(email)
        first_name.append(f)
        last_name.append(last)
        emails.append(email)
        company.append(comp)
        c = COUNTRIES[phone_country[i]]
        pn = str(phone_num[i])
        phones.append(f"+{c.calling} {pn[:3]} {pn[3:6]} {pn[6:]}")
        free_title.append(TITLES[title[i]].name)

    ids = _hex_ids(stream(seed, "ids"), 3 * n, 16)
    user_id = ["usr_" + h[:20] for h in ids[:n]]
    old_user_id = ["legacy-" + h[:16] for h in ids[n : 2 * n]]
    anonymous_id = [_uuid(h) for h in ids[2 * n :]]

    return Population(
        n=n,
        signup_ms=signup_ms,
        spurious=spurious,
        abuser=abuser,
        intent=intent,
        country=country,
        phone_country=phone_country,
        channel=channel,
        account=account,
        company_domain=company_domain,
        company_match=company_match,
        title=title,
        title_initial=title_initial,
        seniority=seniority,
        trainer=trainer,
        company_size=company_size,
        size_at_signup=size_at_signup,
        interest=interest,
        email_verified=email_verified,
        email_verified_at_signup=email_verified_at_signup,
        phone_verified=phone_verified,
        phone_verified_at_signup=phone_verified_at_signup,
        alias=alias,
        first_name=first_name,
        last_name=last_name,
        email=emails,
        company=company,
        phone=phones,
        free_title=free_title,
        user_id=user_id,
        old_user_id=old_user_id,
        anonymous_id=anonymous_id,
        accounts=acc,
    )
