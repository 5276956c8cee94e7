"""Monthly partitions of `event` on PostgreSQL (SQLite keeps one plain table).

`ensure` creates the partitions of the current month and the next few, at start-up and from
`cdp events partitions` (run it monthly, e.g. from cron, for servers that run for months).
A month whose rows already sit in the default partition (back-filled or future-dated events)
is moved out in the same transaction, so a partition can always be created. Retention can
later drop a whole month with one statement instead of deleting row by row.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, date, datetime

from sqlalchemy import Connection, Engine, text

log = logging.getLogger("cdp.events")
# Serialises partition creation between workers and hosts (any constant, same everywhere).
_LOCK_KEY = 0x0CD9E7E17
_NAME = re.compile(r"^event_y(\d{4})m(\d{2})$")


def _month(day: date, offset: int) -> date:
    index = day.year * 12 + day.month - 1 + offset
    return date(index // 12, index % 12 + 1, 1)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def partition_name(month: date) -> str:
    return f"event_y{month.year:04d}m{month.month:02d}"


def ensure(engine: Engine, *, months_ahead: int = 2, today: date | None = None) -> list[str]:
    """Creates the missing partitions from this month to `months_ahead` months on; returns
    the names created (none on SQLite)."""
    if engine.dialect.name != "postgresql":
        return []
    first = (today or datetime.now(UTC).date()).replace(day=1)
    created = []
    for offset in range(months_ahead + 1):
        month = _month(first, offset)
        with engine.begin() as conn:
            if _create(conn, month):
                created.append(partition_name(month))
    if created:
        log.info("event partitions created", extra={"partitions": created})
    return created


def _create(conn: Connection, month: date) -> bool:
    name = partition_name(month)
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    if conn.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar() is not None:
        return False
    low, high = month.isoformat(), _month(month, 1).isoformat()
    bounds = {"low": _midnight(month), "high": _midnight(_month(month, 1))}
    where = '"timestamp" >= :low AND "timestamp" < :high'
    # New rows of this month must not reach the default partition while it is emptied.
    conn.execute(text("LOCK TABLE event_default IN ACCESS EXCLUSIVE MODE"))
    # The partition name and bounds are made here from a date, never from input; DDL takes no
    # bind parameters.
    conn.execute(text(f"CREATE TABLE {name} (LIKE event INCLUDING DEFAULTS)"))
    moved = f"INSERT INTO {name} SELECT * FROM event_default WHERE {where}"  # noqa: S608
    conn.execute(text(moved), bounds)
    conn.execute(text(f"DELETE FROM event_default WHERE {where}"), bounds)  # noqa: S608
    conn.execute(
        text(
            f"ALTER TABLE event ATTACH PARTITION {name} FOR VALUES FROM"
            f" ('{low} 00:00:00+00') TO ('{high} 00:00:00+00')"
        )
    )
    return True


def existing(engine: Engine) -> list[str]:
    """Names of the monthly partitions, oldest first."""
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'event'::regclass"
            )
        ).scalars()
        return sorted(n for n in rows if _NAME.match(n))
