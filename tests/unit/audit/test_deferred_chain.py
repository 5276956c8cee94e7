"""PostgreSQL: appends wait in audit_pending and a deferred trigger chains them at COMMIT
(migration 0011), formatting times and hashing as cdp.audit.chain does."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from cdp.api import Runtime
from cdp.audit import service
from cdp.audit.chain import format_time
from cdp.audit.models import AuditEntry, AuditPending
from cdp.audit.service import RequestContext
from cdp.db import Base, unit_of_work

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("db_url", ["postgresql"], indirect=True),
]


def _count(session: Session, model: type[Base]) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_time_text_in_sql_equals_format_time(runtime: Runtime) -> None:
    rng = random.Random(11)
    base = datetime(1970, 1, 1, tzinfo=UTC)
    times = [
        datetime(2026, 11, 25, 8, 0, 0, 0, tzinfo=UTC),
        datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2000, 2, 29, 0, 0, 0, 1, tzinfo=UTC),
        datetime(2026, 3, 29, 3, 30, 0, 10, tzinfo=timezone(timedelta(hours=8))),
    ]
    times += [base + timedelta(microseconds=rng.randrange(2**52)) for _ in range(500)]
    with unit_of_work(runtime.sessions) as session:
        for at in times:
            stored = session.scalar(text("SELECT audit_time_text(:at)"), {"at": at})
            assert stored == format_time(at), at


def test_entries_are_chained_at_commit_and_the_pending_table_empties(runtime: Runtime) -> None:
    with unit_of_work(runtime.sessions) as session:
        session.info["ctx"] = RequestContext(runtime.policy.version, "r1")
        before = _count(session, AuditEntry)
        service.append(session, actor="client:a", action="test.pending")
        service.append(session, actor="client:a", action="test.pending")
        # Not chained yet: no lock taken, no sequence given.
        assert _count(session, AuditPending) == 2
        assert _count(session, AuditEntry) == before
    with unit_of_work(runtime.sessions) as session:
        assert _count(session, AuditPending) == 0
        rows = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "test.pending").order_by(AuditEntry.seq)
        ).all()
        assert [r.seq for r in rows] == [before + 1, before + 2]
        assert rows[1].prev_hash == rows[0].hash and rows[0].at <= rows[1].at
        assert service.verify_chain(session).first_bad_seq is None


def test_flush_pending_chains_in_the_transaction(runtime: Runtime) -> None:
    with unit_of_work(runtime.sessions) as session:
        session.info["ctx"] = RequestContext(runtime.policy.version)
        service.append(session, actor="client:a", action="test.flushed")
        service.flush_pending(session)
        assert _count(session, AuditPending) == 0
        last = select(AuditEntry.action).order_by(AuditEntry.seq.desc()).limit(1)
        assert session.scalar(last) == "test.flushed"
        # After a flush, later appends in the transaction are chained as they are written.
        service.append(session, actor="client:a", action="test.after_flush")
        assert _count(session, AuditPending) == 0
    with unit_of_work(runtime.sessions) as session:
        assert service.verify_chain(session).first_bad_seq is None


@pytest.mark.parametrize(
    ("statement", "refusal"),
    [
        ("UPDATE audit_pending SET actor = 'client:mallory'", "append-only"),
        # PostgreSQL itself refuses while the transaction's chain triggers are pending.
        ("TRUNCATE audit_pending", "pending trigger events"),
    ],
)
def test_changing_a_pending_entry_fails_even_for_the_owner(
    runtime: Runtime, statement: str, refusal: str
) -> None:
    with pytest.raises(DBAPIError, match=refusal), unit_of_work(runtime.sessions) as session:
        session.info["ctx"] = RequestContext(runtime.policy.version)
        service.append(session, actor="client:a", action="test.changed")
        session.execute(text(statement))
    with unit_of_work(runtime.sessions) as session:
        assert session.scalar(select(func.count()).where(AuditEntry.action == "test.changed")) == 0
        # Nor with nothing pending, by a transaction of its own.
        with pytest.raises(DBAPIError, match="append-only"):
            session.execute(text(statement))


def test_a_pending_row_deleted_before_commit_is_chained_all_the_same(runtime: Runtime) -> None:
    # The trigger chains the row as it was inserted: deleting it cannot drop the entry.
    with unit_of_work(runtime.sessions) as session:
        session.info["ctx"] = RequestContext(runtime.policy.version)
        service.append(session, actor="client:a", action="test.hidden", fields=["email"])
        session.execute(text("DELETE FROM audit_pending"))
    with unit_of_work(runtime.sessions) as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "test.hidden")).one()
        assert entry.fields == ["email"]
        assert service.verify_chain(session).first_bad_seq is None
