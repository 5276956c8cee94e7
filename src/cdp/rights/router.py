"""Rights over HTTP: customer verification, the customer's own requests and data, apps
submitting for customers, the compliance queue, and time-limited downloads."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, BackgroundTasks, Path, Query, Request, Response, status

from cdp.api import (
    PageDep,
    Rfc3339,
    Runtime,
    RuntimeDep,
    SessionDep,
    SubjectDep,
    encode_time_cursor,
    require,
    time_cursor_after,
)
from cdp.auth.principal import Principal
from cdp.auth.ratelimit import RateLimiter
from cdp.consent.schemas import SubjectTokenRead
from cdp.errors import problem_responses
from cdp.notifier import Message, NotDelivered, Notifier, make_notifier
from cdp.rights import service, verification
from cdp.rights.schemas import (
    ExportLinkRead,
    ExtendBody,
    RejectBody,
    RightsRequestCreate,
    RightsRequestPage,
    RightsRequestRead,
    RightsRequestSelfCreate,
    RightsStatus,
    RightsType,
    VerificationConfirm,
    VerificationStart,
    VerificationStarted,
)

log = logging.getLogger("cdp.rights")
router = APIRouter(prefix="/v1/rights-requests", tags=["rights"])
self_router = APIRouter(prefix="/v1/self", tags=["self-service"])
downloads_router = APIRouter(prefix="/v1/rights-exports", tags=["rights"])

_ERRORS = problem_responses(401, 403, 404, 409, 422, 429)
RequestId = Annotated[str, Path(max_length=36)]
_BUNDLE_EXAMPLE: dict[str, Any] = {
    "format": "cdp-access-bundle",
    "version": 1,
    "subject_id": "0b7e1f0c-6a4e-4c9a-9d55-2f0d6f8a1b2c",
    "profile": {"id": "0b7e1f0c-6a4e-4c9a-9d55-2f0d6f8a1b2c", "fields": {"city": "上海"}},
    "identities": [{"kind": "email", "value": "zhang.wei@example.cn"}],
    "consents": {"current": [], "history": []},
    "events": [],
    "feedback": [],
    "segments": [],
    "processing": [{"purpose": "service_delivery", "legal_basis": "contract"}],
}


# --- plumbing kept per process -----------------------------------------------------------------


def _limiter(rt: Runtime) -> RateLimiter:
    found = rt.extras.get("verification_limiter")
    if not isinstance(found, RateLimiter):
        s = rt.settings
        found = RateLimiter(s.verification_ip_per_minute, s.verification_ip_burst)
        rt.extras["verification_limiter"] = found
    return found


def _notifier(rt: Runtime) -> Notifier:
    found = rt.extras.get("notifier")
    if found is None:
        found = make_notifier(rt.settings)
        rt.extras["notifier"] = found
    notifier: Notifier = found
    return notifier


def _deliver(notifier: Notifier, message: Message | None) -> None:
    """After the response: known and unknown identifiers answer alike, and equally fast."""
    if message is None:
        return
    try:
        notifier.send(message)
    except NotDelivered as exc:
        log.warning("verification code not delivered by %s: %s", notifier.name, exc)


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _read(view: service.RequestView) -> RightsRequestRead:
    row = view.row
    return RightsRequestRead(
        id=row.id,
        subject_id=row.subject_id,
        type=row.type,
        status=row.status,
        submitted_by=row.submitted_by,
        relation=row.relation,
        received_at=row.received_at,
        verified_at=row.verified_at,
        started_at=row.started_at,
        due_at=row.due_at,
        completed_at=row.completed_at,
        extended=row.extended,
        extension_reason=view.extension_reason,
        rejection_reason=view.rejection_reason,
        details=dict(row.details or {}),
        result=row.result,
        evidence=view.evidence,
        patch=view.patch,
    )


def _page(rt: Runtime, views: list[service.RequestView], limit: int, due: bool) -> str | None:
    if len(views) < limit:
        return None
    last = views[-1].row
    return encode_time_cursor(rt, (last.due_at if due else last.received_at, last.id))


# --- verification (no token: the code is the credential) --------------------------------------


@self_router.post(
    "/verification",
    operation_id="startVerification",
    summary="Send a 6-digit code to a profile's e-mail address or phone",
    description=(
        "Always 202 with the same body, whether or not a profile has the identifier: a code is"
        " sent only when one does. The code lives 10 minutes and allows 5 attempts; requests"
        " are limited per identifier and per client address (429 with Retry-After)."
    ),
    status_code=status.HTTP_202_ACCEPTED,
    responses=problem_responses(422, 429),
)
def start_verification(
    body: VerificationStart,
    request: Request,
    background: BackgroundTasks,
    session: SessionDep,
    rt: RuntimeDep,
) -> VerificationStarted:
    kind, value = body.pair()
    started = verification.start(
        session,
        crypto=rt.crypto,
        key=verification.code_key(rt.cursor_key),
        limiter=_limiter(rt),
        client_ip=_client_ip(request),
        kind=kind,
        value=value,
        per_hour=rt.settings.verification_per_identifier_per_hour,
    )
    background.add_task(_deliver, _notifier(rt), started.message)
    return VerificationStarted(
        verification_id=started.verification_id,
        channel=started.channel,
        expires_in=started.expires_in,
    )


@self_router.post(
    "/verification/confirm",
    operation_id="confirmVerification",
    summary="Exchange the code for a short-lived customer token (role subject, scope self)",
    responses=problem_responses(400, 422, 429),
)
def confirm_verification(
    body: VerificationConfirm, request: Request, session: SessionDep, rt: RuntimeDep
) -> SubjectTokenRead:
    issued, subject = verification.confirm(
        session,
        sessions=rt.sessions,
        policy=rt.policy,
        tokens=rt.tokens,
        key=verification.code_key(rt.cursor_key),
        limiter=_limiter(rt),
        client_ip=_client_ip(request),
        verification_id=body.verification_id,
        code=body.code,
        ttl_seconds=rt.settings.subject_token_ttl_seconds,
    )
    return SubjectTokenRead(
        access_token=issued.access_token,
        expires_in=issued.expires_in,
        scope=issued.scope,
        subject_id=subject,
    )


# --- the customer's own requests and data -----------------------------------------------------


@self_router.post(
    "/rights-requests",
    operation_id="submitSelfRightsRequest",
    summary="Ask for access, a copy, correction, deletion, withdrawal, restriction or an"
    " explanation",
    description="Starts verified (the customer token proves who asks); due in 15 working days.",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 422, 429),
    response_model_exclude_none=True,
)
def submit_self_request(
    body: RightsRequestSelfCreate, session: SessionDep, rt: RuntimeDep, subject: SubjectDep
) -> RightsRequestRead:
    view = service.submit(
        session,
        crypto=rt.crypto,
        policy=rt.policy,
        actor=subject.actor,
        subject_id=subject.id,
        submitted_by="subject",
        sub=service.Submission(type=body.type, purposes=body.purposes, patch=body.patch),
    )
    return _read(view)


@self_router.get(
    "/rights-requests",
    operation_id="listSelfRightsRequests",
    summary="The customer's requests, newest first, with due dates and any reasons",
    responses=problem_responses(401, 403, 422, 429),
)
def list_self_requests(
    session: SessionDep, rt: RuntimeDep, page: PageDep, subject: SubjectDep
) -> RightsRequestPage:
    views = service.list_own(
        session,
        crypto=rt.crypto,
        subject_id=subject.id,
        after=time_cursor_after(page.after, str),
        limit=page.limit,
    )
    return RightsRequestPage(
        items=[_read(v) for v in views], next_cursor=_page(rt, views, page.limit, due=False)
    )


@self_router.get(
    "/rights-requests/{request_id}/export",
    operation_id="getSelfRightsExportLink",
    summary="A 15-minute download link for a completed access, copy or explanation request",
    responses=_ERRORS,
)
def self_export_link(
    request_id: RequestId,
    session: SessionDep,
    rt: RuntimeDep,
    subject: SubjectDep,
) -> ExportLinkRead:
    link = service.export_link(
        session,
        key=service.link_key(rt.cursor_key),
        actor=subject.actor,
        request_id=request_id,
        subject_id=subject.id,
    )
    return ExportLinkRead(url=link.url, expires_at=link.expires_at)


@self_router.get(
    "/data",
    operation_id="getSelfData",
    summary="Everything held about the customer, decrypted, as JSON (PIPL art. 45)",
    response_class=Response,
    responses={
        200: {
            "description": "The access bundle",
            "content": {"application/json": {"example": _BUNDLE_EXAMPLE}},
        },
        **problem_responses(401, 403, 429),
    },
)
def get_self_data(session: SessionDep, rt: RuntimeDep, subject: SubjectDep) -> Response:
    body = service.own_data(session, crypto=rt.crypto, policy=rt.policy, subject_id=subject.id)
    return Response(content=body, media_type="application/json")


# --- apps and the compliance queue --------------------------------------------------------------


@router.post(
    "",
    operation_id="submitRightsRequest",
    summary="Submit a request for a customer the app verified, or for a deceased customer's"
    " close relative (PIPL art. 49)",
    description=(
        "`requester.kind=subject`: the app verified the customer; the request starts verified."
        " `relative`: relation and evidence are recorded (evidence encrypted) and an officer"
        " verifies it with POST /v1/rights-requests/{id}/verify."
    ),
    status_code=status.HTTP_201_CREATED,
    responses=_ERRORS,
    response_model_exclude_none=True,
)
def submit_request(
    body: RightsRequestCreate,
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("rights:submit")],
) -> RightsRequestRead:
    requester = body.requester
    view = service.submit(
        session,
        crypto=rt.crypto,
        policy=rt.policy,
        actor=principal.actor,
        subject_id=body.subject_id,
        submitted_by="relative" if requester.kind == "relative" else "app",
        sub=service.Submission(
            type=body.type,
            purposes=body.purposes,
            patch=body.patch,
            relation=requester.relation,
            evidence=requester.evidence,
        ),
    )
    return _read(view)


@router.get(
    "",
    operation_id="listRightsRequests",
    summary="The compliance queue: requests by due date, soonest first",
    responses=problem_responses(401, 403, 422, 429),
)
def list_requests(
    session: SessionDep,
    rt: RuntimeDep,
    page: PageDep,
    principal: Annotated[Principal, require("rights:manage")],
    status_: Annotated[RightsStatus | None, Query(alias="status")] = None,
    type_: Annotated[RightsType | None, Query(alias="type")] = None,
    due_before: Annotated[Rfc3339 | None, Query(description="Due before this time.")] = None,
) -> RightsRequestPage:
    views = service.queue(
        session,
        crypto=rt.crypto,
        status=status_,
        type_=type_,
        due_before=due_before,
        after=time_cursor_after(page.after, str),
        limit=page.limit,
    )
    return RightsRequestPage(
        items=[_read(v) for v in views], next_cursor=_page(rt, views, page.limit, due=True)
    )


@router.get(
    "/{request_id}",
    operation_id="getRightsRequest",
    summary="One request, with the relative's evidence and a correction's patch (audited)",
    responses=_ERRORS,
    response_model_exclude_none=True,
)
def get_request(
    request_id: RequestId,
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("rights:manage")],
) -> RightsRequestRead:
    view = service.read(session, crypto=rt.crypto, actor=principal.actor, request_id=request_id)
    return _read(view)


def _step(action: Literal["verify", "start"], summary: str) -> Any:
    def handler(
        request_id: RequestId,
        session: SessionDep,
        rt: RuntimeDep,
        principal: Annotated[Principal, require("rights:manage")],
    ) -> RightsRequestRead:
        view = service.transition(
            session, crypto=rt.crypto, actor=principal.actor, request_id=request_id, action=action
        )
        return _read(view)

    handler.__name__ = f"{action}_request"
    router.post(
        f"/{{request_id}}/{action}",
        operation_id=f"{action}RightsRequest",
        summary=summary,
        responses=_ERRORS,
        response_model_exclude_none=True,
    )(handler)
    return handler


verify_request = _step("verify", "Mark a relative's request verified after checking evidence")
start_request = _step("start", "Mark a verified request in progress")


@router.post(
    "/{request_id}/complete",
    operation_id="completeRightsRequest",
    summary="Complete a request: runs its action (bundle, correction, restriction,"
    " withdrawal, explanation or erasure)",
    description=(
        "A deletion under a legal hold restricts the subject instead; the result says what was"
        " kept and why (PIPL art. 47)."
    ),
    responses=_ERRORS,
    response_model_exclude_none=True,
)
def complete_request(
    request_id: RequestId,
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("rights:manage")],
) -> RightsRequestRead:
    view = service.complete(
        session, crypto=rt.crypto, policy=rt.policy, principal=principal, request_id=request_id
    )
    return _read(view)


@router.post(
    "/{request_id}/reject",
    operation_id="rejectRightsRequest",
    summary="Reject a request with the reason the customer is told (PIPL art. 50)",
    responses=_ERRORS,
    response_model_exclude_none=True,
)
def reject_request(
    request_id: RequestId,
    body: RejectBody,
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("rights:manage")],
) -> RightsRequestRead:
    view = service.reject(
        session,
        crypto=rt.crypto,
        actor=principal.actor,
        request_id=request_id,
        reason=body.reason,
    )
    return _read(view)


@router.post(
    "/{request_id}/extend",
    operation_id="extendRightsRequest",
    summary="Extend the due date by working days, with a reason (30 days from receipt at most)",
    responses=_ERRORS,
    response_model_exclude_none=True,
)
def extend_request(
    request_id: RequestId,
    body: ExtendBody,
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("rights:manage")],
) -> RightsRequestRead:
    view = service.extend(
        session,
        crypto=rt.crypto,
        policy=rt.policy,
        actor=principal.actor,
        request_id=request_id,
        working_days=body.working_days,
        reason=body.reason,
    )
    return _read(view)


@router.get(
    "/{request_id}/export",
    operation_id="getRightsExportLink",
    summary="A 15-minute download link for a completed access, copy or explanation request",
    responses=_ERRORS,
)
def export_link(
    request_id: RequestId,
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("rights:manage")],
) -> ExportLinkRead:
    link = service.export_link(
        session, key=service.link_key(rt.cursor_key), actor=principal.actor, request_id=request_id
    )
    return ExportLinkRead(url=link.url, expires_at=link.expires_at)


@downloads_router.get(
    "/{token}",
    operation_id="downloadRightsExport",
    summary="Download through a link from .../export: JSON, or a zip of CSV files",
    description="The link is the credential: valid 15 minutes, every download audited.",
    response_class=Response,
    responses={
        200: {
            "description": "The bundle",
            "content": {
                "application/json": {"example": _BUNDLE_EXAMPLE},
                "application/zip": {
                    "schema": {"type": "string", "format": "binary"},
                    "example": "(zip: profile.csv, identities.csv, consents.csv, events.csv, …)",
                },
            },
        },
        **problem_responses(403, 404, 422),
    },
)
def download_export(
    token: Annotated[str, Path(max_length=1024)],
    session: SessionDep,
    rt: RuntimeDep,
    fmt: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
) -> Response:
    body, media, name = service.download(
        session,
        crypto=rt.crypto,
        policy=rt.policy,
        key=service.link_key(rt.cursor_key),
        token=token,
        fmt=fmt,
    )
    return Response(
        content=body,
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )
