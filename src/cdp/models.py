"""Imports every domain's ORM models so Base.metadata is complete (Alembic, drift checks)."""

from cdp.audit.models import AuditCheckpoint, AuditEntry, AuditKey
from cdp.auth.models import Client, Source
from cdp.consent.models import ConsentRecord, CrossBorderTransfer, SubjectStatus
from cdp.events.models import (
    AnonymousVisitor,
    Event,
    EventMessage,
    PlanViolation,
    SubjectActivity,
    SubjectDaily,
)
from cdp.profiles.models import Identity, Profile

__all__ = [
    "AnonymousVisitor",
    "AuditCheckpoint",
    "AuditEntry",
    "AuditKey",
    "Client",
    "ConsentRecord",
    "CrossBorderTransfer",
    "Event",
    "EventMessage",
    "Identity",
    "PlanViolation",
    "Profile",
    "Source",
    "SubjectActivity",
    "SubjectDaily",
    "SubjectStatus",
]
