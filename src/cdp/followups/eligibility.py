"""Who may be contacted for a plan, as one SQL predicate, and when (quiet hours).

Scheduling works on whole plans (100,000 members in a few seconds), so the rules of
policy.decide.for_subject are restated here as set-based SQL over consent_record and
subject_status, and the channel's contact field over identity:

- restriction (PIPL art. 44, 47) stops every purpose but legal obligations and storage;
- the art. 24 opt-out stops personalisation purposes;
- a consent-basis purpose needs the subject's latest record for it to be a grant to the
  notice in force, separate where the purpose needs it, with a guardian for a minor;
- the channel needs its contact field on record (phone, e-mail, a WeChat id), and the
  purpose must cover that field's category.
tests/api/test_followups.py checks these against consent.service.decide.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, exists, or_, select, true
from sqlalchemy.orm import InstrumentedAttribute, aliased

from cdp.consent.models import ConsentRecord, SubjectStatus
from cdp.errors import ValidationFailed
from cdp.policy import Policy, Purpose
from cdp.policy.model import QuietHours
from cdp.profiles.models import Identity

SubjectColumn = ColumnElement[str] | InstrumentedAttribute[str]

# channel -> (category the purpose must cover, identity kinds of which one must exist)
CHANNEL_NEEDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "phone": ("contact", ("phone",)),
    "email": ("contact", ("email",)),
    "online": ("identifier", ("wechat_openid", "wechat_unionid")),
    # A visit is arranged by phone first.
    "visit": ("contact", ("phone",)),
}


def check_channel(policy: Policy, purpose: str, channel: str) -> None:
    """ValidationFailed when the purpose may not use the channel's contact field."""
    category, _ = CHANNEL_NEEDS[channel]
    if category not in policy.purpose(purpose).categories:
        message = f"purpose {purpose!r} does not cover {category} data, which {channel} needs"
        raise ValidationFailed(
            message,
            errors=[{"loc": ["body", "channel"], "msg": message, "type": "channel_not_allowed"}],
        )


def _survives_restriction(spec: Purpose) -> bool:
    return spec.legal_basis == "legal_obligation" or spec.id == "storage"


def allowed(
    policy: Policy, spec: Purpose, channel: str, subject: SubjectColumn
) -> ColumnElement[bool]:
    """SQL that is true for the rows whose `subject` may be contacted on `channel` for `spec`."""
    status = aliased(SubjectStatus)
    clauses: list[ColumnElement[bool]] = []
    if not _survives_restriction(spec):
        clauses.append(
            ~exists(
                select(status.subject_id).where(
                    status.subject_id == subject, status.restricted_at.is_not(None)
                )
            )
        )
    if spec.personalisation:
        clauses.append(
            ~exists(
                select(status.subject_id).where(
                    status.subject_id == subject, status.personalisation_opt_out_at.is_not(None)
                )
            )
        )
    if spec.legal_basis == "consent":
        clauses.append(_current_grant(policy, spec, subject))
    _, kinds = CHANNEL_NEEDS[channel]
    clauses.append(
        exists(select(Identity.id).where(Identity.subject_id == subject, Identity.kind.in_(kinds)))
    )
    return and_(true(), *clauses)


def _current_grant(policy: Policy, spec: Purpose, subject: SubjectColumn) -> ColumnElement[bool]:
    rec, newer = aliased(ConsentRecord), aliased(ConsentRecord)
    minor = aliased(SubjectStatus)
    is_latest = ~exists(
        select(newer.id).where(
            newer.subject_id == rec.subject_id,
            newer.purpose == rec.purpose,
            or_(newer.at > rec.at, and_(newer.at == rec.at, newer.id > rec.id)),
        )
    )
    conditions = [
        rec.subject_id == subject,
        rec.purpose == spec.id,
        rec.state == "granted",
        rec.notice_id == (spec.notice or ""),
        rec.notice_version >= policy.consent_floor(spec.id),
        or_(
            rec.guardian.is_not(None),
            ~exists(
                select(minor.subject_id).where(
                    minor.subject_id == rec.subject_id, minor.minor.is_(True)
                )
            ),
        ),
        is_latest,
    ]
    if spec.needs_separate_consent:
        conditions.append(rec.separate.is_(True))
    return exists(select(rec.id).where(*conditions))


def outside_quiet_hours(at: datetime, quiet: QuietHours | None) -> datetime:
    """`at`, or the end of the quiet hours it falls in (local time of the policy's zone)."""
    if quiet is None:
        return at
    zone = ZoneInfo(quiet.timezone)
    local = at.astimezone(zone)
    now, start, end = local.time().replace(tzinfo=None), quiet.start, quiet.end
    if start < end:
        inside, end_day = start <= now < end, local.date()
    else:  # the window spans midnight, e.g. 21:00-09:00
        inside = now >= start or now < end
        end_day = local.date() + timedelta(days=1) if now >= start else local.date()
    if not inside:
        return at
    return datetime.combine(end_day, end, tzinfo=zone).astimezone(UTC)
