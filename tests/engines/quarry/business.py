"""Events of Quarry, a made-up warehouse trial, for the second model (`model.yaml` here).

Five kinds of people, drawn with a fixed seed, so a test knows who should score how:

    champion  company e-mail matching the company, senior title, big team, verified, from a
              partner; signs in often, queries daily on several engines, shares dashboards,
              reads docs and pricing, half book a demo; clusters used normally
    student   webmail, title Student, a couple of small queries, blog pages
    cold      a company engineer who tried it 60-90 days ago and went quiet
    risky     webmail with a phone in a risky country, a few queries
    abuser    three clusters kept up together for hours by resuming each one seconds after its
              hourly auto-suspend (allowed: 2 hours), and more seats than a trial has
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

AS_OF = datetime(2026, 6, 1)
KINDS = {"champion": 25, "student": 25, "cold": 20, "risky": 15, "abuser": 15}


def people() -> dict[str, str]:
    """user id -> kind."""
    return {f"q-{kind}-{i:02d}": kind for kind, n in KINDS.items() for i in range(n)}


def messages(seed: int = 5) -> list[dict]:
    rng = random.Random(seed)
    out: list[dict] = []

    def add(kind: str, uid: str, at: datetime, **body) -> None:
        out.append(
            {
                "type": kind,
                "userId": uid,
                "messageId": f"{uid}-{len(out)}",
                "timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                **body,
            }
        )

    def track(uid: str, at: datetime, event: str, **props) -> None:
        add("track", uid, at, event=event, properties=props)

    def page(uid: str, at: datetime, path: str) -> None:
        add(
            "page",
            uid,
            at,
            name=path,
            properties={"path": path, "url": "https://quarry.dev" + path},
        )

    def query(uid: str, at: datetime, engine: str, rows: int) -> None:
        track(
            uid,
            at,
            "Query Run",
            engine={"name": engine, "version": "1.2"},
            stats={"rows_scanned": rows, "duration_ms": rng.randint(30, 9000)},
        )

    def days_ago(lo: float, hi: float) -> datetime:
        return AS_OF - timedelta(days=rng.uniform(lo, hi))

    for uid, kind in people().items():
        n = int(uid.rsplit("-", 1)[1])
        start = days_ago(70, 90) if kind == "cold" else days_ago(25, 40)
        company = f"Acme{n}{kind[:2]} Analytics"
        work = f"{uid}@acme{n}{kind[:2]}.com"
        traits: dict = {
            "email": work,
            "company": company,
            "title": "Data Engineer",
            "team_size": rng.choice([20, 80, 300]),
            "verified_email": True,
            "verified_phone": False,
            "phone_country": "DE",
            "signup_source": "search",
        }
        if kind == "champion":
            traits.update(
                title=rng.choice(["VP Data", "Head of Analytics", "Director of BI"]),
                team_size=rng.choice([120, 800, 2500]),
                verified_phone=True,
                signup_source=rng.choice(["partner", "conference"]),
            )
        elif kind == "student":
            traits.update(
                email=f"{uid}@gmail.com",
                company=None,
                title="Student",
                team_size=1,
                verified_email=rng.random() < 0.5,
            )
        elif kind == "risky":
            traits.update(email=f"{uid}@yahoo.com", company=None, phone_country="NG")
        elif kind == "abuser":
            traits.update(email=f"{uid}@outlook.com", company=None, title="Trainer")
        add("identify", uid, start, traits=traits)
        track(uid, start + timedelta(minutes=1), "Workspace Created", plan_tier="trial")
        if kind == "champion":
            add("identify", uid, start + timedelta(hours=2), traits={"workspace_role": "admin"})
            for _ in range(rng.randint(5, 12)):
                track(uid, days_ago(0, 20), "Signed In")
            for _ in range(rng.randint(20, 50)):
                query(
                    uid,
                    days_ago(0, 25),
                    rng.choice(["spark", "trino", "duckdb"]),
                    rng.choice([5_000, 200_000, 3_000_000]),
                )
            for _ in range(rng.randint(1, 4)):
                track(uid, days_ago(0, 15), "Dashboard Shared", viewers=rng.randint(2, 6))
            for p in [
                "/docs/sql/joins",
                "/docs/connectors",
                "/docs/sql/windows",
                "/pricing",
                "/pricing/teams",
            ]:
                page(uid, days_ago(0, 12), p)
            if n % 2 == 0:
                track(uid, days_ago(0, 5), "Demo Booked")
            for seat in range(1, rng.randint(3, 5)):
                track(uid, days_ago(0, 10), "Seat Invited", seat_number=seat)
            for c in range(2):  # normal cluster use: one at a time, stopped within its limit
                t0 = days_ago(1, 20)
                track(uid, t0, "Cluster Started", cluster_id=f"{uid}-c{c}", max_hours=2)
                track(
                    uid,
                    t0 + timedelta(minutes=rng.randint(20, 110)),
                    "Cluster Suspended",
                    cluster_id=f"{uid}-c{c}",
                    auto=False,
                )
        elif kind == "student":
            track(uid, days_ago(1, 10), "Signed In")
            for _ in range(2):
                query(uid, days_ago(1, 10), "duckdb", 50)
            page(uid, days_ago(1, 10), "/blog/what-is-sql")
        elif kind == "cold":
            track(uid, start + timedelta(hours=1), "Signed In")
            query(uid, start + timedelta(hours=2), "duckdb", 2_000)
            query(uid, start + timedelta(hours=3), "duckdb", 2_000)
            page(uid, start + timedelta(hours=4), "/pricing")
        elif kind == "risky":
            track(uid, days_ago(1, 10), "Signed In")
            query(uid, days_ago(1, 10), "trino", 500)
        else:  # abuser: three clusters up together for 6-8 hours, resumed 10 s after each suspend
            t0 = days_ago(3, 10)
            for _ in range(3):
                track(uid, days_ago(0, 10), "Signed In")
            for c in range(3):
                cid = f"{uid}-x{c}"
                at = t0 + timedelta(seconds=40 * c)
                track(uid, at, "Cluster Started", cluster_id=cid, max_hours=2)
                for _ in range(rng.randint(6, 8)):
                    at += timedelta(minutes=60)
                    track(uid, at, "Cluster Suspended", cluster_id=cid, auto=True)
                    at += timedelta(seconds=10)
                    track(uid, at, "Cluster Resumed", cluster_id=cid)
                track(
                    uid, at + timedelta(minutes=30), "Cluster Suspended", cluster_id=cid, auto=False
                )
            for seat in range(1, 10):
                track(uid, t0 + timedelta(minutes=seat), "Seat Invited", seat_number=seat)
            query(uid, t0 + timedelta(minutes=5), "duckdb", 100)
    return out
