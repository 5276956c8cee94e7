"""Request and response bodies for clients, sources and tokens."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, StrictBool

_NAME = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$")


class ClientCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "crm-backend",
                    "role": "app",
                    "purposes": ["customer_care", "service_delivery"],
                    "organisation": "Example Retail (Shanghai) Co., Ltd.",
                    "entrusted": False,
                }
            ]
        },
    )
    name: str = _NAME
    role: str = Field(min_length=1, max_length=40)
    purposes: list[str] | None = Field(
        default=None, max_length=50, description="Subset of the role's purposes; all if omitted."
    )
    organisation: str | None = Field(default=None, max_length=200)
    # Strict: lax mode would read 0, "no" or "off" as a boolean the schema does not allow.
    entrusted: StrictBool = Field(
        default=False, description="An entrusted processor (PIPL art. 21) acting for us."
    )


class ClientRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "cli_5f2b9c0d1e3a4b6c",
                    "name": "crm-backend",
                    "role": "app",
                    "purposes": ["customer_care"],
                    "organisation": None,
                    "entrusted": False,
                    "created_at": "2026-11-25T08:00:00Z",
                    "revoked_at": None,
                }
            ]
        },
    )
    id: str
    name: str
    role: str
    purposes: list[str]
    organisation: str | None
    entrusted: bool
    created_at: datetime
    revoked_at: datetime | None


class ClientCreated(ClientRead):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "cli_5f2b9c0d1e3a4b6c",
                    "name": "crm-backend",
                    "role": "app",
                    "purposes": ["customer_care"],
                    "organisation": None,
                    "entrusted": False,
                    "created_at": "2026-11-25T08:00:00Z",
                    "revoked_at": None,
                    "client_secret": "cs_3q2-…",
                }
            ]
        }
    )
    client_secret: str = Field(description="Shown once; only a salted hash is stored.")


class ClientPage(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [], "next_cursor": None}]})
    items: list[ClientRead]
    next_cursor: str | None


class SourceCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "web-shop"}]}
    )
    name: str = _NAME


class SourceRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "src_1a2b3c4d5e6f7a8b",
                    "name": "web-shop",
                    "write_key_prefix": "wk_Ab3d",
                    "created_at": "2026-11-25T08:00:00Z",
                    "revoked_at": None,
                }
            ]
        },
    )
    id: str
    name: str
    write_key_prefix: str
    created_at: datetime
    revoked_at: datetime | None


class SourceCreated(SourceRead):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "src_1a2b3c4d5e6f7a8b",
                    "name": "web-shop",
                    "write_key_prefix": "wk_Ab3d",
                    "created_at": "2026-11-25T08:00:00Z",
                    "revoked_at": None,
                    "write_key": "wk_Ab3d…",
                }
            ]
        }
    )
    write_key: str = Field(description="Shown once; stored as a SHA-256.")


class SourcePage(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [], "next_cursor": None}]})
    items: list[SourceRead]
    next_cursor: str | None


class TokenResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "access_token": "eyJhbGciOiJIUzI1NiIsImtpZCI6Imhz…",
                    "token_type": "Bearer",
                    "expires_in": 900,
                    "scope": "profiles:read profiles:write",
                    "purposes": ["customer_care"],
                }
            ]
        }
    )
    access_token: str
    token_type: str = "Bearer"  # noqa: S105  (the OAuth2 token type, not a secret)
    expires_in: int
    scope: str
    purposes: list[str]


class Jwks(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"keys": []}]})
    keys: list[dict[str, object]]
