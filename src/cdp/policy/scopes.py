"""The OAuth scopes the API knows, and how a role's scope patterns expand to them."""

from __future__ import annotations

KNOWN_SCOPES: frozenset[str] = frozenset(
    {
        "profiles:read",
        "profiles:write",
        "profiles:delete",
        "consents:read",
        "consents:write",
        "events:read",
        "events:write",
        "segments:read",
        "segments:write",
        "metrics:read",
        "feedback:read",
        "feedback:write",
        "followups:read",
        "followups:write",
        "alerts:read",
        "alerts:write",
        "rights:submit",
        "rights:manage",
        "audit:read",
        "audit:export",
        "retention:run",
        "compliance:read",
        "clients:admin",
        "sources:admin",
        "policies:read",
        "subjects:token",
        "self",
    }
)

# Only customer tokens act on "self"; a wildcard granted to a staff role must not include it.
SUBJECT_ONLY_SCOPES: frozenset[str] = frozenset({"self"})


def expand_scope(pattern: str) -> frozenset[str]:
    """Concrete scopes a roles.yaml entry grants: a scope, `domain:*`, or `*`; empty if none."""
    if pattern == "*":
        return KNOWN_SCOPES - SUBJECT_ONLY_SCOPES
    if pattern.endswith(":*"):
        prefix = pattern[:-1]
        return frozenset(s for s in KNOWN_SCOPES if s.startswith(prefix))
    return frozenset({pattern}) & KNOWN_SCOPES
