"""Profiles over HTTP: each route parses, names its scope and purpose, calls one service."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Body, Response, status
from fastapi.responses import JSONResponse

from cdp.api import PageDep, PurposeDep, RuntimeDep, SessionDep, encode_cursor, require
from cdp.auth import service as auth
from cdp.auth.principal import Principal
from cdp.consent.schemas import SubjectTokenRead
from cdp.errors import problem_responses
from cdp.profiles import service
from cdp.profiles.schemas import (
    DEVICE_ID,
    IDENTIFIERS,
    LOOKUP_KINDS,
    ProfileBatchCreate,
    ProfileBatchGet,
    ProfileBatchRead,
    ProfileCreate,
    ProfileIds,
    ProfileLookup,
    ProfileMerge,
    ProfilePage,
    ProfileRead,
    ProfileWrite,
)
from cdp.rights import erasure
from cdp.rights.erasure import ERASURE_WITHHELD_EXAMPLE

router = APIRouter(prefix="/v1/profiles", tags=["profiles"])
_READ_ERRORS = problem_responses(400, 401, 403, 404, 409, 422, 429)


def _read(view: service.ProfileView) -> ProfileRead:
    ids = {k: v for k, v in view.values.items() if k in IDENTIFIERS}
    others = {k: v for k, v in view.values.items() if k not in LOOKUP_KINDS}
    return ProfileRead(
        id=view.id,
        created_at=view.created_at,
        updated_at=view.updated_at,
        traits=others,
        device_ids=view.values.get(DEVICE_ID),
        **ids,
    )


@router.post(
    "",
    operation_id="createProfile",
    summary="Create a profile; PI fields are encrypted, identifiers blind-indexed",
    description=(
        "A new subject has no consent on record yet, so the `X-Purpose` must rest on another"
        " legal basis (PIPL art. 13), e.g. `service_delivery` (contract); a consent-based"
        " purpose is refused with `consent_required`. Record consents afterwards with"
        " `POST /v1/profiles/{id}/consents` or let the customer give them on /v1/self/consents."
    ),
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(400, 401, 403, 409, 422, 429),
    response_model_exclude_none=True,
)
def create_profile(
    body: ProfileCreate,
    session: SessionDep,
    rt: RuntimeDep,
    purpose: PurposeDep,
    principal: Annotated[Principal, require("profiles:write")],
) -> ProfileRead:
    view = service.create(
        session,
        crypto=rt.crypto,
        policy=rt.policy,
        principal=principal,
        purpose=purpose,
        values=body.values(),
    )
    return _read(view)


@router.post(
    "/batch",
    operation_id="createProfiles",
    summary="Create up to 500 profiles at once, all or none (an import)",
    description=(
        "The same rules as `POST /v1/profiles` for each item, in one transaction: when any"
        " item is invalid or one of its identifiers already belongs to a profile (or to an"
        " earlier item), nothing is stored and the error names the item's index."
    ),
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(400, 401, 403, 409, 413, 422, 429),
    response_model=ProfileBatchRead,
    response_model_exclude_none=True,
)
def create_profiles(
    body: ProfileBatchCreate,
    session: SessionDep,
    rt: RuntimeDep,
    purpose: PurposeDep,
    principal: Annotated[Principal, require("profiles:write")],
) -> ProfileBatchRead:
    views = service.create_many(
        session,
        crypto=rt.crypto,
        policy=rt.policy,
        principal=principal,
        purpose=purpose,
        items=[item.values() for item in body.profiles],
    )
    return ProfileBatchRead(items=[_read(v) for v in views])


@router.post(
    "/batch-get",
    operation_id="getProfiles",
    summary="Read up to 500 profiles by id with the fields the purpose allows",
    description=(
        "Each profile is decided on its own, as `GET /v1/profiles/{id}` would: one without a"
        " basis for the purpose is listed in `withheld` instead of failing the whole call."
        " Every profile returned is an audited read."
    ),
    responses=problem_responses(400, 401, 403, 413, 422, 429),
    response_model=ProfileBatchGet,
)
def get_profiles(
    body: ProfileIds,
    session: SessionDep,
    rt: RuntimeDep,
    purpose: PurposeDep,
    principal: Annotated[Principal, require("profiles:read")],
) -> JSONResponse:
    views, withheld = service.read_many(
        session,
        crypto=rt.crypto,
        policy=rt.policy,
        principal=principal,
        purpose=purpose,
        subject_ids=[str(i) for i in body.ids],
    )
    items = [_read(v).model_dump(mode="json", exclude_none=True) for v in views]
    return JSONResponse({"items": items, "withheld": withheld})


@router.get(
    "",
    operation_id="listProfiles",
    summary="List profiles with the fields the purpose allows",
    description=(
        "Subjects without a basis for the purpose (no current consent, restricted processing,"
        " or an opt-out of personalisation) are left out, so a page may hold fewer than"
        " `limit` items: follow `next_cursor` until it is null."
    ),
    responses=problem_responses(400, 401, 403, 422, 429),
    response_model=ProfilePage,
)
def list_profiles(
    session: SessionDep,
    rt: RuntimeDep,
    page: PageDep,
    purpose: PurposeDep,
    principal: Annotated[Principal, require("profiles:read")],
) -> JSONResponse:
    views, last = service.list_profiles(
        session,
        crypto=rt.crypto,
        policy=rt.policy,
        principal=principal,
        purpose=purpose,
        after=page.after,
        limit=page.limit,
    )
    # Subjects without a basis for the purpose are left out, so a page may hold fewer items.
    cursor = encode_cursor(rt, last) if last is not None else None
    # Withheld fields are left out of each item, while next_cursor stays even when null.
    items = [_read(v).model_dump(mode="json", exclude_none=True) for v in views]
    return JSONResponse({"items": items, "next_cursor": cursor})


@router.post(
    "/lookup",
    operation_id="lookupProfile",
    summary="Find a profile by email, phone, external id or WeChat id (blind index)",
    responses=_READ_ERRORS,
    response_model_exclude_none=True,
)
def lookup_profile(
    body: ProfileLookup,
    session: SessionDep,
    rt: RuntimeDep,
    purpose: PurposeDep,
    principal: Annotated[Principal, require("profiles:read")],
) -> ProfileRead:
    kind, value = body.pairs()[0]
    view = service.lookup(
        session,
        crypto=rt.crypto,
        policy=rt.policy,
        principal=principal,
        purpose=purpose,
        kind=kind,
        value=value,
    )
    return _read(view)


@router.get(
    "/{profile_id:uuid}",
    operation_id="getProfile",
    summary="Read a profile: only the fields the purpose allows",
    responses=_READ_ERRORS,
    response_model_exclude_none=True,
)
def get_profile(
    profile_id: UUID,
    session: SessionDep,
    rt: RuntimeDep,
    purpose: PurposeDep,
    principal: Annotated[Principal, require("profiles:read")],
) -> ProfileRead:
    view = service.read(
        session,
        crypto=rt.crypto,
        policy=rt.policy,
        principal=principal,
        purpose=purpose,
        subject_id=str(profile_id),
    )
    return _read(view)


@router.patch(
    "/{profile_id:uuid}",
    operation_id="updateProfile",
    summary="Update a profile (JSON merge patch: null removes a field)",
    responses=_READ_ERRORS,
    response_model_exclude_none=True,
    openapi_extra={
        "requestBody": {
            "content": {
                "application/merge-patch+json": {
                    "schema": {"$ref": "#/components/schemas/ProfileWrite"},
                    "example": {"email": "new@example.cn", "traits": {"name": None}},
                }
            }
        }
    },
)
def update_profile(
    profile_id: UUID,
    body: Annotated[ProfileWrite, Body()],
    session: SessionDep,
    rt: RuntimeDep,
    purpose: PurposeDep,
    principal: Annotated[Principal, require("profiles:write")],
) -> ProfileRead:
    view = service.update(
        session,
        crypto=rt.crypto,
        policy=rt.policy,
        principal=principal,
        purpose=purpose,
        subject_id=str(profile_id),
        patch=body.values(),
    )
    return _read(view)


@router.delete(
    "/{profile_id:uuid}",
    operation_id="eraseProfile",
    summary="Erase a profile and all its data in every domain; its data key is destroyed",
    description=(
        "The same routine as a deletion request (cdp.rights.erasure). 204 when erased. Under a"
        " legal hold the subject is restricted instead and 200 says what was kept and why"
        " (PIPL art. 47)."
    ),
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={
        200: {
            "description": "Restricted instead of erased: what a legal hold keeps, and why",
            "content": {"application/json": {"example": ERASURE_WITHHELD_EXAMPLE}},
        },
        **problem_responses(401, 403, 404, 422, 429),
    },
)
def erase_profile(
    profile_id: UUID,
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("profiles:delete")],
) -> Response:
    result = erasure.erase_subject(
        session,
        crypto=rt.crypto,
        policy=rt.policy,
        actor=principal.actor,
        subject_id=str(profile_id),
        reason="api",
    )
    if not result.erased:
        return JSONResponse(result.as_dict())
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{profile_id:uuid}/merge",
    operation_id="mergeProfiles",
    summary="Merge another profile of the same customer into this one",
    responses=_READ_ERRORS,
    response_model_exclude_none=True,
)
def merge_profiles(
    profile_id: UUID,
    body: ProfileMerge,
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("profiles:write")],
) -> ProfileRead:
    view = service.merge(
        session,
        crypto=rt.crypto,
        policy=rt.policy,
        principal=principal,
        target_id=str(profile_id),
        source_id=body.source_id,
    )
    return _read(view)


@router.post(
    "/{profile_id:uuid}/subject-token",
    operation_id="issueSubjectToken",
    summary="A short-lived customer token for a subject the app has verified (/v1/self/*)",
    responses=problem_responses(401, 403, 404, 422, 429),
)
def issue_subject_token(
    profile_id: UUID,
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("subjects:token")],
) -> SubjectTokenRead:
    issued = auth.issue_subject_token(
        session,
        policy=rt.policy,
        tokens=rt.tokens,
        principal=principal,
        subject_id=str(profile_id),
        ttl_seconds=rt.settings.subject_token_ttl_seconds,
    )
    return SubjectTokenRead(
        access_token=issued.access_token,
        expires_in=issued.expires_in,
        scope=issued.scope,
        subject_id=str(profile_id),
    )
