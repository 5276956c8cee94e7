"""The purpose check of policy.decide (for_subject) as one SQL condition over many subjects:
restriction (PIPL art. 44, 47), the personalisation opt-out (art. 24) and, for a consent basis,
a current grant to the notice version in force, separate where needed, a guardian's for a
minor. Members are filtered in the database, never one subject at a time in Python."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, exists, or_, select, true

from cdp.consent.models import ConsentRecord, SubjectStatus
from cdp.policy.decide import STORAGE_PURPOSE
from cdp.policy.model import Policy


def allowed(policy: Policy, purpose: str, subject_id: Any) -> ColumnElement[bool]:
    """True for the subjects whose data `purpose` may use now (the policy-level checks, client
    and purpose, are the caller's: decide(policy, principal, purpose))."""
    spec = policy.purposes[purpose]
    status = SubjectStatus
    conditions: list[ColumnElement[bool]] = []
    blocked = []
    if not (spec.legal_basis == "legal_obligation" or spec.id == STORAGE_PURPOSE):
        blocked.append(status.restricted_at.is_not(None))
    if spec.personalisation:
        blocked.append(status.personalisation_opt_out_at.is_not(None))
    if blocked:
        conditions.append(~exists().where(status.subject_id == subject_id, or_(*blocked)))
    if spec.legal_basis == "consent":
        # The current record is the latest by (at, id): one backward index probe per subject
        # (ix_consent_record_current), so the cost follows the members, not every record.
        rec = ConsentRecord
        # Correlated to the record's subject (the enclosing subquery), never left free.
        minor = exists().where(status.subject_id == rec.subject_id, status.minor.is_(True))
        checks = [
            rec.state == "granted",
            rec.notice_id == (spec.notice or ""),
            rec.notice_version >= policy.consent_floor(spec.id),
            or_(rec.guardian.is_not(None), ~minor),
        ]
        if spec.needs_separate_consent:
            checks.append(rec.separate.is_(True))
        current = (
            select(and_(*checks))
            .where(rec.subject_id == subject_id, rec.purpose == spec.id)
            .order_by(rec.at.desc(), rec.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        conditions.append(current.is_(true()))
    return and_(true(), *conditions)
