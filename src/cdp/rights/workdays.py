"""Working days in mainland China: weekends off, public holidays off, make-up working days
(调休) on, as listed in policies/settings.yaml."""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, timedelta


def is_working_day(day: date, *, holidays: Collection[date], workdays: Collection[date]) -> bool:
    if day in workdays:
        return True
    return day.weekday() < 5 and day not in holidays


def add_working_days(
    start: date, n: int, *, holidays: Collection[date], workdays: Collection[date]
) -> date:
    """The n-th working day after start (start itself is not counted); start when n is 0."""
    if n < 0:
        raise ValueError("n must not be negative")
    day, left = start, n
    hol, work = frozenset(holidays), frozenset(workdays)
    while left:
        day += timedelta(days=1)
        if is_working_day(day, holidays=hol, workdays=work):
            left -= 1
    return day


def working_days_between(
    start: date, end: date, *, holidays: Collection[date], workdays: Collection[date]
) -> int:
    """Working days after start up to and including end (0 when end is not after start)."""
    hol, work = frozenset(holidays), frozenset(workdays)
    count, day = 0, start
    while day < end:
        day += timedelta(days=1)
        count += is_working_day(day, holidays=hol, workdays=work)
    return count
