"""Follow-up rate (tasks done on time / tasks due) by period, owner, team, segment and channel,
and the monthly analysis report (JSON or CSV). Every number is a k-anonymous cell.

A task counts as due when its due time lies in the window and has passed; it is done on time
when it was completed (status done) no later than its due time.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cdp.db import utcnow
from cdp.errors import ValidationFailed
from cdp.feedback import metrics as feedback_metrics
from cdp.followups.models import FollowupTask, Interaction
from cdp.metrics.kanon import Cell, cell

Dimension = Literal["period", "owner", "team", "segment", "channel"]
NO_SEGMENT = "(list)"


@dataclass(frozen=True, slots=True)
class TaskRow:
    subject_id: str
    owner: str
    team: str | None
    segment_key: str | None
    channel: str
    status: str
    outcome: str | None
    due_at: datetime
    completed_at: datetime | None

    @property
    def on_time(self) -> bool:
        return (
            self.status == "done"
            and self.completed_at is not None
            and self.completed_at <= self.due_at
        )


def _load(session: Session, start: datetime, end: datetime) -> list[TaskRow]:
    end = min(end, utcnow())
    rows = session.execute(
        select(
            FollowupTask.subject_id,
            FollowupTask.owner,
            FollowupTask.team,
            FollowupTask.segment_key,
            FollowupTask.channel,
            FollowupTask.status,
            FollowupTask.outcome,
            FollowupTask.due_at,
            FollowupTask.completed_at,
        ).where(FollowupTask.due_at >= start, FollowupTask.due_at < end)
    )
    return [TaskRow(*r) for r in rows]


def rate(rows: Iterable[TaskRow], k: int) -> dict[str, Cell]:
    rows = list(rows)
    subjects = len({r.subject_id for r in rows})
    on_time = sum(1 for r in rows if r.on_time)
    done = sum(1 for r in rows if r.status == "done")
    return {
        "due": cell(len(rows), subjects=subjects, k=k),
        "done": cell(done, subjects=subjects, k=k),
        "done_on_time": cell(on_time, subjects=subjects, k=k),
        "followup_rate": cell(
            round(on_time / len(rows), 4) if rows else None, subjects=subjects, k=k
        ),
    }


def _key(row: TaskRow, by: Dimension, period: feedback_metrics.Period) -> str:
    if by == "period":
        return feedback_metrics.period_start(row.due_at.astimezone(UTC).date(), period).isoformat()
    if by == "segment":
        return row.segment_key or NO_SEGMENT
    value = getattr(row, by)
    return str(value) if value is not None else "(none)"


def grouped(
    rows: list[TaskRow], by: Dimension, period: feedback_metrics.Period, k: int
) -> list[dict[str, Any]]:
    groups: dict[str, list[TaskRow]] = {}
    for r in rows:
        groups.setdefault(_key(r, by, period), []).append(r)
    return [{"group": g, **rate(members, k)} for g, members in sorted(groups.items())]


def followup_metrics(
    session: Session,
    *,
    k: int,
    start: datetime,
    end: datetime,
    by: Dimension,
    period: feedback_metrics.Period,
) -> dict[str, Any]:
    rows = _load(session, start, end)
    return {
        "from": start,
        "to": end,
        "by": by,
        "period": period,
        "k": k,
        "overall": rate(rows, k),
        "groups": grouped(rows, by, period, k),
    }


def month_window(month: str) -> tuple[datetime, datetime]:
    """[first instant, first instant of the next month) in UTC for YYYY-MM."""
    try:
        first = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        message = "month must be YYYY-MM, e.g. 2026-11"
        raise ValidationFailed(
            message, errors=[{"loc": ["query", "month"], "msg": message, "type": "value_error"}]
        ) from None
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return first, datetime(following.year, following.month, 1, tzinfo=UTC)


def monthly_report(session: Session, *, k: int, month: str) -> dict[str, Any]:
    """The month's analysis: follow-up rate overall and by owner, team, segment and channel;
    outcomes of completed tasks; interactions; satisfaction."""
    start, end = month_window(month)
    rows = _load(session, start, end)
    outcomes: dict[str, list[TaskRow]] = {}
    for r in rows:
        if r.status == "done" and r.outcome:
            outcomes.setdefault(r.outcome, []).append(r)
    contacts = session.execute(
        select(func.count(), func.count(func.distinct(Interaction.subject_id))).where(
            Interaction.at >= start, Interaction.at < end
        )
    ).one()
    satisfaction = feedback_metrics.satisfaction(feedback_metrics.load(session, start, end), k)
    return {
        "month": month,
        "k": k,
        "followups": rate(rows, k),
        "by_owner": grouped(rows, "owner", "month", k),
        "by_team": grouped(rows, "team", "month", k),
        "by_segment": grouped(rows, "segment", "month", k),
        "by_channel": grouped(rows, "channel", "month", k),
        "outcomes": {
            o: cell(len(rs), subjects=len({r.subject_id for r in rs}), k=k)
            for o, rs in sorted(outcomes.items())
        },
        "interactions": cell(int(contacts[0]), subjects=int(contacts[1]), k=k),
        "satisfaction": {
            name: satisfaction[name]
            for name in ("surveys", "csat_average", "nps", "complaints", "resolution_rate")
        },
    }


CSV_COLUMNS = ("section", "group", "metric", "value", "subjects", "suppressed")


def report_csv(report: dict[str, Any]) -> str:
    """The report flattened: one line per cell; a suppressed cell has an empty value."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)

    def line(section: str, group: str, metric: str, value: Cell) -> None:
        shown = "" if value.value is None else value.value
        subjects = "" if value.subjects is None else value.subjects
        writer.writerow([section, group, metric, shown, subjects, str(value.suppressed).lower()])

    for metric, value in report["followups"].items():
        line("followups", "all", metric, value)
    for section in ("by_owner", "by_team", "by_segment", "by_channel"):
        for group in report[section]:
            for metric, value in group.items():
                if metric != "group":
                    line(section, group["group"], metric, value)
    for outcome, value in report["outcomes"].items():
        line("outcomes", outcome, "tasks", value)
    line("interactions", "all", "interactions", report["interactions"])
    for metric, value in report["satisfaction"].items():
        line("satisfaction", "all", metric, value)
    return out.getvalue()
