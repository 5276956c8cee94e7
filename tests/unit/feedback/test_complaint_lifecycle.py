"""The complaint lifecycle as a table: every pair of statuses, allowed or 409."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cdp.errors import InvalidTransition
from cdp.feedback.models import STATUSES, Feedback
from cdp.feedback.service import TRANSITIONS, _transition

ALLOWED = {
    ("open", "in_progress"),
    ("in_progress", "resolved"),
    ("resolved", "closed"),
    ("resolved", "open"),
    ("closed", "open"),
}


def complaint(status: str) -> Feedback:
    now = datetime(2026, 11, 25, tzinfo=UTC)
    return Feedback(
        kind="complaint", status=status, reopen_count=0, created_at=now, resolved_at=now
    )


@pytest.mark.parametrize("current", STATUSES)
@pytest.mark.parametrize("target", STATUSES)
def test_every_transition(current: str, target: str) -> None:
    row = complaint(current)
    if current == target:
        _transition(row, target)  # no change, no error
        assert row.status == current
    elif (current, target) in ALLOWED:
        _transition(row, target)
        assert row.status == target
    else:
        with pytest.raises(InvalidTransition):
            _transition(row, target)
        assert row.status == current


def test_table_matches_the_documented_lifecycle() -> None:
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == ALLOWED


def test_reopen_counts_and_clears_resolution_times() -> None:
    row = complaint("closed")
    _transition(row, "open")
    assert row.reopen_count == 1 and row.resolved_at is None and row.closed_at is None
