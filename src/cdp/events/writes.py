"""Set-based writes of an ingested batch: the events (COPY on PostgreSQL), the de-duplication
keys, the daily rollups, the subject summaries, anonymous visitors and violation counters, one
statement each.

Every statement sorts its rows by key, so concurrent batches take row locks in one order and
cannot deadlock; every upsert is INSERT ... ON CONFLICT, never a read-then-write.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any, cast

from sqlalchemy import Table, func, insert, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cdp.db import execute_rows
from cdp.events.models import (
    AnonymousVisitor,
    Event,
    EventMessage,
    PlanViolation,
    SubjectDaily,
)
from cdp.events.plan import IDENTITY_TYPES, REVENUE
from cdp.segments.summary import write_summary

CENT = Decimal("0.01")


# Core tables, not ORM entities: the ORM's bulk insert splits a batch into one statement per
# run of rows whose None values differ; Core sends every row in one executemany.
EVENTS = cast(Table, Event.__table__)
MESSAGES = cast(Table, EventMessage.__table__)
DAILY = cast(Table, SubjectDaily.__table__)
VISITORS = cast(Table, AnonymousVisitor.__table__)
VIOLATIONS = cast(Table, PlanViolation.__table__)


def dialect_of(session: Session) -> str:
    return session.get_bind().dialect.name


def _insert(dialect: str, table: Table) -> Any:
    """The dialect's INSERT, which has ON CONFLICT (PostgreSQL and SQLite alike)."""
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


# The upserts are built once per dialect: SQLAlchemy then compiles each once, and on
# PostgreSQL db.execute_rows sends the same text every time, which the server prepares.
@cache
def _claim(dialect: str) -> Any:
    return (
        _insert(dialect, MESSAGES)
        .on_conflict_do_nothing(index_elements=["source_id", "message_id"])
        .returning(MESSAGES.c.message_id)
    )


@cache
def _daily(dialect: str) -> Any:
    stmt = _insert(dialect, DAILY)
    return stmt.on_conflict_do_update(
        index_elements=["subject_id", "day", "name"],
        set_={
            "count": DAILY.c.count + stmt.excluded.count,
            "revenue": DAILY.c.revenue + stmt.excluded.revenue,
        },
    )


@cache
def _visitors(dialect: str) -> Any:
    stmt = _insert(dialect, VISITORS)
    return stmt.on_conflict_do_update(
        index_elements=["source_id", "anonymous_key"],
        set_={
            "subject_id": func.coalesce(stmt.excluded.subject_id, VISITORS.c.subject_id),
            "consent": func.coalesce(stmt.excluded.consent, VISITORS.c.consent),
            "last_seen": stmt.excluded.last_seen,
        },
    )


@cache
def _violations(dialect: str) -> Any:
    stmt = _insert(dialect, VIOLATIONS)
    return stmt.on_conflict_do_update(
        index_elements=["source_id", "kind", "name"],
        set_={
            "count": VIOLATIONS.c.count + stmt.excluded.count,
            "last_seen": stmt.excluded.last_seen,
        },
    )


def claim_messages(
    session: Session, *, source_id: str, message_ids: Iterable[str], received_at: datetime
) -> set[str]:
    """Inserts the message ids not seen before from this source and returns those: a retry,
    even one racing on another connection, finds the key taken and gets nothing back."""
    ids = sorted(set(message_ids))
    if not ids:
        return set()
    rows = [{"source_id": source_id, "message_id": m, "received_at": received_at} for m in ids]
    return set(execute_rows(session, _claim(dialect_of(session)), rows).scalars())


@dataclass
class Rollup:
    """What one batch adds to subject_daily and subject_summary."""

    daily: dict[tuple[str, date, str], list[Any]] = field(default_factory=dict)
    activity: dict[str, list[Any]] = field(default_factory=dict)
    # Events that carried revenue, per subject and day (segments' subject_summary orders).
    purchases: Counter[tuple[str, date]] = field(default_factory=Counter)

    def add(self, subject_id: str, name: str, at: datetime, revenue: Decimal | None) -> None:
        key = (subject_id, at.date(), name)
        cell = self.daily.setdefault(key, [0, Decimal(0)])
        cell[0] += 1
        if revenue is not None:
            cell[1] += revenue
            self.purchases[(subject_id, at.date())] += 1
        seen = self.activity.setdefault(subject_id, [at, at, 0])
        seen[0], seen[1], seen[2] = min(seen[0], at), max(seen[1], at), seen[2] + 1


def revenue_of(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return Decimal(str(value)).quantize(CENT)


def write_rollup(session: Session, rollup: Rollup) -> None:
    """The daily rollups, then the per-subject summary (first/last seen, rings) they feed."""
    if rollup.daily:
        rows = [
            {"subject_id": s, "day": d, "name": n, "count": c, "revenue": r}
            for (s, d, n), (c, r) in sorted(rollup.daily.items())
        ]
        execute_rows(session, _daily(dialect_of(session)), rows)
    write_summary(session, rollup)


@dataclass(frozen=True, slots=True)
class Visitor:
    """A visitor as stored before this batch."""

    subject_id: str | None
    consent: dict[str, bool] | None
    last_seen: datetime


# A visitor's last_seen is refreshed at most this often: most batches then change nothing.
LAST_SEEN_STEP = timedelta(hours=1)


@dataclass(slots=True)
class VisitorUpdate:
    """A visitor seen in this batch: a link to a subject and its latest consent choices."""

    subject_id: str | None = None
    consent: dict[str, bool] | None = None
    stored: bool = False


def write_visitors(
    session: Session,
    *,
    visitors: dict[tuple[str, str], VisitorUpdate],
    known: dict[tuple[str, str], Visitor],
    at: datetime,
) -> None:
    """Upserts visitors with a stored message; for the others, only records a consent change
    of a visitor already known (a withdrawal must stick even though nothing was stored).
    A known visitor whose link and consent did not change is written once an hour at most."""
    rows = []
    for key, change in sorted(visitors.items()):
        if not change.stored and (key not in known or change.consent is None):
            continue
        was = known.get(key)
        if (
            was is not None
            and change.subject_id in (None, was.subject_id)
            and change.consent in (None, was.consent)
            and was.last_seen > at - LAST_SEEN_STEP
        ):
            continue
        rows.append(
            {
                "source_id": key[0],
                "anonymous_key": key[1],
                "subject_id": change.subject_id,
                "consent": change.consent,
                "first_seen": at,
                "last_seen": at,
            }
        )
    if rows:
        execute_rows(session, _visitors(dialect_of(session)), rows)


def write_violations(
    session: Session, *, tally: Counter[tuple[str, str, str]], at: datetime
) -> None:
    if not tally:
        return
    rows = [
        {
            "source_id": source_id,
            "kind": kind,
            "name": name,
            "count": n,
            "first_seen": at,
            "last_seen": at,
        }
        for (source_id, kind, name), n in sorted(tally.items())
    ]
    execute_rows(session, _violations(dialect_of(session)), rows)


_COLUMNS = (
    "id",
    "timestamp",
    "source_id",
    "message_id",
    "subject_id",
    "anonymous_key",
    "type",
    "name",
    "received_at",
    "properties",
    "sealed",
    "context",
)
_JSON_COLUMNS = frozenset({"properties", "sealed", "context"})
_QUOTED = ", ".join('"' + c + '"' for c in _COLUMNS)
_COPY = f"COPY event ({_QUOTED}) FROM STDIN"


def insert_events(session: Session, rows: list[dict[str, Any]]) -> None:
    """One statement for the batch: COPY on PostgreSQL (a fraction of the per-row cost of an
    INSERT), else a Core executemany (the ORM's bulk insert would split rows whose None values
    differ, identified and anonymous, into one statement each)."""
    if dialect_of(session) != "postgresql":
        session.connection().execute(insert(EVENTS), rows)
        return
    conn = session.connection().connection.driver_connection
    assert conn is not None
    with conn.cursor() as cursor, cursor.copy(_COPY) as copy:
        for row in rows:
            copy.write_row(
                tuple(
                    json.dumps(row[c], ensure_ascii=False) if c in _JSON_COLUMNS else row[c]
                    for c in _COLUMNS
                )
            )


def backfill(
    session: Session, source_id: str, anon_key: str, subject_id: str, rollup: Rollup
) -> None:
    """A visitor just linked to a subject: its anonymous events become the subject's (only
    the rows this transaction changed are rolled up, so a racing link cannot count twice)."""
    changed = session.execute(
        update(Event)
        .where(
            Event.source_id == source_id,
            Event.anonymous_key == anon_key,
            Event.subject_id.is_(None),
        )
        .values(subject_id=subject_id)
        .returning(Event.type, Event.name, Event.timestamp, Event.properties)
        .execution_options(synchronize_session=False)
    )
    for kind, name, at, properties in changed:
        if kind not in IDENTITY_TYPES and name:
            rollup.add(subject_id, name, at, revenue_of((properties or {}).get(REVENUE)))
