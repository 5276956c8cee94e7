"""Record, read, list and move feedback through its lifecycle; free text is sealed per subject.

Every use names a purpose and is decided for the subject by consent.service.decide: feedback is
accepted whenever the purpose has a legal basis for the subject (a contract-basis purpose works
after the customer withdrew consent for customer care). The feedback, its free text above all,
is data of the `feedback` category: only a purpose whose categories include it may collect or
read it (PIPL art. 5-6).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
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
from cdp.errors import FieldNotAllowed, InvalidTransition, NotFound, ValidationFailed
from cdp.feedback.models import Feedback
from cdp.policy import Decision, Policy, decide
from cdp.profiles.models import Profile

TABLE = "feedback"
CATEGORY = "feedback"
# Complaint lifecycle: open -> in_progress -> resolved -> closed; reopen from resolved or closed.
TRANSITIONS: dict[str, frozenset[str]] = {
    "open": frozenset({"in_progress"}),
    "in_progress": frozenset({"resolved"}),
    "resolved": frozenset({"closed", "open"}),
    "closed": frozenset({"open"}),
}
_TEXT_COLUMNS = ("comment", "answers", "resolution")


@dataclass(frozen=True, slots=True)
class FeedbackInput:
    subject_id: str
    kind: str
    topic: str | None = None
    csat: int | None = None
    nps: int | None = None
    comment: str | None = None
    answers: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class FeedbackChange:
    """A PATCH: only the attributes that were sent are set (None means not sent)."""

    status: str | None = None
    assignee: str | None = None
    resolution: str | None = None
    clear_assignee: bool = False


@dataclass(frozen=True, slots=True)
class FeedbackView:
    """A feedback row with its free text opened."""

    row: Feedback
    comment: str | None
    answers: dict[str, Any] | None
    resolution: str | None

    @property
    def time_to_resolve_seconds(self) -> int | None:
        if self.row.resolved_at is None:
            return None
        return int((self.row.resolved_at - self.row.created_at).total_seconds())

    def as_dict(self) -> dict[str, Any]:
        """JSON-able, for the subject's access bundle."""
        r = self.row
        return {
            "id": r.id,
            "kind": r.kind,
            "status": r.status,
            "purpose": r.purpose,
            "topic": r.topic,
            "csat": r.csat,
            "nps": r.nps,
            "comment": self.comment,
            "answers": self.answers,
            "resolution": self.resolution,
            "assignee": r.assignee,
            "reopen_count": r.reopen_count,
            "created_at": r.created_at.isoformat(),
            "updated_at": r.updated_at.isoformat(),
            "resolved_at": r.resolved_at.isoformat() if r.resolved_at else None,
            "closed_at": r.closed_at.isoformat() if r.closed_at else None,
        }


def require_category(policy: Policy, purpose: str, category: str = CATEGORY) -> None:
    """FieldNotAllowed (403) unless the purpose's categories include `category`."""
    if category not in policy.purpose(purpose).categories:
        raise FieldNotAllowed(
            f"purpose {purpose!r} does not cover the {category} category: it may not collect"
            f" or read {category} data",
            audit={"purpose": purpose},
        )


def _decide(
    session: Session, policy: Policy, principal: Principal, purpose: str | None, subject_id: str
) -> Decision:
    """The policy's answer first (purpose known, held, covers feedback), then the subject's."""
    found = decide(policy, principal, purpose)
    require_category(policy, found.purpose)
    return consent.decide(
        session, policy=policy, principal=principal, purpose=found.purpose, subject=subject_id
    )


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        message, errors=[{"loc": ["body", field], "msg": message, "type": "value_error"}]
    )


def _check(data: FeedbackInput) -> None:
    if data.kind == "survey":
        if data.csat is None and data.nps is None and not data.answers:
            raise _invalid("csat", "a survey needs csat, nps or answers")
    else:
        if data.csat is not None or data.nps is not None or data.answers:
            field = (
                "csat" if data.csat is not None else "nps" if data.nps is not None else "answers"
            )
            raise _invalid(field, f"a {data.kind} carries no survey scores or answers")
        if not data.comment:
            raise _invalid("comment", f"a {data.kind} needs a comment")


def _seal(keys: SubjectKeys, subject_id: str, column: str, text: str | None) -> str | None:
    return None if text is None else keys.seal(subject_id, TABLE, column, text)


def _open(keys: SubjectKeys, row: Feedback) -> FeedbackView:
    def text(column: str, sealed: str | None) -> str | None:
        return None if sealed is None else keys.open(row.subject_id, TABLE, column, sealed)

    answers = text("answers", row.answers_sealed)
    return FeedbackView(
        row=row,
        comment=text("comment", row.comment_sealed),
        answers=json.loads(answers) if answers is not None else None,
        resolution=text("resolution", row.resolution_sealed),
    )


def _fields(view: FeedbackView) -> list[str]:
    return [c for c in _TEXT_COLUMNS if getattr(view, c) is not None]


def create(
    session: Session,
    *,
    crypto: Crypto,
    policy: Policy,
    principal: Principal,
    purpose: str | None,
    data: FeedbackInput,
) -> FeedbackView:
    """Store one survey answer, complaint or suggestion; a complaint starts open."""
    _check(data)
    require_category(policy, decide(policy, principal, purpose).purpose)
    if len(data.subject_id) > 36 or session.get(Profile, data.subject_id) is None:
        raise NotFound("no such profile")
    decision = _decide(session, policy, principal, purpose, data.subject_id)
    keys = crypto.keys_for([data.subject_id], create=True)
    now = utcnow()
    answers = (
        json.dumps(dict(data.answers), ensure_ascii=False, sort_keys=True) if data.answers else None
    )
    row = Feedback(
        id=str(uuid.uuid4()),
        subject_id=data.subject_id,
        kind=data.kind,
        status="open" if data.kind == "complaint" else None,
        purpose=decision.purpose,
        topic=data.topic,
        csat=data.csat,
        nps=data.nps,
        comment_sealed=_seal(keys, data.subject_id, "comment", data.comment),
        answers_sealed=_seal(keys, data.subject_id, "answers", answers),
        resolution_sealed=None,
        assignee=None,
        reopen_count=0,
        created_by=principal.actor,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    view = FeedbackView(row, data.comment, dict(data.answers) if data.answers else None, None)
    audit.append(
        session,
        actor=principal.actor,
        action="feedback.create",
        subject=data.subject_id,
        purpose=decision.purpose,
        fields=_fields(view),
        detail={"feedback_id": row.id, "kind": row.kind},
    )
    return view


def _get(session: Session, feedback_id: str, *, lock: bool = False) -> Feedback:
    stmt = select(Feedback).where(Feedback.id == feedback_id)
    row = session.scalar(stmt.with_for_update() if lock else stmt)
    if row is None:
        raise NotFound("no such feedback")
    return row


def read(
    session: Session,
    *,
    crypto: Crypto,
    policy: Policy,
    principal: Principal,
    purpose: str | None,
    feedback_id: str,
) -> FeedbackView:
    require_category(policy, decide(policy, principal, purpose).purpose)
    row = _get(session, feedback_id)
    decision = _decide(session, policy, principal, purpose, row.subject_id)
    view = _open(crypto.keys_for([row.subject_id]), row)
    audit.append(
        session,
        actor=principal.actor,
        action="feedback.read",
        subject=row.subject_id,
        purpose=decision.purpose,
        fields=_fields(view),
        detail={"feedback_id": row.id},
    )
    return view


@dataclass(frozen=True, slots=True)
class FeedbackFilter:
    subject_id: str | None = None
    kind: str | None = None
    status: str | None = None
    assignee: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None


def list_feedback(
    session: Session,
    *,
    crypto: Crypto,
    policy: Policy,
    principal: Principal,
    purpose: str | None,
    where: FeedbackFilter,
    after: tuple[datetime, str] | None,
    limit: int,
) -> tuple[list[FeedbackView], tuple[datetime, str] | None]:
    """Newest first; subjects without a basis for the purpose are left out of the page, so a
    page may hold fewer than `limit` items. Returns the position of the last row scanned."""
    decision = decide(policy, principal, purpose)
    require_category(policy, decision.purpose)
    stmt = select(Feedback).order_by(Feedback.created_at.desc(), Feedback.id.desc()).limit(limit)
    if where.subject_id is not None:
        stmt = stmt.where(Feedback.subject_id == where.subject_id)
    if where.kind is not None:
        stmt = stmt.where(Feedback.kind == where.kind)
    if where.status is not None:
        stmt = stmt.where(Feedback.status == where.status)
    if where.assignee is not None:
        stmt = stmt.where(Feedback.assignee == where.assignee)
    if where.created_from is not None:
        stmt = stmt.where(Feedback.created_at >= where.created_from)
    if where.created_to is not None:
        stmt = stmt.where(Feedback.created_at < where.created_to)
    if after is not None:
        stmt = stmt.where(tuple_(Feedback.created_at, Feedback.id) < tuple_(*after))
    scanned = list(session.scalars(stmt))
    allowed = consent.allowed_subjects(
        session,
        policy=policy,
        decision=decision,
        subject_ids=list(dict.fromkeys(r.subject_id for r in scanned)),
    )
    rows = [r for r in scanned if r.subject_id in allowed]
    keys = crypto.keys_for([r.subject_id for r in rows])
    views = [_open(keys, r) for r in rows]
    audit.append_many(
        session,
        [
            audit.Event(
                actor=principal.actor,
                action="feedback.read",
                subject=v.row.subject_id,
                purpose=decision.purpose,
                fields=_fields(v),
                detail={"feedback_id": v.row.id},
            )
            for v in views
        ],
    )
    last = (scanned[-1].created_at, scanned[-1].id) if len(scanned) == limit else None
    return views, last


def _transition(row: Feedback, target: str) -> None:
    if row.kind != "complaint":
        raise InvalidTransition(f"a {row.kind} has no status; only complaints move")
    current = row.status or "open"
    if target == current:
        return
    if target not in TRANSITIONS.get(current, frozenset()):
        allowed = ", ".join(sorted(TRANSITIONS.get(current, frozenset()))) or "none"
        raise InvalidTransition(
            f"a complaint cannot go from {current} to {target} (allowed: {allowed})"
        )
    now = utcnow()
    if target == "resolved":
        row.resolved_at = now
    elif target == "closed":
        row.closed_at = now
    elif target == "open":  # reopened: resolution times start again
        row.resolved_at, row.closed_at = None, None
        row.reopen_count += 1
    row.status = target


def update(
    session: Session,
    *,
    crypto: Crypto,
    policy: Policy,
    principal: Principal,
    purpose: str | None,
    feedback_id: str,
    change: FeedbackChange,
) -> FeedbackView:
    """Assign, resolve, close or reopen a complaint; the resolution note is sealed."""
    require_category(policy, decide(policy, principal, purpose).purpose)
    row = _get(session, feedback_id, lock=True)
    decision = _decide(session, policy, principal, purpose, row.subject_id)
    before = row.status
    if change.status is not None:
        _transition(row, change.status)
    if change.clear_assignee:
        row.assignee = None
    elif change.assignee is not None:
        row.assignee = change.assignee
    keys = crypto.keys_for([row.subject_id], create=True)
    if change.resolution is not None:
        if row.kind != "complaint":
            raise _invalid("resolution", f"a {row.kind} has no resolution")
        row.resolution_sealed = keys.seal(row.subject_id, TABLE, "resolution", change.resolution)
    row.updated_at = utcnow()
    session.flush()
    audit.append(
        session,
        actor=principal.actor,
        action="feedback.update",
        subject=row.subject_id,
        purpose=decision.purpose,
        fields=[n for n in ("assignee", "resolution") if getattr(change, n) is not None],
        detail={"feedback_id": row.id, "from": before, "to": row.status},
    )
    return _open(keys, row)


def export_subject(session: Session, *, crypto: Crypto, subject_id: str) -> list[dict[str, Any]]:
    """Every feedback row of the subject, decrypted and JSON-able (access bundle, art. 45)."""
    rows = list(
        session.scalars(
            select(Feedback)
            .where(Feedback.subject_id == subject_id)
            .order_by(Feedback.created_at, Feedback.id)
        )
    )
    if not rows:
        return []
    keys = crypto.keys_for([subject_id])
    return [_open(keys, r).as_dict() for r in rows]
