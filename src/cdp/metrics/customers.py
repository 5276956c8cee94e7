"""Customer metrics by period and segment: counts (customers, active, new, silent), churn rate,
repeat-visit rate (回访率) and customer lifetime value, every cell k-anonymous.

Periods are calendar months or ISO weeks (UTC days, clipped to the requested range). A segment
filter uses the segment's membership now. Orders are the events that carried revenue.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, distinct, func, select
from sqlalchemy.orm import Session

from cdp.errors import ValidationFailed
from cdp.metrics.kanon import Cell, cell
from cdp.policy import Policy
from cdp.segments import compiler
from cdp.segments import service as segments
from cdp.segments.compiler import DAILY, PROFILE
from cdp.segments.summary import SUMMARY

Interval = Literal["month", "week"]
MAX_PERIODS = 60
FIRST_YEAR, LAST_YEAR = 1970, 2200
SILENT_DAYS = 90
MAX_LIFESPAN_YEARS = 10.0


@dataclass(frozen=True, slots=True)
class PeriodMetrics:
    start: date
    end: date
    cells: dict[str, Cell]


def periods(start: date, end: date, interval: Interval) -> list[tuple[date, date]]:
    """[start, end] cut into calendar months or ISO weeks, the first and last clipped."""
    out, day = [], start
    while day <= end:
        if interval == "month":
            nxt = date(day.year + day.month // 12, day.month % 12 + 1, 1)
        else:
            nxt = day + timedelta(days=7 - day.weekday())
        out.append((day, min(nxt - timedelta(days=1), end)))
        day = nxt
    return out


def customers(
    session: Session,
    *,
    policy: Policy,
    start: date | None,
    end: date | None,
    interval: Interval,
    segment: str | None,
) -> list[PeriodMetrics]:
    today = datetime.now(UTC).date()
    end = end or today
    start = start or (end.replace(day=1) - timedelta(days=150)).replace(day=1)
    for name, day in (("from", start), ("to", end)):
        if not FIRST_YEAR <= day.year <= LAST_YEAR:
            raise ValidationFailed(
                f"{name} must fall in the years {FIRST_YEAR}-{LAST_YEAR}",
                errors=[{"loc": ["query", name], "msg": "out of range", "type": "value_error"}],
            )
    if start > end:
        raise ValidationFailed(
            "from must not be after to",
            errors=[{"loc": ["query", "from"], "msg": "after to", "type": "value_error"}],
        )
    cuts = periods(start, end, interval)
    if len(cuts) > MAX_PERIODS:
        raise ValidationFailed(
            f"at most {MAX_PERIODS} periods per request",
            errors=[{"loc": ["query", "from"], "msg": "too many periods", "type": "value_error"}],
        )
    scope: ColumnElement[bool] | None = None
    if segment is not None:
        _, node = segments.tree(session, policy=policy, key=segment)
        scope = compiler.predicate(node, compiler.clock())
    k = policy.settings.k_anonymity
    compiler.tune(session)
    return [_period(session, a, b, scope, k) for a, b in cuts]


def _in_scope(column: Any, scope: ColumnElement[bool] | None) -> list[ColumnElement[bool]]:
    if scope is None:
        return []
    members = select(PROFILE.c.id).select_from(compiler.population()).where(scope)
    return [column.in_(members)]


def _active(session: Session, a: date, b: date, scope: ColumnElement[bool] | None) -> Any:
    return select(DAILY.c.subject_id).where(
        DAILY.c.day >= a, DAILY.c.day <= b, *_in_scope(DAILY.c.subject_id, scope)
    )


def _count(session: Session, stmt: Any) -> int:
    return int(session.scalar(stmt) or 0)


def _period(
    session: Session, a: date, b: date, scope: ColumnElement[bool] | None, k: int
) -> PeriodMetrics:
    d = DAILY.c
    days = (b - a).days + 1
    in_profiles = _in_scope(PROFILE.c.id, scope)
    created_by = datetime.combine(b + timedelta(days=1), time(), UTC)
    total = _count(
        session,
        select(func.count())
        .select_from(PROFILE)
        .where(PROFILE.c.created_at < created_by, *in_profiles),
    )
    active_q = _active(session, a, b, scope).distinct().subquery()
    active = _count(session, select(func.count()).select_from(active_q))
    new = _count(
        session,
        select(func.count())
        .select_from(SUMMARY)
        .where(
            SUMMARY.c.first_seen >= datetime.combine(a, time(), UTC),
            SUMMARY.c.first_seen < created_by,
            *_in_scope(SUMMARY.c.subject_id, scope),
        ),
    )
    recent = _active(session, b - timedelta(days=SILENT_DAYS - 1), b, scope).distinct().subquery()
    silent = max(total - _count(session, select(func.count()).select_from(recent)), 0)
    # Churn: active in the period before (same length) and not active in this one.
    prev = _active(session, a - timedelta(days=days), a - timedelta(days=1), scope).distinct()
    prev_q = prev.subquery()
    previous = _count(session, select(func.count()).select_from(prev_q))
    retained = _count(
        session,
        select(func.count())
        .select_from(prev_q)
        .where(prev_q.c.subject_id.in_(select(active_q.c.subject_id))),
    )
    churn = (previous - retained) / previous if previous else None
    # Repeat visits: active on at least two distinct days of the period.
    visit_days = (
        select(d.subject_id)
        .where(d.day >= a, d.day <= b, *_in_scope(d.subject_id, scope))
        .group_by(d.subject_id)
        .having(func.count(distinct(d.day)) >= 2)
        .subquery()
    )
    repeat = _count(session, select(func.count()).select_from(visit_days))
    # Historic CLV: revenue to date per customer who ever bought.
    bought = and_(d.revenue > 0, d.day <= b, *_in_scope(d.subject_id, scope))
    lifetime, buyers_ever = session.execute(
        select(func.coalesce(func.sum(d.revenue), 0), func.count(distinct(d.subject_id))).where(
            bought
        )
    ).one()
    in_period = and_(d.revenue > 0, d.day >= a, d.day <= b, *_in_scope(d.subject_id, scope))
    revenue, orders, buyers = session.execute(
        select(
            func.coalesce(func.sum(d.revenue), 0),
            func.coalesce(func.sum(d.count), 0),
            func.count(distinct(d.subject_id)),
        ).where(in_period)
    ).one()
    aov = float(revenue) / orders if orders else None
    frequency = orders / buyers * 365 / days if buyers else None
    lifespan = _lifespan(churn, days)
    predicted = aov * frequency * lifespan if aov and frequency and lifespan else None
    cells = {
        "customers": cell(total, subjects=total, k=k),
        "active": cell(active, subjects=active, k=k),
        "new": cell(new, subjects=new, k=k),
        "silent": cell(silent, subjects=silent, k=k),
        "churn_rate": cell(_round(churn), subjects=previous, k=k),
        "repeat_visit_rate": cell(
            _round(repeat / active if active else None), subjects=active, k=k
        ),
        "clv_historic": cell(
            _round(float(lifetime) / buyers_ever if buyers_ever else None),
            subjects=buyers_ever,
            k=k,
        ),
        "average_order_value": cell(_round(aov), subjects=buyers, k=k),
        "purchase_frequency": cell(_round(frequency), subjects=buyers, k=k),
        "expected_lifespan_years": cell(_round(lifespan), subjects=previous, k=k),
        "clv_predicted": cell(_round(predicted), subjects=min(buyers, previous), k=k),
    }
    return PeriodMetrics(a, b, cells)


def _lifespan(churn: float | None, days: int) -> float | None:
    """Expected customer lifespan in years from the period's churn rate, annualised."""
    if churn is None:
        return None
    yearly = 1 - (1 - churn) ** (365 / days)
    return MAX_LIFESPAN_YEARS if yearly <= 1 / MAX_LIFESPAN_YEARS else 1 / yearly


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
