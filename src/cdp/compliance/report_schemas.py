"""The compliance officer's reports as the API shows them: consent rates, rights SLA,
cross-border counters, subject counts against thresholds, incident export."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cdp.metrics.kanon import Cell

_CELL: dict[str, Any] = {"value": 812, "subjects": 1204, "suppressed": False, "reason": None}
_RATE: dict[str, Any] = {"value": 0.6744, "subjects": 1204, "suppressed": False, "reason": None}
_SUPPRESSED: dict[str, Any] = {
    "value": None,
    "subjects": None,
    "suppressed": True,
    "reason": "k_anonymity",
}
_VERSION: dict[str, Any] = {
    "purpose": "marketing",
    "notice_id": "privacy-notice",
    "notice_version": 2,
    "current": True,
    "subjects": _CELL | {"value": 1204},
    "granted": _CELL,
    "withdrawn": _CELL | {"value": 290},
    "refused": _CELL | {"value": 102},
    "grant_rate": _RATE,
}


class _Read(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class VersionStatsRead(_Read):
    """Subjects whose latest consent for the purpose was given on this notice version."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_VERSION]})
    purpose: str
    notice_id: str
    notice_version: int
    current: bool = Field(description="At or above the re-consent floor: such consents count.")
    subjects: Cell
    granted: Cell
    withdrawn: Cell
    refused: Cell
    grant_rate: Cell = Field(description="granted / subjects, 4 decimals.")


class PurposeStatsRead(_Read):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "purpose": "marketing",
                    "subjects": _CELL | {"value": 1204},
                    "granted": _CELL,
                    "grant_rate": _RATE,
                    "versions": [_VERSION],
                }
            ]
        },
    )
    purpose: str
    subjects: Cell = Field(description="Subjects with any consent record for the purpose.")
    granted: Cell = Field(description="Latest state granted on a version that still counts.")
    grant_rate: Cell
    versions: list[VersionStatsRead]


class ConsentStatsRead(_Read):
    """Consent rates per purpose and notice version; splits under k subjects suppressed."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "generated_at": "2026-11-25T08:00:00Z",
                    "k": 5,
                    "purposes": [
                        {
                            "purpose": "nearby_stores",
                            "subjects": _SUPPRESSED,
                            "granted": _SUPPRESSED,
                            "grant_rate": _SUPPRESSED,
                            "versions": [],
                        }
                    ],
                }
            ]
        },
    )
    generated_at: datetime
    k: int = Field(description="k-anonymity threshold from settings.yaml.")
    purposes: list[PurposeStatsRead]


_SLA_ROW: dict[str, Any] = {
    "type": "access",
    "received": 41,
    "on_time": 35,
    "late": 1,
    "rejected": 2,
    "extended": 3,
    "open_total": 5,
    "open": {"overdue": 0, "due_today": 1, "due_soon": 2, "later": 2},
}


class SlaRowRead(_Read):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_SLA_ROW]})
    type: str = Field(description="Request type, or `all`.")
    received: int
    on_time: int = Field(description="Closed (completed or rejected) by the due date.")
    late: int = Field(description="Closed after the due date.")
    rejected: int
    extended: int = Field(description="Due date extended (counted in on_time/late as well).")
    open_total: int
    open: dict[str, int] = Field(
        description="Open requests: overdue, due_today, due_soon (within the warning working "
        "days), later."
    )


class RightsSlaRead(_Read):
    """Rights requests answered on time, late, and open by due date (PIPL art. 50)."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "generated_at": "2026-11-25T08:00:00Z",
                    "since": "2026-01-01T00:00:00+08:00",
                    "until": None,
                    "warning_working_days": 3,
                    "types": [_SLA_ROW],
                    "total": _SLA_ROW | {"type": "all"},
                }
            ]
        },
    )
    generated_at: datetime
    since: datetime | None = Field(description="Requests received from this time.")
    until: datetime | None = Field(description="Requests received before this time.")
    warning_working_days: int
    types: list[SlaRowRead]
    total: SlaRowRead


_YEAR: dict[str, Any] = {
    "year": 2026,
    "subjects": 81234,
    "sensitive_subjects": 310,
    "people_threshold": 100000,
    "sensitive_threshold": 10000,
    "alert": True,
    "reasons": ["81234 of 100000 people (art. 40 threshold)"],
}


class CrossBorderYearRead(_Read):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_YEAR]})
    year: int = Field(description="Calendar year in China Standard Time.")
    subjects: int
    sensitive_subjects: int
    people_threshold: int
    sensitive_threshold: int
    alert: bool = Field(description="A threshold is 80 % reached: file the assessment.")
    reasons: list[str]


class CrossBorderRead(_Read):
    """Subjects whose PI went abroad, per calendar year, against PIPL art. 40 thresholds."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [{"generated_at": "2026-11-25T08:00:00Z", "years": [_YEAR]}]
        },
    )
    generated_at: datetime
    years: list[CrossBorderYearRead]


_THRESHOLD: dict[str, Any] = {
    "id": "pi_protection_officer",
    "law": "PIPL art. 52",
    "counts": "total",
    "threshold": 1000000,
    "value": 812345,
    "ratio": 0.8123,
    "reached": False,
    "near": True,
}


class ThresholdRead(_Read):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_THRESHOLD]})
    id: str
    law: str
    counts: str = Field(description="total, cross_border or cross_border_sensitive.")
    threshold: int
    value: int
    ratio: float
    reached: bool
    near: bool = Field(description="At or above 80 % of the threshold.")


class SubjectCountsRead(_Read):
    """Subjects held, with sensitive PI and minors, against the thresholds the law sets."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "generated_at": "2026-11-25T08:00:00Z",
                    "total": 812345,
                    "sensitive": 5210,
                    "minors": 120,
                    "thresholds": [_THRESHOLD],
                }
            ]
        },
    )
    generated_at: datetime
    total: int
    sensitive: int = Field(
        description="With a sensitive field, a consent to a purpose touching sensitive PI, "
        "or a minor (PIPL art. 28)."
    )
    minors: int
    thresholds: list[ThresholdRead]


_TOUCHED: dict[str, Any] = {
    "subject": "0b6e3f0e-6a8e-4a8c-9d5e-2f1c3b4a5d6e",
    "fields": ["email", "phone"],
    "actions": ["profile.read"],
    "purposes": ["customer_care"],
    "entries": 3,
    "denied": 0,
    "first_at": "2026-11-20T02:11:09Z",
    "last_at": "2026-11-20T02:13:40Z",
}


class TouchedRead(_Read):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_TOUCHED]})
    subject: str = Field(description="The subject's profile id (pseudonymous).")
    fields: list[str] = Field(description="Fields released to the client.")
    actions: list[str]
    purposes: list[str]
    entries: int
    denied: int = Field(description="Entries where access was refused (no fields released).")
    first_at: datetime
    last_at: datetime


class IncidentExportRead(_Read):
    """Subjects and fields a client touched in a window, from the audit log (PIPL art. 57)."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "generated_at": "2026-11-25T08:00:00Z",
                    "client_id": "c_4f6c0a1b2c3d",
                    "since": "2026-11-20T00:00:00+08:00",
                    "until": "2026-11-21T00:00:00+08:00",
                    "entries": 7,
                    "subjects": [_TOUCHED],
                    "fields": ["email", "phone"],
                    "unattributed": 4,
                }
            ]
        },
    )
    generated_at: datetime
    client_id: str
    since: datetime | None
    until: datetime | None
    entries: int = Field(description="The client's audit entries in the window.")
    subjects: list[TouchedRead]
    fields: list[str] = Field(description="Every field released in the window.")
    unattributed: int = Field(description="Entries without a subject (searches, tokens).")
