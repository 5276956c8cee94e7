"""Rights SLA buckets count working days in China Standard Time, holidays and 调休 included."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, date, datetime, timedelta

from cdp.api import Runtime
from cdp.compliance.rights_sla import rights_sla
from cdp.consent.transfers import CHINA
from cdp.db import unit_of_work
from cdp.rights.models import RightsRequest

# Friday 2026-10-02 10:00 in Shanghai, inside the National Day holiday of the demo settings
# (01-07 October), with 10 October a make-up working day.
NOW = datetime(2026, 10, 2, 10, 0, tzinfo=CHINA).astimezone(UTC)


def _open(rt: Runtime, due: datetime) -> None:
    with unit_of_work(rt.sessions) as session:
        session.add(
            RightsRequest(
                id=str(uuid.uuid4()),
                subject_id=str(uuid.uuid4()),
                type="access",
                status="received",
                submitted_by="subject",
                actor="subject:test",
                details={},
                received_at=NOW - timedelta(days=3),
                due_at=due,
                extended=False,
                updated_at=NOW,
            )
        )


def test_buckets_follow_the_working_day_calendar(runtime: Runtime) -> None:
    settings = runtime.policy.settings
    assert date(2026, 10, 8) not in settings.holidays and date(2026, 10, 5) in settings.holidays
    # Three working days from 2 October: 8, 9 and 10 October (a Saturday, worked).
    for day, hour in ((2, 9), (2, 23), (9, 12), (10, 12), (12, 12)):
        _open(runtime, datetime(2026, 10, day, hour, 0, tzinfo=CHINA))
    with unit_of_work(runtime.sessions) as session:
        report = rights_sla(session, policy=runtime.policy, now=NOW)
    assert report.total.open == {"overdue": 1, "due_today": 1, "due_soon": 2, "later": 1}
    # Without the holidays the same three working days end on Wednesday 7 October.
    plain = dataclasses.replace(
        runtime.policy, settings=settings.model_copy(update={"holidays": [], "workdays": []})
    )
    with unit_of_work(runtime.sessions) as session:
        report = rights_sla(session, policy=plain, now=NOW)
    assert report.total.open == {"overdue": 1, "due_today": 1, "due_soon": 0, "later": 3}
