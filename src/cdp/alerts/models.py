"""Alert rules, raised alerts, webhook endpoints and the delivery log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cdp.db import Base, UTCDateTime, utcnow

RULE_KINDS = ("activity_drop", "complaint_spike", "rights_due", "cross_border")
ALERT_STATUSES = ("open", "acknowledged", "resolved")


class AlertRule(Base):
    """A configured check; rights_due and cross_border also run built in, from policy."""

    __tablename__ = "alert_rule"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Alert(Base):
    """A raised alert; while open or acknowledged, the same `key` is not raised again."""

    __tablename__ = "alert"
    __table_args__ = (
        Index("ix_alert_key_status", "key", "status"),
        Index("ix_alert_status_last_at", "status", "last_at"),
        Index("ix_alert_subject_id", "subject_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    rule_id: Mapped[str | None] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(32))
    # What the alert is about, e.g. complaint_spike:2026-11-25 or rights_due:<request id>.
    key: Mapped[str] = mapped_column(String(200))
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="open")
    # Pseudonymous subject id for a per-subject alert; erasure removes such alerts.
    subject_id: Mapped[str | None] = mapped_column(String(36))
    summary: Mapped[str] = mapped_column(String(300))
    # Numbers behind the alert (counts, means, thresholds); never a PI value.
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    seen: Mapped[int] = mapped_column(Integer, default=1)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(String(80))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by: Mapped[str | None] = mapped_column(String(80))


class WebhookEndpoint(Base):
    """Where alerts are posted, signed with HMAC-SHA256 under the endpoint's own secret."""

    __tablename__ = "webhook_endpoint"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    url: Mapped[str] = mapped_column(String(500))
    # The signing key; shown once when the endpoint is created.
    secret: Mapped[str] = mapped_column(String(100))
    # Alert kinds sent to this endpoint; empty means all.
    kinds: Mapped[list[str]] = mapped_column(JSON, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Base):
    """One alert to one endpoint: attempts, back-off and the last outcome."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        Index("ix_webhook_delivery_status_next_at", "status", "next_at"),
        Index("ix_webhook_delivery_alert_id", "alert_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    endpoint_id: Mapped[str] = mapped_column(String(36))
    alert_id: Mapped[str] = mapped_column(String(36))
    # pending (waiting for its next attempt), delivered, failed (attempts exhausted).
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
