"""Bodies of verification and rights-request operations."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

RightsType = Literal[
    "access", "portability", "correction", "deletion", "withdrawal", "restriction", "explanation"
]
RightsStatus = Literal["received", "verified", "in_progress", "completed", "rejected"]
Relation = Literal["spouse", "parent", "child", "sibling", "grandparent", "grandchild"]

REQUEST_ID = "6f1d8c2a-3b4e-4f5a-9c7d-0e1f2a3b4c5d"
SUBJECT = "0b7e1f0c-6a4e-4c9a-9d55-2f0d6f8a1b2c"
_READ_EXAMPLE: dict[str, Any] = {
    "id": REQUEST_ID,
    "subject_id": SUBJECT,
    "type": "access",
    "status": "completed",
    "submitted_by": "subject",
    "received_at": "2026-11-25T08:00:00Z",
    "verified_at": "2026-11-25T08:00:00Z",
    "due_at": "2026-12-16T15:59:59Z",
    "completed_at": "2026-11-26T02:00:00Z",
    "extended": False,
    "details": {},
    "result": {"sections": {"events": 120, "identities": 2}},
}


class VerificationStart(BaseModel):
    """Exactly one identifier; the answer is the same whether a profile has it or not."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"email": "zhang.wei@example.cn"}]}
    )
    email: str | None = Field(default=None, min_length=3, max_length=320)
    phone: str | None = Field(default=None, min_length=3, max_length=40)

    @model_validator(mode="after")
    def _exactly_one(self) -> VerificationStart:
        if (self.email is None) == (self.phone is None):
            raise ValueError("give exactly one of email, phone")
        return self

    def pair(self) -> tuple[str, str]:
        return ("email", self.email) if self.email is not None else ("phone", self.phone or "")


class VerificationStarted(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"verification_id": REQUEST_ID, "channel": "email", "expires_in": 600}]
        }
    )
    verification_id: str
    channel: Literal["email", "sms"]
    expires_in: int = Field(description="Seconds the code is valid, if one was sent.")


class VerificationConfirm(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"verification_id": REQUEST_ID, "code": "042719"}]},
    )
    verification_id: str = Field(min_length=1, max_length=64)
    code: str = Field(pattern=r"^[0-9]{6}$", description="The 6-digit code that was sent.")


class _RequestFields(BaseModel):
    type: RightsType
    purposes: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] | None = Field(
        default=None,
        max_length=50,
        description="withdrawal: the consent purposes to withdraw (default: every one granted).",
    )
    patch: dict[str, Any] | None = Field(
        default=None,
        max_length=50,
        description="correction: field -> corrected value (null removes it), fields.yaml names.",
    )


class RightsRequestSelfCreate(_RequestFields):
    """A request by the customer (customer token): it starts verified."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"type": "correction", "patch": {"city": "杭州"}}, {"type": "access"}]
        },
    )


class Requester(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["subject", "relative"] = Field(
        default="subject",
        description="subject: the app verified the customer; relative: a close relative of a"
        " deceased customer (PIPL art. 49), verified by an officer from the evidence.",
    )
    relation: Relation | None = None
    evidence: str | None = Field(
        default=None,
        max_length=2000,
        description="What proves death and kinship (document types and numbers); encrypted.",
    )


class RightsRequestCreate(_RequestFields):
    """A request an app submits on behalf of a customer it verified, or of a relative."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"subject_id": SUBJECT, "type": "deletion", "requester": {"kind": "subject"}},
                {
                    "subject_id": SUBJECT,
                    "type": "access",
                    "requester": {
                        "kind": "relative",
                        "relation": "spouse",
                        "evidence": "死亡证明 + 结婚证, checked at the Shanghai store",
                    },
                },
            ]
        },
    )
    subject_id: str = Field(min_length=1, max_length=36)
    requester: Requester = Field(default_factory=Requester)


class RightsRequestRead(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_READ_EXAMPLE]})
    id: str
    subject_id: str
    type: str
    status: str
    submitted_by: str
    relation: str | None = None
    received_at: datetime
    verified_at: datetime | None = None
    started_at: datetime | None = None
    due_at: datetime
    completed_at: datetime | None = None
    extended: bool
    extension_reason: str | None = None
    rejection_reason: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    result: dict[str, Any] | None = None
    evidence: str | None = Field(default=None, description="Officers' single read only.")
    patch: dict[str, Any] | None = Field(default=None, description="Officers' single read only.")


class RightsRequestPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_READ_EXAMPLE], "next_cursor": None}]}
    )
    items: list[RightsRequestRead]
    next_cursor: str | None


class RejectBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"reason": "同一请求已于 11 月 20 日答复。"}]},
    )
    reason: str = Field(min_length=1, max_length=2000, description="Told to the customer.")


class ExtendBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"working_days": 5, "reason": "Records must be fetched from archive."}]
        },
    )
    working_days: int = Field(ge=1, le=20)
    reason: str = Field(min_length=1, max_length=2000)


class ExportLinkRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "url": "/v1/rights-exports/eyJyIjoi….Qk3x",
                    "expires_at": "2026-11-25T08:15:00Z",
                    "formats": ["json", "csv"],
                }
            ]
        }
    )
    url: str = Field(description="GET it (add ?format=csv for a zip of CSV files) before expiry.")
    expires_at: datetime
    formats: list[str] = Field(default_factory=lambda: ["json", "csv"])
