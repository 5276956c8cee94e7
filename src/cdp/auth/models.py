"""API clients and tracking sources."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, String
from sqlalchemy.orm import Mapped, mapped_column

from cdp.db import Base, UTCDateTime, utcnow


class Client(Base):
    """An API client (internal app, officer tool); its secret is kept only as a salted hash."""

    __tablename__ = "client"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(40))
    purposes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    organisation: Mapped[str | None] = mapped_column(String(200))
    entrusted: Mapped[bool] = mapped_column(Boolean, default=False)
    secret_hash: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Source(Base):
    """A tracking source; its write key is random, so an unsalted SHA-256 finds it in one probe."""

    __tablename__ = "source"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    write_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    write_key_prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
