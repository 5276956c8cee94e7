"""policies/retention.yaml: how long each purpose keeps each class of data (PIPL art. 19), how
long audit entries and network-access logs are kept at least, and legal holds that keep data
beyond its purpose's retention because a law requires it (e.g. 会计档案管理办法 art. 14:
accounting vouchers are kept 30 years).

Imports nothing from cdp.policy, which loads this module while it is itself being imported.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

FILE = "retention.yaml"
# Audit entries are kept at least three years (policy floor; PIPL art. 54 audits look back),
# network-access logs at least six months (网络安全法 art. 21).
AUDIT_MIN_DAYS = 1095
NETWORK_LOG_MIN_DAYS = 180
Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=500, strip_whitespace=True)]
Loc = tuple[str | int, ...]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuditRule(_Spec):
    """Minimum ages before audit entries and network-access logs may be removed."""

    keep_days: int = Field(default=AUDIT_MIN_DAYS, ge=AUDIT_MIN_DAYS)
    network_log_days: int = Field(default=NETWORK_LOG_MIN_DAYS, ge=NETWORK_LOG_MIN_DAYS)


class EventRule(_Spec):
    """Events of one data class (the tracking plan's category) kept this long for a purpose."""

    purpose: Identifier
    category: Identifier
    days: int = Field(gt=0)


class RecordRule(_Spec):
    """A kind of record kept this long for a purpose, then deleted or anonymised."""

    purpose: Identifier
    days: int = Field(gt=0)
    action: Literal["delete", "anonymise"] = "delete"


class CodeRule(_Spec):
    """Verification codes: removed this many days after they expire."""

    days_after_expiry: int = Field(default=1, ge=0, le=365)


class Records(_Spec):
    """Records other than events; a missing entry is not retained beyond its purpose."""

    feedback_text: RecordRule | None = None
    interaction_notes: RecordRule | None = None
    anonymous_visitors: RecordRule | None = None
    verification_codes: CodeRule = CodeRule()


class HoldSpec(_Spec):
    """A legal hold: a subject's events of these names are kept keep_years from each event,
    whatever their purpose's retention, and hold back erasure while any is that recent."""

    id: Identifier
    reason: Text
    law: Text
    events: list[Name] = Field(min_length=1)
    keep_years: int = Field(gt=0, le=100)

    @property
    def data(self) -> list[str]:
        return [f"event:{name}" for name in self.events]


class RetentionPolicy(_Spec):
    """The whole file."""

    audit: AuditRule = AuditRule()
    events: list[EventRule] = []
    records: Records = Records()
    legal_holds: list[HoldSpec] = []

    def event_days(self, purpose: str, category: str) -> int | None:
        """The class rule for events of a purpose, if the file has one."""
        return next(
            (r.days for r in self.events if r.purpose == purpose and r.category == category),
            None,
        )


EMPTY = RetentionPolicy()


@dataclass(frozen=True, slots=True)
class PurposeView:
    """What the retention checks need from a purpose (kept free of cdp.policy imports)."""

    id: str
    categories: Collection[str]
    retention_days: int


def check_retention(
    spec: RetentionPolicy,
    *,
    purposes: Mapping[str, PurposeView],
    categories: Collection[str],
    tracking_purpose: str | None,
    event_names: Collection[str] | None,
) -> list[tuple[Loc, str]]:
    """Cross-references: purposes and categories exist, no class is kept longer than its
    purpose allows (PIPL art. 19), rules are not repeated, held events are planned."""
    issues: list[tuple[Loc, str]] = []
    seen: set[tuple[str, str]] = set()
    for i, rule in enumerate(spec.events):
        purpose = purposes.get(rule.purpose)
        if purpose is None:
            issues.append((("events", i, "purpose"), f"unknown purpose {rule.purpose!r}"))
        elif tracking_purpose in purposes and rule.purpose != tracking_purpose:
            issues.append(
                (
                    ("events", i, "purpose"),
                    f"events are collected for purpose {tracking_purpose!r}"
                    " (tracking-plan.yaml); a rule for another purpose never applies",
                )
            )
        if rule.category not in categories:
            issues.append((("events", i, "category"), f"unknown category {rule.category!r}"))
        elif purpose is not None and rule.category not in purpose.categories:
            issues.append(
                (
                    ("events", i, "category"),
                    f"category {rule.category!r} is outside purpose {purpose.id!r}",
                )
            )
        if (rule.purpose, rule.category) in seen:
            issues.append((("events", i), "duplicate rule for this purpose and category"))
        seen.add((rule.purpose, rule.category))
        issues += _within(("events", i, "days"), rule.days, purpose)
    for key in ("feedback_text", "interaction_notes", "anonymous_visitors"):
        record: RecordRule | None = getattr(spec.records, key)
        if record is None:
            continue
        purpose = purposes.get(record.purpose)
        if purpose is None:
            issues.append((("records", key, "purpose"), f"unknown purpose {record.purpose!r}"))
        issues += _within(("records", key, "days"), record.days, purpose)
    ids: set[str] = set()
    for i, hold in enumerate(spec.legal_holds):
        if hold.id in ids:
            issues.append((("legal_holds", i, "id"), f"duplicate legal hold {hold.id!r}"))
        ids.add(hold.id)
        for j, name in enumerate(hold.events):
            if event_names is not None and name not in event_names:
                issues.append(
                    (
                        ("legal_holds", i, "events", j),
                        f"event {name!r} is not in tracking-plan.yaml",
                    )
                )
    return issues


def _within(loc: Loc, days: int, purpose: PurposeView | None) -> list[tuple[Loc, str]]:
    if purpose is None or days <= purpose.retention_days:
        return []
    return [
        (
            loc,
            f"days {days} exceeds purpose {purpose.id!r}'s retention_days"
            f" {purpose.retention_days} (PIPL art. 19)",
        )
    ]
