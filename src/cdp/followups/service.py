"""Follow-up plans and scheduling: a plan's members become tasks with due dates, in SQL.

Scheduling is set-based: one INSERT ... SELECT per occurrence over the plan's members, with
the consent and channel rules of eligibility.allowed in its WHERE clause, so a plan of
100,000 members schedules in seconds. Scheduling twice creates nothing twice (unique plan,
subject, occurrence). One audit entry records each run with its counts; the per-subject
audit happens when staff open a task's subject (profiles, feedback) or record an interaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Integer,
    String,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from cdp.audit import service as audit
from cdp.auth.principal import Principal
from cdp.crypto import Crypto
from cdp.db import UTCDateTime, utcnow
from cdp.errors import NotFound, ValidationFailed
from cdp.followups import eligibility
from cdp.followups.models import FollowupPlan, FollowupPlanMember, FollowupTask, Interaction
from cdp.policy import Policy, decide
from cdp.profiles.models import Profile
from cdp.segments import service as segments
from cdp.segments.models import SegmentChange

MAX_MEMBERS = 100_000
_CHUNK = 5_000
# Written by the segments domain's refresh: who entered or left which segment, and when.
SEGMENT_CHANGE = SegmentChange.__table__


def segment_members(session: Session, *, policy: Policy, key: str, purpose: str) -> list[str]:
    """The segment's current members allowed for the purpose (NotFound for an unknown key)."""
    return segments.member_ids(session, policy=policy, key=key, purpose=purpose)


@dataclass(frozen=True, slots=True)
class Trigger:
    segment: str
    on: str  # enter | leave
    within_days: int
    only_segment: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "segment": self.segment,
            "on": self.on,
            "within_days": self.within_days,
            "only_segment": self.only_segment,
        }


@dataclass(frozen=True, slots=True)
class PlanInput:
    name: str
    purpose: str
    channel: str
    owner: str
    team: str | None = None
    script: str | None = None
    start_at: datetime | None = None
    every_days: int = 0
    occurrences: int = 1
    segment_key: str | None = None
    subject_ids: Sequence[str] | None = None
    trigger: Trigger | None = None


@dataclass(frozen=True, slots=True)
class PlanView:
    plan: FollowupPlan
    members: int | None


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        message, errors=[{"loc": ["body", field], "msg": message, "type": "value_error"}]
    )


def _existing(session: Session, ids: list[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(ids), _CHUNK):
        chunk = ids[i : i + _CHUNK]
        found.update(session.scalars(select(Profile.id).where(Profile.id.in_(chunk))))
    return found


def create_plan(
    session: Session, *, policy: Policy, principal: Principal, data: PlanInput
) -> PlanView:
    """A plan: exactly one of a segment, an explicit list of profiles or a segment trigger."""
    decision = decide(policy, principal, data.purpose)
    eligibility.check_channel(policy, decision.purpose, data.channel)
    sources = [data.segment_key is not None, data.subject_ids is not None, data.trigger is not None]
    if sum(sources) != 1:
        raise _invalid("segment_key", "give exactly one of segment_key, subject_ids or trigger")
    if data.trigger is not None and data.occurrences != 1:
        raise _invalid("occurrences", "a triggered plan makes one task per segment change")
    ids = list(dict.fromkeys(data.subject_ids or ()))
    if len(ids) > MAX_MEMBERS:
        raise _invalid("subject_ids", f"at most {MAX_MEMBERS} profiles per plan")
    unknown = len(ids) - len(_existing(session, ids)) if ids else 0
    if unknown:
        raise _invalid("subject_ids", f"{unknown} of the profile ids name no profile")
    check_segments(session, policy, data)
    plan = FollowupPlan(
        id=str(uuid.uuid4()),
        name=data.name,
        segment_key=data.segment_key or (data.trigger.segment if data.trigger else None),
        purpose=decision.purpose,
        channel=data.channel,
        owner=data.owner,
        team=data.team,
        script=data.script,
        start_at=data.start_at or utcnow(),
        every_days=data.every_days,
        occurrences=data.occurrences,
        trigger=data.trigger.as_json() if data.trigger else None,
        watermark=0,
        created_by=principal.actor,
        created_at=utcnow(),
    )
    session.add(plan)
    session.flush()
    if ids:
        add_members(session, plan.id, ids)
    audit.append(
        session,
        actor=principal.actor,
        action="followups.plan_create",
        purpose=decision.purpose,
        detail={
            "plan_id": plan.id,
            "channel": plan.channel,
            "segment": plan.segment_key,
            "members": len(ids),
            "triggered": data.trigger is not None,
        },
    )
    return PlanView(plan, len(ids) if data.subject_ids is not None else None)


def check_segments(session: Session, policy: Policy, data: PlanInput) -> None:
    """Every segment the plan names must exist (a built-in or a stored definition)."""
    named = [("segment_key", data.segment_key)]
    if data.trigger is not None:
        named += [("trigger", data.trigger.segment), ("trigger", data.trigger.only_segment)]
    known = segments.definitions(session, policy=policy)
    for field, key in named:
        if key is not None and key not in known:
            raise _invalid(field, f"no segment {key!r}")


def add_members(session: Session, plan_id: str, subject_ids: Sequence[str]) -> None:
    """Bulk insert (executemany in chunks): the plan's explicit or snapshotted members."""
    for i in range(0, len(subject_ids), _CHUNK):
        session.execute(
            insert(FollowupPlanMember),
            [{"plan_id": plan_id, "subject_id": s} for s in subject_ids[i : i + _CHUNK]],
        )


def get_plan(session: Session, plan_id: str) -> FollowupPlan:
    plan = session.get(FollowupPlan, plan_id) if len(plan_id) <= 36 else None
    if plan is None:
        raise NotFound("no such follow-up plan")
    return plan


def list_plans(
    session: Session, *, after: str | None, limit: int
) -> tuple[list[FollowupPlan], str | None]:
    stmt = select(FollowupPlan).order_by(FollowupPlan.id).limit(limit)
    if after is not None:
        stmt = stmt.where(FollowupPlan.id > after)
    plans = list(session.scalars(stmt))
    return plans, plans[-1].id if len(plans) == limit else None


def member_counts(session: Session, plan_ids: list[str]) -> dict[str, int]:
    if not plan_ids:
        return {}
    rows = session.execute(
        select(FollowupPlanMember.plan_id, func.count())
        .where(FollowupPlanMember.plan_id.in_(plan_ids))
        .group_by(FollowupPlanMember.plan_id)
    )
    return {plan_id: int(n) for plan_id, n in rows}


@dataclass(frozen=True, slots=True)
class ScheduleResult:
    plan_id: str
    members: int
    eligible: int
    created: int
    due: list[datetime]


def due_times(plan: FollowupPlan, policy: Policy) -> list[datetime]:
    """When each occurrence is due: start + (n - 1) * every_days, moved out of quiet hours."""
    quiet = policy.settings.quiet_hours
    return [
        eligibility.outside_quiet_hours(plan.start_at + timedelta(days=n * plan.every_days), quiet)
        for n in range(plan.occurrences)
    ]


def schedule(
    session: Session,
    *,
    policy: Policy,
    principal: Principal | None,
    plan_id: str,
    now: datetime | None = None,
    actor: str = "system",
) -> ScheduleResult:
    """Turn the plan into tasks: its members (a segment's, snapshotted now) or, for a
    triggered plan, the segment changes since the last run. With a principal, it must hold
    the plan's purpose; without one (the CLI, a scheduler) `actor` is audited."""
    plan = get_plan(session, plan_id)
    if principal is not None:
        decide(policy, principal, plan.purpose)
        actor = principal.actor
    now = now or utcnow()
    if plan.trigger is not None:
        result = _schedule_trigger(session, policy, plan, now)
    else:
        if plan.segment_key is not None:
            members = segment_members(
                session, policy=policy, key=plan.segment_key, purpose=plan.purpose
            )
            session.execute(delete(FollowupPlanMember).where(FollowupPlanMember.plan_id == plan.id))
            add_members(session, plan.id, list(dict.fromkeys(members)))
        result = _schedule_members(session, policy, plan, now)
    audit.append(
        session,
        actor=actor,
        action="followups.schedule",
        purpose=plan.purpose,
        detail={
            "plan_id": plan.id,
            "members": result.members,
            "eligible": result.eligible,
            "created": result.created,
        },
    )
    return result


def _schedule_members(
    session: Session, policy: Policy, plan: FollowupPlan, now: datetime
) -> ScheduleResult:
    spec = policy.purpose(plan.purpose)
    member = FollowupPlanMember
    ok = eligibility.allowed(policy, spec, plan.channel, member.subject_id)
    base = member.plan_id == plan.id
    members = session.scalar(select(func.count()).select_from(member).where(base)) or 0
    eligible = session.scalar(select(func.count()).select_from(member).where(base, ok)) or 0
    due = due_times(plan, policy)
    created = 0
    columns = [
        "plan_id",
        "subject_id",
        "occurrence",
        "purpose",
        "channel",
        "owner",
        "team",
        "segment_key",
        "due_at",
        "status",
        "created_at",
    ]
    insert_ = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    for n, due_at in enumerate(due, start=1):
        rows = select(
            literal(plan.id, String),
            member.subject_id,
            literal(n, Integer),
            literal(plan.purpose, String),
            literal(plan.channel, String),
            literal(plan.owner, String),
            literal(plan.team, String),
            literal(plan.segment_key, String),
            literal(due_at, UTCDateTime()),
            literal("open", String),
            literal(now, UTCDateTime()),
        ).where(base, ok)
        # In key order: the unique index grows at its end instead of at random places.
        rows = rows.order_by(member.subject_id)
        # A task already there (an earlier run) is kept: the unique key decides, which costs
        # less than a NOT EXISTS over the table being inserted into.
        inserted = session.execute(
            insert_(FollowupTask)
            .from_select(columns, rows)
            .on_conflict_do_nothing(index_elements=["subject_id", "plan_id", "occurrence"]),
            execution_options={"preserve_rowcount": True},
        )
        created += max(inserted.rowcount, 0)  # type: ignore[attr-defined]
    return ScheduleResult(plan.id, int(members), int(eligible), created, due)


def _schedule_trigger(
    session: Session, policy: Policy, plan: FollowupPlan, now: datetime
) -> ScheduleResult:
    trigger = plan.trigger or {}
    spec = policy.purpose(plan.purpose)
    change = SEGMENT_CHANGE.c
    window = (
        change.segment_key == trigger["segment"],
        change.change == trigger["on"],
        change.id > plan.watermark,
    )
    last = session.scalar(select(func.max(change.id)).where(*window))
    if last is None:
        return ScheduleResult(plan.id, 0, 0, 0, [])
    seen = session.scalar(select(func.count()).where(*window, change.id <= last)) or 0
    ok = eligibility.allowed(policy, spec, plan.channel, change.subject_id)
    done = exists(
        select(FollowupTask.id).where(
            FollowupTask.plan_id == plan.id,
            FollowupTask.subject_id == change.subject_id,
            FollowupTask.occurrence == change.id,
        )
    )
    rows = session.execute(
        select(change.id, change.subject_id, change.at)
        .where(*window, change.id <= last, ok, ~done)
        .order_by(change.id)
    ).all()
    only = trigger.get("only_segment")
    if only and rows:
        keep = set(segment_members(session, policy=policy, key=only, purpose=plan.purpose))
        rows = [r for r in rows if r.subject_id in keep]
    quiet, within = policy.settings.quiet_hours, timedelta(days=int(trigger["within_days"]))
    values = [
        {
            "plan_id": plan.id,
            "subject_id": r.subject_id,
            "occurrence": r.id,
            "purpose": plan.purpose,
            "channel": plan.channel,
            "owner": plan.owner,
            "team": plan.team,
            "segment_key": trigger["segment"],
            "due_at": eligibility.outside_quiet_hours(r.at + within, quiet),
            "status": "open",
            "created_at": now,
        }
        for r in rows
    ]
    for i in range(0, len(values), _CHUNK):
        session.execute(insert(FollowupTask), values[i : i + _CHUNK])
    session.execute(update(FollowupPlan).where(FollowupPlan.id == plan.id).values(watermark=last))
    session.refresh(plan)
    due = sorted({v["due_at"] for v in values})
    return ScheduleResult(plan.id, int(seen), len(values), len(values), due[:1])


def run_triggers(session: Session, *, policy: Policy, actor: str) -> list[ScheduleResult]:
    """Every triggered plan, once: tasks for the segment changes since each plan's watermark
    (run after `cdp segments refresh`)."""
    ids = session.scalars(
        select(FollowupPlan.id).where(FollowupPlan.trigger.is_not(None)).order_by(FollowupPlan.id)
    ).all()
    return [schedule(session, policy=policy, principal=None, plan_id=i, actor=actor) for i in ids]


def export_subject(session: Session, *, crypto: Crypto, subject_id: str) -> dict[str, Any]:
    """The subject's tasks and interactions (notes opened), JSON-able, for the access bundle."""
    from cdp.followups.tasks import interaction_dict

    tasks = session.scalars(
        select(FollowupTask)
        .where(FollowupTask.subject_id == subject_id)
        .order_by(FollowupTask.due_at, FollowupTask.id)
    ).all()
    interactions = session.scalars(
        select(Interaction)
        .where(Interaction.subject_id == subject_id)
        .order_by(Interaction.at, Interaction.id)
    ).all()
    keys = crypto.keys_for([subject_id]) if interactions else None
    return {
        "tasks": [
            {
                "id": t.id,
                "plan_id": t.plan_id,
                "purpose": t.purpose,
                "channel": t.channel,
                "owner": t.owner,
                "team": t.team,
                "due_at": t.due_at.isoformat(),
                "status": t.status,
                "outcome": t.outcome,
                "completed_at": t.completed_at.isoformat() if t.completed_at else None,
            }
            for t in tasks
        ],
        "interactions": [interaction_dict(i, keys) for i in interactions if keys is not None],
    }
