"""A due time inside the policy's quiet hours moves to their end; others stay."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone

import pytest

from cdp.followups.eligibility import outside_quiet_hours
from cdp.policy.model import QuietHours

SHANGHAI = timezone(timedelta(hours=8))
NIGHT = QuietHours(start=time(21, 0), end=time(9, 0), timezone="Asia/Shanghai")
LUNCH = QuietHours(start=time(12, 0), end=time(14, 0), timezone="Asia/Shanghai")


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=SHANGHAI)


@pytest.mark.parametrize(
    ("due", "expected"),
    [
        (at(1, 22, 30), at(2, 9)),  # late evening: next morning
        (at(2, 3, 15), at(2, 9)),  # small hours: this morning
        (at(1, 21, 0), at(2, 9)),  # the window starts at 21:00 sharp
        (at(2, 9, 0), at(2, 9)),  # and ends at 09:00 sharp
        (at(2, 8, 59), at(2, 9)),
        (at(2, 12, 0), at(2, 12)),  # daytime: unchanged
        (at(2, 20, 59), at(2, 20, 59)),
    ],
)
def test_overnight_window(due: datetime, expected: datetime) -> None:
    moved = outside_quiet_hours(due.astimezone(UTC), NIGHT)
    assert moved == expected and moved.tzinfo is not None


def test_daytime_window_and_none() -> None:
    assert outside_quiet_hours(at(2, 12, 30), LUNCH) == at(2, 14)
    assert outside_quiet_hours(at(2, 14, 0), LUNCH) == at(2, 14)
    assert outside_quiet_hours(at(2, 11, 0), LUNCH) == at(2, 11)
    assert outside_quiet_hours(at(1, 23), None) == at(1, 23)


def test_policy_refuses_bad_quiet_hours() -> None:
    with pytest.raises(ValueError, match="time zone"):
        QuietHours(start=time(21), end=time(9), timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="different"):
        QuietHours(start=time(9), end=time(9))
