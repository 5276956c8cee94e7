"""Feedback over HTTP: each route parses, names its scope and purpose, calls one service."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, status

from cdp.api import (
    PageDep,
    PurposeDep,
    Rfc3339Aware,
    RuntimeDep,
    SessionDep,
    encode_time_cursor,
    known_query_only,
    require,
    time_cursor_after,
)
from cdp.auth.principal import Principal
from cdp.errors import problem_responses
from cdp.feedback import metrics, service
from cdp.feedback.metrics import Period
from cdp.feedback.schemas import (
    FeedbackCreate,
    FeedbackMetrics,
    FeedbackPage,
    FeedbackRead,
    FeedbackUpdate,
    Kind,
    Status,
)

router = APIRouter(prefix="/v1/feedback", tags=["feedback"])
_ERRORS = problem_responses(400, 401, 403, 404, 409, 422, 429)
_PURPOSE_NOTE = (
    " The `X-Purpose` must cover the `feedback` category and have a legal basis for the"
    " subject (e.g. `service_delivery` under the contract, or `customer_care` with consent)."
)


def _read(view: service.FeedbackView) -> FeedbackRead:
    r = view.row
    return FeedbackRead(
        id=r.id,
        subject_id=r.subject_id,
        kind=r.kind,
        status=r.status,
        purpose=r.purpose,
        topic=r.topic,
        csat=r.csat,
        nps=r.nps,
        comment=view.comment,
        answers=view.answers,
        resolution=view.resolution,
        assignee=r.assignee,
        reopen_count=r.reopen_count,
        created_at=r.created_at,
        updated_at=r.updated_at,
        resolved_at=r.resolved_at,
        closed_at=r.closed_at,
        time_to_resolve_seconds=view.time_to_resolve_seconds,
    )


@router.post(
    "",
    operation_id="createFeedback",
    summary="Record a survey answer, complaint or suggestion; free text is encrypted",
    description="A complaint starts `open`." + _PURPOSE_NOTE,
    status_code=status.HTTP_201_CREATED,
    responses=_ERRORS,
)
def create_feedback(
    body: FeedbackCreate,
    session: SessionDep,
    rt: RuntimeDep,
    purpose: PurposeDep,
    principal: Annotated[Principal, require("feedback:write")],
) -> FeedbackRead:
    view = service.create(
        session,
        crypto=rt.crypto,
        policy=rt.policy,
        principal=principal,
        purpose=purpose,
        data=service.FeedbackInput(
            subject_id=str(body.subject_id),
            kind=body.kind,
            topic=body.topic,
            csat=body.csat,
            nps=body.nps,
            comment=body.comment,
            answers=body.answers,
        ),
    )
    return _read(view)


@router.get(
    "",
    operation_id="listFeedback",
    dependencies=[
        known_query_only(
            "limit", "cursor", "subject_id", "kind", "status", "assignee", "from", "to"
        )
    ],
    summary="List feedback, newest first, with filters",
    description=(
        "Subjects without a basis for the purpose are left out, so a page may hold fewer than"
        " `limit` items: follow `next_cursor` until it is null." + _PURPOSE_NOTE
    ),
    responses=_ERRORS,
)
def list_feedback(
    session: SessionDep,
    rt: RuntimeDep,
    page: PageDep,
    purpose: PurposeDep,
    principal: Annotated[Principal, require("feedback:read")],
    subject_id: Annotated[UUID | None, Query(description="Only this profile's feedback.")] = None,
    kind: Annotated[Kind | None, Query()] = None,
    status_: Annotated[Status | None, Query(alias="status")] = None,
    assignee: Annotated[str | None, Query(max_length=80)] = None,
    created_from: Annotated[Rfc3339Aware | None, Query(alias="from")] = None,
    created_to: Annotated[Rfc3339Aware | None, Query(alias="to")] = None,
) -> FeedbackPage:
    views, last = service.list_feedback(
        session,
        crypto=rt.crypto,
        policy=rt.policy,
        principal=principal,
        purpose=purpose,
        where=service.FeedbackFilter(
            subject_id=str(subject_id) if subject_id else None,
            kind=kind,
            status=status_,
            assignee=assignee,
            created_from=created_from,
            created_to=created_to,
        ),
        after=time_cursor_after(page.after, str),
        limit=page.limit,
    )
    return FeedbackPage(items=[_read(v) for v in views], next_cursor=encode_time_cursor(rt, last))


@router.get(
    "/{feedback_id:uuid}",
    operation_id="getFeedback",
    summary="Read one feedback with its free text",
    description=_PURPOSE_NOTE.strip(),
    responses=_ERRORS,
)
def get_feedback(
    feedback_id: UUID,
    session: SessionDep,
    rt: RuntimeDep,
    purpose: PurposeDep,
    principal: Annotated[Principal, require("feedback:read")],
) -> FeedbackRead:
    view = service.read(
        session,
        crypto=rt.crypto,
        policy=rt.policy,
        principal=principal,
        purpose=purpose,
        feedback_id=str(feedback_id),
    )
    return _read(view)


@router.patch(
    "/{feedback_id:uuid}",
    operation_id="updateFeedback",
    summary="Move a complaint through its lifecycle, assign it, record the resolution",
    description=(
        "open → in_progress → resolved → closed; `status: open` reopens a resolved or closed"
        " complaint. Any other change is 409 `invalid_transition`." + _PURPOSE_NOTE
    ),
    responses=_ERRORS,
)
def update_feedback(
    feedback_id: UUID,
    body: FeedbackUpdate,
    session: SessionDep,
    rt: RuntimeDep,
    purpose: PurposeDep,
    principal: Annotated[Principal, require("feedback:write")],
) -> FeedbackRead:
    view = service.update(
        session,
        crypto=rt.crypto,
        policy=rt.policy,
        principal=principal,
        purpose=purpose,
        feedback_id=str(feedback_id),
        change=service.FeedbackChange(
            status=body.status,
            assignee=body.assignee,
            resolution=body.resolution,
            clear_assignee=body.unassign,
        ),
    )
    return _read(view)


metrics_router = APIRouter(prefix="/v1/metrics", tags=["metrics"])


@metrics_router.get(
    "/feedback",
    operation_id="getFeedbackMetrics",
    dependencies=[known_query_only("from", "to", "period")],
    summary="Satisfaction index: CSAT average and distribution, NPS, resolution rate and time",
    description=(
        "For feedback created in [from, to) (default: the last 90 days), overall and per"
        " period (UTC calendar). A cell over fewer than `k` customers is null with"
        " `suppressed: true`."
    ),
    response_model=FeedbackMetrics,
    responses=problem_responses(401, 403, 422, 429),
)
def feedback_metrics(
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("metrics:read")],
    start: Annotated[Rfc3339Aware | None, Query(alias="from")] = None,
    end: Annotated[Rfc3339Aware | None, Query(alias="to")] = None,
    period: Annotated[Period, Query()] = "month",
) -> dict[str, Any]:
    start, end = metrics.window(start, end)
    return metrics.feedback_metrics(
        session, k=rt.policy.settings.k_anonymity, start=start, end=end, period=period
    )
