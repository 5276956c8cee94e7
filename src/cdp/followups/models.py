"""Follow-up plans, their members, the tasks they generate and recorded interactions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cdp.db import Base, UTCDateTime, utcnow

CHANNELS = ("phone", "email", "online", "visit")
TASK_STATUSES = ("open", "done", "cancelled")


class FollowupPlan(Base):
    """Who to contact (a segment, an explicit list or a segment trigger), how and how often."""

    __tablename__ = "followup_plan"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # The plan's members: a segment's current members, or the rows of followup_plan_member.
    segment_key: Mapped[str | None] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str] = mapped_column(String(80))
    team: Mapped[str | None] = mapped_column(String(80))
    # Instructions for staff about the plan, never about one customer: not PI.
    script: Mapped[str | None] = mapped_column(Text)
    start_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Occurrence n is due at start_at + (n - 1) * every_days days.
    every_days: Mapped[int] = mapped_column(Integer, default=0)
    occurrences: Mapped[int] = mapped_column(Integer, default=1)
    # {"segment", "on": enter|leave, "within_days", "only_segment"}; null for a plain plan.
    trigger: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    # Triggered plans: the last segment_change id turned into tasks.
    watermark: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FollowupPlanMember(Base):
    """A subject a plan covers: the explicit list, or the segment's members when scheduled."""

    __tablename__ = "followup_plan_member"
    __table_args__ = (Index("ix_followup_plan_member_subject_id", "subject_id"),)

    plan_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(36), primary_key=True)


class FollowupTask(Base):
    """One contact to make: a subject, a channel, an owner and a due time."""

    __tablename__ = "followup_task"
    __table_args__ = (
        # Leads with subject_id: also the index erasure and a subject's task list use.
        UniqueConstraint("subject_id", "plan_id", "occurrence"),
        Index("ix_followup_task_owner_status_due_at", "owner", "status", "due_at"),
        Index("ix_followup_task_due_at", "due_at"),
        # The unique key leads with subject_id; a plan's tasks are listed and scheduled by plan.
        Index("ix_followup_task_plan_id", "plan_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    plan_id: Mapped[str] = mapped_column(String(36))
    subject_id: Mapped[str] = mapped_column(String(36))
    # The cadence's occurrence number; for a segment trigger, the segment_change id.
    occurrence: Mapped[int] = mapped_column(Integer)
    purpose: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str] = mapped_column(String(80))
    team: Mapped[str | None] = mapped_column(String(80))
    segment_key: Mapped[str | None] = mapped_column(String(64))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="open")
    outcome: Mapped[str | None] = mapped_column(String(32))
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    interaction_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Interaction(Base):
    """A contact with a subject by phone, email, online message or visit, and its outcome."""

    __tablename__ = "interaction"
    __table_args__ = (Index("ix_interaction_subject_id_at", "subject_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject_id: Mapped[str] = mapped_column(String(36))
    task_id: Mapped[int | None] = mapped_column(Integer)
    purpose: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(32))
    # Free text sealed with the subject's data key.
    next_step_sealed: Mapped[str | None] = mapped_column(Text)
    notes_sealed: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(80))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
