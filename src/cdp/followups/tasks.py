"""The task queue and interactions: completing a task records an interaction.

Notes and next steps are free text about the customer: sealed with the subject's key, written
and read only under a purpose that covers the `feedback` category.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from cdp.audit import service as audit
from cdp.auth.principal import Principal
from cdp.consent import service as consent
from cdp.crypto import Crypto, SubjectKeys
from cdp.db import utcnow
from cdp.errors import InvalidTransition, NotFound, ValidationFailed
from cdp.feedback.service import require_category
from cdp.followups.models import FollowupTask, Interaction
from cdp.policy import Policy, decide
from cdp.profiles.models import Profile

TABLE = "interaction"
OUTCOMES = (
    "reached",
    "no_answer",
    "left_message",
    "declined",
    "resolved",
    "escalated",
    "wrong_contact",
)


@dataclass(frozen=True, slots=True)
class TaskFilter:
    owner: str | None = None
    team: str | None = None
    status: str | None = None
    plan_id: str | None = None
    subject_id: str | None = None
    due_before: datetime | None = None
    due_after: datetime | None = None


def list_tasks(
    session: Session, *, where: TaskFilter, after: tuple[datetime, int] | None, limit: int
) -> tuple[list[FollowupTask], tuple[datetime, int] | None]:
    """Earliest due first: the queue of an owner or team. Rows hold pseudonymous ids only."""
    stmt = select(FollowupTask).order_by(FollowupTask.due_at, FollowupTask.id).limit(limit)
    for name in ("owner", "team", "status", "plan_id", "subject_id"):
        value = getattr(where, name)
        if value is not None:
            stmt = stmt.where(getattr(FollowupTask, name) == value)
    if where.due_before is not None:
        stmt = stmt.where(FollowupTask.due_at < where.due_before)
    if where.due_after is not None:
        stmt = stmt.where(FollowupTask.due_at >= where.due_after)
    if after is not None:
        stmt = stmt.where(tuple_(FollowupTask.due_at, FollowupTask.id) > tuple_(*after))
    tasks = list(session.scalars(stmt))
    last = (tasks[-1].due_at, tasks[-1].id) if len(tasks) == limit else None
    return tasks, last


@dataclass(frozen=True, slots=True)
class InteractionInput:
    channel: str
    outcome: str
    notes: str | None = None
    next_step: str | None = None


def _seal(keys: SubjectKeys, subject_id: str, column: str, value: str | None) -> str | None:
    return None if value is None else keys.seal(subject_id, TABLE, column, value)


def _record(
    session: Session,
    *,
    crypto: Crypto,
    policy: Policy,
    principal: Principal,
    purpose: str,
    subject_id: str,
    data: InteractionInput,
    task_id: int | None,
) -> Interaction:
    if data.notes is not None or data.next_step is not None:
        require_category(policy, purpose)
    decision = consent.decide(
        session, policy=policy, principal=principal, purpose=purpose, subject=subject_id
    )
    keys = crypto.keys_for([subject_id], create=True)
    row = Interaction(
        subject_id=subject_id,
        task_id=task_id,
        purpose=decision.purpose,
        channel=data.channel,
        outcome=data.outcome,
        notes_sealed=_seal(keys, subject_id, "notes", data.notes),
        next_step_sealed=_seal(keys, subject_id, "next_step", data.next_step),
        actor=principal.actor,
        at=utcnow(),
    )
    session.add(row)
    session.flush()
    audit.append(
        session,
        actor=principal.actor,
        action="followups.interaction",
        subject=subject_id,
        purpose=decision.purpose,
        fields=[n for n in ("notes", "next_step") if getattr(data, n) is not None],
        detail={"interaction_id": row.id, "task_id": task_id, "outcome": data.outcome},
    )
    return row


def record_interaction(
    session: Session,
    *,
    crypto: Crypto,
    policy: Policy,
    principal: Principal,
    purpose: str | None,
    subject_id: str,
    data: InteractionInput,
) -> tuple[Interaction, SubjectKeys]:
    """A contact made outside any task (or before one existed)."""
    found = decide(policy, principal, purpose)
    if len(subject_id) > 36 or session.get(Profile, subject_id) is None:
        raise NotFound("no such profile")
    row = _record(
        session,
        crypto=crypto,
        policy=policy,
        principal=principal,
        purpose=found.purpose,
        subject_id=subject_id,
        data=data,
        task_id=None,
    )
    return row, crypto.keys_for([subject_id])


@dataclass(frozen=True, slots=True)
class TaskChange:
    status: str  # done | cancelled
    outcome: str | None = None
    notes: str | None = None
    next_step: str | None = None


def update_task(
    session: Session,
    *,
    crypto: Crypto,
    policy: Policy,
    principal: Principal,
    task_id: int,
    change: TaskChange,
) -> FollowupTask:
    """open -> done (with an outcome; records the interaction) or open -> cancelled."""
    task = session.scalar(select(FollowupTask).where(FollowupTask.id == task_id).with_for_update())
    if task is None:
        raise NotFound("no such follow-up task")
    decide(policy, principal, task.purpose)  # the caller must hold the plan's purpose
    if task.status != "open":
        raise InvalidTransition(f"the task is already {task.status}")
    now = utcnow()
    if change.status == "done":
        if change.outcome is None:
            message = "completing a task needs an outcome"
            raise ValidationFailed(
                message,
                errors=[{"loc": ["body", "outcome"], "msg": message, "type": "missing"}],
            )
        row = _record(
            session,
            crypto=crypto,
            policy=policy,
            principal=principal,
            purpose=task.purpose,
            subject_id=task.subject_id,
            data=InteractionInput(task.channel, change.outcome, change.notes, change.next_step),
            task_id=task.id,
        )
        task.interaction_id, task.outcome = row.id, change.outcome
    elif change.notes is not None or change.next_step is not None or change.outcome:
        message = "a cancelled task records no contact"
        raise ValidationFailed(
            message, errors=[{"loc": ["body", "status"], "msg": message, "type": "value_error"}]
        )
    else:
        audit.append(
            session,
            actor=principal.actor,
            action="followups.task_cancel",
            subject=task.subject_id,
            purpose=task.purpose,
            detail={"task_id": task.id},
        )
    task.status, task.completed_at = change.status, now
    session.flush()
    return task


def list_interactions(
    session: Session,
    *,
    crypto: Crypto,
    policy: Policy,
    principal: Principal,
    purpose: str | None,
    subject_id: str,
    after: int | None,
    limit: int,
) -> tuple[list[Interaction], SubjectKeys, int | None]:
    """Newest first, with notes; only under a purpose covering feedback, with a basis."""
    found = decide(policy, principal, purpose)
    require_category(policy, found.purpose)
    if len(subject_id) > 36 or session.get(Profile, subject_id) is None:
        raise NotFound("no such profile")
    decision = consent.decide(
        session, policy=policy, principal=principal, purpose=found.purpose, subject=subject_id
    )
    stmt = (
        select(Interaction)
        .where(Interaction.subject_id == subject_id)
        .order_by(Interaction.id.desc())
        .limit(limit)
    )
    if after is not None:
        stmt = stmt.where(Interaction.id < after)
    rows = list(session.scalars(stmt))
    audit.append(
        session,
        actor=principal.actor,
        action="followups.interaction_read",
        subject=subject_id,
        purpose=decision.purpose,
        fields=["notes", "next_step"] if rows else [],
        detail={"count": len(rows)},
    )
    return rows, crypto.keys_for([subject_id]), rows[-1].id if len(rows) == limit else None


def opened(keys: SubjectKeys, row: Interaction) -> tuple[str | None, str | None]:
    def text(column: str, sealed: str | None) -> str | None:
        return None if sealed is None else keys.open(row.subject_id, TABLE, column, sealed)

    return text("notes", row.notes_sealed), text("next_step", row.next_step_sealed)


def interaction_dict(row: Interaction, keys: SubjectKeys) -> dict[str, Any]:
    notes, next_step = opened(keys, row)
    return {
        "id": row.id,
        "task_id": row.task_id,
        "purpose": row.purpose,
        "channel": row.channel,
        "outcome": row.outcome,
        "notes": notes,
        "next_step": next_step,
        "actor": row.actor,
        "at": row.at.isoformat(),
    }
