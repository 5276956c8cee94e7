"""Imports every domain's ORM models so Base.metadata is complete (Alembic, drift checks)."""

from cdp.audit.models import AuditEntry
from cdp.auth.models import Client, Source

__all__ = ["AuditEntry", "Client", "Source"]
