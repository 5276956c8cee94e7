"""Retention runs as the API shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_ITEM: dict[str, Any] = {
    "table": "event",
    "data_class": "behaviour",
    "name": "Product Viewed",
    "purpose": "analytics",
    "action": "delete",
    "cutoff": "2026-05-29T08:00:00Z",
    "count": 1204,
    "held": 0,
}
_RUN: dict[str, Any] = {
    "id": "5b0f3c4e-2a61-4d7e-9a43-0c2f1e6d8b71",
    "dry_run": True,
    "actor": "client:4f6c…",
    "policy_version": "sha256:9c1d…",
    "started_at": "2026-11-25T08:00:00Z",
    "finished_at": "2026-11-25T08:00:02Z",
    "now": "2026-11-25T08:00:00Z",
    "items": [_ITEM],
    "totals": {"event": 1204, "subject_daily": 310, "feedback:anonymised": 12, "held": 3},
    "audit": {
        "keep_days": 1095,
        "network_log_days": 180,
        "cutoff": "2023-11-26T08:00:00Z",
        "eligible": 0,
        "action": "report",
    },
    "legal_holds": [
        {
            "id": "accounting_vouchers",
            "law": "会计档案管理办法 (2015) art. 14",
            "events": ["Order Completed"],
            "keep_years": 30,
        }
    ],
}


class RetentionRunCreate(BaseModel):
    """Start a run; a dry run counts what a real run would remove and removes nothing."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"dry_run": True}]})
    # Strict: `0` or `"false"` must not start a real run by accident.
    dry_run: bool = Field(default=False, strict=True)


class RetentionItem(BaseModel):
    """One rule of the run: a table, a data class (and event name), its cutoff and count."""

    model_config = ConfigDict(json_schema_extra={"examples": [_ITEM]})
    table: str
    data_class: str = Field(description="An event's category, or the kind of record.")
    name: str | None = Field(description="The event name, for events and their rollups.")
    purpose: str | None
    action: str = Field(
        description="delete, anonymise, erase (subjects a legal hold kept, once it ends),"
        " or report (never executed)."
    )
    cutoff: datetime = Field(description="Rows older than this were (or would be) affected.")
    count: int
    held: int = Field(description="Rows past the cutoff kept by a legal hold.")


class AuditRetention(BaseModel):
    """Audit entries are append-only and kept at least keep_days: reported, not deleted."""

    model_config = ConfigDict(json_schema_extra={"examples": [_RUN["audit"]]})
    keep_days: int
    network_log_days: int
    cutoff: datetime
    eligible: int = Field(description="Entries older than keep_days (kept all the same).")
    action: str


class LegalHoldRead(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": _RUN["legal_holds"]})
    id: str
    law: str
    events: list[str]
    keep_years: int


class RetentionRunRead(BaseModel):
    """A run's report: counts per data class with the cutoffs used; never a subject."""

    model_config = ConfigDict(json_schema_extra={"examples": [_RUN]})
    id: str
    dry_run: bool
    actor: str
    policy_version: str
    started_at: datetime
    finished_at: datetime
    now: datetime = Field(description="The time cutoffs were computed from.")
    items: list[RetentionItem]
    totals: dict[str, int]
    audit: AuditRetention
    legal_holds: list[LegalHoldRead]


class RetentionRunSummary(BaseModel):
    """A run without its items: who, when, dry or not, and the totals."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {k: _RUN[k] for k in ("id", "dry_run", "actor", "started_at", "finished_at")}
                | {"totals": _RUN["totals"]}
            ]
        }
    )
    id: str
    dry_run: bool
    actor: str
    started_at: datetime
    finished_at: datetime
    totals: dict[str, int]


class RetentionRunPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {k: _RUN[k] for k in ("id", "dry_run", "actor", "started_at")}
                        | {"finished_at": _RUN["finished_at"], "totals": _RUN["totals"]}
                    ],
                    "next_cursor": None,
                }
            ]
        }
    )
    items: list[RetentionRunSummary]
    next_cursor: str | None
