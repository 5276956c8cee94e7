"""k-anonymity for aggregates: a cell computed over fewer than k subjects is suppressed."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Cell(BaseModel):
    """One aggregate value; null with `suppressed` when fewer than k subjects stand behind it."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"value": 0.42, "subjects": 1200, "suppressed": False}]}
    )

    value: float | int | None
    subjects: int | None = Field(description="Subjects behind the value; null when suppressed.")
    suppressed: bool = False
    reason: str | None = Field(default=None, examples=["k_anonymity"])


def cell(value: float | int | None, *, subjects: int, k: int) -> Cell:
    """The value when at least k subjects stand behind it, otherwise a suppressed cell.

    A group of 0 is suppressed too: "nobody" is as revealing as "these 3" for a small split.
    """
    if subjects < k:
        return Cell(value=None, subjects=None, suppressed=True, reason="k_anonymity")
    return Cell(value=value, subjects=subjects)


def rows(values: dict[str, Any], subjects: int, k: int) -> dict[str, Cell]:
    """Every value of one group, suppressed together when the group is under k."""
    return {name: cell(v, subjects=subjects, k=k) for name, v in values.items()}
