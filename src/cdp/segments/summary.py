"""The per-subject summary (subject_summary), upserted with the daily rollups in the ingestion
transaction: segment conditions on recency, purchases, monthly revenue and weekly activity then
read one row per subject instead of scanning subject_daily.

Imports nothing from cdp.events at run time: events.writes calls write_summary.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import ColumnElement, Table, and_, case, func, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cdp.db import execute_rows
from cdp.segments.models import MONTH_SLOTS, WEEK_SLOTS, SubjectSummary

if TYPE_CHECKING:
    from cdp.events.writes import Rollup

SUMMARY = cast(Table, SubjectSummary.__table__)


def month_period(day: date) -> int:
    return day.year * 12 + day.month - 1


def week_period(day: date) -> int:
    """Weeks start on Monday: date(1, 1, 1) was a Monday."""
    return (day.toordinal() - 1) // 7


@dataclass(slots=True)
class _Part:
    """What one subject did in one (month, week): events, orders, revenue, purchase days."""

    events: int = 0
    orders: int = 0
    revenue: Decimal = field(default_factory=Decimal)
    first_purchase: date | None = None
    last_purchase: date | None = None


def summary_rows(
    daily: Mapping[tuple[str, date, str], list[Any]],
    activity: Mapping[str, list[Any]],
    purchases: Mapping[tuple[str, date], int],
) -> dict[tuple[int, int], list[dict[str, Any]]]:
    """Rows to upsert, grouped by (month period, week period): within a group each subject
    appears once, and the group decides which ring slots the statement writes."""
    parts: dict[tuple[str, int, int], _Part] = defaultdict(_Part)
    for (subject_id, day, _name), (count, revenue) in daily.items():
        part = parts[(subject_id, month_period(day), week_period(day))]
        part.events += count
        part.revenue += revenue
    for (subject_id, day), orders in purchases.items():
        part = parts[(subject_id, month_period(day), week_period(day))]
        part.orders += orders
        part.first_purchase = min(part.first_purchase or day, day)
        part.last_purchase = max(part.last_purchase or day, day)
    groups: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for (subject_id, month, week), part in sorted(parts.items()):
        first_seen, last_seen, _ = activity[subject_id]
        ms, ws = month % MONTH_SLOTS, week % WEEK_SLOTS
        groups[(month, week)].append(
            {
                "subject_id": subject_id,
                "first_seen": first_seen,
                "last_seen": last_seen,
                "events": part.events,
                "orders": part.orders,
                "revenue": part.revenue,
                "first_purchase": part.first_purchase,
                "last_purchase": part.last_purchase,
                f"m{ms}": month,
                f"mr{ms}": part.revenue,
                f"mo{ms}": part.orders,
                f"w{ws}": week,
                f"wa{ws}": part.events,
            }
        )
    return groups


def _nullsafe(pick: str, a: Any, b: Any) -> ColumnElement[Any]:
    """least/greatest that ignores NULL alike on both databases (SQLite's min(a, NULL) is NULL)."""
    better = b < a if pick == "least" else b > a
    return case((a.is_(None), b), (b.is_(None), a), (better, b), else_=a)


def _slot(tag: Any, value: Any, new_tag: Any, new_value: Any) -> tuple[Any, Any]:
    """A ring slot merged with a new part: added when it holds the same period, replaced when it
    holds an older (stale) one, left alone when the part is older than the slot."""
    merged = case(
        (tag == new_tag, value + new_value),
        (or_(tag.is_(None), tag < new_tag), new_value),
        else_=value,
    )
    return case((or_(tag.is_(None), tag < new_tag), new_tag), else_=tag), merged


@cache
def _upsert(dialect: str, ms: int, ws: int) -> Any:
    """The summary upsert writing month slot ms and week slot ws, built once per dialect."""
    pg = dialect == "postgresql"
    stmt = (postgresql.insert if pg else sqlite.insert)(SUMMARY)
    new = stmt.excluded
    c = SUMMARY.c
    m_tag, m_rev = _slot(c[f"m{ms}"], c[f"mr{ms}"], new[f"m{ms}"], new[f"mr{ms}"])
    _, m_ord = _slot(c[f"m{ms}"], c[f"mo{ms}"], new[f"m{ms}"], new[f"mo{ms}"])
    w_tag, w_act = _slot(c[f"w{ws}"], c[f"wa{ws}"], new[f"w{ws}"], new[f"wa{ws}"])
    least, greatest = (func.least, func.greatest) if pg else (func.min, func.max)
    return stmt.on_conflict_do_update(
        index_elements=["subject_id"],
        set_={
            "first_seen": least(c.first_seen, new.first_seen),
            "last_seen": greatest(c.last_seen, new.last_seen),
            "events": c.events + new.events,
            "orders": c.orders + new.orders,
            "revenue": c.revenue + new.revenue,
            "first_purchase": _nullsafe("least", c.first_purchase, new.first_purchase),
            "last_purchase": _nullsafe("greatest", c.last_purchase, new.last_purchase),
            f"m{ms}": m_tag,
            f"mr{ms}": m_rev,
            f"mo{ms}": m_ord,
            f"w{ws}": w_tag,
            f"wa{ws}": w_act,
        },
    )


def write_summary(session: Session, rollup: Rollup) -> None:
    """Upserts the batch's rollup into subject_summary: one statement per (month, week) the
    batch touched, usually one; rows sorted by subject so concurrent batches cannot deadlock."""
    if not rollup.daily:
        return
    dialect = session.get_bind().dialect.name
    groups = summary_rows(rollup.daily, rollup.activity, rollup.purchases)
    for (month, week), rows in sorted(groups.items()):
        execute_rows(session, _upsert(dialect, month % MONTH_SLOTS, week % WEEK_SLOTS), rows)


def rows_for_insert(
    groups: Mapping[tuple[int, int], list[dict[str, Any]]],
) -> Iterable[dict[str, Any]]:
    """Merges the groups into one complete row per subject, for a bulk load into an empty
    summary (cdp demo seed): the same merge rules as write_summary, applied in Python."""
    merged: dict[str, dict[str, Any]] = {}
    for (month, week), rows in sorted(groups.items()):
        ms, ws = month % MONTH_SLOTS, week % WEEK_SLOTS
        for row in rows:
            have = merged.get(row["subject_id"])
            if have is None:
                merged[row["subject_id"]] = dict(row)
                continue
            have["events"] += row["events"]
            have["orders"] += row["orders"]
            have["revenue"] += row["revenue"]
            for key, pick in (("first_purchase", min), ("last_purchase", max)):
                values = [v for v in (have[key], row[key]) if v is not None]
                have[key] = pick(values) if values else None
            for tag, vals, period in (
                (f"m{ms}", (f"mr{ms}", f"mo{ms}"), month),
                (f"w{ws}", (f"wa{ws}",), week),
            ):
                old = have.get(tag)
                if old == period:
                    for v in vals:
                        have[v] += row[v]
                elif old is None or old < period:
                    have[tag] = period
                    for v in vals:
                        have[v] = row[v]
    return merged.values()


def window_condition(tag: Any, low: int, high: int) -> ColumnElement[bool]:
    return and_(tag.is_not(None), tag >= low, tag <= high)


def now_periods(at: datetime) -> tuple[int, int]:
    day = at.date()
    return month_period(day), week_period(day)
