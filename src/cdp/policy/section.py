"""A list section of a policy file (purposes, fields, ...), its raw items and validated entries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from cdp.policy.model import PolicyIssue
from cdp.policy.source import LocatedYaml

M = TypeVar("M", bound=BaseModel)


@dataclass(slots=True)
class Section(Generic[M]):
    """Items under one top-level key; entries holds (index, model) for the items that validated."""

    file: str
    key: str
    id_key: str
    doc: LocatedYaml | None = None
    raw: list[Any] = field(default_factory=list)
    entries: list[tuple[int, M]] = field(default_factory=list)
    # False when the list is missing or empty; references into it are then not checked.
    readable: bool = False

    def line(self, index: int, *rest: str | int) -> int | None:
        """Line of an item or of a key inside it; falls back to the item's own line."""
        return self.doc.line_of((self.key, index, *rest)) if self.doc else None

    def issue(self, index: int, *rest: str | int, reason: str) -> PolicyIssue:
        return PolicyIssue(self.file, self.line(index, *rest), reason)

    def raw_ids(self) -> set[str]:
        """Every id written, valid item or not, so one bad item does not cascade into others."""
        return {
            item[self.id_key]
            for item in self.raw
            if isinstance(item, dict) and isinstance(item.get(self.id_key), str)
        }

    def specs(self) -> list[M]:
        return [spec for _, spec in self.entries]
