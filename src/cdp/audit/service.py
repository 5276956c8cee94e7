"""Append to and read the audit chain; appends are serialised so the chain never forks."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert, select, text
from sqlalchemy.orm import Session

from cdp.audit import checkpoints as cps
from cdp.audit.chain import (
    CHAIN_FIELDS,
    EMPTY_RANGE_DIGEST,
    GENESIS_HASH,
    canonical_values,
    entry_hash,
    format_time,
)
from cdp.audit.models import AuditCheckpoint, AuditEntry, AuditPending
from cdp.db import utcnow

_ENTRY_TABLE = cast(Table, AuditEntry.__table__)
_PENDING_TABLE = cast(Table, AuditPending.__table__)
# PostgreSQL: the deferred constraint trigger that chains audit_pending rows (migration 0011).
_CHAIN_TRIGGER = "audit_pending_chain"


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
) -> None:
    """Write one entry in the caller's transaction; it commits or rolls back with the change."""
    event = Event(actor, action, subject, purpose, fields, decision, code, detail, organisation)
    append_many(session, [event])


def append_many(session: Session, events: Sequence[Event]) -> None:
    """Write several entries in the caller's transaction, chained in the order given.

    PostgreSQL: the entries go to audit_pending with every chain field after `seq` and `at`
    already encoded; a deferred trigger (migration 0011) gives them their sequence, time and
    hash at COMMIT, under the chain lock, so no writer holds that lock across a round trip.
    They are in audit_entry from then on, or earlier in this transaction after
    flush_pending(). SQLite chains them here: its writers are serialised from BEGIN IMMEDIATE.
    """
    if not events:
        return
    ctx = context_of(session)
    rows = [_values(event, ctx) for event in events]
    for values in rows:
        # canonical() is per field, so the fields after seq and at can be encoded now.
        values["tail"] = canonical_values([values[name] for name in CHAIN_FIELDS[2:]])
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        # inline(): the id is left to the server, neither fetched before (a round trip) nor
        # returned after (the application role may not SELECT audit_pending).
        conn.execute(insert(_PENDING_TABLE).inline(), rows)
        session.info["audit_pending"] = session.get_transaction()
        return
    _chain_inline(session, rows)


def flush_pending(session: Session) -> None:
    """PostgreSQL: chain this transaction's pending appends now rather than at COMMIT, so that
    a read in it sees them. The chain lock is then held until the transaction ends."""
    transaction = session.get_transaction()
    if transaction is None or session.info.get("audit_pending") is not transaction:
        return
    session.execute(text(f"SET CONSTRAINTS {_CHAIN_TRIGGER} IMMEDIATE"))
    del session.info["audit_pending"]


def _values(event: Event, ctx: RequestContext) -> dict[str, Any]:
    return {
        "actor": event.actor,
        "organisation": event.organisation if event.organisation is not None else ctx.organisation,
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


def _chain_head(session: Session) -> tuple[int, str]:
    """SQLite: sequence and hash of the last entry, read once per transaction.

    Every transaction starts with BEGIN IMMEDIATE, so writers are already serialised until they
    commit, and later appends in the same transaction continue from the cached head."""
    transaction = session.get_transaction()
    cached = session.info.get("audit_head")
    if cached is not None and cached[0] is transaction:
        return cached[1], cached[2]
    head = select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
    last = session.connection().execute(head).first()
    return (last[0], last[1]) if last else (0, GENESIS_HASH)


def _chain_inline(session: Session, rows: list[dict[str, Any]]) -> None:
    seq, prev = _chain_head(session)
    at = utcnow()
    stamp = format_time(at)
    for values in rows:
        seq += 1
        head = canonical_values((seq, stamp))
        digest = hashlib.sha256(bytes.fromhex(prev) + head + values.pop("tail")).hexdigest()
        values.update(seq=seq, at=at, prev_hash=prev, hash=digest)
        prev = digest
    session.connection().execute(insert(_ENTRY_TABLE), rows)
    session.info["audit_head"] = (session.get_transaction(), seq, prev)


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
    checkpoints: int = 0


def verify_chain(
    session: Session, *, batch: int = 5000, keys: Mapping[str, bytes] | None = None
) -> ChainReport:
    """Recompute every link of the stored chain and check every stored checkpoint against it
    (signature by a key in `keys` or the key table, hash, range digest); name the first
    sequence that does not fit."""
    flush_pending(session)
    keys = cps.public_keys(session) if keys is None else keys
    stored = _checkpoints_in_order(session, batch)
    pending = next(stored, None)
    prev, expected_seq, checked, after, covered, digest, good = GENESIS_HASH, 1, 0, 0, 0, None, 0

    def settle(seq: int, last_hash: str) -> ChainReport | None:
        # Every checkpoint ending at `seq`; the first whose range, signature or hashes differ.
        nonlocal pending, covered, digest, good
        while pending is not None and pending.seq <= seq:
            found = digest.hexdigest() if digest is not None else EMPTY_RANGE_DIGEST
            problem = (
                "checkpoint out of order"
                if pending.seq < seq
                else cps.problem_with(
                    pending, covered=covered, last_hash=last_hash, digest=found, keys=keys
                )
            )
            if problem is not None:
                return ChainReport(checked, pending.seq, problem, prev, good)
            covered, digest, good, pending = pending.seq, None, good + 1, next(stored, None)
        return None

    if (report := settle(0, GENESIS_HASH)) is not None:
        return report
    while True:
        rows: Sequence[AuditEntry] = session.scalars(
            select(AuditEntry).where(AuditEntry.seq > after).order_by(AuditEntry.seq).limit(batch)
        ).all()
        if not rows:
            if pending is not None:
                reason = f"missing entry (checkpoint at {pending.seq})"
                return ChainReport(checked, expected_seq, reason, prev, good)
            return ChainReport(checked, None, None, prev, good)
        for row in rows:
            if row.seq != expected_seq:
                return ChainReport(checked, expected_seq, "missing entry", prev, good)
            if row.prev_hash != prev:
                return ChainReport(checked, row.seq, "prev_hash does not match", prev, good)
            if entry_hash(prev, as_record(row)) != row.hash:
                return ChainReport(checked, row.seq, "hash does not match content", prev, good)
            prev, expected_seq, checked, after = row.hash, expected_seq + 1, checked + 1, row.seq
            digest = digest or hashlib.sha256()
            digest.update(bytes.fromhex(row.hash))
            if (report := settle(row.seq, row.hash)) is not None:
                return report


def _checkpoints_in_order(session: Session, batch: int) -> Iterator[AuditCheckpoint]:
    after = 0
    while True:
        rows = session.scalars(
            select(AuditCheckpoint)
            .where(AuditCheckpoint.id > after)
            .order_by(AuditCheckpoint.id)
            .limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        after = rows[-1].id


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
    flush_pending(session)
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
