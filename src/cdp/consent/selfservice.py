"""The customer's own consents (customer token): see every consent purpose with the notice to
show, grant or withdraw in one call (PIPL art. 15), opt out of personalisation (art. 24)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.orm import Session

from cdp.audit import service as audit
from cdp.consent import service, status
from cdp.consent.service import ConsentInput
from cdp.errors import ValidationFailed
from cdp.policy import ConsentGrant, Notice, Policy, Purpose, SubjectState, text_sha256

Locale = Literal["zh-CN", "en"]


@dataclass(frozen=True, slots=True)
class PurposeChoice:
    """A consent purpose as the customer sees it: the choice on record and the notice to show."""

    purpose: Purpose
    notice: Notice
    grant: ConsentGrant | None
    # None when the purpose may use the customer's data now, else the denial code.
    denial: str | None


@dataclass(frozen=True, slots=True)
class SelfConsents:
    subject_id: str
    state: SubjectState
    items: list[PurposeChoice]


@dataclass(frozen=True, slots=True)
class Choice:
    purpose: str
    state: Literal["granted", "withdrawn"]
    notice_version: int | None = None


def _view(policy: Policy, subject_id: str, state: SubjectState) -> SelfConsents:
    items = [
        PurposeChoice(
            purpose=spec,
            notice=policy.notices[spec.notice or ""],
            grant=state.consents.get(spec.id),
            denial=service.effective(policy, spec.id, subject_id, state),
        )
        for spec in service.consent_purposes(policy)
    ]
    return SelfConsents(subject_id, state, items)


def view(session: Session, *, policy: Policy, subject_id: str) -> SelfConsents:
    """The customer's consents; the read is audited like any other."""
    state = service.load_states(session, [subject_id])[subject_id]
    audit.append(session, actor=f"subject:{subject_id}", action="consent.read", subject=subject_id)
    return _view(policy, subject_id, state)


def _fail(index: int, key: str, message: str) -> ValidationFailed:
    loc: list[str | int] = ["body", "consents", index, key]
    return ValidationFailed(message, errors=[{"loc": loc, "msg": message, "type": "value_error"}])


def _change(
    policy: Policy, index: int, choice: Choice, channel: str, locale: Locale, ip: str | None
) -> ConsentInput:
    spec = policy.purposes.get(choice.purpose)
    if spec is None or spec.legal_basis != "consent" or spec.notice is None:
        raise _fail(index, "purpose", "not a consent purpose of purposes.yaml")
    notice = policy.notices[spec.notice]
    number = choice.notice_version or notice.latest.version
    version = notice.version(number)
    if version is None:
        raise _fail(index, "notice_version", f"notice {notice.id!r} has no version {number}")
    if choice.state == "granted" and number != notice.latest.version:
        raise _fail(
            index,
            "notice_version",
            f"version {notice.latest.version} of {notice.id!r} is current: show it, then send"
            " its number (PIPL art. 14)",
        )
    return ConsentInput(
        purpose=spec.id,
        state=choice.state,
        notice_id=notice.id,
        notice_version=number,
        channel=channel,
        text_sha256=text_sha256(notice.id, version, locale),
        locale=locale,
        ip=ip,
        # Each item is a choice about one purpose on its own: a separate consent (art. 23, 29).
        separate=True,
    )


def _unchanged(grant: ConsentGrant | None, change: ConsentInput) -> bool:
    return (
        grant is not None
        and grant.state == change.state
        and grant.notice_version == change.notice_version
        and (change.state != "granted" or grant.separate)
    )


def update(
    session: Session,
    *,
    policy: Policy,
    subject_id: str,
    choices: Sequence[Choice],
    personalisation_opt_out: bool | None,
    channel: str,
    locale: Locale,
    ip: str | None,
) -> SelfConsents:
    """Apply the customer's choices in one transaction; repeating a choice records nothing."""
    seen: set[str] = set()
    actor = f"subject:{subject_id}"
    changes = []
    for index, choice in enumerate(choices):
        if choice.purpose in seen:
            raise _fail(index, "purpose", "this purpose is listed twice")
        seen.add(choice.purpose)
        changes.append((index, _change(policy, index, choice, channel, locale, ip)))
    state = service.load_states(session, [subject_id])[subject_id]
    for index, change in changes:
        if _unchanged(state.consents.get(change.purpose), change):
            continue
        if state.minor and change.state == "granted":
            raise _fail(
                index,
                "state",
                f"under {policy.settings.minor_age_years} a guardian must give this consent"
                " (PIPL art. 31); ask them to do it with the app",
            )
        service.record(
            session,
            policy=policy,
            actor=actor,
            subject_id=subject_id,
            change=change,
            source="self",
        )
    if personalisation_opt_out is not None:
        status.set_personalisation_opt_out(
            session, subject_id=subject_id, opt_out=personalisation_opt_out, actor=actor
        )
    fresh = service.load_states(session, [subject_id])[subject_id]
    return _view(policy, subject_id, fresh)
