"""Feedback rows; free text (comment, custom answers, resolution) is sealed per subject."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cdp.db import Base, UTCDateTime, utcnow

KINDS = ("survey", "complaint", "suggestion")
STATUSES = ("open", "in_progress", "resolved", "closed")


class Feedback(Base):
    """A survey answer, a complaint or a suggestion of one subject.

    No foreign key to profile: erasure (rights.erasure) deletes rows by `subject_id`.
    """

    __tablename__ = "feedback"
    __table_args__ = (
        Index("ix_feedback_subject_id_created_at", "subject_id", "created_at"),
        Index("ix_feedback_kind_created_at", "kind", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(16))
    # Complaints only: open -> in_progress -> resolved -> closed; reopen goes back to open.
    status: Mapped[str | None] = mapped_column(String(16))
    # The purpose the feedback was collected under (its legal basis was checked then).
    purpose: Mapped[str] = mapped_column(String(64))
    # A short code such as delivery, product, billing; never free text.
    topic: Mapped[str | None] = mapped_column(String(40))
    csat: Mapped[int | None] = mapped_column(Integer)
    nps: Mapped[int | None] = mapped_column(Integer)
    # Ciphertexts under the subject's data key (table|column|subject_id as associated data).
    comment_sealed: Mapped[str | None] = mapped_column(Text)
    answers_sealed: Mapped[str | None] = mapped_column(Text)
    resolution_sealed: Mapped[str | None] = mapped_column(Text)
    # A staff member's id (e.g. agent-17), not a person's name.
    assignee: Mapped[str | None] = mapped_column(String(80))
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
