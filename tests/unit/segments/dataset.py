"""A small fixed dataset whose segment memberships are computed by hand in the tests.

Dates are relative to today (UTC), because windows end today; M0 is this week's Monday.
  p1 上海 gold, registered 2024-01-10: Order Completed today (60000) and yesterday (50000)
  p2 北京 silver, registered 2025-06-01: Order Completed 5 days ago (90000) and 400 days ago (20000)
  p3 广州, registered 2026-01-01: 3 x Page Viewed 10 days ago
  p4 上海: Page Viewed 200 days ago
  p5 (no traits): nothing
  p6: 10 x Page Viewed on M0 - 40, 2 x Page Viewed on M0 - 10 (activity down 80 %)
  p7: an open complaint, no events
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from cdp.events.writes import Rollup, write_rollup
from cdp.feedback.models import Feedback
from cdp.profiles.models import Profile

ORDER, PAGE = "Order Completed", "Page Viewed"
NAMES = ("p1", "p2", "p3", "p4", "p5", "p6", "p7")
TRAITS: dict[str, dict[str, Any]] = {
    "p1": {"city": "上海", "membership_level": "gold", "registered_at": "2024-01-10"},
    "p2": {"city": "北京", "membership_level": "silver", "registered_at": "2025-06-01"},
    "p3": {"city": "广州", "registered_at": "2026-01-01"},
    "p4": {"city": "上海"},
    "p5": {},
    "p6": {},
    "p7": {},
}


def ids() -> dict[str, str]:
    """Profile ids in the same order as the names, so id order is name order."""
    return {name: f"{i:08x}" + str(uuid.uuid4())[8:] for i, name in enumerate(NAMES, 1)}


def build(
    session: Session, subjects: dict[str, str] | None = None, *, create: bool = True
) -> dict[str, str]:
    """Writes the dataset (profiles unless create=False, rollups through the ingestion writer,
    one open complaint) and returns name -> profile id."""
    subjects = subjects or ids()
    now = datetime.now(UTC)
    if create:
        for name, sid in subjects.items():
            session.add(
                Profile(id=sid, plain=TRAITS[name], sealed={}, created_at=now - timedelta(days=500))
            )
        session.flush()
    today = now.date()
    monday = today - timedelta(days=today.weekday())
    noon = time(12, tzinfo=UTC)
    rollup = Rollup()

    def add(name: str, event: str, day: Any, revenue: int | None = None, times: int = 1) -> None:
        at = datetime.combine(day, noon)
        at = min(at, now)
        for _ in range(times):
            rollup.add(subjects[name], event, at, Decimal(revenue) if revenue is not None else None)

    add("p1", ORDER, today, 60000)
    add("p1", ORDER, today - timedelta(days=1), 50000)
    add("p2", ORDER, today - timedelta(days=5), 90000)
    add("p2", ORDER, today - timedelta(days=400), 20000)
    add("p3", PAGE, today - timedelta(days=10), times=3)
    add("p4", PAGE, today - timedelta(days=200))
    add("p6", PAGE, monday - timedelta(days=40), times=10)
    add("p6", PAGE, monday - timedelta(days=10), times=2)
    write_rollup(session, rollup)
    session.add(
        Feedback(
            id=str(uuid.uuid4()),
            subject_id=subjects["p7"],
            kind="complaint",
            status="open",
            purpose="customer_care",
            reopen_count=0,
            created_by="test",
            created_at=now,
            updated_at=now,
        )
    )
    session.flush()
    return subjects
