"""Rights requests and the one-time codes that verify a customer before a request."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cdp.db import Base, UTCDateTime, utcnow

TYPES = (
    "access",
    "portability",
    "correction",
    "deletion",
    "withdrawal",
    "restriction",
    "explanation",
)
STATUSES = ("received", "verified", "in_progress", "completed", "rejected")


class RightsRequest(Base):
    """One request by a customer, an app on its behalf, or a deceased customer's relative.

    Kept after the subject's erasure (cdp.rights.erasure.KEPT_TABLES): it is the proof that the
    request was answered, and holds only the pseudonymous id, dates and ciphertext that the
    shredded key no longer opens.
    """

    __tablename__ = "rights_request"
    __table_args__ = (
        Index("ix_rights_request_subject_id_received_at", "subject_id", "received_at"),
        Index("ix_rights_request_status_due_at", "status", "due_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(36))
    type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    # subject (customer token), app (on a verified customer's behalf), relative (art. 49)
    submitted_by: Mapped[str] = mapped_column(String(16))
    # client:<id> or subject:<id>
    actor: Mapped[str] = mapped_column(String(80))
    # art. 49: the relative's relation to the deceased (a code, e.g. spouse) ...
    relation: Mapped[str | None] = mapped_column(String(32))
    # ... and the evidence of death and kinship, sealed with the subject's data key.
    evidence: Mapped[str | None] = mapped_column(Text)
    # Type-specific, no PI: withdrawal purposes; a correction's patch is sealed in `patch`.
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    patch: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    extended: Mapped[bool] = mapped_column(Boolean, default=False)
    # Sealed free text written by the officer for the customer (art. 50 reasons).
    extension_reason: Mapped[str | None] = mapped_column(Text)
    rejection_reason: Mapped[str | None] = mapped_column(Text)
    # What completing did, without PI: counts per section, tables, what a legal hold kept.
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class VerificationCode(Base):
    """A one-time code sent to an e-mail address or phone; a row is written for unknown
    identifiers too (subject_id null), so the work done never tells whether one exists."""

    __tablename__ = "verification_code"
    __table_args__ = (
        Index("ix_verification_code_identifier_created_at", "identifier_index", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    # Blind index of the normalised identifier: rate limits per identifier without keeping it.
    identifier_index: Mapped[str] = mapped_column(String(64))
    subject_id: Mapped[str | None] = mapped_column(String(36), index=True)
    # HMAC-SHA256 of id|code under a server key that is not in the database.
    code_hash: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
