"""Who is calling: an API client or a verified customer (data subject)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller, as every service and policy.decide see it."""

    kind: Literal["client", "subject", "source"]
    id: str
    role: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    purposes: frozenset[str] = field(default_factory=frozenset)
    organisation: str | None = None
    token_id: str | None = None

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes or "*" in self.scopes

    @property
    def actor(self) -> str:
        """The name written into audit entries: kind and id, never PI."""
        return f"{self.kind}:{self.id}"
