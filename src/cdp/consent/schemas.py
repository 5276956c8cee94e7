"""Consent bodies: a consent event in, the record and the derived state out."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Channel = Literal["web", "app", "mini_program", "paper", "phone"]
State = Literal["granted", "withdrawn", "refused"]
Relation = Literal["parent", "grandparent", "legal_guardian", "other_guardian"]
Method = Literal["id_document", "household_register", "guardian_account", "in_person", "other"]
Locale = Literal["zh-CN", "en"]

SUBJECT = "0b7e1f0c-6a4e-4c9a-9d55-2f0d6f8a1b2c"
SHA = "9f2c4e6b8a0d1f3e5c7b9a1d3f5e7c9b1a3d5f7e9c1b3a5d7f9e1c3b5a7d9f1e"
_EVIDENCE_IN: dict[str, Any] = {"text_sha256": SHA, "locale": "zh-CN", "ip": "203.0.113.57"}
_EVIDENCE_OUT: dict[str, Any] = {
    "text_sha256": SHA,
    "locale": "zh-CN",
    "ip_prefix": "203.0.113.0/24",
}
_GUARDIAN: dict[str, Any] = {"relation": "parent", "verified": True, "method": "id_document"}
_RECORD: dict[str, Any] = {
    "id": 42,
    "subject_id": SUBJECT,
    "purpose": "marketing",
    "state": "granted",
    "notice_id": "privacy-notice",
    "notice_version": 2,
    "channel": "app",
    "evidence": _EVIDENCE_OUT,
    "separate": False,
    "guardian": None,
    "actor": "client:cli_5f2a9c1e0b7d4a63",
    "policy_version": "sha256:7307…",
    "at": "2026-11-25T08:00:00Z",
}
_CURRENT: dict[str, Any] = {
    "purpose": "marketing",
    "state": "granted",
    "notice_id": "privacy-notice",
    "notice_version": 2,
    "separate": False,
    "guardian": False,
    "at": "2026-11-25T08:00:00Z",
    "effective": True,
    "denial": None,
}


class Evidence(BaseModel):
    """What the customer was shown and where: the IP is cut to its /24 (IPv6 /48) when stored."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EVIDENCE_IN]})
    text_sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of the notice text shown (see `text_sha256` of GET /v1/notices/{id}).",
    )
    locale: str = Field(max_length=16, description="Language of the text shown, e.g. zh-CN.")
    ip: str | None = Field(default=None, max_length=45, description="Client IP; never kept whole.")


class Guardian(BaseModel):
    """A verified guardian's consent for a minor (PIPL art. 31); no name is recorded."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_GUARDIAN]})
    relation: Relation
    verified: Literal[True] = Field(description="The app verified the guardian.")
    method: Method


class ConsentCreate(BaseModel):
    """A consent event: granted, withdrawn or refused, bound to a notice version."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "purpose": "marketing",
                    "state": "granted",
                    "notice_id": "privacy-notice",
                    "notice_version": 2,
                    "channel": "app",
                    "evidence": _EVIDENCE_IN,
                    "separate": False,
                    "guardian": None,
                }
            ]
        },
    )
    purpose: str = Field(max_length=64, description="A consent-based purpose id.")
    state: State
    notice_id: str = Field(max_length=64, description="The notice the purpose binds to.")
    notice_version: int = Field(ge=1, le=1_000_000)
    channel: Channel
    evidence: Evidence
    separate: bool = Field(
        default=False,
        description="Given separately for this purpose (PIPL art. 23, 29, 39), not as part of a"
        " general acceptance.",
    )
    guardian: Guardian | None = None


class ConsentRead(BaseModel):
    """One stored consent record (history is never rewritten)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_RECORD]})
    id: int
    subject_id: str
    purpose: str
    state: State
    notice_id: str
    notice_version: int
    channel: str
    evidence: dict[str, Any]
    separate: bool
    guardian: dict[str, Any] | None
    actor: str
    policy_version: str
    at: datetime


class ConsentCurrent(BaseModel):
    """The current consent for a purpose and whether it lets the purpose use the data now."""

    model_config = ConfigDict(json_schema_extra={"examples": [_CURRENT]})
    purpose: str
    state: State
    notice_id: str
    notice_version: int
    separate: bool
    guardian: bool
    at: datetime
    effective: bool
    denial: str | None = Field(description="Why not effective: the code a use would get.")


class ConsentOverview(BaseModel):
    """Current state per purpose, the subject's status and history, newest first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "subject_id": SUBJECT,
                    "minor": False,
                    "restricted": False,
                    "personalisation_opt_out": False,
                    "current": [_CURRENT],
                    "history": [_RECORD],
                    "next_cursor": None,
                }
            ]
        }
    )
    subject_id: str
    minor: bool
    restricted: bool
    personalisation_opt_out: bool
    current: list[ConsentCurrent]
    history: list[ConsentRead]
    next_cursor: str | None


# --- the customer's own view ------------------------------------------------------------------

_SELF_ITEM: dict[str, Any] = {
    "purpose": "marketing",
    "names": {"zh": "个性化营销", "en": "Personalised marketing"},
    "description": "Recommend products and send offers chosen from the customer's profile.",
    "separate_consent": False,
    "personalisation": True,
    "state": "granted",
    "notice_version": 2,
    "effective": True,
    "denial": None,
    "notice": {"id": "privacy-notice", "version": 2, "url": "/v1/notices/privacy-notice?version=2"},
}


class NoticeRef(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [_SELF_ITEM["notice"]]},
    )
    id: str
    version: int = Field(description="The version to show; a grant must name it.")
    url: str


class SelfConsentItem(BaseModel):
    """A consent purpose, the customer's choice on record and the notice to show."""

    model_config = ConfigDict(json_schema_extra={"examples": [_SELF_ITEM]})
    purpose: str
    names: dict[str, str]
    description: str
    separate_consent: bool
    personalisation: bool
    state: State | None = Field(description="null: never asked.")
    notice_version: int | None
    effective: bool
    denial: str | None
    notice: NoticeRef


class SelfConsents(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "subject_id": SUBJECT,
                    "personalisation_opt_out": False,
                    "minor": False,
                    "restricted": False,
                    "items": [_SELF_ITEM],
                }
            ]
        }
    )
    subject_id: str
    personalisation_opt_out: bool
    minor: bool
    restricted: bool
    items: list[SelfConsentItem]


class SelfChoice(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"purpose": "marketing", "state": "withdrawn", "notice_version": None}]
        },
    )
    purpose: str = Field(max_length=64)
    state: Literal["granted", "withdrawn"]
    notice_version: int | None = Field(
        default=None, ge=1, le=1_000_000, description="For a grant: the version shown."
    )


class SelfConsentUpdate(BaseModel):
    """The customer's choices; withdrawing is one item. Items not listed stay as they are."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "consents": [
                        {"purpose": "analytics", "state": "granted", "notice_version": 2},
                        {"purpose": "marketing", "state": "withdrawn", "notice_version": None},
                    ],
                    "personalisation_opt_out": True,
                    "locale": "zh-CN",
                    "channel": "app",
                }
            ]
        },
    )
    consents: list[SelfChoice] = Field(default_factory=list, max_length=50)
    personalisation_opt_out: bool | None = Field(
        default=None, description="PIPL art. 24: refuse personalised marketing (null: unchanged)."
    )
    locale: Locale = "zh-CN"
    channel: Literal["web", "app", "mini_program"] = "app"


# --- import and compliance --------------------------------------------------------------------


class ImportResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "rows": 3,
                    "stored": 3,
                    "granted": 2,
                    "withdrawn": 1,
                    "refused": 0,
                    "subjects": 2,
                }
            ]
        }
    )
    rows: int
    stored: int
    granted: int
    withdrawn: int
    refused: int
    subjects: int


class CrossBorderRead(BaseModel):
    """Subjects whose PI a cross-border purpose used this calendar year (PIPL art. 38-40)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "year": 2026,
                    "subjects": 81234,
                    "sensitive_subjects": 120,
                    "people_threshold": 100000,
                    "sensitive_threshold": 10000,
                    "alert_ratio": 0.8,
                    "alert": True,
                    "reasons": ["81234 of 100000 people (art. 40 threshold)"],
                }
            ]
        }
    )
    year: int
    subjects: int
    sensitive_subjects: int
    people_threshold: int
    sensitive_threshold: int
    alert_ratio: float
    alert: bool
    reasons: list[str]


class SubjectTokenRead(BaseModel):
    """A customer token: role subject, scope self, for /v1/self/* only."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "access_token": "eyJhbGciOiJIUzI1NiIsImtpZCI6ImhzLTEyMyJ9…",
                    "token_type": "Bearer",
                    "expires_in": 600,
                    "scope": "self",
                    "subject_id": SUBJECT,
                }
            ]
        }
    )
    access_token: str
    token_type: str = "Bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int
    scope: str
    subject_id: str
