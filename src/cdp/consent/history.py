"""What is on record for a subject's consents: the current state per purpose and the history,
newest first, for apps and officers (GET /v1/profiles/{id}/consents)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cdp.audit import service as audit
from cdp.consent.models import ConsentRecord
from cdp.consent.service import effective, load_states
from cdp.errors import NotFound
from cdp.policy import Policy, SubjectState
from cdp.profiles.models import Profile

Rec = ConsentRecord


@dataclass(frozen=True, slots=True)
class Overview:
    """Current state per purpose, status flags and one page of history (newest first)."""

    subject_id: str
    state: SubjectState
    # purpose -> None when the consent lets the purpose use the data now, else the denial code
    effective: dict[str, str | None]
    history: list[ConsentRecord]
    next_after: tuple[datetime, int] | None = None


def overview(
    session: Session,
    *,
    policy: Policy,
    actor: str,
    subject_id: str,
    after: tuple[datetime, int] | None,
    limit: int,
) -> Overview:
    """Everything on record for a subject's consents; the read is audited."""
    if len(subject_id) > 36 or session.get(Profile, subject_id) is None:
        raise NotFound("no such profile")
    state = load_states(session, [subject_id])[subject_id]
    stmt = select(Rec).where(Rec.subject_id == subject_id)
    if after is not None:
        at, rid = after
        stmt = stmt.where((Rec.at < at) | ((Rec.at == at) & (Rec.id < rid)))
    rows = list(session.scalars(stmt.order_by(Rec.at.desc(), Rec.id.desc()).limit(limit)))
    nxt = (rows[-1].at, rows[-1].id) if len(rows) == limit else None
    audit.append(session, actor=actor, action="consent.read", subject=subject_id)
    return Overview(
        subject_id=subject_id,
        state=state,
        effective={p: effective(policy, p, subject_id, state) for p in state.consents},
        history=rows,
        next_after=nxt,
    )
