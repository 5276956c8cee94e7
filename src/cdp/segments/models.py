"""Segment definitions, membership snapshots with their enter/leave history, and the
per-subject summary that ingestion keeps current so segment conditions need no rollup scan."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, Date, Index, Integer, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cdp.db import Base, UTCDateTime, utcnow

# Ring buffers of the summary: slot = period % SLOTS, each slot tagged with its period so a
# stale slot (no events for SLOTS periods) is never read as current.
MONTH_SLOTS = 13
WEEK_SLOTS = 13


class Segment(Base):
    """A segment defined through the API (built-ins live in policies/segments.yaml)."""

    __tablename__ = "segment"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    # The JSON condition language; validated before it is stored.
    condition: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SegmentMember(Base):
    """A subject in a segment at its last refresh (the snapshot enter/leave is measured on)."""

    __tablename__ = "segment_member"
    __table_args__ = (Index("ix_segment_member_subject_id", "subject_id"),)

    segment_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    since: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SegmentChange(Base):
    """A subject entered or left a segment at a refresh; follow-up plans and webhooks read it."""

    __tablename__ = "segment_change"
    __table_args__ = (
        Index("ix_segment_change_subject_id", "subject_id"),
        Index("ix_segment_change_segment_key_at", "segment_key", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    segment_key: Mapped[str] = mapped_column(String(64))
    subject_id: Mapped[str] = mapped_column(String(36))
    change: Mapped[str] = mapped_column(String(8))  # enter | leave
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SegmentRefresh(Base):
    """When each segment's snapshot was last refreshed and how many it held then."""

    __tablename__ = "segment_refresh"

    segment_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    refreshed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    members: Mapped[int] = mapped_column(BigInteger)
    entered: Mapped[int] = mapped_column(BigInteger)
    left: Mapped[int] = mapped_column(BigInteger)


class SubjectSummary(Base):
    """One row per subject, upserted in the ingestion transaction: first/last seen, purchases,
    lifetime revenue, revenue and orders by calendar month, and activity by ISO week.

    Month period = year * 12 + month - 1; week period = (date.toordinal() - 1) // 7 (weeks
    start on Monday). Slot i of a ring holds the period p with p % SLOTS == i, tagged in m_i/w_i.
    """

    __tablename__ = "subject_summary"
    __table_args__ = (
        Index("ix_subject_summary_last_seen", "last_seen"),
        Index("ix_subject_summary_first_seen", "first_seen"),
    )

    subject_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    events: Mapped[int] = mapped_column(BigInteger)
    # Events that carried revenue, and the days of the first and last of them.
    orders: Mapped[int] = mapped_column(Integer)
    revenue: Mapped[Decimal] = mapped_column(Numeric(18, 2))
    first_purchase: Mapped[date | None] = mapped_column(Date)
    last_purchase: Mapped[date | None] = mapped_column(Date)

    # Month ring: m<i> the period held, mr<i> its revenue, mo<i> its orders.
    m0: Mapped[int | None] = mapped_column(Integer)
    m1: Mapped[int | None] = mapped_column(Integer)
    m2: Mapped[int | None] = mapped_column(Integer)
    m3: Mapped[int | None] = mapped_column(Integer)
    m4: Mapped[int | None] = mapped_column(Integer)
    m5: Mapped[int | None] = mapped_column(Integer)
    m6: Mapped[int | None] = mapped_column(Integer)
    m7: Mapped[int | None] = mapped_column(Integer)
    m8: Mapped[int | None] = mapped_column(Integer)
    m9: Mapped[int | None] = mapped_column(Integer)
    m10: Mapped[int | None] = mapped_column(Integer)
    m11: Mapped[int | None] = mapped_column(Integer)
    m12: Mapped[int | None] = mapped_column(Integer)
    mr0: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    mr1: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    mr2: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    mr3: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    mr4: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    mr5: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    mr6: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    mr7: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    mr8: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    mr9: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    mr10: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    mr11: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    mr12: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    mo0: Mapped[int | None] = mapped_column(Integer)
    mo1: Mapped[int | None] = mapped_column(Integer)
    mo2: Mapped[int | None] = mapped_column(Integer)
    mo3: Mapped[int | None] = mapped_column(Integer)
    mo4: Mapped[int | None] = mapped_column(Integer)
    mo5: Mapped[int | None] = mapped_column(Integer)
    mo6: Mapped[int | None] = mapped_column(Integer)
    mo7: Mapped[int | None] = mapped_column(Integer)
    mo8: Mapped[int | None] = mapped_column(Integer)
    mo9: Mapped[int | None] = mapped_column(Integer)
    mo10: Mapped[int | None] = mapped_column(Integer)
    mo11: Mapped[int | None] = mapped_column(Integer)
    mo12: Mapped[int | None] = mapped_column(Integer)
    # Week ring: w<i> the period held, wa<i> its events.
    w0: Mapped[int | None] = mapped_column(Integer)
    w1: Mapped[int | None] = mapped_column(Integer)
    w2: Mapped[int | None] = mapped_column(Integer)
    w3: Mapped[int | None] = mapped_column(Integer)
    w4: Mapped[int | None] = mapped_column(Integer)
    w5: Mapped[int | None] = mapped_column(Integer)
    w6: Mapped[int | None] = mapped_column(Integer)
    w7: Mapped[int | None] = mapped_column(Integer)
    w8: Mapped[int | None] = mapped_column(Integer)
    w9: Mapped[int | None] = mapped_column(Integer)
    w10: Mapped[int | None] = mapped_column(Integer)
    w11: Mapped[int | None] = mapped_column(Integer)
    w12: Mapped[int | None] = mapped_column(Integer)
    wa0: Mapped[int | None] = mapped_column(Integer)
    wa1: Mapped[int | None] = mapped_column(Integer)
    wa2: Mapped[int | None] = mapped_column(Integer)
    wa3: Mapped[int | None] = mapped_column(Integer)
    wa4: Mapped[int | None] = mapped_column(Integer)
    wa5: Mapped[int | None] = mapped_column(Integer)
    wa6: Mapped[int | None] = mapped_column(Integer)
    wa7: Mapped[int | None] = mapped_column(Integer)
    wa8: Mapped[int | None] = mapped_column(Integer)
    wa9: Mapped[int | None] = mapped_column(Integer)
    wa10: Mapped[int | None] = mapped_column(Integer)
    wa11: Mapped[int | None] = mapped_column(Integer)
    wa12: Mapped[int | None] = mapped_column(Integer)
