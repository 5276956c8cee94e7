"""PostgreSQL privileges for the application role: everything it needs, but on the audit
tables only INSERT and SELECT (the migration's trigger refuses UPDATE, DELETE and TRUNCATE
even to roles that hold them), and on audit_pending only INSERT: the trigger that chains and
deletes its rows runs as the owner. Migrations run as the tables' owner, the API as this role."""

from __future__ import annotations

import re

APPEND_ONLY = ("audit_entry", "audit_checkpoint", "audit_key")
INSERT_ONLY = ("audit_pending",)
_ROLE = re.compile(r"^[a-z_][a-z0-9_$]{0,62}$")


def grant_statements(role: str, schema: str = "public") -> list[str]:
    """The statements, idempotent, to run as the owner after every `cdp db upgrade`."""
    if not _ROLE.fullmatch(role):
        raise ValueError("role must be a lower-case PostgreSQL identifier")
    if not _ROLE.fullmatch(schema):
        raise ValueError("schema must be a lower-case PostgreSQL identifier")
    who = f'"{role}"'
    audit = ", ".join(f"{schema}.{t}" for t in APPEND_ONLY)
    pending = ", ".join(f"{schema}.{t}" for t in INSERT_ONLY)
    return [
        f"GRANT USAGE ON SCHEMA {schema} TO {who}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {who}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {who}",
        f"REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {audit} FROM {who}",
        f"GRANT SELECT, INSERT ON {audit} TO {who}",
        f"REVOKE SELECT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {pending} FROM {who}",
        f"GRANT INSERT ON {pending} TO {who}",
        f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {schema}.alembic_version FROM {who}",
    ]
