"""Profile bodies: identifiers at the top level, every other field under `traits`."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cdp.errors import ValidationFailed

IDENTIFIERS = ("external_id", "email", "phone", "wechat_openid", "wechat_unionid")
# The one identifier with several values per profile: body key -> field (and identity kind).
DEVICE_IDS, DEVICE_ID = "device_ids", "device_id"
LOOKUP_KINDS = (*IDENTIFIERS, DEVICE_ID)
_ID = Field(default=None, min_length=1, max_length=320)
_TRAITS: Any = Field(
    default_factory=dict,
    max_length=100,
    description="Other fields from policies/fields.yaml (name, gender, birth_date, city, …).",
)

_EXAMPLE_IN: dict[str, Any] = {
    "external_id": "shop-10086",
    "email": "zhang.wei@example.cn",
    "phone": "+86 138 0013 8000",
    "device_ids": ["a3c9e7f0-ios-5e2b"],
    "traits": {"name": "张伟", "city": "上海", "membership_level": "gold"},
}
_EXAMPLE_OUT: dict[str, Any] = {
    "id": "0b7e1f0c-6a4e-4c9a-9d55-2f0d6f8a1b2c",
    "created_at": "2026-11-25T08:00:00Z",
    "updated_at": "2026-11-25T08:00:00Z",
    "external_id": "shop-10086",
    "email": "zhang.wei@example.cn",
    "phone": "+8613800138000",
    "traits": {"name": "张伟", "city": "上海", "membership_level": "gold"},
}


class ProfileWrite(BaseModel):
    """Fields to write; in a PATCH (JSON merge patch) a null removes the field."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE_IN]})
    external_id: str | None = _ID
    email: str | None = _ID
    phone: str | None = _ID
    wechat_openid: str | None = _ID
    wechat_unionid: str | None = _ID
    device_ids: list[str] | None = Field(
        default=None,
        description="Device or app-installation ids (up to 20); a PATCH replaces the list.",
    )
    traits: dict[str, Any] = _TRAITS

    def values(self) -> dict[str, Any]:
        """Flattened field -> value, only for the keys the client actually sent."""
        sent = self.model_fields_set
        out = {k: getattr(self, k) for k in IDENTIFIERS if k in sent}
        if DEVICE_IDS in sent:
            out[DEVICE_ID] = self.device_ids
        for name, value in self.traits.items():
            if name in out or name in LOOKUP_KINDS:
                raise ValidationFailed(
                    f"{name} belongs at the top level, not in traits",
                    errors=[
                        {
                            "loc": ["body", "traits", name],
                            "msg": "top-level field",
                            "type": "value_error",
                        }
                    ],
                )
            out[name] = value
        return out


class ProfileCreate(ProfileWrite):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE_IN]})

    @model_validator(mode="after")
    def _something(self) -> ProfileCreate:
        if not self.values():
            raise ValueError("a profile needs at least one field")
        return self


MAX_BATCH = 500


class ProfileBatchCreate(BaseModel):
    """Up to 500 new profiles created together, all or none (a CRM import)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"profiles": [_EXAMPLE_IN]}]}
    )
    profiles: list[ProfileCreate] = Field(min_length=1, max_length=MAX_BATCH)


class ProfileRead(BaseModel):
    """Only the fields the purpose allows, and only those that have a value."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE_OUT]})
    id: str
    created_at: datetime
    updated_at: datetime
    external_id: str | None = None
    email: str | None = None
    phone: str | None = None
    wechat_openid: str | None = None
    wechat_unionid: str | None = None
    device_ids: list[str] | None = None
    traits: dict[str, Any] = Field(default_factory=dict)


class ProfilePage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_EXAMPLE_OUT], "next_cursor": None}]}
    )
    items: list[ProfileRead]
    next_cursor: str | None


class ProfileBatchRead(BaseModel):
    """The profiles created, in the order given."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [_EXAMPLE_OUT]}]})
    items: list[ProfileRead]


class ProfileIds(BaseModel):
    """Up to 500 profile ids to read at once."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"ids": ["0b7e1f0c-6a4e-4c9a-9d55-2f0d6f8a1b2c"]}]},
    )
    ids: list[UUID] = Field(min_length=1, max_length=MAX_BATCH)


class ProfileBatchGet(BaseModel):
    """The profiles found, in the order asked, and the ids withheld: unknown, or without a
    basis for the purpose (no consent, restricted, opted out); the two are not told apart."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_EXAMPLE_OUT], "withheld": []}]}
    )
    items: list[ProfileRead]
    withheld: list[str]


class ProfileLookup(BaseModel):
    """Exactly one identifier; PI travels in the body so it never reaches access logs."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"email": "zhang.wei@example.cn"}]}
    )
    external_id: str | None = _ID
    email: str | None = _ID
    phone: str | None = _ID
    wechat_openid: str | None = _ID
    wechat_unionid: str | None = _ID
    device_id: str | None = _ID

    @model_validator(mode="after")
    def _exactly_one(self) -> ProfileLookup:
        if len(self.pairs()) != 1:
            raise ValueError("give exactly one of " + ", ".join(LOOKUP_KINDS))
        return self

    def pairs(self) -> list[tuple[str, str]]:
        return [(k, v) for k in LOOKUP_KINDS if (v := getattr(self, k)) is not None]


class ProfileMerge(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"source_id": "5d0c7a8e-3b1f-4e2a-8c6d-9f0e1a2b3c4d"}]},
    )
    source_id: str = Field(min_length=1, max_length=36, description="Profile merged and erased.")
