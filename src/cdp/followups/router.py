"""Follow-ups over HTTP: plans, scheduling, the task queue and a profile's interactions."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.responses import PlainTextResponse

from cdp.api import (
    PageDep,
    PurposeDep,
    Rfc3339Aware,
    RuntimeDep,
    SessionDep,
    encode_cursor,
    encode_time_cursor,
    known_query_only,
    require,
    time_cursor_after,
)
from cdp.auth.principal import Principal
from cdp.crypto import SubjectKeys
from cdp.errors import ValidationFailed, problem_responses
from cdp.feedback.metrics import Period, window
from cdp.followups import metrics, service, tasks
from cdp.followups.models import FollowupPlan, FollowupTask, Interaction
from cdp.followups.schemas import (
    FollowupMetrics,
    FollowupReport,
    InteractionCreate,
    InteractionPage,
    InteractionRead,
    PlanCreate,
    PlanPage,
    PlanRead,
    ScheduleRead,
    TaskPage,
    TaskRead,
    TaskStatus,
    TaskUpdate,
)

router = APIRouter(tags=["followups"])
_ERRORS = problem_responses(400, 401, 403, 404, 409, 422, 429)


def _plan(plan: FollowupPlan, members: int | None) -> PlanRead:
    return PlanRead(
        id=plan.id,
        name=plan.name,
        purpose=plan.purpose,
        channel=plan.channel,
        owner=plan.owner,
        team=plan.team,
        script=plan.script,
        segment_key=plan.segment_key,
        trigger=plan.trigger,
        start_at=plan.start_at,
        every_days=plan.every_days,
        occurrences=plan.occurrences,
        members=members,
        created_by=plan.created_by,
        created_at=plan.created_at,
    )


def _task(task: FollowupTask) -> TaskRead:
    on_time = None if task.completed_at is None else task.completed_at <= task.due_at
    return TaskRead(
        id=task.id,
        plan_id=task.plan_id,
        subject_id=task.subject_id,
        occurrence=task.occurrence,
        purpose=task.purpose,
        channel=task.channel,
        owner=task.owner,
        team=task.team,
        segment_key=task.segment_key,
        due_at=task.due_at,
        status=task.status,
        outcome=task.outcome,
        completed_at=task.completed_at,
        interaction_id=task.interaction_id,
        on_time=on_time if task.status == "done" else None,
    )


def _interaction(row: Interaction, keys: SubjectKeys) -> InteractionRead:
    notes, next_step = tasks.opened(keys, row)
    return InteractionRead(
        id=row.id,
        subject_id=row.subject_id,
        task_id=row.task_id,
        purpose=row.purpose,
        channel=row.channel,
        outcome=row.outcome,
        notes=notes,
        next_step=next_step,
        actor=row.actor,
        at=row.at,
    )


@router.post(
    "/v1/followup-plans",
    operation_id="createFollowupPlan",
    summary="Create a follow-up plan: a segment, a list of profiles or a segment trigger",
    description=(
        "The purpose must cover the category of the channel's contact field (phone and e-mail:"
        " `contact`; online: `identifier`, a WeChat id; visit: `contact`, arranged by phone)."
        " Tasks are created by `POST /v1/followup-plans/{id}/schedule`."
    ),
    status_code=status.HTTP_201_CREATED,
    responses=_ERRORS,
)
def create_plan(
    body: PlanCreate,
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("followups:write")],
) -> PlanRead:
    trigger = body.trigger
    view = service.create_plan(
        session,
        policy=rt.policy,
        principal=principal,
        data=service.PlanInput(
            name=body.name,
            purpose=body.purpose,
            channel=body.channel,
            owner=body.owner,
            team=body.team,
            script=body.script,
            start_at=body.start_at,
            every_days=body.every_days,
            occurrences=body.occurrences,
            segment_key=body.segment_key,
            subject_ids=[str(s) for s in body.subject_ids] if body.subject_ids else None,
            trigger=service.Trigger(
                trigger.segment, trigger.on, trigger.within_days, trigger.only_segment
            )
            if trigger
            else None,
        ),
    )
    return _plan(view.plan, view.members)


@router.get(
    "/v1/followup-plans",
    operation_id="listFollowupPlans",
    dependencies=[known_query_only("limit", "cursor")],
    summary="List follow-up plans",
    responses=problem_responses(401, 403, 422, 429),
)
def list_plans(
    session: SessionDep,
    rt: RuntimeDep,
    page: PageDep,
    principal: Annotated[Principal, require("followups:read")],
) -> PlanPage:
    plans, last = service.list_plans(session, after=page.after, limit=page.limit)
    counts = service.member_counts(session, [p.id for p in plans])
    return PlanPage(
        items=[_plan(p, None if p.trigger else counts.get(p.id, 0)) for p in plans],
        next_cursor=encode_cursor(rt, last) if last else None,
    )


@router.post(
    "/v1/followup-plans/{plan_id:uuid}/schedule",
    operation_id="scheduleFollowupPlan",
    summary="Generate the plan's tasks for subjects whose consent and contact allow it",
    description=(
        "Members without a basis for the plan's purpose (no current consent, restricted, an"
        " art. 24 opt-out for a personalisation purpose) or without the channel's contact field"
        " are skipped. A due time in the policy's quiet hours moves to their end. A triggered"
        " plan turns the segment changes since its last run into tasks. Running it again"
        " creates nothing twice."
    ),
    responses=_ERRORS,
)
def schedule_plan(
    plan_id: UUID,
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("followups:write")],
) -> ScheduleRead:
    result = service.schedule(session, policy=rt.policy, principal=principal, plan_id=str(plan_id))
    return ScheduleRead(
        plan_id=result.plan_id,
        members=result.members,
        eligible=result.eligible,
        skipped=result.members - result.eligible,
        created=result.created,
        due=result.due,
    )


@router.get(
    "/v1/followups",
    operation_id="listFollowupTasks",
    dependencies=[
        known_query_only(
            "limit",
            "cursor",
            "owner",
            "team",
            "status",
            "plan_id",
            "subject_id",
            "due_before",
            "due_after",
        )
    ],
    summary="The task queue, earliest due first, by owner, team, status and due time",
    description="Tasks name subjects by pseudonymous id only; contact details are read from the"
    " profile under the task's purpose.",
    responses=problem_responses(401, 403, 422, 429),
)
def list_tasks(
    session: SessionDep,
    rt: RuntimeDep,
    page: PageDep,
    principal: Annotated[Principal, require("followups:read")],
    owner: Annotated[str | None, Query(max_length=80)] = None,
    team: Annotated[str | None, Query(max_length=80)] = None,
    status_: Annotated[TaskStatus | None, Query(alias="status")] = None,
    plan_id: Annotated[UUID | None, Query()] = None,
    subject_id: Annotated[UUID | None, Query()] = None,
    due_before: Annotated[Rfc3339Aware | None, Query()] = None,
    due_after: Annotated[Rfc3339Aware | None, Query()] = None,
) -> TaskPage:
    found, last = tasks.list_tasks(
        session,
        where=tasks.TaskFilter(
            owner=owner,
            team=team,
            status=status_,
            plan_id=str(plan_id) if plan_id else None,
            subject_id=str(subject_id) if subject_id else None,
            due_before=due_before,
            due_after=due_after,
        ),
        after=time_cursor_after(page.after, int),
        limit=page.limit,
    )
    return TaskPage(items=[_task(t) for t in found], next_cursor=encode_time_cursor(rt, last))


@router.patch(
    "/v1/followups/{task_id}",
    operation_id="updateFollowupTask",
    summary="Complete a task with its outcome (records an interaction) or cancel it",
    description=(
        "Uses the task's purpose: the caller must hold it and the subject must still have a"
        " basis for it. Notes need a purpose that covers `feedback`. A task already done or"
        " cancelled is 409 `invalid_transition`."
    ),
    responses=_ERRORS,
)
def update_task(
    task_id: Annotated[int, Path(ge=1, le=2**31 - 1, description="The task id.")],
    body: TaskUpdate,
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("followups:write")],
) -> TaskRead:
    task = tasks.update_task(
        session,
        crypto=rt.crypto,
        policy=rt.policy,
        principal=principal,
        task_id=task_id,
        change=tasks.TaskChange(body.status, body.outcome, body.notes, body.next_step),
    )
    return _task(task)


@router.post(
    "/v1/profiles/{profile_id:uuid}/interactions",
    operation_id="recordInteraction",
    summary="Record a contact by phone, e-mail, online message or visit; notes encrypted",
    status_code=status.HTTP_201_CREATED,
    responses=_ERRORS,
)
def record_interaction(
    profile_id: UUID,
    body: InteractionCreate,
    session: SessionDep,
    rt: RuntimeDep,
    purpose: PurposeDep,
    principal: Annotated[Principal, require("followups:write")],
) -> InteractionRead:
    row, keys = tasks.record_interaction(
        session,
        crypto=rt.crypto,
        policy=rt.policy,
        principal=principal,
        purpose=purpose,
        subject_id=str(profile_id),
        data=tasks.InteractionInput(body.channel, body.outcome, body.notes, body.next_step),
    )
    return _interaction(row, keys)


@router.get(
    "/v1/profiles/{profile_id:uuid}/interactions",
    operation_id="listInteractions",
    dependencies=[known_query_only("limit", "cursor")],
    summary="A profile's interactions, newest first, with their notes",
    description="The `X-Purpose` must cover the `feedback` category and have a basis.",
    responses=_ERRORS,
)
def list_interactions(
    profile_id: UUID,
    session: SessionDep,
    rt: RuntimeDep,
    page: PageDep,
    purpose: PurposeDep,
    principal: Annotated[Principal, require("followups:read")],
) -> InteractionPage:
    after = page.after
    try:
        after_id = int(after) if after is not None else None
    except ValueError as exc:
        raise ValidationFailed("cursor was not issued by this server") from exc
    rows, keys, last = tasks.list_interactions(
        session,
        crypto=rt.crypto,
        policy=rt.policy,
        principal=principal,
        purpose=purpose,
        subject_id=str(profile_id),
        after=after_id,
        limit=page.limit,
    )
    return InteractionPage(
        items=[_interaction(r, keys) for r in rows],
        next_cursor=encode_cursor(rt, str(last)) if last else None,
    )


metrics_router = APIRouter(prefix="/v1/metrics", tags=["metrics"])
_CSV_EXAMPLE = (
    "section,group,metric,value,subjects,suppressed\n"
    "followups,all,due,1200,1013,false\n"
    "followups,all,followup_rate,0.86,1013,false\n"
    "by_owner,agent-3,followup_rate,,,true\n"
)


@metrics_router.get(
    "/followups",
    operation_id="getFollowupMetrics",
    dependencies=[known_query_only("from", "to", "by", "period")],
    summary="Follow-up rate (tasks done on time / tasks due) by period, owner, team, segment",
    description=(
        "Tasks whose due time lies in [from, to) (default: the last 90 days) and has passed."
        " A cell over fewer than `k` customers is null with `suppressed: true`."
    ),
    response_model=FollowupMetrics,
    responses=problem_responses(401, 403, 422, 429),
)
def followup_metrics(
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("metrics:read")],
    start: Annotated[Rfc3339Aware | None, Query(alias="from")] = None,
    end: Annotated[Rfc3339Aware | None, Query(alias="to")] = None,
    by: Annotated[metrics.Dimension, Query()] = "period",
    period: Annotated[Period, Query()] = "month",
) -> dict[str, Any]:
    start, end = window(start, end)
    return metrics.followup_metrics(
        session, k=rt.policy.settings.k_anonymity, start=start, end=end, by=by, period=period
    )


@metrics_router.get(
    "/followups/report",
    operation_id="getFollowupReport",
    dependencies=[known_query_only("month", "format")],
    summary="The monthly follow-up analysis, as JSON or CSV",
    description="CSV with `Accept: text/csv` or `?format=csv`: one line per cell; a suppressed"
    " cell has an empty value.",
    response_model=FollowupReport,
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}, "example": _CSV_EXAMPLE}}},
        **problem_responses(401, 403, 422, 429),
    },
)
def followup_report(
    request: Request,
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("metrics:read")],
    month: Annotated[str, Query(pattern=r"^\d{4}-\d{2}$", examples=["2026-11"])],
    format_: Annotated[Literal["json", "csv"] | None, Query(alias="format")] = None,
) -> Any:
    report = metrics.monthly_report(session, k=rt.policy.settings.k_anonymity, month=month)
    wants_csv = format_ == "csv" or (
        format_ is None and "text/csv" in request.headers.get("accept", "")
    )
    if wants_csv:
        return PlainTextResponse(
            metrics.report_csv(report),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="followups-{month}.csv"'},
        )
    return report
