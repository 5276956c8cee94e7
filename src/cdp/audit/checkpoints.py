"""Signed checkpoints over the audit chain: one every N entries and one every M minutes, the
latter also when nothing was appended, so that a silent period is attested too.

A checkpoint is only signed over a range that is complete and linked: entries from_seq..seq
are contiguous and each one's prev_hash is the hash before it (the first one's, the previous
checkpoint's hash). Contents are not re-hashed here: the checkpoint signs the stored hashes,
which commit to the contents as they were written, and every verifier recomputes them.
Count checkpoints land on exact multiples of N (a backlog is split into N-entry ranges), so
no range is longer than N and a filtered export carries at most N hashes per range it touches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Row, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from cdp.audit.chain import EMPTY_RANGE_DIGEST, GENESIS_HASH, checkpoint_message
from cdp.audit.models import AuditCheckpoint, AuditEntry, AuditKey
from cdp.audit.signing import ALGORITHM, Signer, public_pem, verify_signature
from cdp.db import unit_of_work, utcnow
from cdp.errors import AuditChainBroken

# Serialises checkpoint writers (several workers run the schedule); appends do not wait on it.
_CHECKPOINT_LOCK_KEY = 0x0CD9A0D18
# Checkpoints signed per transaction when catching up on a backlog.
_PER_TRANSACTION = 100
_READ_BATCH = 5000


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a checkpoint is due: N entries since the last one, or M minutes since it."""

    every_entries: int = 1000
    every: timedelta = timedelta(minutes=60)


def _lock(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CHECKPOINT_LOCK_KEY})
    # SQLite: every transaction starts with BEGIN IMMEDIATE, so writers are already serialised.


def latest(session: Session) -> AuditCheckpoint | None:
    return session.scalars(
        select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1)
    ).first()


def _links(session: Session, first: int, last: int) -> Iterator[Sequence[Row[int, str, str]]]:
    """seq, prev_hash and hash of entries first..last in sequence order, in batches."""
    after = first - 1
    while after < last:
        rows = session.execute(
            select(AuditEntry.seq, AuditEntry.prev_hash, AuditEntry.hash)
            .where(AuditEntry.seq > after, AuditEntry.seq <= last)
            .order_by(AuditEntry.seq)
            .limit(_READ_BATCH)
        ).all()
        if not rows:
            return
        yield rows
        after = rows[-1].seq


def _linked_range(session: Session, first: int, last: int, prev_hash: str) -> tuple[str, str]:
    """Hash of entry `last` and the range digest of first..last, after checking that the
    range is complete and each entry links to the one before (the first to `prev_hash`)."""
    digest, expected = hashlib.sha256(), first
    for rows in _links(session, first, last):
        for row in rows:
            if row.seq != expected:
                raise AuditChainBroken(expected, "missing entry")
            if row.prev_hash != prev_hash:
                raise AuditChainBroken(row.seq, "prev_hash does not match")
            digest.update(bytes.fromhex(row.hash))
            prev_hash, expected = row.hash, expected + 1
    if expected != last + 1:
        raise AuditChainBroken(expected, "missing entry")
    return prev_hash, digest.hexdigest()


def _register_key(session: Session, signer: Signer, now: datetime) -> None:
    if session.get(AuditKey, signer.key_id) is None:
        session.add(
            AuditKey(
                key_id=signer.key_id,
                algorithm=ALGORITHM,
                public_key=signer.public_raw.hex(),
                created_at=now,
            )
        )
        session.flush()


def _sign(
    session: Session,
    signer: Signer,
    *,
    covered: tuple[int, str],
    seq: int,
    now: datetime,
) -> AuditCheckpoint:
    covered_seq, covered_hash = covered
    if seq > covered_seq:
        last_hash, digest = _linked_range(session, covered_seq + 1, seq, covered_hash)
    else:
        last_hash, digest = covered_hash, EMPTY_RANGE_DIGEST
    _register_key(session, signer, now)
    message = checkpoint_message(
        from_seq=covered_seq + 1,
        seq=seq,
        last_hash=last_hash,
        digest=digest,
        at=now,
        key_id=signer.key_id,
    )
    checkpoint = AuditCheckpoint(
        from_seq=covered_seq + 1,
        seq=seq,
        hash=last_hash,
        range_digest=digest,
        at=now,
        key_id=signer.key_id,
        signature=signer.sign(message),
    )
    session.add(checkpoint)
    session.flush()
    return checkpoint


def create_due(
    session: Session,
    *,
    signer: Signer,
    schedule: Schedule,
    now: datetime | None = None,
    force: bool = False,
    limit: int = _PER_TRANSACTION,
) -> list[AuditCheckpoint]:
    """Sign the checkpoints that are due (at most `limit`); `force` signs one at the head now."""
    now = now or utcnow()
    _lock(session)
    last = latest(session)
    covered = (last.seq, last.hash) if last else (0, GENESIS_HASH)
    head = session.scalar(select(func.max(AuditEntry.seq))) or 0
    if head < covered[0]:
        raise AuditChainBroken(head + 1, f"entries up to {covered[0]} were checkpointed")
    made: list[AuditCheckpoint] = []
    while head - covered[0] >= schedule.every_entries and len(made) < limit:
        target = covered[0] + schedule.every_entries
        made.append(_sign(session, signer, covered=covered, seq=target, now=now))
        covered = (made[-1].seq, made[-1].hash)
    if len(made) == limit or (made and covered[0] == head):
        return made
    since = made[-1].at if made else last.at if last else _first_entry_time(session)
    if force or (since is not None and now - since >= schedule.every):
        made.append(_sign(session, signer, covered=covered, seq=head, now=now))
    return made


def _first_entry_time(session: Session) -> datetime | None:
    return session.scalar(select(AuditEntry.at).order_by(AuditEntry.seq).limit(1))


def run_due(
    sessions: sessionmaker[Session],
    *,
    signer: Signer,
    schedule: Schedule,
    now: datetime | None = None,
    force: bool = False,
) -> list[AuditCheckpoint]:
    """create_due in as many transactions as a backlog needs, so no lock is held for long."""
    made: list[AuditCheckpoint] = []
    while True:
        with unit_of_work(sessions) as session:
            # force acts in the last transaction, once the backlog is signed
            batch = create_due(session, signer=signer, schedule=schedule, now=now, force=force)
        made += batch
        if len(batch) < _PER_TRANSACTION:
            return made


def public_keys(session: Session, signer: Signer | None = None) -> dict[str, bytes]:
    """Raw public keys by key id: every key that signed a checkpoint, and the current one."""
    keys = {k.key_id: bytes.fromhex(k.public_key) for k in session.scalars(select(AuditKey))}
    if signer is not None:
        keys[signer.key_id] = signer.public_raw
    return keys


def list_checkpoints(
    session: Session, *, after_id: int = 0, limit: int = 50
) -> list[AuditCheckpoint]:
    return list(
        session.scalars(
            select(AuditCheckpoint)
            .where(AuditCheckpoint.id > after_id)
            .order_by(AuditCheckpoint.id)
            .limit(limit)
        )
    )


@dataclass(frozen=True, slots=True)
class PublishedKey:
    key_id: str
    algorithm: str
    public_key: str  # raw, hex
    public_key_pem: str
    created_at: datetime | None  # first checkpoint signed with it; None if none yet
    current: bool


def published_keys(session: Session, signer: Signer) -> list[PublishedKey]:
    """Every key that signed a checkpoint, oldest first, and the current one."""
    keys = [
        PublishedKey(
            key.key_id,
            key.algorithm,
            key.public_key,
            public_pem(bytes.fromhex(key.public_key)),
            key.created_at,
            key.key_id == signer.key_id,
        )
        for key in session.scalars(select(AuditKey).order_by(AuditKey.created_at))
    ]
    if all(not key.current for key in keys):
        raw = signer.public_raw
        keys.append(PublishedKey(signer.key_id, ALGORITHM, raw.hex(), public_pem(raw), None, True))
    return keys


def problem_with(
    checkpoint: AuditCheckpoint,
    *,
    covered: int,
    last_hash: str,
    digest: str,
    keys: Mapping[str, bytes],
) -> str | None:
    """Why a stored checkpoint does not fit the chain read so far (None when it does)."""
    if checkpoint.from_seq != covered + 1:
        return "checkpoint range does not follow the previous checkpoint"
    key = keys.get(checkpoint.key_id)
    if key is None:
        return f"checkpoint signed by unknown key {checkpoint.key_id}"
    message = checkpoint_message(
        from_seq=checkpoint.from_seq,
        seq=checkpoint.seq,
        last_hash=checkpoint.hash,
        digest=checkpoint.range_digest,
        at=checkpoint.at,
        key_id=checkpoint.key_id,
    )
    if not verify_signature(key, checkpoint.signature, message):
        return "checkpoint signature invalid"
    if checkpoint.hash != last_hash:
        return "checkpoint hash does not match the entry"
    if checkpoint.range_digest != digest:
        return "checkpoint range digest does not match the entries"
    return None
