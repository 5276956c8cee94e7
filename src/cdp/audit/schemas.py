"""Audit entries as the API shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

_ENTRY_EXAMPLE: dict[str, Any] = {
    "seq": 42,
    "at": "2026-11-25T08:00:00.123456Z",
    "actor": "client:cli_5f2b9c0d1e3a4b6c",
    "organisation": None,
    "action": "profile.read",
    "subject": "0b7e1f0c-6a4e-4c9a-9d55-2f0d6f8a1b2c",
    "purpose": "customer_care",
    "fields": ["city", "email"],
    "decision": "allow",
    "code": None,
    "request_id": "3f1c2a9e4b7d4f0e",
    "policy_version": "sha256:9c1d…",
    "detail": {},
    "prev_hash": "5e0b…",
    "hash": "a71f…",
}


class AuditEntryRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [_ENTRY_EXAMPLE]}
    )
    seq: int
    at: datetime
    actor: str
    organisation: str | None
    action: str
    subject: str | None
    purpose: str | None
    fields: list[str]
    decision: str
    code: str | None
    request_id: str | None
    policy_version: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_ENTRY_EXAMPLE], "next_cursor": None}]}
    )
    items: list[AuditEntryRead]
    next_cursor: str | None


class ChainVerification(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "valid": True,
                    "checked": 4000,
                    "first_bad_seq": None,
                    "reason": None,
                    "last_hash": "a71f…",
                }
            ]
        }
    )
    valid: bool
    checked: int
    first_bad_seq: int | None
    reason: str | None
    last_hash: str
