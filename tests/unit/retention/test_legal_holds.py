"""legal_holds(): a hold applies while the subject has held data within the hold period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.unit.retention.factories import OTHER, SUBJECT, seed

from cdp.api import Runtime
from cdp.db import unit_of_work
from cdp.retention.holds import add_years
from cdp.retention.service import LegalHold, legal_holds

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def test_orders_within_thirty_years_hold_the_subject(runtime: Runtime) -> None:
    seed(runtime, NOW)
    with unit_of_work(runtime.sessions) as session:
        held = legal_holds(session, policy=runtime.policy, subject_id=SUBJECT, now=NOW)
        none = legal_holds(session, policy=runtime.policy, subject_id=OTHER, now=NOW)
        # Thirty years after the newest order (10 days before NOW) the hold is gone.
        later = NOW + timedelta(days=30 * 366)
        expired = legal_holds(session, policy=runtime.policy, subject_id=SUBJECT, now=later)
    newest = NOW - timedelta(days=10)
    assert held == [
        LegalHold(
            id="accounting_vouchers",
            reason=held[0].reason,
            data=["event:Order Completed"],
            until=add_years(newest, 30),
        )
    ]
    assert "statutory" in held[0].reason
    assert none == [] and expired == []


def test_without_retention_policy_nothing_is_held(runtime: Runtime) -> None:
    import dataclasses

    policy = dataclasses.replace(runtime.policy, retention=None)
    seed(runtime, NOW)
    with unit_of_work(runtime.sessions) as session:
        assert legal_holds(session, policy=policy, subject_id=SUBJECT, now=NOW) == []


def test_add_years_handles_leap_days() -> None:
    leap = datetime(2024, 2, 29, tzinfo=UTC)
    assert add_years(leap, 30) == datetime(2054, 2, 28, tzinfo=UTC)
    assert add_years(leap, 4) == leap.replace(year=2028)
