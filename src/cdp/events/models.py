"""Events, their de-duplication keys, anonymous visitors, daily rollups and plan violations.

`event` is partitioned by month of `timestamp` on PostgreSQL (migration 0004): its primary key
holds the partition key, and de-duplication lives in `event_message`, whose unique key a
partitioned table could not carry. No table here has a foreign key to `profile`: events outlive
nothing they should not (erasure deletes them with events.service.erase_subject), and
`subject_id` is the distribution key should the database be sharded.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, Date, Index, Integer, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from cdp.db import Base, UTCDateTime

# Pseudonymous, like an audit entry's subject: a profile id (UUID) or an anonymous visitor's
# blind index; never the anonymousId or userId itself.
SUBJECT = String(36)
BLIND_INDEX = String(64)


class Event(Base):
    """One stored message: planned, non-PI properties in clear, PI properties sealed."""

    __tablename__ = "event"
    __table_args__ = (
        Index("ix_event_subject_id_timestamp", "subject_id", "timestamp"),
        Index("ix_event_anonymous_key", "anonymous_key"),
        {"postgresql_partition_by": 'RANGE ("timestamp")'},
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # When it happened (UTC, corrected for the sender's clock skew); the partition key.
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    source_id: Mapped[str] = mapped_column(String(40))
    message_id: Mapped[str] = mapped_column(String(100))
    subject_id: Mapped[str | None] = mapped_column(SUBJECT)
    # Blind index of the anonymousId (HMAC): links a visitor's events without keeping the id.
    anonymous_key: Mapped[str | None] = mapped_column(BLIND_INDEX)
    type: Mapped[str] = mapped_column(String(16))
    # The plan's event name (Page Viewed for page calls); null for identify/alias/group.
    name: Mapped[str | None] = mapped_column(String(200))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    properties: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # PI properties: name -> ciphertext under the subject's data key.
    sealed: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # library, locale, timezone, page path, campaign: never an IP address or user agent string.
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class EventMessage(Base):
    """A message id seen from a source: the unique key that makes retries store nothing twice."""

    __tablename__ = "event_message"

    source_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class AnonymousVisitor(Base):
    """A visitor known only by an anonymousId (kept as a blind index) and its consent choices."""

    __tablename__ = "anonymous_visitor"

    source_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    anonymous_key: Mapped[str] = mapped_column(BLIND_INDEX, primary_key=True)
    # Set when an identify or alias names the visitor and a known profile together.
    subject_id: Mapped[str | None] = mapped_column(SUBJECT, index=True)
    # The visitor's last consent choices, by purpose id: {"analytics": true, ...}. No PI.
    consent: Mapped[dict[str, bool] | None] = mapped_column(JSON(none_as_null=True))
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)


class SubjectDaily(Base):
    """Per subject, UTC day and event name: how many events and how much revenue (CNY)."""

    __tablename__ = "subject_daily"

    subject_id: Mapped[str] = mapped_column(SUBJECT, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    revenue: Mapped[Decimal] = mapped_column(Numeric(18, 2))


class PlanViolation(Base):
    """Counts of what a source sent that was dropped or rejected, by kind and event name."""

    __tablename__ = "plan_violation"

    source_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # unplanned_event, unplanned_property, type_mismatch, missing_property, consent_required,
    # processing_restricted, pi_without_subject, unknown_subject, invalid_message, ...
    kind: Mapped[str] = mapped_column(String(40), primary_key=True)
    # The event name (and `.property` for property-level kinds); "" when there is none.
    name: Mapped[str] = mapped_column(String(320), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)
