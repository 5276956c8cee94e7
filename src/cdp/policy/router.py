"""The loaded policy as clients and customers see it: version, purposes, fields, roles, notices."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict

from cdp.api import CallerDep, RuntimeDep
from cdp.errors import NotFound, problem_responses
from cdp.policy.notices import text_sha256

router = APIRouter(prefix="/v1/policies", tags=["policies"])
notices_router = APIRouter(prefix="/v1/notices", tags=["policies"])

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
def get_policy(rt: RuntimeDep, caller: CallerDep) -> PolicyRead:
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
def list_purposes(rt: RuntimeDep, caller: CallerDep) -> PurposeList:
    return PurposeList(version=rt.policy.version, items=_purposes(rt))


_SECTIONS_EXAMPLE: dict[str, Any] = {
    "processor": "个人信息处理者为示例零售上海有限公司……",
    "contact": "个人信息保护负责人 privacy@example.cn……",
    "purposes": "我们为以下目的处理您的个人信息……",
    "methods": "通过网站、App、小程序和门店收集……",
    "pi_types": "身份标识、联系方式……",
    "retention": "履约与会员信息保存至会员关系结束后三年……",
    "rights": "您可以在“隐私中心”自助页面查阅、复制、更正、删除……",
}


class NoticeTextRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "title": "示例零售隐私政策",
                    "sections": _SECTIONS_EXAMPLE,
                    "text_sha256": "9f2c4e6b8a0d1f3e5c7b9a1d3f5e7c9b"
                    "1a3d5f7e9c1b3a5d7f9e1c3b5a7d9f1e",
                }
            ]
        }
    )
    title: str
    sections: dict[str, str]
    text_sha256: str


class NoticeRead(BaseModel):
    """One version of a notice in every language, with the hash consent evidence carries."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "privacy-notice",
                    "names": {"zh": "隐私政策", "en": "Privacy notice"},
                    "version": 2,
                    "latest_version": 2,
                    "versions": [1, 2],
                    "published": "2026-06-01",
                    "reconsent": False,
                    "changes": "New customer-service hours; no purpose changed.",
                    "purposes": ["service_delivery", "customer_care", "analytics", "marketing"],
                    "texts": {
                        "zh-CN": {
                            "title": "示例零售隐私政策",
                            "sections": _SECTIONS_EXAMPLE,
                            "text_sha256": "9f2c4e6b…",
                        }
                    },
                }
            ]
        }
    )
    id: str
    names: dict[str, str]
    version: int
    latest_version: int
    versions: list[int]
    published: date
    reconsent: bool
    changes: str | None
    purposes: list[str]
    texts: dict[str, NoticeTextRead]


@notices_router.get(
    "/{notice_id}",
    operation_id="getNotice",
    summary="A privacy notice version in zh-CN and en (PIPL art. 7, 17); any token, customers too",
    responses=problem_responses(401, 404, 422, 429),
)
def get_notice(
    rt: RuntimeDep,
    caller: CallerDep,
    notice_id: Annotated[str, Path(max_length=64, examples=["privacy-notice"])],
    version: Annotated[
        int | None, Query(ge=1, le=1_000_000, description="Default: the latest version.")
    ] = None,
) -> NoticeRead:
    notice = rt.policy.notices.get(notice_id)
    found = None if notice is None else notice.version(version or notice.latest.version)
    if notice is None or found is None:
        raise NotFound("no such notice or version")
    return NoticeRead(
        id=notice.id,
        names=notice.names,
        version=found.version,
        latest_version=notice.latest.version,
        versions=[v.version for v in notice.versions],
        published=found.published,
        reconsent=found.reconsent,
        changes=found.changes,
        purposes=list(found.purposes),
        texts={
            locale: NoticeTextRead(
                title=text.title,
                sections=text.sections.model_dump(exclude_none=True),
                text_sha256=text_sha256(notice.id, found, locale),
            )
            for locale, text in found.texts.items()
        },
    )
