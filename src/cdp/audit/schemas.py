"""Audit entries as the API shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

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
                    "checkpoints_checked": 4,
                }
            ]
        }
    )
    valid: bool
    checked: int
    first_bad_seq: int | None
    reason: str | None
    last_hash: str
    checkpoints_checked: int = Field(
        default=0, description="Stored checkpoints whose signature, hash and range were checked."
    )


_CHECKPOINT_EXAMPLE: dict[str, Any] = {
    "id": 7,
    "from_seq": 6001,
    "seq": 7000,
    "hash": "a71f…",
    "range_digest": "4c2e…",
    "at": "2026-11-25T09:00:00.000000Z",
    "key_id": "56475aa75463474c",
    "signature": "9e4d…",
}


class CheckpointRead(BaseModel):
    """Signed: at `at`, entry `seq` had `hash`, and from_seq..seq hashed to range_digest."""

    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [_CHECKPOINT_EXAMPLE]}
    )
    id: int
    from_seq: int
    seq: int
    hash: str
    range_digest: str
    at: datetime
    key_id: str
    signature: str = Field(description="Ed25519 signature, hex (see cdp.audit.chain).")


class CheckpointPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_CHECKPOINT_EXAMPLE], "next_cursor": None}]}
    )
    items: list[CheckpointRead]
    next_cursor: str | None


_KEY_EXAMPLE: dict[str, Any] = {
    "key_id": "56475aa75463474c",
    "algorithm": "Ed25519",
    "public_key": "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8",
    "public_key_pem": "-----BEGIN PUBLIC KEY-----\n"
    "MCowBQYDK2VwAyEAA6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=\n"
    "-----END PUBLIC KEY-----\n",
    "created_at": "2026-11-25T08:00:00.000000Z",
    "current": True,
}


class AuditKeyRead(BaseModel):
    """A checkpoint signing key; key_id is SHA-256 of the raw public key, first 16 hex digits."""

    model_config = ConfigDict(json_schema_extra={"examples": [_KEY_EXAMPLE]})
    key_id: str
    algorithm: str
    public_key: str = Field(description="The raw 32-byte Ed25519 public key, hex.")
    public_key_pem: str
    created_at: datetime | None = Field(description="First checkpoint signed; null if none yet.")
    current: bool = Field(description="The key this server signs with now.")


class AuditKeyList(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [_KEY_EXAMPLE]}]})
    items: list[AuditKeyRead]
