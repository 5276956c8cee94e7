"""Feedback bodies: a survey answer, complaint or suggestion in; the row with its text out."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from cdp.metrics.kanon import Cell

Kind = Literal["survey", "complaint", "suggestion"]
Status = Literal["open", "in_progress", "resolved", "closed"]
Code = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
StaffId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,79}$")]
Answer = Annotated[str, StringConstraints(max_length=2000)] | int | float | bool

SUBJECT = "0b7e1f0c-6a4e-4c9a-9d55-2f0d6f8a1b2c"
_CREATE: dict[str, Any] = {
    "subject_id": SUBJECT,
    "kind": "complaint",
    "topic": "delivery",
    "comment": "快递延误了三天, 包装也破损了。",
}
_SURVEY: dict[str, Any] = {
    "subject_id": SUBJECT,
    "kind": "survey",
    "csat": 4,
    "nps": 9,
    "answers": {"would_buy_again": True, "favourite_store": "西湖店"},
}
_READ: dict[str, Any] = {
    "id": "5d2f8a61-3c4b-4e0f-9a7d-1b2c3d4e5f60",
    "subject_id": SUBJECT,
    "kind": "complaint",
    "status": "resolved",
    "purpose": "service_delivery",
    "topic": "delivery",
    "csat": None,
    "nps": None,
    "comment": "快递延误了三天, 包装也破损了。",
    "answers": None,
    "resolution": "已补发并赠送优惠券。",
    "assignee": "agent-17",
    "reopen_count": 0,
    "created_at": "2026-11-20T02:00:00Z",
    "updated_at": "2026-11-21T06:30:00Z",
    "resolved_at": "2026-11-21T06:30:00Z",
    "closed_at": None,
    "time_to_resolve_seconds": 102600,
}


class FeedbackCreate(BaseModel):
    """A survey answer (CSAT 1-5, NPS 0-10, custom answers), a complaint or a suggestion."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_CREATE, _SURVEY]})

    subject_id: UUID = Field(description="The profile the feedback comes from.")
    kind: Kind
    topic: Code | None = Field(default=None, description="A short code, e.g. delivery.")
    csat: int | None = Field(default=None, ge=1, le=5, description="Surveys: satisfaction 1-5.")
    nps: int | None = Field(default=None, ge=0, le=10, description="Surveys: recommend 0-10.")
    comment: str | None = Field(
        default=None, min_length=1, max_length=4000, description="Free text; stored encrypted."
    )
    answers: dict[Code, Answer] | None = Field(
        default=None,
        max_length=50,
        description="Surveys: custom questions by question key; stored encrypted.",
    )


class FeedbackUpdate(BaseModel):
    """Move a complaint (reopen = status open), assign it, record its resolution."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"status": "resolved", "assignee": "agent-17", "resolution": "已补发并赠送优惠券。"}
            ]
        },
    )

    status: Status | None = None
    assignee: StaffId | None = Field(
        default=None, description="A staff member's id; null or omitted leaves it unchanged."
    )
    unassign: bool = Field(default=False, description="Remove the assignee.")
    resolution: str | None = Field(
        default=None, min_length=1, max_length=4000, description="Stored encrypted."
    )

    @model_validator(mode="after")
    def _something(self) -> FeedbackUpdate:
        nothing = self.status is None and self.assignee is None and self.resolution is None
        if nothing and not self.unassign:
            raise ValueError("nothing to change: send status, assignee, unassign or resolution")
        return self


class FeedbackRead(BaseModel):
    """A feedback row with its free text, for a purpose that covers feedback."""

    model_config = ConfigDict(json_schema_extra={"examples": [_READ]})

    id: str
    subject_id: str
    kind: Kind
    status: Status | None
    purpose: str
    topic: str | None
    csat: int | None
    nps: int | None
    comment: str | None
    answers: dict[str, Any] | None
    resolution: str | None
    assignee: str | None
    reopen_count: int
    created_at: datetime
    updated_at: datetime
    resolved_at: datetime | None
    closed_at: datetime | None
    time_to_resolve_seconds: int | None = Field(
        description="Seconds from creation to the latest resolution; null while unresolved."
    )


class FeedbackPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_READ], "next_cursor": None}]}
    )

    items: list[FeedbackRead]
    next_cursor: str | None


_CELL: dict[str, Any] = {"value": 4.21, "subjects": 312, "suppressed": False, "reason": None}
_HIDDEN: dict[str, Any] = {
    "value": None,
    "subjects": None,
    "suppressed": True,
    "reason": "k_anonymity",
}
_SATISFACTION: dict[str, Any] = {
    "surveys": {"value": 340, "subjects": 312, "suppressed": False, "reason": None},
    "csat_average": _CELL,
    "csat_distribution": {"1": _HIDDEN, "2": _HIDDEN, "3": _CELL, "4": _CELL, "5": _CELL},
    "nps": {"value": 31.5, "subjects": 290, "suppressed": False, "reason": None},
    "complaints": {"value": 41, "subjects": 39, "suppressed": False, "reason": None},
    "resolution_rate": {"value": 0.878, "subjects": 39, "suppressed": False, "reason": None},
    "mean_hours_to_resolve": {"value": 19.5, "subjects": 34, "suppressed": False, "reason": None},
}


class Satisfaction(BaseModel):
    """Satisfaction index of a group of feedback; each number a k-anonymous cell."""

    model_config = ConfigDict(json_schema_extra={"examples": [_SATISFACTION]})

    surveys: Cell
    csat_average: Cell = Field(description="Mean CSAT (1-5).")
    csat_distribution: dict[str, Cell] = Field(description="Answers per CSAT score 1-5.")
    nps: Cell = Field(description="% promoters (9-10) - % detractors (0-6), -100..100.")
    complaints: Cell
    resolution_rate: Cell = Field(description="Complaints resolved or closed / complaints.")
    mean_hours_to_resolve: Cell


class SatisfactionPeriod(Satisfaction):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"start": "2026-11-01", **_SATISFACTION}]}
    )

    start: date = Field(description="First day of the period (UTC).")


class FeedbackMetrics(BaseModel):
    """Satisfaction metrics for feedback created in [from, to), overall and per period."""

    model_config = ConfigDict(
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {
                    "from": "2026-09-01T00:00:00Z",
                    "to": "2026-12-01T00:00:00Z",
                    "period": "month",
                    "k": 5,
                    "overall": _SATISFACTION,
                    "periods": [{"start": "2026-11-01", **_SATISFACTION}],
                }
            ]
        },
    )

    from_: datetime = Field(alias="from")
    to: datetime
    period: Literal["day", "week", "month", "all"]
    k: int = Field(description="Cells over fewer subjects than this are suppressed.")
    overall: Satisfaction
    periods: list[SatisfactionPeriod]
