"""Rows on both sides of every retention cutoff, written straight to the tables."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cdp.api import Runtime
from cdp.audit.service import RequestContext
from cdp.db import unit_of_work
from cdp.events.models import AnonymousVisitor, Event, EventMessage, SubjectDaily
from cdp.feedback.models import Feedback
from cdp.followups.models import Interaction
from cdp.rights.models import VerificationCode

SUBJECT = "11111111-1111-4111-8111-111111111111"
OTHER = "22222222-2222-4222-8222-222222222222"
SOURCE = "src-test"


@dataclass
class Seeded:
    """Which rows should go (expired) and which should stay, by table and key."""

    gone: dict[str, set[str]] = field(default_factory=dict)
    kept: dict[str, set[str]] = field(default_factory=dict)

    def add(self, table: str, key: str, *, expired: bool) -> None:
        (self.gone if expired else self.kept).setdefault(table, set()).add(key)


def _event(
    session: Session,
    seeded: Seeded,
    key: str,
    name: str | None,
    at: datetime,
    *,
    expired: bool,
    subject: str | None = SUBJECT,
    kind: str = "track",
    message: bool = True,
) -> None:
    session.add(
        Event(
            id=uuid.uuid4().hex,
            timestamp=at,
            source_id=SOURCE,
            message_id=key,
            subject_id=subject,
            anonymous_key=None,
            type=kind,
            name=name,
            received_at=at,
            properties={},
            sealed={},
            context={},
        )
    )
    if message:
        session.add(EventMessage(source_id=SOURCE, message_id=key, received_at=at))
        seeded.add("event_message", key, expired=expired)
    seeded.add("event", key, expired=expired)


def seed(rt: Runtime, now: datetime) -> Seeded:
    """Rows a day either side of each cutoff of policies/ (retention.yaml, tracking plan)."""
    days = lambda n: now - timedelta(days=n)  # noqa: E731
    s = Seeded()
    with unit_of_work(rt.sessions) as session:
        session.info["ctx"] = RequestContext(rt.policy.version)
        # Product Viewed (behaviour): 180 days.
        _event(session, s, "pv-old", "Product Viewed", days(181), expired=True)
        _event(session, s, "pv-new", "Product Viewed", days(179), expired=False)
        # Page Viewed: 90 days (the plan entry's own retention is shorter than its class).
        _event(session, s, "page-old", "Page Viewed", days(91), expired=True, kind="page")
        _event(session, s, "page-new", "Page Viewed", days(89), expired=False, kind="page")
        # Order Completed (transaction, 365 days) under the 30-year accounting hold.
        _event(session, s, "order-held", "Order Completed", days(400), expired=False)
        _event(session, s, "order-new", "Order Completed", days(10), expired=False)
        _event(session, s, "order-ancient", "Order Completed", days(31 * 366), expired=True)
        # Unplanned and identity calls: the tracking purpose's 365 days.
        _event(session, s, "legacy-old", "Legacy Thing", days(366), expired=True)
        _event(session, s, "legacy-new", "Legacy Thing", days(364), expired=False)
        _event(session, s, "ident-old", None, days(366), expired=True, kind="identify")
        # De-duplication keys of events that were never stored (dropped as unplanned).
        for key, age, expired in (("dup-old", 91, True), ("dup-new", 89, False)):
            session.add(EventMessage(source_id=SOURCE, message_id=key, received_at=days(age)))
            s.add("event_message", key, expired=expired)
        # Rollups go with their event name's window.
        for name, age, expired in (
            ("Product Viewed", 182, True),
            ("Product Viewed", 178, False),
            ("Order Completed", 366, True),
            ("Order Completed", 364, False),
        ):
            day = days(age).date()
            session.add(
                SubjectDaily(
                    subject_id=SUBJECT, day=day, name=name, count=1, revenue=Decimal("9.90")
                )
            )
            s.add("subject_daily", f"{name}@{day.isoformat()}", expired=expired)
        # Anonymous visitors: 180 days since last seen.
        for key, age, expired in (("a" * 64, 181, True), ("b" * 64, 179, False)):
            session.add(
                AnonymousVisitor(
                    source_id=SOURCE,
                    anonymous_key=key,
                    subject_id=None,
                    consent=None,
                    first_seen=days(age + 5),
                    last_seen=days(age),
                )
            )
            s.add("anonymous_visitor", key, expired=expired)
        # Verification codes: one day after they expire.
        for key, age, expired in (("code-old", 1.5, True), ("code-new", 0.5, False)):
            session.add(
                VerificationCode(
                    id=str(uuid.uuid4()),
                    kind=key,
                    identifier_index="c" * 64,
                    subject_id=None,
                    code_hash="d" * 64,
                    attempts=0,
                    created_at=days(age) - timedelta(minutes=10),
                    expires_at=days(age),
                )
            )
            s.add("verification_code", key, expired=expired)
        # Feedback text: customer_care 730 days (anonymised), analytics its purpose's 365.
        for key, purpose, age, expired in (
            ("fb-old", "customer_care", 731, True),
            ("fb-new", "customer_care", 729, False),
            ("fb-analytics-old", "analytics", 366, True),
            ("fb-analytics-new", "analytics", 364, False),
        ):
            session.add(
                Feedback(
                    id=str(uuid.uuid4()),
                    subject_id=SUBJECT,
                    kind="complaint",
                    status="closed",
                    purpose=purpose,
                    topic=key,
                    csat=4,
                    comment_sealed="sealed-comment",
                    resolution_sealed="sealed-resolution",
                    reopen_count=0,
                    created_by="client:test",
                    created_at=days(age),
                    updated_at=days(age),
                )
            )
            s.add("feedback", key, expired=expired)
        # Interaction notes: customer_care 730 days.
        for key, age, expired in (("visit", 731, True), ("phone", 729, False)):
            session.add(
                Interaction(
                    subject_id=OTHER,
                    purpose="customer_care",
                    channel=key,
                    outcome="reached",
                    notes_sealed="sealed-notes",
                    next_step_sealed=None,
                    actor="client:test",
                    at=days(age),
                )
            )
            s.add("interaction", key, expired=expired)
    return s


def remaining(rt: Runtime) -> dict[str, set[str]]:
    """What each table still holds (free text: rows whose sealed text is still there)."""
    with unit_of_work(rt.sessions) as session:
        return {
            "event": set(session.scalars(select(Event.message_id))),
            "event_message": set(session.scalars(select(EventMessage.message_id))),
            "subject_daily": {
                f"{r.name}@{r.day.isoformat()}" for r in session.scalars(select(SubjectDaily))
            },
            "anonymous_visitor": set(session.scalars(select(AnonymousVisitor.anonymous_key))),
            "verification_code": set(session.scalars(select(VerificationCode.kind))),
            "feedback": set(
                session.scalars(select(Feedback.topic).where(Feedback.comment_sealed.is_not(None)))
            ),
            "interaction": set(
                session.scalars(
                    select(Interaction.channel).where(Interaction.notes_sealed.is_not(None))
                )
            ),
        }


def count_rows(rt: Runtime, model: type[object]) -> int:
    with unit_of_work(rt.sessions) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)
