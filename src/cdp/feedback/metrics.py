"""Satisfaction metrics: CSAT average and distribution, NPS, complaint resolution rate and time.

Every number is a k-anonymous cell (cdp.metrics.kanon): the subjects behind it are the
distinct customers whose feedback it counts; under policy.settings.k_anonymity it is null.
NPS = % promoters (9-10) - % detractors (0-6), over survey answers with an NPS score.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from cdp.db import utcnow
from cdp.errors import ValidationFailed
from cdp.feedback.models import Feedback
from cdp.metrics.kanon import Cell, cell

Period = Literal["day", "week", "month", "all"]
RESOLVED = ("resolved", "closed")


def period_start(day: date, period: Period) -> date:
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    return date.min


@dataclass(frozen=True, slots=True)
class Row:
    subject_id: str
    kind: str
    csat: int | None
    nps: int | None
    status: str | None
    created_at: datetime
    resolved_at: datetime | None


def satisfaction(rows: Iterable[Row], k: int) -> dict[str, Any]:
    """The metrics of one group of feedback rows, each a Cell."""
    rows = list(rows)
    csat = [(r.subject_id, r.csat) for r in rows if r.csat is not None]
    nps = [(r.subject_id, r.nps) for r in rows if r.nps is not None]
    surveys = [r for r in rows if r.kind == "survey"]
    complaints = [r for r in rows if r.kind == "complaint"]
    resolved = [r for r in complaints if r.status in RESOLVED and r.resolved_at is not None]
    csat_subjects = len({s for s, _ in csat})
    distribution: dict[str, Cell] = {}
    for score in range(1, 6):
        who = {s for s, v in csat if v == score}
        count = sum(1 for _, v in csat if v == score)
        distribution[str(score)] = cell(count, subjects=len(who), k=k)
    nps_value = None
    if nps:
        promoters = sum(1 for _, v in nps if v >= 9)
        detractors = sum(1 for _, v in nps if v <= 6)
        nps_value = round(100 * (promoters - detractors) / len(nps), 1)
    complaint_subjects = len({r.subject_id for r in complaints})
    hours = [
        (r.resolved_at - r.created_at).total_seconds() / 3600 for r in resolved if r.resolved_at
    ]
    return {
        "surveys": cell(len(surveys), subjects=len({r.subject_id for r in surveys}), k=k),
        "csat_average": cell(
            round(sum(v for _, v in csat) / len(csat), 2) if csat else None,
            subjects=csat_subjects,
            k=k,
        ),
        "csat_distribution": distribution,
        "nps": cell(nps_value, subjects=len({s for s, _ in nps}), k=k),
        "complaints": cell(len(complaints), subjects=complaint_subjects, k=k),
        "resolution_rate": cell(
            round(len(resolved) / len(complaints), 4) if complaints else None,
            subjects=complaint_subjects,
            k=k,
        ),
        "mean_hours_to_resolve": cell(
            round(sum(hours) / len(hours), 2) if hours else None,
            subjects=len({r.subject_id for r in resolved}),
            k=k,
        ),
    }


def load(session: Session, start: datetime, end: datetime) -> list[Row]:
    found = session.execute(
        select(
            Feedback.subject_id,
            Feedback.kind,
            Feedback.csat,
            Feedback.nps,
            Feedback.status,
            Feedback.created_at,
            Feedback.resolved_at,
        ).where(Feedback.created_at >= start, Feedback.created_at < end)
    )
    return [Row(*r) for r in found]


def feedback_metrics(
    session: Session, *, k: int, start: datetime, end: datetime, period: Period
) -> dict[str, Any]:
    """Overall and per period (UTC calendar) satisfaction metrics for feedback created in
    [start, end)."""
    rows = load(session, start, end)
    groups: dict[date, list[Row]] = {}
    if period != "all":
        for r in rows:
            groups.setdefault(period_start(r.created_at.astimezone(UTC).date(), period), []).append(
                r
            )
    return {
        "from": start,
        "to": end,
        "period": period,
        "k": k,
        "overall": satisfaction(rows, k),
        "periods": [
            {"start": day, **satisfaction(group, k)} for day, group in sorted(groups.items())
        ],
    }


def window(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """[from, to): default the last 90 days; at most three years; from before to."""
    end = end or utcnow()
    start = start or end - timedelta(days=90)
    message = None
    if start >= end:
        message = "from must be before to"
    elif end - start > timedelta(days=3 * 366):
        message = "the window may span at most three years"
    if message:
        raise ValidationFailed(
            message, errors=[{"loc": ["query", "from"], "msg": message, "type": "value_error"}]
        )
    return start, end
