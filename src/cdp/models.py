"""Imports every domain's ORM models so Base.metadata is complete (Alembic, drift checks)."""

from cdp.audit.models import AuditEntry
from cdp.auth.models import Client, Source
from cdp.profiles.models import Identity, Profile

__all__ = ["AuditEntry", "Client", "Identity", "Profile", "Source"]
