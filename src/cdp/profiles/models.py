"""Profiles and their identities; every PI value is stored as ciphertext."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cdp.db import Base, UTCDateTime, utcnow


class Profile(Base):
    """A customer (data subject); its id is random and is what audit entries name."""

    __tablename__ = "profile"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # Traits whose policy storage is `plain` (segments query these in SQL).
    plain: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Traits stored `encrypted`: field name -> ciphertext sealed with the subject's data key.
    sealed: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)


class Identity(Base):
    """An identifier of a profile (external id, email, phone, WeChat ids), blind-indexed."""

    __tablename__ = "identity"
    __table_args__ = (UniqueConstraint("kind", "blind_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("profile.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(40))
    blind_index: Mapped[str] = mapped_column(String(64))
    sealed_value: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
