"""Append to and read the audit chain; appends are serialised so the chain never forks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from cdp.audit.chain import GENESIS_HASH, entry_hash
from cdp.audit.models import AuditEntry
from cdp.db import utcnow

# Any constant works; it only has to be the same for every appender of this database.
_APPEND_LOCK_KEY = 0x0CD9A0D17


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Who and what the current unit of work is about; kept in `session.info["ctx"]`."""

    policy_version: str
    request_id: str | None = None
    organisation: str | None = None


def context_of(session: Session) -> RequestContext:
    ctx = session.info.get("ctx")
    if not isinstance(ctx, RequestContext):
        raise RuntimeError("session has no RequestContext; open it through cdp.db/app helpers")
    return ctx


def _lock_chain(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _APPEND_LOCK_KEY})
    # SQLite: every transaction starts with BEGIN IMMEDIATE, so writers are already serialised.


@dataclass(frozen=True, slots=True)
class Event:
    """What one audit entry records; the chain fields are added by append."""

    actor: str
    action: str
    subject: str | None = None
    purpose: str | None = None
    fields: Iterable[str] = ()
    decision: str = "allow"
    code: str | None = None
    detail: dict[str, Any] | None = None
    organisation: str | None = None


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    subject: str | None = None,
    purpose: str | None = None,
    fields: Iterable[str] = (),
    decision: str = "allow",
    code: str | None = None,
    detail: dict[str, Any] | None = None,
    organisation: str | None = None,
) -> AuditEntry:
    """Write one entry in the caller's transaction; it commits or rolls back with the change."""
    event = Event(actor, action, subject, purpose, fields, decision, code, detail, organisation)
    return append_many(session, [event])[0]


def append_many(session: Session, events: Sequence[Event]) -> list[AuditEntry]:
    """Write several entries under one lock (e.g. one per subject of a list read)."""
    if not events:
        return []
    ctx = context_of(session)
    _lock_chain(session)
    last = session.execute(
        select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
    ).first()
    seq, prev = (last[0], last[1]) if last else (0, GENESIS_HASH)
    at = utcnow()
    entries = []
    for event in events:
        seq += 1
        values: dict[str, Any] = {
            "seq": seq,
            "at": at,
            "actor": event.actor,
            "organisation": event.organisation
            if event.organisation is not None
            else ctx.organisation,
            "action": event.action,
            "subject": event.subject,
            "purpose": event.purpose,
            "fields": sorted(set(event.fields)),
            "decision": event.decision,
            "code": event.code,
            "request_id": ctx.request_id,
            "policy_version": ctx.policy_version,
            "detail": event.detail or {},
        }
        digest = entry_hash(prev, values)
        entries.append(AuditEntry(**values, prev_hash=prev, hash=digest))
        prev = digest
    session.add_all(entries)
    session.flush()
    return entries


def as_record(entry: AuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "at": entry.at,
        "actor": entry.actor,
        "organisation": entry.organisation,
        "action": entry.action,
        "subject": entry.subject,
        "purpose": entry.purpose,
        "fields": entry.fields,
        "decision": entry.decision,
        "code": entry.code,
        "request_id": entry.request_id,
        "policy_version": entry.policy_version,
        "detail": entry.detail,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


@dataclass(frozen=True, slots=True)
class ChainReport:
    checked: int
    first_bad_seq: int | None
    reason: str | None
    last_hash: str


def verify_chain(session: Session, *, batch: int = 5000) -> ChainReport:
    """Recompute every link of the stored chain; name the first sequence that does not fit."""
    prev, expected_seq, checked, after = GENESIS_HASH, 1, 0, 0
    while True:
        rows: Sequence[AuditEntry] = session.scalars(
            select(AuditEntry).where(AuditEntry.seq > after).order_by(AuditEntry.seq).limit(batch)
        ).all()
        if not rows:
            return ChainReport(checked, None, None, prev)
        for row in rows:
            if row.seq != expected_seq:
                return ChainReport(checked, expected_seq, "missing entry", prev)
            if row.prev_hash != prev:
                return ChainReport(checked, row.seq, "prev_hash does not match", prev)
            if entry_hash(prev, as_record(row)) != row.hash:
                return ChainReport(checked, row.seq, "hash does not match content", prev)
            prev, expected_seq, checked, after = row.hash, expected_seq + 1, checked + 1, row.seq


def search(
    session: Session,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    actor: str | None = None,
    subject: str | None = None,
    action: str | None = None,
    purpose: str | None = None,
    after_seq: int = 0,
    limit: int = 50,
) -> list[AuditEntry]:
    stmt = select(AuditEntry).where(AuditEntry.seq > after_seq)
    if since is not None:
        stmt = stmt.where(AuditEntry.at >= since)
    if until is not None:
        stmt = stmt.where(AuditEntry.at < until)
    for column, value in (
        (AuditEntry.actor, actor),
        (AuditEntry.subject, subject),
        (AuditEntry.action, action),
        (AuditEntry.purpose, purpose),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    return list(session.scalars(stmt.order_by(AuditEntry.seq).limit(limit)))
