"""The one place that says yes or no to using personal information for a purpose."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cdp.auth.principal import Principal
from cdp.errors import (
    FieldNotAllowed,
    InsufficientScope,
    PurposeMissing,
    PurposeNotAllowed,
    UnknownPurpose,
    ValidationFailed,
)
from cdp.policy.model import Policy, Purpose

SubjectCheck = Callable[[Policy, Principal, Purpose, str | None], None]

# Per-subject conditions (consent on record, restriction, guardian for a minor) register here;
# each raises a CdpError to deny. They run after the policy-only checks, in order.
subject_checks: list[SubjectCheck] = []


def register_subject_check(check: SubjectCheck) -> SubjectCheck:
    """Add a subject check to every decision; returns it, so it works as a decorator."""
    if check not in subject_checks:
        subject_checks.append(check)
    return check


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
) -> Decision:
    """Allow the use or raise the CdpError naming the first unmet condition.

    With fields=None every field the purpose's categories cover is allowed and the rest are
    denied_fields. With explicit fields, a name policy does not know is a ValidationFailed (422,
    the request is malformed) and a known field outside the purpose is FieldNotAllowed (403).
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
    for check in tuple(subject_checks):
        check(policy, principal, spec, subject)
    return Decision(purpose, allowed, denied, subject)


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
