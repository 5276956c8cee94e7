"""Segments over HTTP: each route parses, names its scope and purpose, calls one service."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Response, status
from starlette.convertors import Convertor, register_url_convertor

from cdp.api import PageDep, PurposeDep, RuntimeDep, SessionDep, SubjectDep, encode_cursor, require
from cdp.auth.principal import Principal
from cdp.errors import problem_responses
from cdp.segments import service
from cdp.segments.schemas import (
    Explanation,
    MemberPage,
    PreviewRead,
    ProfileSegments,
    RefreshRead,
    SegmentCreate,
    SegmentList,
    SegmentPreview,
    SegmentRead,
    SegmentWrite,
    SelfSegments,
)


class _SegmentKey(Convertor[str]):
    """A segment key in a path; never `preview`, so /v1/segments/preview is only that route."""

    regex = r"(?!preview(?:/|$))[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("segment_key", _SegmentKey())
router = APIRouter(tags=["segments"])
self_router = APIRouter(prefix="/v1/self", tags=["self-service"])
# Any text routes here; an unknown key is a 404 from the service.
KeyPath = Annotated[
    str, Path(max_length=64, description="Segment key, e.g. vip.", examples=["vip"])
]


def _read(found: service.Definition) -> SegmentRead:
    return SegmentRead(
        key=found.key,
        name=found.name,
        names=found.names,
        description=found.description,
        condition=found.condition,
        builtin=found.builtin,
        updated_at=found.updated_at,
    )


@router.get(
    "/v1/segments",
    operation_id="listSegments",
    summary="Segment definitions: the built-ins from policy and the ones defined here",
    responses=problem_responses(401, 403, 429),
)
def list_segments(
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("segments:read")],
) -> SegmentList:
    found = service.definitions(session, policy=rt.policy)
    return SegmentList(items=[_read(d) for d in found.values()])


@router.post(
    "/v1/segments",
    operation_id="createSegment",
    summary="Define a segment with the JSON condition language",
    description="Trait conditions may use plain profile fields only; an encrypted field is a 422"
    " `invalid_condition` naming the JSON path.",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 409, 422, 429),
)
def create_segment(
    body: SegmentCreate,
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("segments:write")],
) -> SegmentRead:
    found = service.create(
        session,
        policy=rt.policy,
        actor=principal.actor,
        key=body.key,
        name=body.name,
        description=body.description,
        condition=body.condition,
    )
    return _read(found)


@router.post(
    "/v1/segments/preview",
    operation_id="previewSegment",
    summary="Count the subjects a draft condition matches (suppressed under k)",
    responses=problem_responses(401, 403, 422, 429),
)
def preview_segment(
    body: SegmentPreview,
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("segments:read")],
) -> PreviewRead:
    return PreviewRead(count=service.preview(session, policy=rt.policy, condition=body.condition))


@router.get(
    "/v1/segments/{key:segment_key}",
    operation_id="getSegment",
    summary="One segment definition",
    responses=problem_responses(401, 403, 404, 422, 429),
)
def get_segment(
    key: KeyPath,
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("segments:read")],
) -> SegmentRead:
    return _read(service.get(session, policy=rt.policy, key=key))


@router.put(
    "/v1/segments/{key:segment_key}",
    operation_id="updateSegment",
    summary="Replace a segment's definition (built-ins are edited in policies/segments.yaml)",
    responses=problem_responses(401, 403, 404, 409, 422, 429),
)
def update_segment(
    key: KeyPath,
    body: SegmentWrite,
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("segments:write")],
) -> SegmentRead:
    found = service.update(
        session,
        policy=rt.policy,
        actor=principal.actor,
        key=key,
        name=body.name,
        description=body.description,
        condition=body.condition,
    )
    return _read(found)


@router.delete(
    "/v1/segments/{key:segment_key}",
    operation_id="deleteSegment",
    summary="Delete a segment defined here, with its snapshot (its history stays)",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 409, 422, 429),
)
def delete_segment(
    key: KeyPath,
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("segments:write")],
) -> Response:
    service.remove(session, policy=rt.policy, actor=principal.actor, key=key)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/v1/segments/{key:segment_key}/members",
    operation_id="listSegmentMembers",
    summary="Members the purpose may use: no consent, restricted or art. 24 opt-out are left out",
    description="Profile ids in id order; follow `next_cursor` until it is null.",
    responses=problem_responses(400, 401, 403, 404, 422, 429),
)
def list_segment_members(
    key: KeyPath,
    session: SessionDep,
    rt: RuntimeDep,
    page: PageDep,
    purpose: PurposeDep,
    principal: Annotated[Principal, require("segments:read")],
) -> MemberPage:
    ids, last = service.members_page(
        session,
        policy=rt.policy,
        principal=principal,
        key=key,
        purpose=purpose,
        after=page.after,
        limit=page.limit,
    )
    return MemberPage(items=ids, next_cursor=encode_cursor(rt, last) if last else None)


@router.get(
    "/v1/segments/{key:segment_key}/members/{profile_id}/explanation",
    operation_id="explainSegmentMembership",
    summary="Whether a profile is in the segment and the conditions that decided it",
    responses=problem_responses(401, 403, 404, 422, 429),
)
def explain_membership(
    key: KeyPath,
    profile_id: UUID,
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("segments:read")],
) -> Explanation:
    result = service.explain(
        session, policy=rt.policy, actor=principal.actor, key=key, subject_id=str(profile_id)
    )
    return Explanation.model_validate(result)


@router.post(
    "/v1/segments/{key:segment_key}/refresh",
    operation_id="refreshSegment",
    summary="Refresh the segment's membership snapshot now, recording who entered and left",
    responses=problem_responses(401, 403, 404, 422, 429),
)
def refresh_segment(
    key: KeyPath,
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("segments:write")],
) -> RefreshRead:
    (result,) = service.refresh(session, policy=rt.policy, actor=principal.actor, key=key)
    return RefreshRead(
        segment=result.segment,
        members=result.members,
        entered=result.entered,
        left=result.left,
        refreshed_at=result.refreshed_at,
    )


@router.get(
    "/v1/profiles/{profile_id}/segments",
    operation_id="listProfileSegments",
    summary="The segments a profile is in, when the purpose may use its data",
    responses=problem_responses(400, 401, 403, 404, 422, 429),
)
def list_profile_segments(
    profile_id: UUID,
    session: SessionDep,
    rt: RuntimeDep,
    purpose: PurposeDep,
    principal: Annotated[Principal, require("segments:read")],
) -> ProfileSegments:
    found = service.profile_segments(
        session, policy=rt.policy, principal=principal, purpose=purpose, subject_id=str(profile_id)
    )
    return ProfileSegments(
        subject_id=str(profile_id), items=[{"key": d.key, "name": d.name} for d in found]
    )


@self_router.get(
    "/segments",
    operation_id="getSelfSegments",
    summary="The customer's segments, each with the conditions that decided it",
    responses=problem_responses(401, 403, 429),
)
def get_self_segments(session: SessionDep, rt: RuntimeDep, subject: SubjectDep) -> SelfSegments:
    items = service.subject_segments(session, policy=rt.policy, subject_id=subject.id)
    return SelfSegments(
        items=[
            Explanation.model_validate(
                {
                    "segment": i["key"],
                    "name": i["name"],
                    "subject_id": subject.id,
                    **i["explanation"],
                }
            )
            for i in items
        ]
    )


@self_router.get(
    "/segments/{key:segment_key}/explanation",
    operation_id="explainSelfSegment",
    summary="Why the customer is, or is not, in one segment",
    responses=problem_responses(401, 403, 404, 422, 429),
)
def explain_self_segment(
    key: KeyPath, session: SessionDep, rt: RuntimeDep, subject: SubjectDep
) -> Explanation:
    result = service.explain(
        session, policy=rt.policy, actor=subject.actor, key=key, subject_id=subject.id
    )
    return Explanation.model_validate(result)
