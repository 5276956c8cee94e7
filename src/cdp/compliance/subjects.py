"""Subject counts against PIPL thresholds, and the cross-border counters per year.

- total: profiles held.
- sensitive: subjects with a sensitive field stored (art. 28), a consent granted to a purpose
  that may touch a sensitive category, or marked as minors (under 14: all their PI is
  sensitive, art. 28 and 31).
- minors: subjects marked as minors.
Thresholds: a PI protection officer from pi_officer_people (art. 52), a compliance audit every
two years over compliance_audit_people, and the art. 40 cross-border thresholds per year.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, cast, exists, func, literal, select, union
from sqlalchemy.dialects.postgresql import JSONB, array
from sqlalchemy.orm import Session

from cdp.consent import transfers
from cdp.consent.models import ConsentRecord, CrossBorderTransfer, SubjectStatus
from cdp.db import utcnow
from cdp.policy import Policy
from cdp.profiles.models import Profile

ALERT_RATIO = transfers.ALERT_RATIO


@dataclass(frozen=True, slots=True)
class Threshold:
    """A number of people the law attaches a duty to, and where the processor stands."""

    id: str
    law: str
    counts: str  # which count is compared: total, sensitive or cross_border
    threshold: int
    value: int
    ratio: float
    reached: bool
    near: bool  # at or above 80 % of the threshold


@dataclass(frozen=True, slots=True)
class SubjectCounts:
    generated_at: datetime
    total: int
    sensitive: int
    minors: int
    thresholds: list[Threshold]


def _threshold(tid: str, law: str, counts: str, threshold: int, value: int) -> Threshold:
    ratio = round(value / threshold, 4)
    return Threshold(
        tid, law, counts, threshold, value, ratio, value >= threshold, ratio >= ALERT_RATIO
    )


def _has_sensitive_field(session: Session, names: list[str]) -> ColumnElement[bool]:
    if session.get_bind().dialect.name == "postgresql":
        found: ColumnElement[bool] = cast(Profile.sealed, JSONB).has_any(array(names))
        return found
    keys = func.json_each(Profile.sealed).table_valued("key")
    return exists(select(literal(1)).select_from(keys).where(keys.c.key.in_(names)))


def sensitive_subjects_query(session: Session, policy: Policy) -> Select[Any]:
    """Ids of subjects with sensitive PI, each once."""
    parts: list[Select[Any]] = [
        select(SubjectStatus.subject_id).where(SubjectStatus.minor.is_(True))
    ]
    fields = sorted(policy.sensitive_fields)
    if fields:
        parts.append(select(Profile.id).where(_has_sensitive_field(session, fields)))
    touching = sorted(
        pid
        for pid, spec in policy.purposes.items()
        if set(spec.categories) & policy.sensitive_categories and spec.legal_basis == "consent"
    )
    if touching:
        parts.append(
            select(ConsentRecord.subject_id).where(
                ConsentRecord.purpose.in_(touching), ConsentRecord.state == "granted"
            )
        )
    return select(union(*parts).subquery().c[0])


def subject_counts(session: Session, *, policy: Policy) -> SubjectCounts:
    total = int(session.scalar(select(func.count()).select_from(Profile)) or 0)
    minors = int(
        session.scalar(
            select(func.count()).select_from(SubjectStatus).where(SubjectStatus.minor.is_(True))
        )
        or 0
    )
    found = sensitive_subjects_query(session, policy).subquery()
    # Only subjects still held: consent and status rows outlive nothing, but stay honest.
    sensitive = int(
        session.scalar(
            select(func.count()).select_from(found).where(exists().where(Profile.id == found.c[0]))
        )
        or 0
    )
    settings = policy.settings
    year = transfers.report(session, policy=policy)
    thresholds = [
        _threshold(
            "pi_protection_officer",
            "PIPL art. 52",
            "total",
            settings.pi_officer_people,
            total,
        ),
        _threshold(
            "compliance_audit",
            "个人信息保护合规审计管理办法 art. 5",
            "total",
            settings.compliance_audit_people,
            total,
        ),
        _threshold(
            "cross_border_people",
            f"PIPL art. 40 ({year.year})",
            "cross_border",
            year.people_threshold,
            year.subjects,
        ),
        _threshold(
            "cross_border_sensitive",
            f"PIPL art. 40 ({year.year})",
            "cross_border_sensitive",
            year.sensitive_threshold,
            year.sensitive_subjects,
        ),
    ]
    return SubjectCounts(utcnow(), total, sensitive, minors, thresholds)


@dataclass(frozen=True, slots=True)
class CrossBorderYears:
    generated_at: datetime
    years: list[transfers.CrossBorderReport]


def cross_border(session: Session, *, policy: Policy) -> CrossBorderYears:
    """Every calendar year with transfers, and the current one, newest first."""
    current = transfers.year_of(utcnow())
    years = set(session.scalars(select(CrossBorderTransfer.year).distinct())) | {current}
    return CrossBorderYears(
        utcnow(),
        [transfers.report(session, policy=policy, year=y) for y in sorted(years, reverse=True)],
    )


SUBJECT_CSV_COLUMNS = ("id", "law", "counts", "threshold", "value", "ratio", "reached", "near")


def subject_csv_rows(report: SubjectCounts) -> Iterator[list[object]]:
    """The counts first (as rows whose id is the count's name), then the thresholds."""
    for name in ("total", "sensitive", "minors"):
        yield [name, "", name, "", getattr(report, name), "", "", ""]
    for t in report.thresholds:
        yield [
            t.id,
            t.law,
            t.counts,
            t.threshold,
            t.value,
            t.ratio,
            str(t.reached).lower(),
            str(t.near).lower(),
        ]


CROSS_BORDER_CSV_COLUMNS = (
    "year",
    "subjects",
    "sensitive_subjects",
    "people_threshold",
    "sensitive_threshold",
    "alert",
    "reasons",
)


def cross_border_csv_rows(report: CrossBorderYears) -> Iterator[list[object]]:
    for y in report.years:
        yield [
            y.year,
            y.subjects,
            y.sensitive_subjects,
            y.people_threshold,
            y.sensitive_threshold,
            str(y.alert).lower(),
            "; ".join(y.reasons),
        ]
