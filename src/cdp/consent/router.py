"""Consent over HTTP: apps record and read consents, customers manage their own, officers see
the cross-border counter. Each route parses, names its caller and calls one service."""

from __future__ import annotations

import ipaddress
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, status

from cdp.api import (
    PageDep,
    RuntimeDep,
    SessionDep,
    SubjectDep,
    encode_time_cursor,
    require,
    time_cursor_after,
)
from cdp.auth.principal import Principal
from cdp.consent import history, imports, selfservice, service, transfers
from cdp.consent.models import ConsentRecord
from cdp.consent.schemas import (
    ConsentCreate,
    ConsentCurrent,
    ConsentOverview,
    ConsentRead,
    CrossBorderRead,
    ImportResult,
    NoticeRef,
    SelfConsentItem,
    SelfConsents,
    SelfConsentUpdate,
)
from cdp.errors import UnsupportedMediaType, problem_responses

router = APIRouter(tags=["consents"])
self_router = APIRouter(prefix="/v1/self", tags=["self-service"])
compliance_router = APIRouter(prefix="/v1/compliance", tags=["compliance"])

_IMPORT_TYPES = {"text/csv": imports.csv_rows, "application/x-ndjson": imports.jsonl_rows}


def _record(entry: ConsentRecord) -> ConsentRead:
    return ConsentRead.model_validate(entry, from_attributes=True)


@router.post(
    "/v1/profiles/{profile_id:uuid}/consents",
    operation_id="recordConsent",
    summary="Record a consent: granted, withdrawn or refused, bound to a notice version",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 404, 422, 429),
)
def record_consent(
    profile_id: UUID,
    body: ConsentCreate,
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("consents:write")],
) -> ConsentRead:
    change = service.ConsentInput(
        purpose=body.purpose,
        state=body.state,
        notice_id=body.notice_id,
        notice_version=body.notice_version,
        channel=body.channel,
        text_sha256=body.evidence.text_sha256,
        locale=body.evidence.locale,
        ip=body.evidence.ip,
        separate=body.separate,
        guardian=body.guardian.model_dump() if body.guardian else None,
    )
    entry = service.record(
        session,
        policy=rt.policy,
        actor=principal.actor,
        subject_id=str(profile_id),
        change=change,
    )
    return _record(entry)


@router.get(
    "/v1/profiles/{profile_id:uuid}/consents",
    operation_id="listConsents",
    summary="Current consent per purpose and the full history (newest first, paginated)",
    responses=problem_responses(401, 403, 404, 422, 429),
)
def list_consents(
    profile_id: UUID,
    session: SessionDep,
    rt: RuntimeDep,
    page: PageDep,
    principal: Annotated[Principal, require("consents:read")],
) -> ConsentOverview:
    found = history.overview(
        session,
        policy=rt.policy,
        actor=principal.actor,
        subject_id=str(profile_id),
        after=time_cursor_after(page.after, int),
        limit=page.limit,
    )
    state = found.state
    return ConsentOverview(
        subject_id=found.subject_id,
        minor=state.minor,
        restricted=state.restricted,
        personalisation_opt_out=state.personalisation_opt_out,
        current=[
            ConsentCurrent(
                purpose=purpose,
                state=grant.state,
                notice_id=grant.notice_id,
                notice_version=grant.notice_version,
                separate=grant.separate,
                guardian=grant.guardian,
                at=grant.at,
                effective=found.effective[purpose] is None,
                denial=found.effective[purpose],
            )
            for purpose, grant in sorted(state.consents.items())
        ],
        history=[_record(entry) for entry in found.history],
        next_cursor=encode_time_cursor(rt, found.next_after),
    )


def _self(view: selfservice.SelfConsents) -> SelfConsents:
    items = []
    for choice in view.items:
        spec, latest = choice.purpose, choice.notice.latest
        items.append(
            SelfConsentItem(
                purpose=spec.id,
                names=spec.names,
                description=spec.description,
                separate_consent=spec.needs_separate_consent,
                personalisation=spec.personalisation,
                state=choice.grant.state if choice.grant else None,
                notice_version=choice.grant.notice_version if choice.grant else None,
                effective=choice.denial is None,
                denial=choice.denial,
                notice=NoticeRef(
                    id=choice.notice.id,
                    version=latest.version,
                    url=f"/v1/notices/{choice.notice.id}?version={latest.version}",
                ),
            )
        )
    return SelfConsents(
        subject_id=view.subject_id,
        personalisation_opt_out=view.state.personalisation_opt_out,
        minor=view.state.minor,
        restricted=view.state.restricted,
        items=items,
    )


@self_router.get(
    "/consents",
    operation_id="getSelfConsents",
    summary="The customer's consents: every consent purpose with the notice to show",
    responses=problem_responses(401, 403, 429),
)
def get_self_consents(session: SessionDep, rt: RuntimeDep, subject: SubjectDep) -> SelfConsents:
    return _self(selfservice.view(session, policy=rt.policy, subject_id=subject.id))


@self_router.put(
    "/consents",
    operation_id="updateSelfConsents",
    summary="Grant or withdraw consents and opt out of personalisation, in one call",
    responses=problem_responses(401, 403, 422, 429),
)
def update_self_consents(
    body: SelfConsentUpdate,
    request: Request,
    session: SessionDep,
    rt: RuntimeDep,
    subject: SubjectDep,
) -> SelfConsents:
    view = selfservice.update(
        session,
        policy=rt.policy,
        subject_id=subject.id,
        choices=[selfservice.Choice(c.purpose, c.state, c.notice_version) for c in body.consents],
        personalisation_opt_out=body.personalisation_opt_out,
        channel=body.channel,
        locale=body.locale,
        ip=_client_ip(request),
    )
    return _self(view)


def _client_ip(request: Request) -> str | None:
    """The peer's address when it is one (a test client or a Unix socket has none)."""
    host = request.client.host if request.client else None
    try:
        return str(ipaddress.ip_address(host)) if host else None
    except ValueError:
        return None


async def _import_body(request: Request) -> tuple[str, bytes]:
    """The file and its media type; the edge middleware already capped the size."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return media, await request.body()


@router.post(
    "/v1/consents:import",
    operation_id="importConsents",
    summary="Import existing customers' consents (CSV or JSON Lines), all or nothing",
    responses=problem_responses(401, 403, 413, 415, 422, 429),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {
                    "schema": {"type": "string"},
                    "example": (
                        "external_id,purpose,state,notice_id,notice_version,channel,at,"
                        "text_sha256,locale,separate\n"
                        "shop-10086,marketing,granted,privacy-notice,1,paper,"
                        "2025-12-01T10:00:00+08:00,"
                        "9f2c4e6b8a0d1f3e5c7b9a1d3f5e7c9b1a3d5f7e9c1b3a5d7f9e1c3b5a7d9f1e,"
                        "zh-CN,false\n"
                    ),
                },
                "application/x-ndjson": {
                    "schema": {"type": "string"},
                    "example": (
                        '{"external_id": "shop-10086", "purpose": "marketing", "state": '
                        '"granted", "notice_id": "privacy-notice", "notice_version": 1, '
                        '"channel": "paper", "at": "2025-12-01T10:00:00+08:00", '
                        '"text_sha256": "9f2c…", "locale": "zh-CN"}\n'
                    ),
                },
            },
        }
    },
)
def import_consents(
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("consents:write")],
    upload: Annotated[tuple[str, bytes], Depends(_import_body)],
) -> ImportResult:
    media, body = upload
    parse = _IMPORT_TYPES.get(media)
    if parse is None:
        raise UnsupportedMediaType("send text/csv or application/x-ndjson")
    report = imports.import_consents(
        session, policy=rt.policy, crypto=rt.crypto, actor=principal.actor, rows=parse(body)
    )
    return ImportResult(
        rows=report.rows,
        stored=report.stored,
        granted=report.by_state["granted"],
        withdrawn=report.by_state["withdrawn"],
        refused=report.by_state["refused"],
        subjects=len(report.subjects),
    )


@compliance_router.get(
    "/cross-border",
    operation_id="getCrossBorderCounter",
    summary="Subjects sent abroad this calendar year, against the art. 40 thresholds",
    responses=problem_responses(401, 403, 422, 429),
)
def cross_border(
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("compliance:read")],
    year: Annotated[
        int | None, Query(ge=2021, le=2100, description="Calendar year (China time); default now.")
    ] = None,
) -> CrossBorderRead:
    found = transfers.report(session, policy=rt.policy, year=year)
    return CrossBorderRead(
        year=found.year,
        subjects=found.subjects,
        sensitive_subjects=found.sensitive_subjects,
        people_threshold=found.people_threshold,
        sensitive_threshold=found.sensitive_threshold,
        alert_ratio=transfers.ALERT_RATIO,
        alert=found.alert,
        reasons=found.reasons,
    )
