"""Retention runs: what each run removed or would remove, kept as the run's report."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, String
from sqlalchemy.orm import Mapped, mapped_column

from cdp.db import Base, UTCDateTime


class RetentionRun(Base):
    """One retention run (PIPL art. 19); a dry run counts without removing anything."""

    __tablename__ = "retention_run"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    dry_run: Mapped[bool] = mapped_column(Boolean)
    actor: Mapped[str] = mapped_column(String(80))
    policy_version: Mapped[str] = mapped_column(String(80))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Counts only, per data class, with the cutoffs used: never a subject or a value.
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
