"""The compliance reports as the API shows them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_ACTIVITY_EXAMPLE: dict[str, Any] = {
    "purpose": "nearby_stores",
    "names": {"zh": "附近门店推荐", "en": "Nearby stores"},
    "description": "Show the nearest stores and their stock from the app's precise location.",
    "legal_basis": "consent",
    "essential": False,
    "personalisation": False,
    "separate_consent": True,
    "third_party": False,
    "cross_border": False,
    "categories": ["location", "location_track"],
    "fields": ["city", "precise_location", "province"],
    "sensitive_fields": ["precise_location"],
    "retention_days": 30,
    "notice": {"id": "location-notice", "version": 1, "published": "2026-01-01"},
    "pia": "PIA-2024-004",
}


class NoticeRefRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    version: int | None = Field(description="The latest published version.")
    published: date | None


class ActivityRead(BaseModel):
    """One purpose of processing: basis, data, consent, recipients, retention, notice, PIA."""

    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [_ACTIVITY_EXAMPLE]}
    )
    purpose: str
    names: dict[str, str]
    description: str
    legal_basis: str = Field(description="PIPL art. 13 basis.")
    essential: bool
    personalisation: bool = Field(description="Automated personalisation (art. 24 opt-out).")
    separate_consent: bool = Field(description="Separate consent needed (art. 23, 29, 39).")
    third_party: bool
    cross_border: bool
    categories: list[str]
    fields: list[str] = Field(description="Profile fields whose category the purpose may use.")
    sensitive_fields: list[str] = Field(description="Of those, sensitive PI (art. 28).")
    retention_days: int
    notice: NoticeRefRead | None
    pia: str | None = Field(description="Impact assessment on file (art. 55).")


class ProcessingActivities(BaseModel):
    """The record of processing activities, built from the loaded policy."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "policy_version": "sha256:9c1d…",
                    "generated_at": "2026-11-25T08:00:00Z",
                    "activities": [_ACTIVITY_EXAMPLE],
                }
            ]
        },
    )
    policy_version: str
    generated_at: datetime
    activities: list[ActivityRead]
