"""Per-subject status that decisions read without decrypting anything: the minor flag
(PIPL art. 31), restriction (art. 44, 47) and the personalisation opt-out (art. 24)."""

from __future__ import annotations

import re

from sqlalchemy.orm import Session

from cdp.audit import service as audit
from cdp.consent.models import SubjectStatus
from cdp.consent.service import lock_subject
from cdp.db import utcnow
from cdp.errors import ValidationFailed

_REASON = re.compile(r"^[a-z][a-z0-9_.:-]{0,63}$")


def _status_for_update(session: Session, subject_id: str) -> SubjectStatus:
    status = session.get(SubjectStatus, subject_id)
    if status is None:
        status = SubjectStatus(subject_id=subject_id, minor=False, updated_at=utcnow())
        session.add(status)
    return status


def set_minor(session: Session, *, subject_id: str, minor: bool) -> None:
    """Keeps the minor flag current; profiles call it when birth date or is_minor is written."""
    status = session.get(SubjectStatus, subject_id)
    if status is None and not minor:
        return
    status = status or _status_for_update(session, subject_id)
    if status.minor != minor:
        status.minor, status.updated_at = minor, utcnow()
    session.flush()


def restrict(session: Session, *, subject_id: str, reason: str, actor: str) -> None:
    """Stop all processing but storage and legal obligations (PIPL art. 44, 47).

    reason is a short code (e.g. `legal_hold`, `rights_request:42`), never free text.
    """
    if not _REASON.match(reason):
        raise ValidationFailed(
            "reason must be a short code such as legal_hold",
            errors=[{"loc": ["body", "reason"], "msg": "not a code", "type": "value_error"}],
        )
    lock_subject(session, subject_id)
    status = _status_for_update(session, subject_id)
    status.restricted_at, status.restricted_reason = utcnow(), reason
    status.updated_at = utcnow()
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="subject.restrict",
        subject=subject_id,
        detail={"reason": reason},
    )


def lift_restriction(session: Session, *, subject_id: str, actor: str) -> None:
    """Processing may resume; a no-op when the subject is not restricted."""
    lock_subject(session, subject_id)
    status = session.get(SubjectStatus, subject_id)
    if status is None or status.restricted_at is None:
        return
    status.restricted_at, status.restricted_reason = None, None
    status.updated_at = utcnow()
    session.flush()
    audit.append(session, actor=actor, action="subject.restriction_lift", subject=subject_id)


def set_personalisation_opt_out(
    session: Session, *, subject_id: str, opt_out: bool, actor: str
) -> bool:
    """Record the art. 24 choice; True when it changed anything."""
    lock_subject(session, subject_id)
    status = session.get(SubjectStatus, subject_id)
    if bool(status and status.personalisation_opt_out_at) == opt_out:
        return False
    status = status or _status_for_update(session, subject_id)
    status.personalisation_opt_out_at = utcnow() if opt_out else None
    status.updated_at = utcnow()
    session.flush()
    action = "consent.personalisation_opt_out" if opt_out else "consent.personalisation_opt_in"
    audit.append(session, actor=actor, action=action, subject=subject_id)
    return True
