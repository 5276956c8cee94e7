"""Follow-up bodies: plans, schedule results, tasks and interactions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from cdp.api import Rfc3339Aware
from cdp.metrics.kanon import Cell

Channel = Literal["phone", "email", "online", "visit"]
Outcome = Literal[
    "reached", "no_answer", "left_message", "declined", "resolved", "escalated", "wrong_contact"
]
TaskStatus = Literal["open", "done", "cancelled"]
Key = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
StaffId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,79}$")]

PLAN_ID = "7c1e2d3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
SUBJECT = "0b7e1f0c-6a4e-4c9a-9d55-2f0d6f8a1b2c"
_PLAN_IN: dict[str, Any] = {
    "name": "VIP 季度回访",
    "purpose": "customer_care",
    "channel": "phone",
    "owner": "agent-17",
    "team": "care-east",
    "script": "问候, 询问近期购物体验, 介绍会员权益。",
    "segment_key": "vip",
    "start_at": "2026-12-01T10:00:00+08:00",
    "every_days": 30,
    "occurrences": 3,
}
_TRIGGER: dict[str, Any] = {
    "segment": "churn_risk",
    "on": "enter",
    "within_days": 2,
    "only_segment": "vip",
}
_PLAN_OUT: dict[str, Any] = {
    **{k: v for k, v in _PLAN_IN.items() if k != "start_at"},
    "id": PLAN_ID,
    "start_at": "2026-12-01T02:00:00Z",
    "trigger": None,
    "members": None,
    "created_by": "client:cli_5f2a9c1e0b7d4a63",
    "created_at": "2026-11-25T08:00:00Z",
}
_TASK: dict[str, Any] = {
    "id": 1042,
    "plan_id": PLAN_ID,
    "subject_id": SUBJECT,
    "occurrence": 1,
    "purpose": "customer_care",
    "channel": "phone",
    "owner": "agent-17",
    "team": "care-east",
    "segment_key": "vip",
    "due_at": "2026-12-01T02:00:00Z",
    "status": "done",
    "outcome": "reached",
    "completed_at": "2026-12-01T03:10:00Z",
    "interaction_id": 77,
    "on_time": True,
}
_INTERACTION_IN: dict[str, Any] = {
    "channel": "phone",
    "outcome": "reached",
    "notes": "客户对新款满意, 希望收到上新通知。",
    "next_step": "两周后发送新品目录",
}
_INTERACTION: dict[str, Any] = {
    **_INTERACTION_IN,
    "id": 77,
    "subject_id": SUBJECT,
    "task_id": 1042,
    "purpose": "customer_care",
    "actor": "client:cli_5f2a9c1e0b7d4a63",
    "at": "2026-12-01T03:10:00Z",
}


class TriggerIn(BaseModel):
    """Tasks from segment changes: e.g. entering churn_risk -> a call within 2 days."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_TRIGGER]})

    segment: Key
    on: Literal["enter", "leave"]
    within_days: int = Field(ge=0, le=90, description="Due this many days after the change.")
    only_segment: Key | None = Field(
        default=None, description="Only for subjects who are also members of this segment."
    )


class PlanCreate(BaseModel):
    """Who (a segment, a list of profiles or a segment trigger), how, how often, by whom."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                _PLAN_IN,
                {
                    **{k: v for k, v in _PLAN_IN.items() if k not in ("segment_key",)},
                    "trigger": _TRIGGER,
                    "occurrences": 1,
                    "every_days": 0,
                },
            ]
        },
    )

    name: str = Field(min_length=1, max_length=200)
    purpose: Key = Field(description="The purpose of the contact (an id from purposes.yaml).")
    channel: Channel
    owner: StaffId = Field(description="The staff member or queue the tasks go to.")
    team: StaffId | None = None
    script: str | None = Field(default=None, max_length=4000, description="Notes for staff.")
    segment_key: Key | None = None
    subject_ids: list[UUID] | None = Field(default=None, max_length=20_000)
    trigger: TriggerIn | None = None
    start_at: Rfc3339Aware | None = Field(default=None, description="First due time; default now.")
    every_days: int = Field(default=0, ge=0, le=366)
    occurrences: int = Field(default=1, ge=1, le=52)

    @model_validator(mode="after")
    def _one_source(self) -> PlanCreate:
        given = [self.segment_key, self.subject_ids, self.trigger]
        if sum(v is not None for v in given) != 1:
            raise ValueError("give exactly one of segment_key, subject_ids or trigger")
        if self.occurrences > 1 and self.every_days == 0:
            raise ValueError("repeated occurrences need every_days >= 1")
        return self


class PlanRead(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_PLAN_OUT]})

    id: str
    name: str
    purpose: str
    channel: Channel
    owner: str
    team: str | None
    script: str | None
    segment_key: str | None
    trigger: dict[str, Any] | None
    start_at: datetime
    every_days: int
    occurrences: int
    members: int | None = Field(description="Explicit or snapshotted members; null for a trigger.")
    created_by: str
    created_at: datetime


class PlanPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_PLAN_OUT], "next_cursor": None}]}
    )

    items: list[PlanRead]
    next_cursor: str | None


class ScheduleRead(BaseModel):
    """What a scheduling run did: members, those with a basis and a contact, tasks created."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "plan_id": PLAN_ID,
                    "members": 1200,
                    "eligible": 1013,
                    "skipped": 187,
                    "created": 3039,
                    "due": ["2026-12-01T02:00:00Z", "2026-12-31T02:00:00Z"],
                }
            ]
        }
    )

    plan_id: str
    members: int
    eligible: int = Field(description="Members with a basis for the purpose and the channel.")
    skipped: int = Field(description="Members left out: no consent, restricted, opted out, ...")
    created: int = Field(description="New tasks (a second run creates none twice).")
    due: list[datetime]


class TaskRead(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_TASK]})

    id: int
    plan_id: str
    subject_id: str
    occurrence: int
    purpose: str
    channel: Channel
    owner: str
    team: str | None
    segment_key: str | None
    due_at: datetime
    status: TaskStatus
    outcome: str | None
    completed_at: datetime | None
    interaction_id: int | None
    on_time: bool | None = Field(description="Done by its due time; null while open.")


class TaskPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_TASK], "next_cursor": None}]}
    )

    items: list[TaskRead]
    next_cursor: str | None


class TaskUpdate(BaseModel):
    """Complete a task with its outcome (records an interaction) or cancel it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "status": "done",
                    "outcome": "reached",
                    "notes": "客户对新款满意。",
                    "next_step": "两周后发送新品目录",
                }
            ]
        },
    )

    status: Literal["done", "cancelled"]
    outcome: Outcome | None = None
    notes: str | None = Field(default=None, min_length=1, max_length=4000)
    next_step: str | None = Field(default=None, min_length=1, max_length=500)


class InteractionCreate(BaseModel):
    """A contact by phone, e-mail, online message or visit; notes are stored encrypted."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_INTERACTION_IN]})

    channel: Channel
    outcome: Outcome
    notes: str | None = Field(default=None, min_length=1, max_length=4000)
    next_step: str | None = Field(default=None, min_length=1, max_length=500)


class InteractionRead(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_INTERACTION]})

    id: int
    subject_id: str
    task_id: int | None
    purpose: str
    channel: Channel
    outcome: str
    notes: str | None
    next_step: str | None
    actor: str
    at: datetime


class InteractionPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_INTERACTION], "next_cursor": None}]}
    )

    items: list[InteractionRead]
    next_cursor: str | None


def _cell(value: Any, subjects: int | None) -> dict[str, Any]:
    hidden = subjects is None
    return {
        "value": value,
        "subjects": subjects,
        "suppressed": hidden,
        "reason": "k_anonymity" if hidden else None,
    }


_RATE: dict[str, Any] = {
    "due": _cell(1200, 1013),
    "done": _cell(1100, 1013),
    "done_on_time": _cell(1032, 1013),
    "followup_rate": _cell(0.86, 1013),
}
_SMALL: dict[str, Any] = {name: _cell(None, None) for name in _RATE}


class FollowupRate(BaseModel):
    """Tasks due (due time in the window and passed), done, done on time, and the rate."""

    model_config = ConfigDict(json_schema_extra={"examples": [_RATE]})

    due: Cell
    done: Cell
    done_on_time: Cell
    followup_rate: Cell = Field(description="Tasks done on time / tasks due.")


class FollowupGroup(FollowupRate):
    model_config = ConfigDict(json_schema_extra={"examples": [{"group": "agent-17", **_RATE}]})

    group: str = Field(description="The period start, owner, team, segment or channel.")


class FollowupMetrics(BaseModel):
    model_config = ConfigDict(
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {
                    "from": "2026-09-01T00:00:00Z",
                    "to": "2026-12-01T00:00:00Z",
                    "by": "owner",
                    "period": "month",
                    "k": 5,
                    "overall": _RATE,
                    "groups": [{"group": "agent-17", **_RATE}, {"group": "agent-3", **_SMALL}],
                }
            ]
        },
    )

    from_: datetime = Field(alias="from")
    to: datetime
    by: Literal["period", "owner", "team", "segment", "channel"]
    period: Literal["day", "week", "month", "all"]
    k: int
    overall: FollowupRate
    groups: list[FollowupGroup]


class FollowupReport(BaseModel):
    """The monthly analysis: follow-up rate by owner, team, segment and channel, outcomes,
    interactions and satisfaction; also as CSV (Accept: text/csv or ?format=csv)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "month": "2026-11",
                    "k": 5,
                    "followups": _RATE,
                    "by_owner": [{"group": "agent-17", **_RATE}],
                    "by_team": [{"group": "care-east", **_RATE}],
                    "by_segment": [{"group": "vip", **_RATE}],
                    "by_channel": [{"group": "phone", **_RATE}],
                    "outcomes": {"reached": _cell(870, 861), "no_answer": _cell(162, 158)},
                    "interactions": _cell(1180, 1040),
                    "satisfaction": {
                        "surveys": _cell(340, 312),
                        "csat_average": _cell(4.21, 312),
                        "nps": _cell(31.5, 290),
                        "complaints": _cell(41, 39),
                        "resolution_rate": _cell(0.878, 39),
                    },
                }
            ]
        }
    )

    month: str
    k: int
    followups: FollowupRate
    by_owner: list[FollowupGroup]
    by_team: list[FollowupGroup]
    by_segment: list[FollowupGroup]
    by_channel: list[FollowupGroup]
    outcomes: dict[str, Cell]
    interactions: Cell
    satisfaction: dict[str, Cell]
