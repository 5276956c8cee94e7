"""Who an event is about and whether it may be kept: identity resolution and the consent gate.

Identity: a profile id (native), a userId (the profile's external id, found by blind index),
or an anonymousId (a visitor, itself linked to a profile once an identify or alias named both).
An unknown userId is not a subject: the message counts as its anonymous visitor's when it has
an anonymousId, and is dropped as `unknown_subject` when it has none.

Consent (PIPL art. 13-15, 44): for a known subject the server-side state decides whenever it
says anything (a record for the purpose, a restriction, a minor) - it wins over whatever the
message claims. A subject with nothing on record, and an anonymous visitor, are judged by the
consent the message carries (`context.consent.categoryPreferences`, RudderStack's
`context.consentManagement`), else by the visitor's last known choice. No basis: not stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cdp.consent import service as consent
from cdp.db import one_of
from cdp.events.models import AnonymousVisitor
from cdp.events.writes import Visitor
from cdp.policy import Policy, Purpose, SubjectState
from cdp.profiles.models import Identity, Profile

EXTERNAL_ID = "external_id"


def client_consent(context: Mapping[str, Any], policy: Policy) -> dict[str, bool] | None:
    """The consent choices a message carries, by purpose id (keys may be purpose aliases);
    a refusal anywhere in the message beats an allowance."""
    found: dict[str, bool] = {}

    def note(key: Any, allowed: Any) -> None:
        if not isinstance(key, str | int) or isinstance(key, bool) or not isinstance(allowed, bool):
            return
        spec = policy.find_purpose(str(key))
        if spec is not None:
            found[spec.id] = found.get(spec.id, True) and allowed

    segment = context.get("consent")
    if isinstance(segment, dict):
        preferences = segment.get("categoryPreferences")
        if isinstance(preferences, dict):
            for key, allowed in preferences.items():
                note(key, allowed)
    rudder = context.get("consentManagement")
    if isinstance(rudder, dict):
        for field, allowed in (("allowedConsentIds", True), ("deniedConsentIds", False)):
            ids = rudder.get(field)
            if isinstance(ids, list):
                for key in ids:
                    note(key, allowed)
    return found or None


def subjects_by_user_key(session: Session, user_keys: set[str]) -> dict[str, str]:
    """Blind index of an external id -> profile id, for the ones that exist (one query)."""
    if not user_keys:
        return {}
    ident = Identity.__table__.c
    # Core through the connection: the ORM's statement handling costs more than the query.
    rows = session.connection().execute(
        select(ident.blind_index, ident.subject_id).where(
            ident.kind == EXTERNAL_ID, one_of(session, ident.blind_index, user_keys)
        )
    )
    return {index: subject for index, subject in rows}


def existing_profiles(session: Session, profile_ids: set[str]) -> set[str]:
    if not profile_ids:
        return set()
    ids = Profile.__table__.c.id
    return set(session.connection().scalars(select(ids).where(one_of(session, ids, profile_ids))))


def visitors(session: Session, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], Visitor]:
    """The known visitors among (source id, anonymous key) pairs (one query)."""
    if not wanted:
        return {}
    table = AnonymousVisitor.__table__.c
    rows = session.connection().execute(
        select(
            table.source_id, table.anonymous_key, table.subject_id, table.consent, table.last_seen
        ).where(
            one_of(session, table.source_id, {s for s, _ in wanted}),
            one_of(session, table.anonymous_key, {k for _, k in wanted}),
        )
    )
    found = {
        (r.source_id, r.anonymous_key): Visitor(r.subject_id, r.consent, r.last_seen) for r in rows
    }
    return {key: visitor for key, visitor in found.items() if key in wanted}


def states(
    session: Session, purpose: Purpose | None, subjects: set[str]
) -> dict[str, SubjectState]:
    if not subjects or purpose is None:
        return {}
    return consent.load_states(session, sorted(subjects), [purpose.id])


def decide(
    policy: Policy,
    purpose: Purpose | None,
    *,
    subject_id: str | None,
    state: SubjectState | None,
    choice: bool | None,
) -> str | None:
    """None when the event may be kept, else the reason it is dropped."""
    if purpose is None:
        return "consent_required"
    if subject_id is not None and state is not None:
        server_says = (
            state.restricted
            or state.minor
            or purpose.legal_basis != "consent"
            or purpose.id in state.consents
        )
        if server_says:
            return consent.effective(policy, purpose.id, subject_id, state)
    if purpose.legal_basis != "consent":
        return None
    return None if choice else "consent_required"
