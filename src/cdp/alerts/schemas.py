"""Alert bodies: rules, alerts, evaluation results, webhook endpoints and deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Kind = Literal["activity_drop", "complaint_spike", "rights_due", "cross_border"]
RuleKind = Literal["activity_drop", "complaint_spike"]
Status = Literal["open", "acknowledged", "resolved"]
Severity = Literal["warning", "critical"]
Key = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]

_RULE_IN: dict[str, Any] = {
    "kind": "activity_drop",
    "name": "VIP 活跃度下降",
    "params": {"segment": "vip", "recent_days": 7, "baseline_days": 28, "drop_ratio": 0.5},
}
_RULE: dict[str, Any] = {
    **_RULE_IN,
    "id": "3a4b5c6d-7e8f-4a0b-9c1d-2e3f4a5b6c7d",
    "enabled": True,
    "created_by": "client:cli_5f2a9c1e0b7d4a63",
    "created_at": "2026-11-25T08:00:00Z",
}
_ALERT: dict[str, Any] = {
    "id": "9f8e7d6c-5b4a-4c3d-8e2f-1a0b9c8d7e6f",
    "rule_id": None,
    "kind": "complaint_spike",
    "key": "complaint_spike:2026-11-25",
    "severity": "warning",
    "status": "open",
    "subject_id": None,
    "summary": "23 complaints on 2026-11-25 against 4.1 a day",
    "detail": {"count": 23, "baseline_mean": 4.1, "baseline_std": 1.9, "threshold": 9.8},
    "seen": 1,
    "first_at": "2026-11-25T08:00:00Z",
    "last_at": "2026-11-25T08:00:00Z",
    "acknowledged_at": None,
    "acknowledged_by": None,
    "resolved_at": None,
    "resolved_by": None,
}
_ENDPOINT: dict[str, Any] = {
    "id": "1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e",
    "url": "https://ops.example.cn/hooks/cdp",
    "kinds": ["complaint_spike", "rights_due"],
    "enabled": True,
    "created_at": "2026-11-25T08:00:00Z",
}
_DELIVERY: dict[str, Any] = {
    "id": 12,
    "alert_id": _ALERT["id"],
    "status": "delivered",
    "attempts": 2,
    "next_at": "2026-11-25T08:00:30Z",
    "last_status_code": 200,
    "last_error": None,
    "created_at": "2026-11-25T08:00:00Z",
    "delivered_at": "2026-11-25T08:00:30Z",
}


class RuleParams(BaseModel):
    """A rule's parameters; each kind takes its own (another kind's is 422)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [_RULE_IN["params"], {"sigma": 3, "min_count": 5}]},
    )

    segment: Key | None = Field(default=None, description="activity_drop: a segment's members.")
    subject_id: UUID | None = Field(default=None, description="activity_drop: one subject.")
    purpose: Key | None = Field(
        default=None, description="activity_drop: purpose of reading segment members."
    )
    each: bool | None = Field(default=None, description="activity_drop: one alert per subject.")
    recent_days: int | None = Field(default=None, ge=1, le=90)
    baseline_days: int | None = Field(default=None, ge=1, le=366)
    drop_ratio: float | None = Field(default=None, gt=0, lt=1)
    min_baseline_events: int | None = Field(default=None, ge=1, le=10**9)
    sigma: float | None = Field(default=None, gt=0, le=10, description="complaint_spike.")
    min_count: int | None = Field(default=None, ge=1, le=10**9, description="complaint_spike.")


class RuleCreate(BaseModel):
    """A configured check. activity_drop: `segment` or `subject_id` (neither: everyone),
    recent_days, baseline_days, drop_ratio, min_baseline_events, `each` (an alert per subject
    whose own activity dropped, instead of one for the whole group), purpose (for segment
    members, default analytics). complaint_spike: baseline_days, sigma, min_count."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                _RULE_IN,
                {
                    "kind": "complaint_spike",
                    "name": "投诉激增",
                    "params": {"baseline_days": 28, "sigma": 3, "min_count": 5},
                },
            ]
        },
    )

    kind: RuleKind
    name: str = Field(min_length=1, max_length=200)
    params: RuleParams = Field(default_factory=lambda: RuleParams())


class RuleRead(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_RULE]})

    id: str
    kind: RuleKind
    name: str
    params: dict[str, Any]
    enabled: bool
    created_by: str
    created_at: datetime


class RuleList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [_RULE]}]})

    items: list[RuleRead]


class AlertRead(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_ALERT]})

    id: str
    rule_id: str | None
    kind: Kind
    key: str
    severity: Severity
    status: Status
    subject_id: str | None
    summary: str
    detail: dict[str, Any]
    seen: int = Field(description="Evaluations that found it, the first included.")
    first_at: datetime
    last_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None


class AlertPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_ALERT], "next_cursor": None}]}
    )

    items: list[AlertRead]
    next_cursor: str | None


class AlertUpdate(BaseModel):
    """open -> acknowledged -> resolved (or open -> resolved)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"status": "acknowledged"}]}
    )

    status: Literal["acknowledged", "resolved"]


class EvaluationRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "checks": 4,
                    "raised": [_ALERT],
                    "updated": 1,
                    "cleared": 0,
                    "deliveries_attempted": 1,
                    "deliveries_delivered": 1,
                }
            ]
        }
    )

    checks: int
    raised: list[AlertRead]
    updated: int = Field(description="Open alerts found again (not raised twice).")
    cleared: int = Field(
        description="Rights-due and cross-border alerts resolved because the condition is gone."
    )
    deliveries_attempted: int
    deliveries_delivered: int


class EndpointCreate(BaseModel):
    """Where to POST alerts; `kinds` empty means every kind."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"url": _ENDPOINT["url"], "kinds": ["complaint_spike", "rights_due"]}]
        },
    )

    url: str = Field(min_length=8, max_length=500)
    kinds: list[Kind] = Field(default_factory=list, max_length=4)


class EndpointRead(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_ENDPOINT]})

    id: str
    url: str
    kinds: list[str]
    enabled: bool
    created_at: datetime


class EndpointCreated(EndpointRead):
    """The new endpoint with its signing secret, shown this once."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{**_ENDPOINT, "secret": "whsec_Zm9vYmFyYmF6cXV4"}]}
    )

    secret: str = Field(description="HMAC-SHA256 key of X-CDP-Signature; shown once.")


class EndpointList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [_ENDPOINT]}]})

    items: list[EndpointRead]


class DeliveryRead(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_DELIVERY]})

    id: int
    alert_id: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_at: datetime
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class DeliveryPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_DELIVERY], "next_cursor": None}]}
    )

    items: list[DeliveryRead]
    next_cursor: str | None
