"""Consent records (append-only) with the current state derived from them, per-subject
processing status and the cross-border counter."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cdp.db import Base, UTCDateTime, utcnow


class ConsentRecord(Base):
    """One consent event: granted, withdrawn or refused. Never updated; the latest by (at, id)
    per subject and purpose is the current state."""

    __tablename__ = "consent_record"
    # Leads with subject_id, so it also serves every lookup by subject.
    __table_args__ = (Index("ix_consent_record_current", "subject_id", "purpose", "at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("profile.id", ondelete="CASCADE")
    )
    purpose: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    notice_id: Mapped[str] = mapped_column(String(64))
    notice_version: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(16))
    # text_sha256, locale, ip_prefix (IPv4 /24, IPv6 /48): never a full IP address.
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    separate: Mapped[bool] = mapped_column(Boolean)
    # {relation, verified, method} for a minor's guardian; no name (that would be PI).
    guardian: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    # client:<id> or subject:<id>
    actor: Mapped[str] = mapped_column(String(80))
    policy_version: Mapped[str] = mapped_column(String(80))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ConsentCurrent(Base):
    """The current consent per subject and purpose: a copy of the latest consent_record row by
    (at, id), so a decision or a member list probes one row instead of ranking the history.

    Written by database triggers on consent_record (migration 0010) in the inserting
    transaction, whoever inserts (service, import, bulk seed): the application never writes it.
    The trigger's upsert replaces a row only with a later (at, record_id), so concurrent writers
    converge on the latest record. consent_record stays the evidence.
    """

    __tablename__ = "consent_current"
    # Every subject's current consent for one purpose, in subject order, readable from the
    # index alone: member lists merge-join it with a segment's sorted ids.
    __table_args__ = (
        Index(
            "ix_consent_current_purpose",
            "purpose",
            "subject_id",
            "state",
            "notice_id",
            "notice_version",
            "separate",
            "guardian",
        ),
    )

    subject_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("profile.id", ondelete="CASCADE"), primary_key=True
    )
    purpose: Mapped[str] = mapped_column(String(64), primary_key=True)
    # consent_record.id of the record this row copies.
    record_id: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    notice_id: Mapped[str] = mapped_column(String(64))
    notice_version: Mapped[int] = mapped_column(Integer)
    separate: Mapped[bool] = mapped_column(Boolean)
    # The record names a guardian (a minor's consent, PIPL art. 31).
    guardian: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class SubjectStatus(Base):
    """Per-subject facts that decide() needs without decrypting anything."""

    __tablename__ = "subject_status"

    subject_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("profile.id", ondelete="CASCADE"), primary_key=True
    )
    # Under policy.settings.minor_age_years: consents need a guardian (PIPL art. 31).
    minor: Mapped[bool] = mapped_column(Boolean, default=False)
    # PIPL art. 44, 47: kept, not processed, except for storage and legal obligations.
    restricted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    restricted_reason: Mapped[str | None] = mapped_column(String(64))
    # PIPL art. 24: refused personalised marketing and automated recommendations.
    personalisation_opt_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CrossBorderTransfer(Base):
    """A subject whose PI a cross-border purpose used in a calendar year (PIPL art. 38-40).

    No foreign key to profile: the yearly count must survive the subject's erasure, and the
    row holds only the pseudonymous id, like an audit entry.
    """

    __tablename__ = "cross_border_transfer"
    __table_args__ = (UniqueConstraint("subject_id", "year"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject_id: Mapped[str] = mapped_column(String(36))
    year: Mapped[int] = mapped_column(Integer, index=True)
    purpose: Mapped[str] = mapped_column(String(64))
    # Sensitive PI went abroad (a sensitive field, or a minor's data): art. 40's lower threshold.
    sensitive: Mapped[bool] = mapped_column(Boolean, default=False)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
