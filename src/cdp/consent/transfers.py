"""The cross-border counter: subjects whose PI a cross-border purpose used, per calendar year.

PIPL art. 38-40 (and the CAC's thresholds) oblige a security assessment once a processor sends
abroad the PI of more people per year than policy.settings says; the report raises an alert at
80 % of either threshold so there is time to file it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from cdp.consent.models import CrossBorderTransfer
from cdp.db import utcnow
from cdp.policy import Decision, Policy

ALERT_RATIO = 0.8
# Calendar years as the law counts them: China Standard Time.
CHINA = timezone(timedelta(hours=8))


def year_of(at: datetime) -> int:
    return at.astimezone(CHINA).year


def count(session: Session, *, policy: Policy, decision: Decision, minor: bool) -> None:
    """Note that the decision's subject went abroad this year (idempotent per subject and year)."""
    if decision.subject is None:
        return
    now = utcnow()
    year = year_of(now)
    sensitive = minor or bool(decision.allowed_fields & policy.sensitive_fields)
    values = {
        "subject_id": decision.subject,
        "year": year,
        "purpose": decision.purpose,
        "sensitive": sensitive,
        "first_at": now,
    }
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(CrossBorderTransfer).values(**values)
    session.execute(stmt.on_conflict_do_nothing(index_elements=["subject_id", "year"]))
    if sensitive:
        session.execute(
            update(CrossBorderTransfer)
            .where(
                CrossBorderTransfer.subject_id == decision.subject,
                CrossBorderTransfer.year == year,
                CrossBorderTransfer.sensitive.is_(False),
            )
            .values(sensitive=True)
        )


@dataclass(frozen=True, slots=True)
class CrossBorderReport:
    year: int
    subjects: int
    sensitive_subjects: int
    people_threshold: int
    sensitive_threshold: int
    alert: bool
    reasons: list[str]


def report(session: Session, *, policy: Policy, year: int | None = None) -> CrossBorderReport:
    """Subjects transferred in the year and whether either threshold is near (>= 80 %)."""
    year = year if year is not None else year_of(datetime.now(UTC))
    subjects, sensitive = session.execute(
        select(
            func.count(),
            func.count().filter(CrossBorderTransfer.sensitive.is_(True)),
        ).where(CrossBorderTransfer.year == year)
    ).one()
    people = policy.settings.cross_border_people_per_year
    sensitive_limit = policy.settings.cross_border_sensitive_people_per_year
    reasons = []
    if subjects >= ALERT_RATIO * people:
        reasons.append(f"{subjects} of {people} people (art. 40 threshold)")
    if sensitive >= ALERT_RATIO * sensitive_limit:
        reasons.append(f"{sensitive} of {sensitive_limit} people with sensitive PI")
    return CrossBorderReport(
        year=year,
        subjects=int(subjects),
        sensitive_subjects=int(sensitive or 0),
        people_threshold=people,
        sensitive_threshold=sensitive_limit,
        alert=bool(reasons),
        reasons=reasons,
    )
