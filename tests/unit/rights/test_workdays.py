"""Working days in the 2026 China calendar of policies/settings.yaml."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from cdp.policy import load_policy
from cdp.rights.service import due_at
from cdp.rights.workdays import add_working_days, working_days_between

POLICY = load_policy(Path(__file__).resolve().parents[3] / "policies")
CAL = {"holidays": POLICY.settings.holidays, "workdays": POLICY.settings.workdays}


def test_weekends_are_skipped() -> None:
    # Friday 2026-11-20 + 1 working day is Monday the 23rd.
    assert add_working_days(date(2026, 11, 20), 1, holidays=[], workdays=[]) == date(2026, 11, 23)
    assert add_working_days(date(2026, 11, 25), 15, holidays=[], workdays=[]) == date(2026, 12, 16)
    assert add_working_days(date(2026, 11, 25), 0, holidays=[], workdays=[]) == date(2026, 11, 25)


def test_national_day_holidays_and_make_up_days() -> None:
    # Tue 29 Sep + 1: Wed 30 Sep; + 2: 1-7 Oct are off, Sat 10 Oct is a make-up working day.
    assert add_working_days(date(2026, 9, 29), 1, **CAL) == date(2026, 9, 30)
    assert add_working_days(date(2026, 9, 29), 2, **CAL) == date(2026, 10, 8)
    assert add_working_days(date(2026, 9, 29), 4, **CAL) == date(2026, 10, 10)
    # Sun 20 Sep is worked: Fri 18 Sep + 1 is that Sunday.
    assert add_working_days(date(2026, 9, 18), 1, **CAL) == date(2026, 9, 20)


def test_spring_festival() -> None:
    # Fri 13 Feb + 1 is the make-up Saturday 14 Feb; + 2 skips 15-23 Feb to Tue 24 Feb.
    assert add_working_days(date(2026, 2, 13), 1, **CAL) == date(2026, 2, 14)
    assert add_working_days(date(2026, 2, 13), 2, **CAL) == date(2026, 2, 24)
    assert working_days_between(date(2026, 2, 13), date(2026, 2, 24), **CAL) == 2


def test_due_date_is_the_end_of_the_day_in_china() -> None:
    # Received Wednesday 25 Nov 2026 10:00 China time: 15 working days is Wed 16 Dec.
    received = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
    assert due_at(POLICY, received) == datetime(2026, 12, 16, 15, 59, 59, tzinfo=UTC)
    # Received late on the 25th in UTC is already the 26th in China.
    late = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
    assert due_at(POLICY, late) == datetime(2026, 12, 17, 15, 59, 59, tzinfo=UTC)


def test_negative_days_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        add_working_days(date(2026, 1, 1), -1, holidays=[], workdays=[])


def test_a_day_both_holiday_and_workday_is_refused() -> None:
    from pydantic import ValidationError

    from cdp.policy.model import PolicySettings

    with pytest.raises(ValidationError, match="holiday and as a workday"):
        PolicySettings(holidays=[date(2026, 1, 4)], workdays=[date(2026, 1, 4)])
