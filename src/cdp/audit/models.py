"""The audit tables: entries chained to the one before, appends waiting for their transaction's
commit, signed checkpoints, their keys."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from cdp.db import Base, UTCDateTime


class AuditEntry(Base):
    """One audited action; holds pseudonymous ids and field names, never a PI value."""

    __tablename__ = "audit_entry"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(80), index=True)
    organisation: Mapped[str | None] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(80), index=True)
    subject: Mapped[str | None] = mapped_column(String(64), index=True)
    purpose: Mapped[str | None] = mapped_column(String(64))
    fields: Mapped[list[Any]] = mapped_column(JSON)
    decision: Mapped[str] = mapped_column(String(16))
    code: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    policy_version: Mapped[str] = mapped_column(String(80))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditPending(Base):
    """PostgreSQL: an entry appended by a transaction not yet committed, without its sequence,
    time and hashes. At COMMIT a deferred trigger (migration 0011) chains it into audit_entry and
    deletes it here, so a row never outlives its transaction. Unused on SQLite."""

    __tablename__ = "audit_pending"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    actor: Mapped[str] = mapped_column(String(80))
    organisation: Mapped[str | None] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(80))
    subject: Mapped[str | None] = mapped_column(String(64))
    purpose: Mapped[str | None] = mapped_column(String(64))
    fields: Mapped[list[Any]] = mapped_column(JSON)
    decision: Mapped[str] = mapped_column(String(16))
    code: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    policy_version: Mapped[str] = mapped_column(String(80))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    # cdp.audit.chain.canonical_values() of the chain fields after `seq` and `at`.
    tail: Mapped[bytes] = mapped_column(LargeBinary)


class AuditKey(Base):
    """A key that has signed checkpoints; kept so that old checkpoints stay verifiable."""

    __tablename__ = "audit_key"

    key_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(16))
    # The raw 32-byte Ed25519 public key, hex.
    public_key: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AuditCheckpoint(Base):
    """A signed statement: at `at`, entry `seq` had `hash`, and from_seq..seq had range_digest."""

    __tablename__ = "audit_checkpoint"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    from_seq: Mapped[int] = mapped_column(BigInteger)
    seq: Mapped[int] = mapped_column(BigInteger, index=True)
    hash: Mapped[str] = mapped_column(String(64))
    range_digest: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("audit_key.key_id"))
    signature: Mapped[str] = mapped_column(String(128))
