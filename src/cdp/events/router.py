"""Tracking over HTTP: the native batch, the Segment-compatible API, a subject's events and a
source's violation counters."""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Path, Request, Response, status
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from cdp.api import (
    PageDep,
    PurposeDep,
    Runtime,
    RuntimeDep,
    SessionDep,
    decode_cursor,
    encode_cursor,
    encode_time_cursor,
    request_id,
    require,
    runtime,
    time_cursor_after,
)
from cdp.audit.service import RequestContext
from cdp.auth import service as auth
from cdp.auth.principal import Principal
from cdp.db import unit_of_work, utcnow
from cdp.errors import (
    BatchTooLarge,
    CdpError,
    InsufficientScope,
    InvalidWriteKey,
    PayloadTooLarge,
    RateLimited,
    UnsupportedMediaType,
    ValidationFailed,
    WriteKeyRequired,
    problem_body,
    problem_responses,
)
from cdp.events import history, segment, service
from cdp.events.committer import GroupCommit
from cdp.events.schemas import (
    SEGMENT_BATCH,
    SEGMENT_EXAMPLES,
    SEGMENT_MESSAGE,
    BatchResult,
    Dropped,
    EventBatch,
    EventIn,
    EventPage,
    EventRead,
    SegmentResult,
    ViolationPage,
    ViolationRead,
)
from cdp.events.service import MAX_BATCH, IngestResult, Message, Prepared

EVENTS_WRITE = "events:write"
router = APIRouter(prefix="/v1", tags=["tracking"])
_GROUP_COMMIT = "events.group_commit"
_group_commit_lock = threading.Lock()


def _group_commit(rt: Runtime) -> GroupCommit:
    found = rt.extras.get(_GROUP_COMMIT)
    if found is None:
        with _group_commit_lock:
            found = rt.extras.get(_GROUP_COMMIT)
            if found is None:
                found = GroupCommit(rt.sessions, rt.crypto, lambda: rt.policy)
                rt.extras[_GROUP_COMMIT] = found
    assert isinstance(found, GroupCommit)
    return found


def _ingest(
    session: Session,
    rt: Runtime,
    *,
    source_id: str,
    messages: list[Message],
    received_at: datetime,
    strict: bool,
) -> IngestResult:
    """Checks the request against the plan here, then stores it with the worker's other
    concurrent requests in one transaction (events.committer); answers after the commit."""

    def prepare() -> Prepared:
        return _prepare(rt, source_id, messages, received_at, strict=strict)

    prepared = prepare()
    # This request's transaction only read the caller's credentials: end it before waiting
    # on the shared one, which must write (SQLite has one writer at a time).
    session.commit()
    return _group_commit(rt).submit(prepared, prepare)


def _result(result: IngestResult) -> dict[str, Any]:
    return {
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "dropped": [Dropped(index=i, reason=r) for i, r in result.dropped],
    }


def _native(index: int, event: EventIn) -> Message:
    return Message(
        index=index,
        type=event.type,
        message_id=event.message_id,
        user_id=event.external_id,
        anonymous_id=event.anonymous_id,
        previous_id=event.previous_id,
        profile_id=str(event.profile_id) if event.profile_id else None,
        name=event.name,
        properties=event.properties,
        context=event.context,
        timestamp=event.timestamp,
    )


@router.post(
    "/events",
    operation_id="trackEvents",
    summary="Send a batch of events (≤ 500): planned, de-duplicated, consent-gated",
    status_code=status.HTTP_202_ACCEPTED,
    responses=problem_responses(401, 403, 413, 422, 429),
)
def track_events(
    body: EventBatch,
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require(EVENTS_WRITE)],
) -> BatchResult:
    if len(body.events) > MAX_BATCH:
        raise BatchTooLarge(f"at most {MAX_BATCH} events per batch, got {len(body.events)}")
    result = _ingest(
        session,
        rt,
        source_id=principal.id,
        messages=[_native(i, e) for i, e in enumerate(body.events)],
        received_at=utcnow(),
        strict=False,
    )
    return BatchResult(**_result(result))


# --- the Segment HTTP Tracking API ------------------------------------------------------------


class SegmentRoute(APIRoute):
    """Errors as the Segment SDKs read them: `code` and `message`, beside the problem fields."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def wrapped(request: Request) -> Response:
            try:
                return await handler(request)
            except CdpError as exc:
                return _segment_problem(request, exc)
            except StarletteHTTPException as exc:
                if exc.status_code != 413:
                    raise
                limit = runtime(request).settings.max_body_bytes
                return _segment_problem(
                    request, PayloadTooLarge(f"the request body exceeds {limit} bytes")
                )

        return wrapped


def _segment_problem(request: Request, exc: CdpError) -> JSONResponse:
    body = problem_body(
        status=exc.status,
        code=exc.code,
        title=exc.title,
        detail=exc.detail,
        request_id=request_id(request),
        errors=exc.errors,
    )
    body["message"] = exc.detail
    return JSONResponse(
        body, status_code=exc.status, headers=exc.headers, media_type="application/problem+json"
    )


segment_router = APIRouter(prefix="/v1", tags=["tracking"], route_class=SegmentRoute)


async def segment_body(request: Request) -> bytes:
    """The raw body whatever its Content-Type (analytics.js sends text/plain), inflated when
    gzip; the size limit applies to the inflated body too."""
    raw = await request.body()
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding in ("gzip", "x-gzip"):
        return segment.gunzip(raw, limit=runtime(request).settings.max_body_bytes)
    raise UnsupportedMediaType("Content-Encoding must be gzip or identity")


def _by_write_key(request: Request, session: Any, rt: Runtime, key: str) -> str:
    source_id = rt.write_keys.source_id(session, key)
    if source_id is None:
        raise InvalidWriteKey("the write key names no active source")
    _admit(request, rt, Principal(kind="source", id=source_id, role="source"))
    return source_id


def _admit(request: Request, rt: Runtime, principal: Principal) -> None:
    request.scope.setdefault("state", {})["principal"] = principal
    wait = rt.limiter.hit(principal.actor)
    if wait is not None:
        raise RateLimited("rate limit exceeded for this source", headers={"Retry-After": str(wait)})


def _header_credentials(request: Request, header_key: str | None) -> tuple[str, str] | None:
    """What the headers name: ("key", write key) from Basic (the user name) or X-Write-Key,
    ("bearer", token), or None (the body may name a write key)."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            user = base64.b64decode(value.strip(), validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidWriteKey("malformed Basic credentials") from None
        return "key", user
    if scheme.lower() == "bearer":
        return "bearer", value.strip()
    return ("key", header_key) if header_key else None


def _source_in_session(request: Request, rt: Runtime, kind: str, credential: str) -> str:
    """The source of a write key not remembered yet, or of a bearer token with events:write:
    both need the database, so this runs in the thread pool."""
    with unit_of_work(rt.sessions) as session:
        session.info["ctx"] = RequestContext(rt.policy.version, request_id(request))
        if kind == "key":
            return _by_write_key(request, session, rt, credential)
        claims = rt.tokens.verify(credential)
        principal = auth.principal_from_claims(session, policy=rt.policy, claims=claims)
        if not principal.has_scope(EVENTS_WRITE):
            raise InsufficientScope(f"this operation needs scope {EVENTS_WRITE}")
        _admit(request, rt, principal)
        return principal.id


async def _source(request: Request, rt: Runtime, kind: str, credential: str) -> str:
    if kind == "key":
        known = rt.write_keys.cached(credential)
        if known is not None:
            _admit(request, rt, Principal(kind="source", id=known, role="source"))
            return known
    return await run_in_threadpool(_source_in_session, request, rt, kind, credential)


# Bodies larger than this are parsed and checked in the thread pool, not on the event loop.
_INLINE_BODY_BYTES = 64 * 1024


def _parse_and_prepare(
    rt: Runtime, raw: bytes, kind: str, received_at: datetime, source_id: str | None
) -> tuple[segment.Body, Prepared | None]:
    body = segment.parse(raw, kind=kind, received_at=received_at)
    if source_id is None:
        return body, None
    return body, _prepare(rt, source_id, body.messages, received_at, strict=True)


def _prepare(
    rt: Runtime, source_id: str, messages: list[Message], received_at: datetime, *, strict: bool
) -> Prepared:
    return service.prepare(
        crypto=rt.crypto,
        policy=rt.policy,
        source_id=source_id,
        messages=messages,
        received_at=received_at,
        strict=strict,
    )


def _segment_endpoint(kind: str) -> Callable[..., Coroutine[Any, Any, SegmentResult]]:
    async def endpoint(
        request: Request,
        rt: RuntimeDep,
        raw: Annotated[bytes, Depends(segment_body)],
        x_write_key: Annotated[
            str | None,
            Header(max_length=200, description="The source's write key (or Basic, or body)."),
        ] = None,
    ) -> SegmentResult:
        """Async: a request whose write key is remembered never takes a thread; it waits for
        the group commit on the event loop (SDKs send many small requests at once)."""
        received_at = utcnow()
        credentials = _header_credentials(request, x_write_key)
        source_id = await _source(request, rt, *credentials) if credentials else None
        if len(raw) > _INLINE_BODY_BYTES:
            body, prepared = await run_in_threadpool(
                _parse_and_prepare, rt, raw, kind, received_at, source_id
            )
        else:
            body, prepared = _parse_and_prepare(rt, raw, kind, received_at, source_id)
        if source_id is None:
            if body.write_key is None:
                raise WriteKeyRequired(
                    "a write key is required: writeKey in the body, Basic or X-Write-Key"
                )
            source_id = await _source(request, rt, "key", body.write_key)
        if prepared is None:
            prepared = _prepare(rt, source_id, body.messages, received_at, strict=True)
        messages, sid = body.messages, source_id
        result = await _group_commit(rt).submit_async(
            prepared, lambda: _prepare(rt, sid, messages, received_at, strict=True)
        )
        return SegmentResult(**_result(result))

    return endpoint


_SEGMENT_DOC = (
    "Segment HTTP Tracking API, as analytics.js, segment-analytics-python and RudderStack "
    "SDKs send it. Authenticated by a source's write key (`writeKey` in the body, HTTP Basic "
    "user name with an empty password, or `X-Write-Key`) or a bearer token with events:write. "
    "Bodies may be gzip (`Content-Encoding: gzip`) and `Content-Type: text/plain`. Unusable "
    "messages are reported in `dropped`; the answer is 400 only when no message is usable. "
    "Short path: `/v1/{letter}`."
)
_SEGMENT_ERRORS = problem_responses(400, 401, 403, 413, 415, 422, 429)

for _short, _kind in segment.SHORT_PATHS.items():
    _schema = SEGMENT_BATCH if _kind == "batch" else SEGMENT_MESSAGE
    _extra = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _schema, "example": SEGMENT_EXAMPLES[_kind]}
            },
        }
    }
    segment_router.add_api_route(
        f"/{_kind}",
        _segment_endpoint(_kind),
        methods=["POST"],
        operation_id=f"segment{_kind.capitalize()}",
        name=f"segment{_kind.capitalize()}",
        summary=f"Segment-compatible {_kind} (write key)",
        description=_SEGMENT_DOC.replace("{letter}", _short),
        responses=_SEGMENT_ERRORS,
        openapi_extra=_extra,
    )
    segment_router.add_api_route(
        f"/{_short}",
        _segment_endpoint(_kind),
        methods=["POST"],
        name=f"segment{_kind.capitalize()}Short",
        include_in_schema=False,
    )


# --- reading back -----------------------------------------------------------------------------


@router.get(
    "/profiles/{profile_id:uuid}/events",
    operation_id="listProfileEvents",
    summary="A subject's events, newest first: PI properties only where the purpose allows",
    responses=problem_responses(400, 401, 403, 404, 409, 422, 429),
)
def list_profile_events(
    profile_id: UUID,
    session: SessionDep,
    rt: RuntimeDep,
    page: PageDep,
    purpose: PurposeDep,
    principal: Annotated[Principal, require("events:read")],
) -> EventPage:
    views, last = history.list_events(
        session,
        crypto=rt.crypto,
        policy=rt.policy,
        principal=principal,
        purpose=purpose,
        subject_id=str(profile_id),
        after=time_cursor_after(page.after, str),
        limit=page.limit,
    )
    return EventPage(
        items=[EventRead.model_validate(v, from_attributes=True) for v in views],
        next_cursor=encode_time_cursor(rt, last),
    )


@router.get(
    "/sources/{source_id}/violations",
    operation_id="listSourceViolations",
    summary="What a source sent that was dropped or rejected, counted by kind and event",
    responses=problem_responses(401, 403, 404, 422, 429),
)
def list_source_violations(
    session: SessionDep,
    rt: RuntimeDep,
    page: PageDep,
    principal: Annotated[Principal, require("sources:admin")],
    source_id: Annotated[str, Path(max_length=64, examples=["src_3f9a1c2b4d5e6f70"])],
) -> ViolationPage:
    after = None
    if page.cursor is not None:
        try:
            kind, name = json.loads(decode_cursor(rt, page.cursor))
        except (ValueError, TypeError):
            raise ValidationFailed("cursor was not issued by this endpoint") from None
        after = (str(kind), str(name))
    rows = history.list_violations(session, source_id=source_id, after=after, limit=page.limit)
    cursor = None
    if len(rows) == page.limit:
        cursor = encode_cursor(rt, json.dumps([rows[-1].kind, rows[-1].name]))
    return ViolationPage(items=[ViolationRead.model_validate(r) for r in rows], next_cursor=cursor)
