"""What a retention run reports per rule."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

# Events outside the plan (identity calls, events stored before the plan named them).
UNPLANNED = "*"
# Without a tracking purpose to take it from.
DEFAULT_DAYS = 365


@dataclass(frozen=True, slots=True)
class Item:
    """What one rule removed (or, in a dry run, would remove)."""

    table: str
    data_class: str
    name: str | None
    purpose: str | None
    action: str  # delete | anonymise | report
    cutoff: datetime
    count: int
    held: int = 0

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["cutoff"] = self.cutoff.isoformat()
        return out
