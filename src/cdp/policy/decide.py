"""The one place that says yes or no to using personal information for a purpose."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal

from cdp.auth.principal import Principal
from cdp.errors import (
    ConsentRequired,
    FieldNotAllowed,
    GuardianConsentRequired,
    InsufficientScope,
    PersonalisationOptedOut,
    ProcessingRestricted,
    PurposeMissing,
    PurposeNotAllowed,
    SeparateConsentRequired,
    UnknownPurpose,
    ValidationFailed,
)
from cdp.policy.model import Policy, Purpose

ConsentState = Literal["granted", "withdrawn", "refused"]
# Under a restriction (PIPL art. 44, 47) data may still be kept, and legal duties still met.
STORAGE_PURPOSE = "storage"


@dataclass(frozen=True, slots=True)
class ConsentGrant:
    """A subject's current consent record for one purpose (the latest by time, then id)."""

    state: ConsentState
    notice_id: str
    notice_version: int
    separate: bool
    guardian: bool
    at: datetime


@dataclass(frozen=True, slots=True)
class SubjectState:
    """What decide needs to know about one subject; loaded fresh for every decision."""

    consents: Mapping[str, ConsentGrant] = field(default_factory=lambda: MappingProxyType({}))
    minor: bool = False
    restricted: bool = False
    personalisation_opt_out: bool = False


# A subject with nothing on record, e.g. one whose profile is being created.
NO_RECORD = SubjectState()


@dataclass(frozen=True, slots=True)
class Decision:
    """An allowed use: the purpose id, the fields it may touch and the ones withheld."""

    purpose: str
    allowed_fields: frozenset[str]
    denied_fields: frozenset[str]
    subject: str | None


def decide(
    policy: Policy,
    principal: Principal,
    purpose: str | None,
    *,
    subject: str | None = None,
    fields: Iterable[str] | None = None,
    required_scope: str | None = None,
    state: SubjectState | None = None,
) -> Decision:
    """Allow the use or raise the CdpError naming the first unmet condition.

    With fields=None every field the purpose's categories cover is allowed and the rest are
    denied_fields. With explicit fields, a name policy does not know is a ValidationFailed (422,
    the request is malformed) and a known field outside the purpose is FieldNotAllowed (403).
    With a state, the subject's legal basis is checked too (see for_subject); state=None
    decides for the policy alone, and the caller checks each subject (e.g. rows of a list).
    """
    if required_scope is not None and not principal.has_scope(required_scope):
        raise InsufficientScope(f"scope {required_scope!r} required")
    if not purpose:
        raise PurposeMissing()
    spec = policy.purposes.get(purpose)
    if spec is None:
        raise UnknownPurpose(f"unknown purpose {purpose[:64]!r}")
    if purpose not in principal.purposes and "*" not in principal.purposes:
        raise PurposeNotAllowed(
            f"purpose {purpose!r} not allowed for this client",
            audit={"subject": subject},
        )
    permitted = policy.fields_for(purpose)
    if fields is None:
        allowed, denied = permitted, frozenset(policy.fields) - permitted
    else:
        allowed, denied = _requested(policy, purpose, permitted, fields, subject), frozenset()
    decision = Decision(purpose, allowed, denied, subject)
    if state is None:
        return decision
    return for_subject(policy, decision, state, explicit=fields is not None)


def for_subject(
    policy: Policy, decision: Decision, state: SubjectState, *, explicit: bool = False
) -> Decision:
    """The legal-basis checks for the decision's subject, in order (PIPL art. 13-31, 44, 47):

    restriction, then the art. 24 opt-out, then for a consent basis: a current grant to the
    notice version in force, separate consent where the purpose needs it, a guardian for a
    minor. Sensitive fields need a separate grant: asked for by name they are refused (403),
    otherwise they are withheld. Non-consent bases need no consent record.
    """
    spec = policy.purposes[decision.purpose]
    audit = _audit(decision, explicit)
    if state.restricted and not _survives_restriction(spec):
        raise ProcessingRestricted(
            "processing of this subject is restricted (PIPL art. 44, 47): only storage and"
            " legal obligations may use its data",
            audit=audit,
        )
    if state.personalisation_opt_out and spec.personalisation:
        raise PersonalisationOptedOut(
            f"the subject opted out of personalised processing (PIPL art. 24); purpose"
            f" {spec.id!r} is personalisation",
            audit=audit,
        )
    if spec.legal_basis != "consent":
        return decision
    grant = _current_grant(policy, spec, state.consents.get(spec.id), audit)
    if spec.needs_separate_consent and not grant.separate:
        raise SeparateConsentRequired(
            f"purpose {spec.id!r} needs separate consent (PIPL art. 23, 29, 39); the consent"
            " on record is a general one",
            audit=audit,
        )
    if state.minor and not grant.guardian:
        raise GuardianConsentRequired(
            f"the subject is under {policy.settings.minor_age_years}: consent for"
            f" {spec.id!r} must come from a guardian (PIPL art. 31)",
            audit=audit,
        )
    sensitive = decision.allowed_fields & policy.sensitive_fields
    if sensitive and not grant.separate:
        if explicit:
            names = sorted(sensitive)
            raise SeparateConsentRequired(
                f"sensitive field(s) {', '.join(names)} need separate consent for"
                f" {spec.id!r} (PIPL art. 28, 29)",
                errors=[
                    {"loc": ["fields", n], "msg": "sensitive", "type": "separate_consent"}
                    for n in names
                ],
                audit={**audit, "fields": names},
            )
        return replace(
            decision,
            allowed_fields=decision.allowed_fields - sensitive,
            denied_fields=decision.denied_fields | sensitive,
        )
    return decision


def _survives_restriction(spec: Purpose) -> bool:
    return spec.legal_basis == "legal_obligation" or spec.id == STORAGE_PURPOSE


def _audit(decision: Decision, explicit: bool) -> dict[str, Any]:
    fields = sorted(decision.allowed_fields) if explicit else []
    return {"subject": decision.subject, "purpose": decision.purpose, "fields": fields}


def _current_grant(
    policy: Policy, spec: Purpose, grant: ConsentGrant | None, audit: dict[str, Any]
) -> ConsentGrant:
    if grant is None:
        raise ConsentRequired(f"no consent on record for purpose {spec.id!r}", audit=audit)
    if grant.state != "granted":
        raise ConsentRequired(f"consent for purpose {spec.id!r} was {grant.state}", audit=audit)
    if grant.notice_id != spec.notice:
        raise ConsentRequired(
            f"the consent for {spec.id!r} was given to notice {grant.notice_id!r}; the purpose"
            f" now needs consent to {spec.notice!r}",
            audit=audit,
        )
    floor = policy.consent_floor(spec.id)
    if grant.notice_version < floor:
        raise ConsentRequired(
            f"the consent for {spec.id!r} was given to version {grant.notice_version} of"
            f" {spec.notice!r}; version {floor} asks for consent again (PIPL art. 14)",
            audit=audit,
        )
    return grant


def _requested(
    policy: Policy,
    purpose: str,
    permitted: frozenset[str],
    fields: Iterable[str],
    subject: str | None,
) -> frozenset[str]:
    # A bare string is an iterable of characters; refuse it rather than check "e", "m", ...
    if isinstance(fields, str):
        raise TypeError("fields must be an iterable of field names, not a string")
    requested = frozenset(fields)
    unknown = sorted(requested - policy.fields.keys())
    if unknown:
        raise ValidationFailed(
            f"unknown field(s): {', '.join(unknown)}",
            errors=[
                {"loc": ["fields", name], "msg": "not in fields.yaml", "type": "unknown_field"}
                for name in unknown
            ],
        )
    refused = sorted(requested - permitted)
    if refused:
        raise FieldNotAllowed(
            f"purpose {purpose!r} does not allow field(s): {', '.join(refused)}",
            errors=[
                {"loc": ["fields", name], "msg": "category not allowed", "type": "field_denied"}
                for name in refused
            ],
            audit={"subject": subject, "fields": refused},
        )
    return requested
