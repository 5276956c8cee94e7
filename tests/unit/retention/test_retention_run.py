"""A retention run removes exactly what is expired, a day either side of every cutoff; a dry
run's counts are the real run's; legal holds keep what the law requires; on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from tests.unit.retention.factories import OTHER, SUBJECT, remaining, seed

from cdp.api import Runtime
from cdp.audit.models import AuditEntry
from cdp.audit.service import RequestContext
from cdp.db import unit_of_work
from cdp.retention import service
from cdp.retention.models import RetentionRun

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def _run(rt: Runtime, *, dry_run: bool, now: datetime = NOW) -> dict[str, object]:
    with unit_of_work(rt.sessions) as session:
        session.info["ctx"] = RequestContext(rt.policy.version)
        record = service.run(
            session, crypto=rt.crypto, policy=rt.policy, actor="test", dry_run=dry_run, now=now
        )
        return service.as_read(record)


def _counts(report: dict[str, object]) -> list[tuple[object, ...]]:
    items = report["items"]
    assert isinstance(items, list)
    return [
        (i["table"], i["name"], i["purpose"], i["cutoff"], i["count"], i["held"]) for i in items
    ]


def test_removes_exactly_what_is_expired_and_a_dry_run_counts_the_same(
    runtime: Runtime,
) -> None:
    seeded = seed(runtime, NOW)
    before = remaining(runtime)
    for table, keys in seeded.gone.items():
        assert keys <= before[table], table

    dry = _run(runtime, dry_run=True)
    assert remaining(runtime) == before  # a dry run changes nothing
    real = _run(runtime, dry_run=False)
    assert _counts(dry) == _counts(real)
    assert dry["totals"] == real["totals"]

    after = remaining(runtime)
    for table in before:
        assert after[table] == before[table] - seeded.gone.get(table, set()), table
        assert seeded.kept.get(table, set()) <= after[table], table
    totals = real["totals"]
    assert isinstance(totals, dict)
    # Per table: what the seed put beyond each cutoff, and nothing else.
    assert totals["event"] == len(seeded.gone["event"]) == 5
    assert totals["event_message"] == len(seeded.gone["event_message"]) == 6
    assert totals["subject_daily"] == 2 and totals["anonymous_visitor"] == 1
    assert totals["verification_code"] == 1
    assert totals["feedback:anonymised"] == 2 and totals["interaction:anonymised"] == 1
    # The 400-day-old order is past its 365 days but an accounting voucher: held, reported.
    assert totals["held"] == 1
    order = next(i for i in real["items"] if i["name"] == "Order Completed")  # type: ignore[attr-defined]
    assert order["held"] == 1 and order["count"] == 1
    assert order["cutoff"] == (NOW - timedelta(days=365)).isoformat()

    # A second run finds nothing left to do.
    again = _run(runtime, dry_run=False)
    assert {k: v for k, v in again["totals"].items() if v} == {"held": 1}  # type: ignore[attr-defined]
    assert remaining(runtime) == after


def test_runs_are_stored_and_audited_without_subjects(runtime: Runtime) -> None:
    seed(runtime, NOW)
    report = _run(runtime, dry_run=True)
    with unit_of_work(runtime.sessions) as session:
        stored = session.get(RetentionRun, report["id"])
        assert stored is not None and stored.dry_run and stored.actor == "test"
        assert stored.finished_at >= stored.started_at
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "retention.run")
        ).one()
    assert entry.detail["run"] == report["id"] and entry.detail["dry_run"] is True
    assert entry.subject is None
    text = str(stored.report) + str(entry.detail)
    assert SUBJECT not in text and OTHER not in text and "sealed" not in text
    audit = report["audit"]
    assert isinstance(audit, dict)
    assert audit["keep_days"] >= 1095 and audit["action"] == "report" and audit["eligible"] == 0


def test_audit_entries_are_reported_never_deleted(runtime: Runtime) -> None:
    with unit_of_work(runtime.sessions) as session:
        before = len(session.scalars(select(AuditEntry.seq)).all())
    # Ten years on, every entry is past keep_days: counted as eligible, all kept.
    report = _run(runtime, dry_run=False, now=NOW + timedelta(days=3650))
    audit = report["audit"]
    assert isinstance(audit, dict) and audit["eligible"] == before
    with unit_of_work(runtime.sessions) as session:
        assert len(session.scalars(select(AuditEntry.seq)).all()) == before + 1
