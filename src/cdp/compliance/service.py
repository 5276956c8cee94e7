"""The record of processing activities (PIPL art. 7, 54-55), built from the loaded policy."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime

from cdp.db import utcnow
from cdp.policy import Policy


@dataclass(frozen=True, slots=True)
class NoticeRef:
    id: str
    version: int | None  # the latest published version
    published: date | None


@dataclass(frozen=True, slots=True)
class Activity:
    """One purpose of processing as the record lists it."""

    purpose: str
    names: dict[str, str]
    description: str
    legal_basis: str
    essential: bool
    personalisation: bool
    separate_consent: bool  # needed: declared, or implied by third party / cross-border
    third_party: bool
    cross_border: bool
    categories: list[str]
    fields: list[str]
    sensitive_fields: list[str]
    retention_days: int
    notice: NoticeRef | None
    pia: str | None


@dataclass(frozen=True, slots=True)
class ProcessingRecord:
    policy_version: str
    generated_at: datetime
    activities: list[Activity]


def processing_activities(policy: Policy) -> ProcessingRecord:
    activities = []
    for spec in policy.purposes.values():
        fields = sorted(policy.fields_for(spec.id))
        notice = None
        if spec.notice is not None:
            found = policy.notices.get(spec.notice)
            latest = found.latest if found else None
            notice = NoticeRef(
                spec.notice,
                latest.version if latest else None,
                latest.published if latest else None,
            )
        activities.append(
            Activity(
                purpose=spec.id,
                names=dict(spec.names),
                description=spec.description,
                legal_basis=spec.legal_basis,
                essential=spec.essential,
                personalisation=spec.personalisation,
                separate_consent=spec.needs_separate_consent,
                third_party=spec.third_party,
                cross_border=spec.cross_border,
                categories=list(spec.categories),
                fields=fields,
                sensitive_fields=[f for f in fields if f in policy.sensitive_fields],
                retention_days=spec.retention_days,
                notice=notice,
                pia=spec.pia,
            )
        )
    return ProcessingRecord(policy.version, utcnow(), activities)


CSV_COLUMNS = (
    "purpose",
    "name_zh",
    "name_en",
    "legal_basis",
    "essential",
    "personalisation",
    "separate_consent",
    "third_party",
    "cross_border",
    "categories",
    "fields",
    "sensitive_fields",
    "retention_days",
    "notice",
    "notice_version",
    "pia",
    "description",
)


def _flag(value: bool) -> str:
    return "true" if value else "false"


def as_csv(record: ProcessingRecord) -> str:
    """One row per purpose; lists joined with `;`, flags as true/false."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for a in record.activities:
        writer.writerow(
            [
                a.purpose,
                a.names.get("zh", ""),
                a.names.get("en", ""),
                a.legal_basis,
                _flag(a.essential),
                _flag(a.personalisation),
                _flag(a.separate_consent),
                _flag(a.third_party),
                _flag(a.cross_border),
                ";".join(a.categories),
                ";".join(a.fields),
                ";".join(a.sensitive_fields),
                a.retention_days,
                a.notice.id if a.notice else "",
                a.notice.version if a.notice and a.notice.version is not None else "",
                a.pia or "",
                a.description,
            ]
        )
    return out.getvalue()
