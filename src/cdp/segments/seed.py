"""`cdp demo seed`: synthetic customers (no real PI), their activity and complaints, loaded in
bulk for demos and benchmarks.

Profiles carry plain traits only (no encrypted field, so no data key is needed: the same
invariant a profile created without PI has). Activity is generated event by event and loaded
as the rollups ingestion would have written for it (subject_daily and subject_summary, built
by the same Rollup and summary code); raw event rows are not written. Consents (analytics,
marketing) are granted to most customers; a few opt out of personalisation or are restricted.
PostgreSQL is loaded with COPY, SQLite with executemany, in chunks of CHUNK customers.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from cdp.consent.models import ConsentRecord, SubjectStatus
from cdp.events.models import SubjectDaily
from cdp.events.writes import Rollup
from cdp.feedback.models import Feedback
from cdp.policy import Policy
from cdp.profiles.models import Profile
from cdp.segments.summary import SUMMARY, rows_for_insert, summary_rows

CHUNK = 20_000
CITIES = [
    ("上海", "上海"),
    ("北京", "北京"),
    ("广东", "广州"),
    ("广东", "深圳"),
    ("浙江", "杭州"),
    ("四川", "成都"),
    ("江苏", "南京"),
    ("湖北", "武汉"),
]
LEVELS = ["bronze", "silver", "gold", "platinum"]
GENDERS = ["female", "male", "other", "undisclosed"]
PAGES = ["Page Viewed", "Product Viewed", "Product Added"]
ORDER = "Order Completed"
CONSENTED = ("analytics", "marketing")


@dataclass(frozen=True, slots=True)
class SeedResult:
    profiles: int
    events: int
    daily_rows: int
    complaints: int


def _bulk(
    session: Session, table: Table, rows: Sequence[dict[str, Any]], *, every: bool = False
) -> None:
    """Inserts rows; with every=True all the table's columns are written (missing ones NULL)."""
    if not rows:
        return
    columns = [c.name for c in table.columns if every or c.name in rows[0]]
    if session.get_bind().dialect.name != "postgresql":
        session.execute(insert(table), [{c: r.get(c) for c in columns} for r in rows])
        return
    import json

    quoted = ", ".join(f'"{c}"' for c in columns)
    json_columns = {c.name for c in table.columns if c.type.__class__.__name__ == "JSON"}
    conn = session.connection().connection.driver_connection
    assert conn is not None
    with conn.cursor() as cursor, cursor.copy(f"COPY {table.name} ({quoted}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(
                tuple(
                    # None is SQL NULL, as the ORM writes it (none_as_null), not JSON null.
                    json.dumps(row[c], ensure_ascii=False)
                    if c in json_columns and row.get(c) is not None
                    else row.get(c)
                    for c in columns
                )
            )


def seed(
    session: Session,
    *,
    policy: Policy,
    profiles: int,
    events_per_profile: int = 10,
    random_seed: int = 8,
    progress: Callable[[int], None] | None = None,
) -> SeedResult:
    """Adds `profiles` synthetic customers with about `events_per_profile` events each."""
    rnd = random.Random(random_seed)
    now = datetime.now(UTC)
    total = SeedResult(0, 0, 0, 0)
    for start in range(0, profiles, CHUNK):
        n = min(CHUNK, profiles - start)
        done = _chunk(session, policy, rnd, now, n, events_per_profile)
        total = SeedResult(
            total.profiles + done.profiles,
            total.events + done.events,
            total.daily_rows + done.daily_rows,
            total.complaints + done.complaints,
        )
        session.flush()
        if progress is not None:
            progress(total.profiles)
    return total


def _chunk(
    session: Session, policy: Policy, rnd: random.Random, now: datetime, n: int, per: int
) -> SeedResult:
    people: list[dict[str, Any]] = []
    consents: list[dict[str, Any]] = []
    statuses: list[dict[str, Any]] = []
    complaints: list[dict[str, Any]] = []
    rollup = Rollup()
    events = 0
    for _ in range(n):
        sid = str(uuid.uuid4())
        province, city = rnd.choice(CITIES)
        created = now - timedelta(days=rnd.randint(0, 900), seconds=rnd.randint(0, 86399))
        traits: dict[str, Any] = {"gender": rnd.choice(GENDERS), "province": province, "city": city}
        if rnd.random() < 0.6:
            traits["membership_level"] = rnd.choice(LEVELS)
        traits["registered_at"] = created.date().isoformat()
        people.append(
            {"id": sid, "created_at": created, "updated_at": created, "plain": traits, "sealed": {}}
        )
        events += _activity(rnd, rollup, sid, created, now, per)
        if rnd.random() < 0.85:
            for purpose in CONSENTED:
                notice = policy.purposes[purpose].notice or ""
                consents.append(
                    {
                        "subject_id": sid,
                        "purpose": purpose,
                        "state": "granted",
                        "notice_id": notice,
                        "notice_version": policy.notices[notice].latest.version,
                        "channel": "app",
                        "evidence": {"text_sha256": "0" * 64, "locale": "zh-CN"},
                        "separate": False,
                        "guardian": None,
                        "actor": "cli:demo-seed",
                        "policy_version": policy.version,
                        "at": created,
                    }
                )
        roll = rnd.random()
        if roll < 0.04:
            statuses.append(
                {
                    "subject_id": sid,
                    "minor": False,
                    "restricted_at": now if roll < 0.01 else None,
                    "restricted_reason": "demo" if roll < 0.01 else None,
                    "personalisation_opt_out_at": now if roll >= 0.01 else None,
                    "updated_at": now,
                }
            )
        if rnd.random() < 0.02:
            at = now - timedelta(days=rnd.randint(0, 120))
            complaints.append(
                {
                    "id": str(uuid.uuid4()),
                    "subject_id": sid,
                    "kind": "complaint",
                    "status": rnd.choice(["open", "in_progress", "resolved", "closed"]),
                    "purpose": "customer_care",
                    "topic": None,
                    "csat": None,
                    "nps": None,
                    "comment_sealed": None,
                    "answers_sealed": None,
                    "resolution_sealed": None,
                    "assignee": None,
                    "reopen_count": 0,
                    "created_by": "cli:demo-seed",
                    "created_at": at,
                    "updated_at": at,
                    "resolved_at": None,
                    "closed_at": None,
                }
            )
    daily = [
        {"subject_id": s, "day": d, "name": name, "count": c, "revenue": r}
        for (s, d, name), (c, r) in rollup.daily.items()
    ]
    summary = list(rows_for_insert(summary_rows(rollup.daily, rollup.activity, rollup.purchases)))
    _bulk(session, cast(Table, Profile.__table__), people)
    _bulk(session, cast(Table, ConsentRecord.__table__), consents)
    _bulk(session, cast(Table, SubjectStatus.__table__), statuses)
    _bulk(session, cast(Table, Feedback.__table__), complaints)
    _bulk(session, cast(Table, SubjectDaily.__table__), daily)
    _bulk(session, SUMMARY, summary, every=True)
    return SeedResult(n, events, len(daily), len(complaints))


def _activity(
    rnd: random.Random, rollup: Rollup, sid: str, created: datetime, now: datetime, per: int
) -> int:
    """A customer's events: some never come back, some fade, most keep visiting; a few buy a lot."""
    if per <= 0 or rnd.random() < 0.1:
        return 0
    span = max((now - created).days, 1)
    # Where the activity ends: recent for most, long ago for those who went silent.
    fade = rnd.random()
    last = 0 if fade < 0.55 else rnd.randint(0, span) if fade < 0.8 else rnd.randint(0, 60)
    count = max(1, int(rnd.expovariate(1 / per)))
    whale = rnd.random() < 0.02
    buyer = whale or rnd.random() < 0.5
    for _ in range(count):
        back = last + int(rnd.expovariate(1 / 45))
        at = now - timedelta(days=min(back, span), seconds=rnd.randint(0, 86399))
        at = max(at, created)
        if buyer and rnd.random() < 0.15:
            amount = rnd.randint(8000, 60000) if whale else rnd.randint(20, 2000)
            rollup.add(sid, ORDER, at, Decimal(amount))
        else:
            rollup.add(sid, rnd.choice(PAGES), at, None)
    return count
