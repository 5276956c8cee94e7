"""A retention run (PIPL art. 19): deletes or anonymises what has outlived its purpose.

Every class of data has one cutoff per run, from policy: an event is kept the shortest of its
tracking-plan entry's retention_days, its data class's rule in retention.yaml and its
purpose's retention_days, and longer only under a legal hold. A dry run does exactly what a
real run does inside a savepoint and rolls it back, so its counts are the real run's.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, exists, func, not_, or_, select
from sqlalchemy.orm import Session

from cdp.audit import service as audit
from cdp.audit.models import AuditEntry
from cdp.consent.models import SubjectStatus
from cdp.crypto import Crypto
from cdp.db import utcnow
from cdp.events.models import AnonymousVisitor, Event, EventMessage, SubjectDaily
from cdp.events.plan import EMPTY_PLAN
from cdp.policy import Policy
from cdp.retention import policy as rp
from cdp.retention import text as free_text
from cdp.retention.holds import hold_cutoff, legal_holds
from cdp.retention.items import DEFAULT_DAYS, UNPLANNED, Item
from cdp.retention.models import RetentionRun
from cdp.rights import erasure
from cdp.rights.models import VerificationCode

# Joins source and message ids into one key; source ids never hold it.
_SEP = "\x1f"


@dataclass(frozen=True, slots=True)
class EventCutoff:
    name: str
    category: str
    days: int
    cutoff: datetime
    hold: str | None  # legal hold id
    hold_cutoff: datetime | None


def event_cutoffs(policy: Policy, now: datetime) -> tuple[list[EventCutoff], datetime, str]:
    """The cutoff of each planned event, the cutoff of everything else, and the purpose."""
    plan = policy.tracking_plan or EMPTY_PLAN
    spec = policy.retention or rp.EMPTY
    purpose = policy.purposes.get(plan.purpose)
    default = purpose.retention_days if purpose else DEFAULT_DAYS
    holds = {name: h for h in spec.legal_holds for name in h.events}
    out = []
    for event in plan.events:
        days = min(
            event.retention_days or default,
            spec.event_days(plan.purpose, event.category) or default,
            default,
        )
        hold = holds.get(event.name)
        out.append(
            EventCutoff(
                event.name,
                event.category,
                days,
                now - timedelta(days=days),
                hold.id if hold else None,
                hold_cutoff(hold, now) if hold else None,
            )
        )
    return out, now - timedelta(days=default), plan.purpose


def apply(session: Session, *, policy: Policy, now: datetime) -> tuple[list[Item], dict[str, Any]]:
    """Removes what has expired in the caller's transaction; the items and the audit section."""
    items = _events(session, policy, now)
    items += _records(session, policy, now)
    return items, _audit_section(session, policy, now)


def _events(session: Session, policy: Policy, now: datetime) -> list[Item]:
    cutoffs, default_cutoff, purpose = event_cutoffs(policy, now)
    items: list[Item] = []
    for c in cutoffs:
        expired = and_(Event.name == c.name, Event.timestamp < c.cutoff)
        held = 0
        if c.hold_cutoff is not None and c.hold_cutoff < c.cutoff:
            held = _scalar(
                session,
                select(func.count())
                .select_from(Event)
                .where(expired, Event.timestamp >= c.hold_cutoff),
            )
            expired = and_(Event.name == c.name, Event.timestamp < c.hold_cutoff)
        count = _rows(session.execute(delete(Event).where(expired)))
        items.append(Item("event", c.category, c.name, purpose, "delete", c.cutoff, count, held))
    planned = [c.name for c in cutoffs]
    others = and_(
        or_(Event.name.is_(None), Event.name.not_in(planned)) if planned else True,
        Event.timestamp < default_cutoff,
    )
    count = _rows(session.execute(delete(Event).where(others)))
    items.append(Item("event", UNPLANNED, None, purpose, "delete", default_cutoff, count))
    # Daily rollups of each event name go with its events' window (holds keep the events,
    # which are the vouchers; the rollups derived from them are not).
    for c in cutoffs:
        gone = _rows(
            session.execute(
                delete(SubjectDaily).where(
                    SubjectDaily.name == c.name, SubjectDaily.day < c.cutoff.date()
                )
            )
        )
        items.append(Item("subject_daily", c.category, c.name, purpose, "delete", c.cutoff, gone))
    rest = SubjectDaily.day < default_cutoff.date()
    if planned:
        rest = and_(SubjectDaily.name.not_in(planned), rest)
    gone = _rows(session.execute(delete(SubjectDaily).where(rest)))
    items.append(Item("subject_daily", UNPLANNED, None, purpose, "delete", default_cutoff, gone))
    # De-duplication keys: once their event is gone and they are older than the shortest
    # event window, nothing can be a duplicate of them that is still stored.
    shortest = max([c.cutoff for c in cutoffs] + [default_cutoff])
    orphan: ColumnElement[bool]
    if session.get_bind().dialect.name == "postgresql":  # an anti-join
        orphan = not_(
            exists().where(
                Event.source_id == EventMessage.source_id,
                Event.message_id == EventMessage.message_id,
            )
        )
    else:  # SQLite indexes a one-column subquery once (a row-value one is scanned per key)
        orphan = (EventMessage.source_id + _SEP + EventMessage.message_id).not_in(
            select(Event.source_id + _SEP + Event.message_id)
        )
    gone = _rows(
        session.execute(delete(EventMessage).where(EventMessage.received_at < shortest, orphan))
    )
    items.append(Item("event_message", "dedupe", None, purpose, "delete", shortest, gone))
    return items


def _records(session: Session, policy: Policy, now: datetime) -> list[Item]:
    spec = policy.retention or rp.EMPTY
    plan = policy.tracking_plan or EMPTY_PLAN
    items: list[Item] = []
    visitors = spec.records.anonymous_visitors
    tracking = policy.purposes.get(plan.purpose)
    days = visitors.days if visitors else (tracking.retention_days if tracking else DEFAULT_DAYS)
    cutoff = now - timedelta(days=days)
    gone = _rows(
        session.execute(delete(AnonymousVisitor).where(AnonymousVisitor.last_seen < cutoff))
    )
    purpose = visitors.purpose if visitors else plan.purpose
    items.append(Item("anonymous_visitor", "device", None, purpose, "delete", cutoff, gone))
    cutoff = now - timedelta(days=spec.records.verification_codes.days_after_expiry)
    gone = _rows(
        session.execute(delete(VerificationCode).where(VerificationCode.expires_at < cutoff))
    )
    items.append(Item("verification_code", "identifier", None, None, "delete", cutoff, gone))
    items += free_text.expire(session, policy=policy, now=now)
    return items


def _audit_section(session: Session, policy: Policy, now: datetime) -> dict[str, Any]:
    """Audit entries are append-only and kept at least keep_days: reported, never deleted."""
    spec = (policy.retention or rp.EMPTY).audit
    cutoff = now - timedelta(days=spec.keep_days)
    eligible = _scalar(
        session, select(func.count()).select_from(AuditEntry).where(AuditEntry.at < cutoff)
    )
    return {
        "keep_days": spec.keep_days,
        "network_log_days": spec.network_log_days,
        "cutoff": cutoff.isoformat(),
        "eligible": eligible,
        "action": "report",
    }


def run(
    session: Session,
    *,
    crypto: Crypto,
    policy: Policy,
    actor: str,
    dry_run: bool,
    now: datetime | None = None,
) -> RetentionRun:
    """One run in the caller's transaction: removes (or, dry, only counts) what has expired,
    stores the report and audits it."""
    started = utcnow()
    now = now or started
    savepoint = session.begin_nested()
    try:
        items, audit_section = apply(session, policy=policy, now=now)
        released = _released_subjects(session, policy=policy, now=now)
    except BaseException:
        savepoint.rollback()
        raise
    if dry_run:
        savepoint.rollback()
    else:
        savepoint.commit()
        # Outside the savepoint: shredding a key cannot be rolled back, so a dry run only counts.
        for subject_id in released:
            erasure.erase_subject(
                session,
                crypto=crypto,
                policy=policy,
                actor=actor,
                subject_id=subject_id,
                reason="legal_hold_ended",
            )
    items.append(Item("profile", "identifier", None, None, "erase", now, len(released)))
    report = {
        "now": now.isoformat(),
        "items": [i.as_json() for i in items],
        "totals": totals(items),
        "audit": audit_section,
        "legal_holds": [
            {"id": h.id, "law": h.law, "events": h.events, "keep_years": h.keep_years}
            for h in (policy.retention or rp.EMPTY).legal_holds
        ],
    }
    record = RetentionRun(
        id=str(uuid.uuid4()),
        dry_run=dry_run,
        actor=actor,
        policy_version=policy.version,
        started_at=started,
        finished_at=utcnow(),
        report=report,
    )
    session.add(record)
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="retention.run",
        purpose="legal_compliance" if "legal_compliance" in policy.purposes else None,
        detail={"run": record.id, "dry_run": dry_run, "totals": report["totals"]},
    )
    return record


def _released_subjects(session: Session, *, policy: Policy, now: datetime) -> list[str]:
    """Subjects whose deletion a legal hold turned into a restriction (PIPL art. 47) and whom
    no hold keeps any more: their deletion is carried out now."""
    held = session.scalars(
        select(SubjectStatus.subject_id)
        .where(
            SubjectStatus.restricted_at.is_not(None),
            SubjectStatus.restricted_reason == erasure.LEGAL_HOLD,
        )
        .order_by(SubjectStatus.subject_id)
    ).all()
    return [
        subject_id
        for subject_id in held
        if not legal_holds(session, policy=policy, subject_id=subject_id, now=now)
    ]


def totals(items: list[Item]) -> dict[str, int]:
    """Rows removed or anonymised per table, and rows kept by legal holds."""
    out: dict[str, int] = {}
    for item in items:
        key = item.table if item.action != "anonymise" else f"{item.table}:anonymised"
        out[key] = out.get(key, 0) + item.count
        if item.held:
            out["held"] = out.get("held", 0) + item.held
    return out


def _scalar(session: Session, stmt: Any) -> int:
    return int(session.scalar(stmt) or 0)


def _rows(result: Any) -> int:
    """Rows a DELETE or UPDATE touched (a CursorResult's rowcount)."""
    return int(getattr(result, "rowcount", 0) or 0)
