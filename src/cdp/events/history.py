"""Reading events back (purpose-checked, PI only where the purpose allows it), violation
counters, and removing events: a subject's erasure and retention per event type."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.orm import Session

from cdp.audit import service as audit
from cdp.auth.models import Client, Source
from cdp.auth.principal import Principal
from cdp.consent import service as consent
from cdp.crypto import Crypto
from cdp.errors import CiphertextInvalid, NotFound
from cdp.events.models import (
    AnonymousVisitor,
    Event,
    EventMessage,
    PlanViolation,
    SubjectDaily,
)
from cdp.events.plan import EMPTY_PLAN, IDENTITY_CATEGORY, IDENTITY_TYPES
from cdp.events.service import EVENT_TABLE
from cdp.policy import Policy
from cdp.profiles.models import Profile


@dataclass(frozen=True, slots=True)
class EventView:
    """An event as one purpose may see it."""

    id: str
    message_id: str
    source_id: str
    type: str
    name: str | None
    timestamp: datetime
    received_at: datetime
    properties: dict[str, Any]
    context: dict[str, Any]


def list_events(
    session: Session,
    *,
    crypto: Crypto,
    policy: Policy,
    principal: Principal,
    purpose: str | None,
    subject_id: str,
    after: tuple[datetime, str] | None,
    limit: int,
) -> tuple[list[EventView], tuple[datetime, str] | None]:
    """A subject's events, newest first: only events whose plan category the purpose may
    touch, and PI properties only where their category is allowed. The read is audited."""
    decision = consent.decide(
        session, policy=policy, principal=principal, purpose=purpose, subject=subject_id
    )
    if len(subject_id) > 36 or session.get(Profile, subject_id) is None:
        raise NotFound("no such profile")
    plan = policy.tracking_plan or EMPTY_PLAN
    spec = policy.purposes[decision.purpose]
    # Sensitive categories only where the decision kept a field of theirs (separate consent).
    allowed = (set(spec.categories) - policy.sensitive_categories) | {
        policy.fields[f].category for f in decision.allowed_fields if f in policy.fields
    }
    names = [e.name for e in plan.events if e.category in allowed]
    visible = [Event.name.in_(names)] if names else []
    if IDENTITY_CATEGORY in allowed:
        visible.append(Event.type.in_(sorted(IDENTITY_TYPES)))
    if not visible:
        return [], None
    stmt = select(Event).where(Event.subject_id == subject_id, or_(*visible))
    if after is not None:
        at, event_id = after
        stmt = stmt.where(
            or_(Event.timestamp < at, and_(Event.timestamp == at, Event.id < event_id))
        )
    rows = list(
        session.scalars(stmt.order_by(Event.timestamp.desc(), Event.id.desc()).limit(limit))
    )
    keys = crypto.keys_for([subject_id]) if any(r.sealed for r in rows) else None
    opened: set[str] = set()
    views = []
    for row in rows:
        properties = dict(row.properties or {})
        event = plan.event(row.type, row.name) if row.type != "track" else None
        event = event or next((e for e in plan.events if e.name == row.name), None)
        for prop, ciphertext in (row.sealed or {}).items():
            if keys is None or event is None or event.category_of(prop) not in allowed:
                continue
            try:
                text = keys.open(subject_id, EVENT_TABLE, f"{row.id}.{prop}", ciphertext)
            except CiphertextInvalid as exc:
                raise CiphertextInvalid(
                    "a stored event property failed its integrity check; nothing was returned",
                    audit={"action": "events.integrity_error", "subject": subject_id},
                ) from exc
            properties[prop] = json.loads(text)
            opened.add(f"{row.name}.{prop}")
        views.append(
            EventView(
                id=row.id,
                message_id=row.message_id,
                source_id=row.source_id,
                type=row.type,
                name=row.name,
                timestamp=row.timestamp,
                received_at=row.received_at,
                properties=properties,
                context=dict(row.context or {}),
            )
        )
    audit.append(
        session,
        actor=principal.actor,
        action="events.read",
        subject=subject_id,
        purpose=decision.purpose,
        fields=opened,
        detail={"events": len(views)},
    )
    last = (rows[-1].timestamp, rows[-1].id) if len(rows) == limit else None
    return views, last


def list_violations(
    session: Session, *, source_id: str, after: tuple[str, str] | None, limit: int
) -> list[PlanViolation]:
    """A source's violation counters by kind and name (a source, or an API client's id for
    what it sent to the native endpoint)."""
    known = session.get(Source, source_id) if len(source_id) <= 40 else None
    if known is None and (len(source_id) > 40 or session.get(Client, source_id) is None):
        raise NotFound("no such source")
    stmt = select(PlanViolation).where(PlanViolation.source_id == source_id)
    if after is not None:
        kind, name = after
        stmt = stmt.where(
            or_(
                PlanViolation.kind > kind,
                and_(PlanViolation.kind == kind, PlanViolation.name > name),
            )
        )
    order = (PlanViolation.kind, PlanViolation.name)
    return list(session.scalars(stmt.order_by(*order).limit(limit)))


def erase_subject(session: Session, *, subject_id: str) -> int:
    """Deletes a subject's events, rollups and visitor links (for the rights domain's
    erasure; the sealed properties are already unreadable once the subject key is shredded)."""
    gone = _count(session.execute(delete(Event).where(Event.subject_id == subject_id)))
    session.execute(delete(SubjectDaily).where(SubjectDaily.subject_id == subject_id))
    session.execute(delete(AnonymousVisitor).where(AnonymousVisitor.subject_id == subject_id))
    return gone


def expire(session: Session, *, policy: Policy, now: datetime) -> dict[str, int]:
    """Deletes events older than their type's retention (PIPL art. 19), and the rollups,
    de-duplication keys and anonymous visitors older than the tracking purpose's; returns
    counts per event name ("*": unplanned or identity calls, "visitors")."""
    plan = policy.tracking_plan or EMPTY_PLAN
    purpose = policy.purposes.get(plan.purpose)
    default = purpose.retention_days if purpose else 365
    removed: dict[str, int] = {}
    planned = []
    for spec in plan.events:
        cutoff = now - timedelta(days=spec.retention_days or default)
        result = session.execute(
            delete(Event).where(Event.name == spec.name, Event.timestamp < cutoff)
        )
        removed[spec.name] = _count(result)
        planned.append(spec.name)
    cutoff = now - timedelta(days=default)
    others = session.execute(
        delete(Event).where(
            or_(Event.name.is_(None), Event.name.not_in(planned)), Event.timestamp < cutoff
        )
    )
    removed["*"] = _count(others)
    session.execute(delete(SubjectDaily).where(SubjectDaily.day < cutoff.date()))
    session.execute(delete(EventMessage).where(EventMessage.received_at < cutoff))
    removed["visitors"] = _count(
        session.execute(delete(AnonymousVisitor).where(AnonymousVisitor.last_seen < cutoff))
    )
    return removed


def _count(result: Any) -> int:
    """Rows a DELETE removed (a CursorResult's rowcount)."""
    return int(getattr(result, "rowcount", 0) or 0)
