"""The purpose check of policy.decide (for_subject) as one SQL condition over many subjects:
restriction (PIPL art. 44, 47), the personalisation opt-out (art. 24) and, for a consent basis,
a current grant to the notice version in force, separate where needed, a guardian's for a
minor. Members are filtered in the database, never one subject at a time in Python."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, exists, or_, true

from cdp.consent.models import ConsentCurrent, SubjectStatus
from cdp.policy.decide import STORAGE_PURPOSE
from cdp.policy.model import Policy


def allowed(policy: Policy, purpose: str, subject_id: Any) -> ColumnElement[bool]:
    """True for the subjects whose data `purpose` may use now (the policy-level checks, client
    and purpose, are the caller's: decide(policy, principal, purpose))."""
    spec = policy.purposes[purpose]
    status = SubjectStatus
    blocked: list[ColumnElement[bool]] = []
    if not (spec.legal_basis == "legal_obligation" or spec.id == STORAGE_PURPOSE):
        blocked.append(status.restricted_at.is_not(None))
    if spec.personalisation:
        blocked.append(status.personalisation_opt_out_at.is_not(None))
    if spec.legal_basis != "consent":
        if not blocked:
            return true()
        return ~exists().where(status.subject_id == subject_id, or_(*blocked))
    # One semi-join to the subjects with a usable current consent (consent_current: the latest
    # record per subject and purpose), whose status rows are anti-joined inside it: the database
    # hashes both sets once instead of probing each candidate subject twice.
    cur = ConsentCurrent
    # A minor's consent counts only when a guardian gave it (PIPL art. 31).
    blocked.append(and_(status.minor.is_(True), cur.guardian.is_not(True)))
    checks = [
        cur.subject_id == subject_id,
        cur.purpose == spec.id,
        cur.state == "granted",
        cur.notice_id == (spec.notice or ""),
        cur.notice_version >= policy.consent_floor(spec.id),
        # Correlated to the consent row's subject, never left free.
        ~exists().where(status.subject_id == cur.subject_id, or_(*blocked)),
    ]
    if spec.needs_separate_consent:
        checks.append(cur.separate.is_(True))
    return exists().where(*checks)
