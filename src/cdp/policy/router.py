"""The loaded policy as clients see it: version, purposes, fields and roles."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from cdp.api import PrincipalDep, RuntimeDep
from cdp.errors import problem_responses

router = APIRouter(prefix="/v1/policies", tags=["policies"])

_PURPOSE_EXAMPLE: dict[str, Any] = {
    "id": "customer_care",
    "names": {"zh": "客户关怀", "en": "Customer care"},
    "description": "Answering enquiries and complaints, follow-up calls.",
    "legal_basis": "consent",
    "separate_consent": False,
    "personalisation": False,
    "third_party": False,
    "cross_border": False,
    "essential": False,
    "categories": ["identifier", "contact", "feedback"],
    "retention_days": 730,
    "notice": "privacy-notice",
    "pia": None,
    "aliases": [],
}


class PurposeRead(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_PURPOSE_EXAMPLE]})
    id: str
    names: dict[str, str]
    description: str
    legal_basis: str
    separate_consent: bool
    personalisation: bool
    third_party: bool
    cross_border: bool
    essential: bool
    categories: list[str]
    retention_days: int
    notice: str | None
    pia: str | None
    aliases: list[str]


class FieldRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "email",
                    "category": "contact",
                    "sensitive": False,
                    "storage": "encrypted+blind_index",
                    "type": "string",
                    "values": None,
                    "description": "Email address",
                }
            ]
        }
    )
    name: str
    category: str
    sensitive: bool
    storage: str
    type: str
    values: list[str] | None
    description: str


class RoleRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"name": "support", "scopes": ["profiles:read"], "purposes": ["customer_care"]}
            ]
        }
    )
    name: str
    scopes: list[str]
    purposes: list[str]


class PolicyRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "version": "sha256:9c1d…",
                    "files": ["fields.yaml", "purposes.yaml", "roles.yaml"],
                    "purposes": [_PURPOSE_EXAMPLE],
                    "fields": [],
                    "roles": [],
                    "settings": {},
                }
            ]
        }
    )
    version: str
    files: list[str]
    purposes: list[PurposeRead]
    fields: list[FieldRead]
    roles: list[RoleRead]
    settings: dict[str, Any]


class PurposeList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"version": "sha256:9c1d…", "items": [_PURPOSE_EXAMPLE]}]}
    )
    version: str
    items: list[PurposeRead]


def _purposes(rt: RuntimeDep) -> list[PurposeRead]:
    return [PurposeRead.model_validate(p.model_dump()) for p in rt.policy.purposes.values()]


@router.get(
    "",
    operation_id="getPolicy",
    summary="The loaded policy and its version (content hash)",
    responses=problem_responses(401, 429),
)
def get_policy(rt: RuntimeDep, principal: PrincipalDep) -> PolicyRead:
    policy = rt.policy
    return PolicyRead(
        version=policy.version,
        files=list(policy.files),
        purposes=_purposes(rt),
        fields=[FieldRead.model_validate(f.model_dump()) for f in policy.fields.values()],
        roles=[
            RoleRead(name=r.name, scopes=sorted(r.scopes), purposes=sorted(r.purposes))
            for r in policy.roles.values()
        ],
        settings=policy.settings.model_dump(),
    )


@router.get(
    "/purposes",
    operation_id="listPurposes",
    summary="Purposes of processing with their legal basis (PIPL art. 13)",
    responses=problem_responses(401, 429),
)
def list_purposes(rt: RuntimeDep, principal: PrincipalDep) -> PurposeList:
    return PurposeList(version=rt.policy.version, items=_purposes(rt))
