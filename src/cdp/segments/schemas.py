"""Segments over HTTP: definitions, previews, members, explanations and refreshes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from cdp.metrics.kanon import Cell


# `preview` is a route of its own (POST /v1/segments/preview), never a key.
def _not_reserved(key: str) -> str:
    if key == "preview":
        raise ValueError("`preview` is reserved")
    return key


SegmentKey = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64),
    AfterValidator(_not_reserved),
]
_CONDITION: Any = {
    "all": [
        {"trait": "city", "op": "in", "value": ["上海", "北京"]},
        {"event": "Order Completed", "op": "gte", "count": 3, "within_days": 90},
        {"not": {"event": "*", "within_days": 60}},
    ]
}


class SegmentWrite(BaseModel):
    """A segment definition: name, description and a condition in the condition language."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Loyal Shanghai buyers",
                    "description": "Three orders in 90 days, in Shanghai or Beijing",
                    "condition": _CONDITION,
                }
            ]
        },
    )

    name: Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
    description: Annotated[str, StringConstraints(max_length=2000)] = ""
    condition: dict[str, Any]


class SegmentCreate(SegmentWrite):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"key": "loyal_sh", "name": "Loyal Shanghai buyers", "condition": _CONDITION}
            ]
        },
    )

    key: SegmentKey


class SegmentPreview(BaseModel):
    """A draft condition to count."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"condition": _CONDITION}]}
    )

    condition: dict[str, Any]


class SegmentRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "key": "vip",
                    "name": "VIP customers",
                    "names": {"zh": "重要客户", "en": "VIP customers"},
                    "description": "Spent more than 100,000 CNY in the last 12 months.",
                    "condition": {
                        "metric": "revenue",
                        "op": "gt",
                        "value": 100000,
                        "within_months": 12,
                    },
                    "builtin": True,
                    "updated_at": None,
                }
            ]
        }
    )

    key: str
    name: str
    names: dict[str, str]
    description: str
    condition: dict[str, Any]
    builtin: bool = Field(description="Built-ins come from policies/segments.yaml: read-only here.")
    updated_at: datetime | None = None


class SegmentList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [{"key": "vip", "name": "VIP customers"}]}]}
    )

    items: list[SegmentRead]


class PreviewRead(BaseModel):
    """How many subjects match; suppressed under k like any metric."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"count": {"value": 1234, "subjects": 1234, "suppressed": False}}]
        }
    )

    count: Cell


class MemberPage(BaseModel):
    """Members allowed for the purpose: profile ids, in id order."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"items": ["0b6f9c1e-3d2a-4f5b-9c8d-7e6f5a4b3c2d"], "next_cursor": None}]
        }
    )

    items: list[str]
    next_cursor: str | None


class ConditionResult(BaseModel):
    path: str = Field(examples=["segment.churn_risk.any[1]"])
    condition: dict[str, Any]
    matched: bool
    values: dict[str, Any] = Field(description="The values the condition was tested on.")


class Explanation(BaseModel):
    """Whether the subject is in the segment, and exactly the conditions that decided it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "segment": "churn_risk",
                    "name": "Customers at risk of churning",
                    "subject_id": "0b6f9c1e-3d2a-4f5b-9c8d-7e6f5a4b3c2d",
                    "member": True,
                    "evaluated_at": "2026-11-25T08:00:00+00:00",
                    "conditions": [
                        {
                            "path": "segment.churn_risk.any[1]",
                            "condition": {"metric": "open_complaints", "op": "gte", "value": 1},
                            "matched": True,
                            "values": {"value": 1},
                        }
                    ],
                }
            ]
        }
    )

    segment: str
    name: str
    subject_id: str
    member: bool
    evaluated_at: datetime
    conditions: list[ConditionResult]


class ProfileSegments(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "subject_id": "0b6f9c1e-3d2a-4f5b-9c8d-7e6f5a4b3c2d",
                    "items": [{"key": "active", "name": "Active customers"}],
                }
            ]
        }
    )

    subject_id: str
    items: list[dict[str, str]]


class SelfSegments(BaseModel):
    """The customer's own segments, each with why (PIPL art. 24, 48)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "segment": "active",
                            "name": "Active customers",
                            "subject_id": "0b6f9c1e-3d2a-4f5b-9c8d-7e6f5a4b3c2d",
                            "member": True,
                            "evaluated_at": "2026-11-25T08:00:00+00:00",
                            "conditions": [],
                        }
                    ]
                }
            ]
        }
    )

    items: list[Explanation]


class RefreshRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "segment": "vip",
                    "members": 120,
                    "entered": 4,
                    "left": 1,
                    "refreshed_at": "2026-11-25T08:00:00+00:00",
                }
            ]
        }
    )

    segment: str
    members: int
    entered: int
    left: int
    refreshed_at: datetime
