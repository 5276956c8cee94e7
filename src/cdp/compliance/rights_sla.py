"""Rights-request SLA (PIPL art. 50; GB/T 35273-2020 8.7): per request type, closed requests
answered on time or late, and open requests by how soon they fall due (China Standard Time,
working days from settings.yaml)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cdp.consent.transfers import CHINA
from cdp.db import utcnow
from cdp.policy import Policy
from cdp.rights.models import TYPES, RightsRequest
from cdp.rights.workdays import add_working_days

BUCKETS = ("overdue", "due_today", "due_soon", "later")


@dataclass(slots=True)
class SlaRow:
    """Counts for one request type (or `all`)."""

    type: str
    received: int = 0
    on_time: int = 0
    late: int = 0
    rejected: int = 0
    extended: int = 0
    open: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0))

    @property
    def open_total(self) -> int:
        return sum(self.open.values())


@dataclass(frozen=True, slots=True)
class RightsSla:
    generated_at: datetime
    since: datetime | None
    until: datetime | None
    warning_working_days: int
    types: list[SlaRow]
    total: SlaRow


def rights_sla(
    session: Session,
    *,
    policy: Policy,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
) -> RightsSla:
    """Requests received in [since, until): closed on time (completed or rejected by the due
    date, extensions included) or late; open ones by due date bucket as of now."""
    now = now or utcnow()
    settings = policy.settings
    today = now.astimezone(CHINA).date()
    soon = add_working_days(
        today,
        settings.rights_warning_working_days,
        holidays=settings.holidays,
        workdays=settings.workdays,
    )
    stmt = select(
        RightsRequest.type,
        RightsRequest.status,
        RightsRequest.due_at,
        RightsRequest.completed_at,
        RightsRequest.extended,
    )
    if since is not None:
        stmt = stmt.where(RightsRequest.received_at >= since)
    if until is not None:
        stmt = stmt.where(RightsRequest.received_at < until)
    rows = {kind: SlaRow(kind) for kind in TYPES}
    total = SlaRow("all")
    for kind, status, due_at, completed_at, extended in session.execute(
        stmt.execution_options(yield_per=2000)
    ):
        row = rows.setdefault(kind, SlaRow(kind))
        for target in (row, total):
            target.received += 1
            target.extended += bool(extended)
            if completed_at is not None:
                if completed_at <= due_at:
                    target.on_time += 1
                else:
                    target.late += 1
                target.rejected += status == "rejected"
            else:
                target.open[_bucket(due_at, now, today, soon)] += 1
    return RightsSla(
        generated_at=now,
        since=since,
        until=until,
        warning_working_days=settings.rights_warning_working_days,
        types=list(rows.values()),
        total=total,
    )


def _bucket(due_at: datetime, now: datetime, today: date, soon: date) -> str:
    if due_at < now:
        return "overdue"
    day = due_at.astimezone(CHINA).date()
    if day == today:
        return "due_today"
    if day <= soon:
        return "due_soon"
    return "later"


CSV_COLUMNS = ("type", "received", "on_time", "late", "rejected", "extended", "open", *BUCKETS)


def csv_rows(report: RightsSla) -> Iterator[list[object]]:
    for row in [*report.types, report.total]:
        yield [
            row.type,
            row.received,
            row.on_time,
            row.late,
            row.rejected,
            row.extended,
            row.open_total,
            *(row.open[b] for b in BUCKETS),
        ]
