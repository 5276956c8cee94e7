"""The checks behind alerts: each turns current data into findings (numbers, never PI).

- activity_drop: a subject's, a segment's or everyone's events per day over the last
  `recent_days` against the `baseline_days` before them; fires when the recent rate is under
  (1 - drop_ratio) of the baseline and the baseline had at least `min_baseline_events`.
- complaint_spike: complaints of the evaluation day (UTC) against the trailing `baseline_days`;
  fires when the count exceeds mean + sigma * standard deviation and is at least `min_count`.
- rights_due: open rights requests due within policy.settings.rights_warning_working_days
  working days, or overdue (critical).
- cross_border: the consent domain's yearly counter at 80 % of an art. 40 threshold.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Date, cast, func, select
from sqlalchemy.orm import Session

from cdp.consent import transfers
from cdp.events.models import SubjectDaily
from cdp.feedback.models import Feedback
from cdp.policy import Policy
from cdp.rights.models import RightsRequest
from cdp.rights.workdays import add_working_days

OPEN_REQUEST = ("received", "verified", "in_progress")
_CHUNK = 5_000


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    key: str
    severity: str
    summary: str
    detail: dict[str, Any] = field(default_factory=dict)
    subject_id: str | None = None
    rule_id: str | None = None


def utc_day(session: Session, column: Any) -> ColumnElement[Any]:
    """The UTC calendar day of a stored time, on SQLite (UTC text) and PostgreSQL."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.timezone("UTC", column), Date)
    return func.date(column)


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


# --- activity drop --------------------------------------------------------------------------


def _event_sums(
    session: Session, subject_ids: list[str] | None, first: date, split: date, end: date
) -> tuple[int, int]:
    """Events in [first, split) and [split, end) for those subjects (None: everyone)."""
    recent = func.coalesce(func.sum(SubjectDaily.count).filter(SubjectDaily.day >= split), 0)
    earlier = func.coalesce(func.sum(SubjectDaily.count).filter(SubjectDaily.day < split), 0)
    stmt = select(earlier, recent).where(SubjectDaily.day >= first, SubjectDaily.day < end)
    if subject_ids is None:
        base, now = session.execute(stmt).one()
        return int(base), int(now)
    total_base = total_now = 0
    for i in range(0, len(subject_ids), _CHUNK):
        chunk = subject_ids[i : i + _CHUNK]
        base, now = session.execute(stmt.where(SubjectDaily.subject_id.in_(chunk))).one()
        total_base, total_now = total_base + int(base), total_now + int(now)
    return total_base, total_now


@dataclass(frozen=True, slots=True)
class DropWindow:
    recent_days: int
    baseline_days: int
    ratio: float
    minimum: int
    first: date
    split: date
    end: date

    @classmethod
    def of(cls, params: dict[str, Any], today: date) -> DropWindow:
        recent_days = int(params.get("recent_days", 7))
        baseline_days = int(params.get("baseline_days", 28))
        split = today - timedelta(days=recent_days)
        return cls(
            recent_days=recent_days,
            baseline_days=baseline_days,
            ratio=float(params.get("drop_ratio", 0.5)),
            minimum=int(params.get("min_baseline_events", 20)),
            first=split - timedelta(days=baseline_days),
            split=split,
            end=today,
        )

    def dropped(self, baseline: int, recent: int) -> float | None:
        """The drop (0-1) when it is large enough to alert on, else None."""
        base_rate = baseline / self.baseline_days
        recent_rate = recent / self.recent_days
        if baseline < self.minimum or recent_rate >= base_rate * (1 - self.ratio):
            return None
        return 1 - recent_rate / base_rate

    def detail(self, baseline: int, recent: int, drop: float) -> dict[str, Any]:
        return {
            "recent_per_day": round(recent / self.recent_days, 3),
            "baseline_per_day": round(baseline / self.baseline_days, 3),
            "drop": round(drop, 3),
            "recent_days": self.recent_days,
            "baseline_days": self.baseline_days,
        }


def activity_drop(
    session: Session,
    *,
    rule_id: str,
    params: dict[str, Any],
    members: list[str] | None,
    today: date,
) -> list[Finding]:
    """One finding for the rule's target as a whole, or with `each`, one per subject."""
    window = DropWindow.of(params, today)
    if params.get("each"):
        return _each_dropped(session, rule_id, params, members, window)
    subject = params.get("subject_id")
    ids = [subject] if subject else members
    baseline, recent = _event_sums(session, ids, window.first, window.split, window.end)
    drop = window.dropped(baseline, recent)
    if drop is None:
        return []
    target = f"subject {subject}" if subject else f"segment {params.get('segment') or 'all'}"
    return [
        Finding(
            kind="activity_drop",
            key=f"activity_drop:{rule_id}",
            severity="warning",
            summary=f"activity of {target} fell {drop:.0%} against its"
            f" {window.baseline_days}-day baseline",
            detail={
                **window.detail(baseline, recent, drop),
                "subjects": len(ids) if ids is not None else None,
            },
            subject_id=subject,
            rule_id=rule_id,
        )
    ]


def _each_dropped(
    session: Session,
    rule_id: str,
    params: dict[str, Any],
    members: list[str] | None,
    window: DropWindow,
) -> list[Finding]:
    """Every subject (of the segment, or anyone) whose own activity dropped, found in SQL."""
    baseline = func.coalesce(
        func.sum(SubjectDaily.count).filter(SubjectDaily.day < window.split), 0
    )
    recent = func.coalesce(func.sum(SubjectDaily.count).filter(SubjectDaily.day >= window.split), 0)
    stmt = (
        select(SubjectDaily.subject_id, baseline, recent)
        .where(SubjectDaily.day >= window.first, SubjectDaily.day < window.end)
        .group_by(SubjectDaily.subject_id)
        .having(
            baseline >= window.minimum,
            recent * window.baseline_days < baseline * window.recent_days * (1 - window.ratio),
        )
    )
    rows: list[Any] = []
    if members is None:
        rows = list(session.execute(stmt))
    else:
        for i in range(0, len(members), _CHUNK):
            chunk = members[i : i + _CHUNK]
            rows.extend(session.execute(stmt.where(SubjectDaily.subject_id.in_(chunk))))
    out = []
    for subject, base, now in rows:
        drop = window.dropped(int(base), int(now))
        if drop is None:  # the SQL and Python tests agree; this guards float rounding
            continue
        out.append(
            Finding(
                kind="activity_drop",
                key=f"activity_drop:{rule_id}:{subject}",
                severity="warning",
                summary=f"activity of subject {subject} fell {drop:.0%} against its"
                f" {window.baseline_days}-day baseline",
                detail={
                    **window.detail(int(base), int(now), drop),
                    "segment": params.get("segment"),
                },
                subject_id=subject,
                rule_id=rule_id,
            )
        )
    return out


# --- complaint spike ------------------------------------------------------------------------


def complaint_counts(session: Session, first: date, end: date) -> dict[date, int]:
    """Complaints per UTC day in [first, end)."""
    day = utc_day(session, Feedback.created_at)
    start_at = datetime(first.year, first.month, first.day, tzinfo=UTC)
    end_at = datetime(end.year, end.month, end.day, tzinfo=UTC)
    rows = session.execute(
        select(day, func.count())
        .where(
            Feedback.kind == "complaint",
            Feedback.created_at >= start_at,
            Feedback.created_at < end_at,
        )
        .group_by(day)
    )
    return {_as_date(d): int(n) for d, n in rows}


def complaint_spike(
    session: Session, *, rule_id: str | None, params: dict[str, Any], today: date
) -> Finding | None:
    baseline_days = int(params.get("baseline_days", 28))
    sigma = float(params.get("sigma", 3.0))
    minimum = int(params.get("min_count", 5))
    first = today - timedelta(days=baseline_days)
    counts = complaint_counts(session, first, today + timedelta(days=1))
    history = [counts.get(first + timedelta(days=i), 0) for i in range(baseline_days)]
    current = counts.get(today, 0)
    mean = sum(history) / len(history)
    std = math.sqrt(sum((c - mean) ** 2 for c in history) / len(history))
    threshold = mean + sigma * std
    if current < minimum or current <= threshold:
        return None
    return Finding(
        kind="complaint_spike",
        key=f"complaint_spike:{today.isoformat()}",
        severity="critical" if current > mean + 2 * sigma * std else "warning",
        summary=f"{current} complaints on {today.isoformat()} against {mean:.1f} a day",
        detail={
            "day": today.isoformat(),
            "count": current,
            "baseline_mean": round(mean, 3),
            "baseline_std": round(std, 3),
            "threshold": round(threshold, 3),
        },
        rule_id=rule_id,
    )


# --- rights requests near their due date ----------------------------------------------------


def rights_due(session: Session, *, policy: Policy, now: datetime) -> list[Finding]:
    settings = policy.settings
    warn_until = add_working_days(
        now.date(),
        settings.rights_warning_working_days,
        holidays=settings.holidays,
        workdays=settings.workdays,
    )
    limit = datetime(warn_until.year, warn_until.month, warn_until.day, tzinfo=UTC) + timedelta(
        days=1
    )
    rows = session.execute(
        select(RightsRequest.id, RightsRequest.type, RightsRequest.due_at)
        .where(RightsRequest.status.in_(OPEN_REQUEST), RightsRequest.due_at < limit)
        .order_by(RightsRequest.due_at)
    )
    out = []
    for request_id, kind, due_at in rows:
        overdue = due_at < now
        out.append(
            Finding(
                kind="rights_due",
                key=f"rights_due:{request_id}",
                severity="critical" if overdue else "warning",
                summary=(
                    f"{kind} request {'is overdue' if overdue else 'is due'} on"
                    f" {due_at.date().isoformat()} (PIPL art. 50)"
                ),
                detail={
                    "request_id": request_id,
                    "type": kind,
                    "due_at": due_at.isoformat(),
                    "overdue": overdue,
                },
            )
        )
    return out


# --- cross-border threshold ------------------------------------------------------------------


def cross_border(session: Session, *, policy: Policy) -> Finding | None:
    report = transfers.report(session, policy=policy)
    if not report.alert:
        return None
    reached = (
        report.subjects >= report.people_threshold
        or report.sensitive_subjects >= report.sensitive_threshold
    )
    return Finding(
        kind="cross_border",
        key=f"cross_border:{report.year}",
        severity="critical" if reached else "warning",
        summary=f"cross-border transfers near the art. 40 threshold: {'; '.join(report.reasons)}",
        detail={
            "year": report.year,
            "subjects": report.subjects,
            "sensitive_subjects": report.sensitive_subjects,
            "people_threshold": report.people_threshold,
            "sensitive_threshold": report.sensitive_threshold,
        },
    )


def flatten(found: Iterable[Finding | None]) -> list[Finding]:
    return [f for f in found if f is not None]
