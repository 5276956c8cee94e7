"""Create, read, look up, update, list, merge and erase profiles; every PI use is decided
for a purpose, with the subject's consent, by consent.service.decide (policy.decide with the
subject's state) and audited with field names, never values."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cdp.audit import service as audit
from cdp.auth.principal import Principal
from cdp.consent import service as consent
from cdp.consent import status as subject_status
from cdp.crypto import Crypto, SubjectKeys
from cdp.db import utcnow
from cdp.errors import CiphertextInvalid, Conflict, NotFound, ValidationFailed
from cdp.policy import Decision, FieldSpec, Policy, decide
from cdp.profiles import rows, traits
from cdp.profiles.models import Identity, Profile
from cdp.profiles.rows import IDENTITY_TABLE, Stored

PROFILE = "profile"
IDENTITY = "identity"
# The fields that tell whether a subject is a minor (PIPL art. 28, 31), when policy has them.
MINOR_FLAG = "is_minor"
BIRTH_DATE = "birth_date"


@dataclass(frozen=True, slots=True)
class ProfileView:
    """A profile as one purpose may see it: only the allowed fields that have a value."""

    id: str
    created_at: datetime
    updated_at: datetime
    values: dict[str, Any]


def _spec(policy: Policy, name: str) -> FieldSpec:
    spec = policy.fields.get(name)
    if spec is None:
        raise ValidationFailed(
            f"unknown field {name[:64]!r}: not in fields.yaml",
            errors=[{"loc": ["body", name[:64]], "msg": "unknown field", "type": "extra"}],
        )
    return spec


def _is_identity(spec: FieldSpec) -> bool:
    return spec.storage == "encrypted+blind_index"


def _checked(policy: Policy, values: Mapping[str, Any]) -> dict[str, Any]:
    """Values in stored form; unknown fields are rejected (PIPL art. 4: nothing unclassified)."""
    return {
        name: None if value is None else traits.check_value(_spec(policy, name), value)
        for name, value in values.items()
    }


def _stored_one(session: Session, subject_id: str) -> Stored:
    """The profile row to read (no ORM object: a read changes nothing)."""
    found = rows.stored(session, [subject_id]).get(subject_id) if len(subject_id) <= 36 else None
    if found is None:
        raise NotFound("no such profile")
    return found


def _get(session: Session, subject_id: str) -> Profile:
    profile = session.get(Profile, subject_id) if len(subject_id) <= 36 else None
    if profile is None:
        raise NotFound("no such profile")
    return profile


def _index(crypto: Crypto, kind: str, value: str) -> str:
    return crypto.blind_index(kind, value)


def _write(
    session: Session,
    crypto: Crypto,
    policy: Policy,
    profile: Profile,
    values: dict[str, Any],
) -> None:
    """Store values: identifiers as blind index + ciphertext rows, the rest in the profile."""
    keys = crypto.keys_for([profile.id])
    identities = {k: v for k, v in values.items() if _is_identity(policy.fields[k])}
    if identities:
        _write_identities(session, crypto, keys, profile.id, identities)
    plain, sealed = dict(profile.plain or {}), dict(profile.sealed or {})
    for name, value in values.items():
        spec = policy.fields[name]
        if name in identities:
            continue
        if spec.storage == "encrypted":
            if value is None:
                sealed.pop(name, None)
            else:
                sealed[name] = keys.seal(profile.id, PROFILE, name, traits.encode(value))
        elif value is None:
            plain.pop(name, None)
        else:
            plain[name] = value
    profile.plain, profile.sealed = plain, sealed
    profile.updated_at = utcnow()
    try:
        session.flush()
    except IntegrityError as exc:
        # Two writers raced for the same identifier; the unique constraint decided.
        raise Conflict("an identifier already belongs to another profile") from exc
    if MINOR_FLAG in values or BIRTH_DATE in values:
        minor = _is_minor(policy, keys, profile.id, values, plain, sealed)
        subject_status.set_minor(session, subject_id=profile.id, minor=minor)


def _is_minor(
    policy: Policy,
    keys: SubjectKeys,
    subject_id: str,
    values: Mapping[str, Any],
    plain: Mapping[str, Any],
    sealed: Mapping[str, str],
) -> bool:
    """Under policy's minor age by the is_minor flag or the birth date, as now written."""

    def current(name: str) -> Any:
        if name in values:
            return values[name]
        if name in plain:
            return plain[name]
        if name in sealed and name in policy.fields:
            text = keys.open(subject_id, PROFILE, name, sealed[name])
            return traits.decode(policy.fields[name], text)
        return None

    if current(MINOR_FLAG) is True:
        return True
    born = current(BIRTH_DATE)
    if not isinstance(born, str):
        return False
    birth, today = date.fromisoformat(born), utcnow().date()
    age = today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))
    return age < policy.settings.minor_age_years


def _pairs(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(kind, value) per identity row: a multiple field (device ids) gives one per value."""
    return [
        (kind, one)
        for kind, value in values.items()
        if value is not None
        for one in (value if isinstance(value, list) else [value])
    ]


def _write_identities(
    session: Session,
    crypto: Crypto,
    keys: SubjectKeys,
    subject_id: str,
    values: dict[str, Any],
) -> None:
    """One query checks every identifier for another owner; one statement inserts them."""
    wanted = [(kind, value, crypto.blind_index(kind, value)) for kind, value in _pairs(values)]
    if wanted:
        pairs = {(kind, index) for kind, _, index in wanted}
        taken = session.execute(
            select(Identity.kind, Identity.blind_index).where(
                Identity.kind.in_({kind for kind, _ in pairs}),
                Identity.blind_index.in_({index for _, index in pairs}),
                Identity.subject_id != subject_id,
            )
        ).all()
        for kind in sorted({kind for kind, index in taken if (kind, index) in pairs}):
            raise Conflict(f"{kind} already belongs to another profile")
    session.execute(
        delete(Identity).where(Identity.subject_id == subject_id, Identity.kind.in_(values))
    )
    if wanted:
        now = utcnow()
        session.execute(
            insert(IDENTITY_TABLE),
            [
                {
                    "subject_id": subject_id,
                    "kind": kind,
                    "blind_index": index,
                    "sealed_value": keys.seal(
                        subject_id, IDENTITY, kind, crypto.normalise(kind, value)
                    ),
                    "created_at": now,
                }
                for kind, value, index in wanted
            ],
        )


def _view(
    crypto: Crypto,
    policy: Policy,
    profile: Stored,
    identities: Iterable[tuple[str, str]],
    allowed: frozenset[str],
    keys: SubjectKeys | None = None,
) -> ProfileView:
    """Decrypt only what the purpose allows; a ciphertext that fails its check is an error.

    identities: (kind, sealed value) of the subject's identity rows, in row order."""
    opener = keys or crypto.keys_for([profile.id])
    fields = policy.fields
    values: dict[str, Any] = {
        k: v for k, v in (profile.plain or {}).items() if k in allowed and k in fields
    }
    try:
        for name, ciphertext in (profile.sealed or {}).items():
            if name in allowed and name in fields:
                text = opener.open(profile.id, PROFILE, name, ciphertext)
                values[name] = traits.decode(fields[name], text)
        for kind, sealed_value in identities:
            if kind in allowed:
                value = opener.open(profile.id, IDENTITY, kind, sealed_value)
                spec = fields.get(kind)
                if spec is not None and spec.multiple:
                    values.setdefault(kind, []).append(value)
                else:
                    values[kind] = value
    except CiphertextInvalid as exc:
        raise CiphertextInvalid(
            "a stored value of this profile failed its integrity check; it was not returned",
            audit={"action": "profile.integrity_error", "subject": profile.id},
        ) from exc
    return ProfileView(profile.id, profile.created_at, profile.updated_at, values)


def _identities(session: Session, subject_ids: list[str]) -> dict[str, list[Identity]]:
    out: dict[str, list[Identity]] = {s: [] for s in subject_ids}
    rows = select(Identity).where(Identity.subject_id.in_(subject_ids)).order_by(Identity.id)
    for row in session.scalars(rows):
        out[row.subject_id].append(row)
    return out


def _identity_values(session: Session, subject_ids: list[str]) -> dict[str, list[tuple[str, str]]]:
    return rows.identity_values(session, subject_ids)


def _audit_read(
    session: Session,
    principal: Principal,
    decision: Decision,
    views: list[ProfileView],
    action: str,
) -> None:
    audit.append_many(
        session,
        [
            audit.Event(
                actor=principal.actor,
                action=action,
                subject=view.id,
                purpose=decision.purpose,
                fields=view.values.keys(),
            )
            for view in views
        ],
    )


def create(
    session: Session,
    *,
    crypto: Crypto,
    policy: Policy,
    principal: Principal,
    purpose: str | None,
    values: Mapping[str, Any],
) -> ProfileView:
    """A new profile; the fields written must be ones the purpose may collect."""
    checked = {k: v for k, v in _checked(policy, values).items() if v is not None}
    try:
        return _create(session, crypto, policy, principal, purpose, [checked])[0]
    except BatchItemConflict as exc:
        raise Conflict(f"{exc.kind} already belongs to another profile") from exc


class BatchItemConflict(Conflict):
    """An identifier of one batch item is taken (by another profile or an earlier item)."""

    def __init__(self, index: int, kind: str, *, earlier: int | None = None) -> None:
        owner = "another profile" if earlier is None else f"item {earlier} of the batch"
        super().__init__(
            f"{kind} of item {index} already belongs to {owner}",
            errors=[{"loc": ["body", "profiles", index, kind], "msg": "taken", "type": "conflict"}],
        )
        self.index, self.kind = index, kind


def create_many(
    session: Session,
    *,
    crypto: Crypto,
    policy: Policy,
    principal: Principal,
    purpose: str | None,
    items: list[Mapping[str, Any]],
) -> list[ProfileView]:
    """New profiles, all or none, in a few statements whatever their number (an import from a
    CRM). Errors name the item: identifiers are checked against each other and stored ones."""
    checked: list[dict[str, Any]] = []
    for index, values in enumerate(items):
        try:
            checked.append({k: v for k, v in _checked(policy, values).items() if v is not None})
        except ValidationFailed as exc:
            raise ValidationFailed(
                f"item {index}: {exc.detail}",
                errors=[
                    {**e, "loc": ["body", "profiles", index, *e.get("loc", ["body"])[1:]]}
                    for e in exc.errors or []
                ],
            ) from exc
    return _create(session, crypto, policy, principal, purpose, checked)


def _create(
    session: Session,
    crypto: Crypto,
    policy: Policy,
    principal: Principal,
    purpose: str | None,
    checked: list[dict[str, Any]],
) -> list[ProfileView]:
    # Nothing is on record for a new subject: only a non-consent basis can create a profile.
    decision = consent.decide_collection(
        policy=policy,
        principal=principal,
        purpose=purpose,
        fields=sorted({name for values in checked for name in values}),
    )
    ids, keys = crypto.new_subjects(len(checked))
    now = utcnow()
    items, identities = _new_identities(crypto, policy, keys, ids, checked)
    profiles: list[tuple[str, dict[str, Any], dict[str, str]]] = []
    for subject_id, values in zip(ids, checked, strict=True):
        plain: dict[str, Any] = {}
        sealed: dict[str, str] = {}
        for name, value in values.items():
            spec = policy.fields[name]
            if _is_identity(spec):
                continue
            if spec.storage == "encrypted":
                sealed[name] = keys.seal(subject_id, PROFILE, name, traits.encode(value))
            else:
                plain[name] = value
        profiles.append((subject_id, plain, sealed))
    rows.insert_profiles(session, profiles, now)
    _insert_identities(session, identities, items, now)
    for subject_id, values in zip(ids, checked, strict=True):
        if MINOR_FLAG in values or BIRTH_DATE in values:
            minor = _is_minor(policy, keys, subject_id, values, {}, {})
            subject_status.set_minor(session, subject_id=subject_id, minor=minor)
    audit.append_many(
        session,
        [
            audit.Event(
                actor=principal.actor,
                action="profile.create",
                subject=subject_id,
                purpose=decision.purpose,
                fields=values.keys(),
            )
            for subject_id, values in zip(ids, checked, strict=True)
        ],
    )
    return [
        ProfileView(subject_id, now, now, dict(values))
        for subject_id, values in zip(ids, checked, strict=True)
    ]


def _new_identities(
    crypto: Crypto,
    policy: Policy,
    keys: SubjectKeys,
    ids: list[str],
    checked: list[dict[str, Any]],
) -> tuple[list[int], list[tuple[str, str, str, str]]]:
    """Identity rows (subject, kind, blind index, sealed value) for new profiles and the batch
    item of each; BatchItemConflict names an
    identifier given twice in the batch."""
    wanted: list[tuple[int, str, str, str]] = []  # (item, kind, blind index, normalised)
    seen: dict[tuple[str, str], int] = {}
    for index, values in enumerate(checked):
        identities = {k: v for k, v in values.items() if _is_identity(policy.fields[k])}
        for kind, value in _pairs(identities):
            normalised, blind = crypto.identifier(kind, value)
            if (kind, blind) in seen:
                raise BatchItemConflict(index, kind, earlier=seen[(kind, blind)])
            seen[(kind, blind)] = index
            wanted.append((index, kind, blind, normalised))
    return [index for index, _, _, _ in wanted], [
        (ids[index], kind, blind, keys.seal(ids[index], IDENTITY, kind, normalised))
        for index, kind, blind, normalised in wanted
    ]


def _insert_identities(
    session: Session, new: list[tuple[str, str, str, str]], items: list[int], at: datetime
) -> None:
    """Inserts new profiles' identity rows in one statement; an identifier another profile
    holds is skipped by the unique constraint (no check query before, no race) and reported
    as BatchItemConflict for the first item affected. The caller's transaction then rolls back
    (the request's unit of work does), so nothing of the batch is stored. items: the batch
    item of each row."""
    if not new or rows.insert_identities(session, new, at) == len(new):
        return
    owners = {
        (kind, blind): owner
        for kind, blind, owner in session.execute(
            select(Identity.kind, Identity.blind_index, Identity.subject_id).where(
                Identity.blind_index.in_([blind for _, _, blind, _ in new])
            )
        )
    }
    clashes = sorted(
        (item, kind)
        for item, (subject_id, kind, blind, _) in zip(items, new, strict=True)
        if owners.get((kind, blind)) != subject_id
    )
    raise BatchItemConflict(*clashes[0])


def read(
    session: Session,
    *,
    crypto: Crypto,
    policy: Policy,
    principal: Principal,
    purpose: str | None,
    subject_id: str,
) -> ProfileView:
    decision = consent.decide(
        session, policy=policy, principal=principal, purpose=purpose, subject=subject_id
    )
    profile = _stored_one(session, subject_id)
    view = _view(
        crypto,
        policy,
        profile,
        _identity_values(session, [profile.id])[profile.id],
        decision.allowed_fields,
    )
    _audit_read(session, principal, decision, [view], "profile.read")
    return view


def lookup(
    session: Session,
    *,
    crypto: Crypto,
    policy: Policy,
    principal: Principal,
    purpose: str | None,
    kind: str,
    value: str,
) -> ProfileView:
    """Find a profile by an identifier's blind index; a miss says only that nothing matched."""
    decision = decide(policy, principal, purpose)
    index = _index(crypto, kind, value)
    subject_id = session.scalar(
        select(Identity.subject_id).where(Identity.kind == kind, Identity.blind_index == index)
    )
    if subject_id is None:
        # Audited too (after the rollback): repeated misses are what enumeration looks like.
        raise NotFound(
            "no profile matches",
            audit={
                "action": "profile.lookup",
                "decision": "allow",
                "fields": [kind],
                "detail": {"found": False},
            },
        )
    # Found: now the subject's own basis for the purpose (consent, restriction, opt-out).
    decision = consent.decide(
        session, policy=policy, principal=principal, purpose=purpose, subject=subject_id
    )
    profile = _stored_one(session, subject_id)
    view = _view(
        crypto,
        policy,
        profile,
        _identity_values(session, [subject_id])[subject_id],
        decision.allowed_fields,
    )
    audit.append(
        session,
        actor=principal.actor,
        action="profile.read",
        subject=subject_id,
        purpose=decision.purpose,
        fields=view.values.keys(),
        detail={"via": "lookup", "by": kind},
    )
    return view


def update(
    session: Session,
    *,
    crypto: Crypto,
    policy: Policy,
    principal: Principal,
    purpose: str | None,
    subject_id: str,
    patch: Mapping[str, Any],
) -> ProfileView:
    """JSON merge patch: a null removes the field; the rest replace or add."""
    checked = _checked(policy, patch)
    decision = consent.decide(
        session,
        policy=policy,
        principal=principal,
        purpose=purpose,
        subject=subject_id,
        fields=checked.keys(),
    )
    # What the response may show is decided on the state the write was allowed under: a write
    # that makes the subject a minor takes effect for the next request, not this one.
    full = consent.decide(
        session, policy=policy, principal=principal, purpose=purpose, subject=subject_id
    )
    profile = _get(session, subject_id)
    _write(session, crypto, policy, profile, checked)
    audit.append(
        session,
        actor=principal.actor,
        action="profile.update",
        subject=profile.id,
        purpose=decision.purpose,
        fields=checked.keys(),
    )
    return _view(
        crypto,
        policy,
        Stored.of(profile),
        _identity_values(session, [profile.id])[profile.id],
        full.allowed_fields,
    )


def read_many(
    session: Session,
    *,
    crypto: Crypto,
    policy: Policy,
    principal: Principal,
    purpose: str | None,
    subject_ids: list[str],
) -> tuple[list[ProfileView], list[str]]:
    """Many profiles by id, in the order asked, with the fields the purpose allows each; and
    the ids withheld (no such profile, or no basis for the purpose), in the same order."""
    decision = decide(policy, principal, purpose)
    wanted = [s for s in dict.fromkeys(subject_ids) if len(s) <= 36]
    found = rows.stored(session, wanted)
    allowed = consent.allowed_subjects(
        session, policy=policy, decision=decision, subject_ids=list(found)
    )
    ids = [s for s in wanted if s in allowed]
    identities = _identity_values(session, ids)
    keys = crypto.keys_for(ids)
    views = [
        _view(crypto, policy, found[s], identities[s], allowed[s].allowed_fields, keys) for s in ids
    ]
    _audit_read(session, principal, decision, views, "profile.read")
    return views, [s for s in dict.fromkeys(subject_ids) if s not in allowed]


def list_profiles(
    session: Session,
    *,
    crypto: Crypto,
    policy: Policy,
    principal: Principal,
    purpose: str | None,
    after: str | None,
    limit: int,
) -> tuple[list[ProfileView], str | None]:
    """One page of profiles that have a basis for the purpose (others are left out, PIPL
    art. 13-15, 24, 44), and the last id scanned when more may follow."""
    decision = decide(policy, principal, purpose)
    stmt = select(Profile).order_by(Profile.id).limit(limit)
    if after:
        stmt = stmt.where(Profile.id > after)
    scanned = list(session.scalars(stmt))
    allowed = consent.allowed_subjects(
        session, policy=policy, decision=decision, subject_ids=[p.id for p in scanned]
    )
    profiles = [p for p in scanned if p.id in allowed]
    ids = [p.id for p in profiles]
    identities = _identity_values(session, ids)
    keys = crypto.keys_for(ids)
    views = [
        _view(crypto, policy, Stored.of(p), identities[p.id], allowed[p.id].allowed_fields, keys)
        for p in profiles
    ]
    _audit_read(session, principal, decision, views, "profile.read")
    return views, scanned[-1].id if len(scanned) == limit else None


def erase(session: Session, *, crypto: Crypto, actor: str, subject_id: str, reason: str) -> None:
    """Erasure: shred the subject's data key first (every copy, backups too, becomes
    unreadable), then delete the rows; the audit entry names no value."""
    profile = _get(session, subject_id)
    crypto.shred(subject_id, reason=reason)
    session.execute(delete(Identity).where(Identity.subject_id == subject_id))
    session.delete(profile)
    session.flush()
    audit.append(
        session, actor=actor, action="profile.erase", subject=subject_id, detail={"reason": reason}
    )


def merge(
    session: Session,
    *,
    crypto: Crypto,
    policy: Policy,
    principal: Principal,
    target_id: str,
    source_id: str,
) -> ProfileView:
    """Two profiles of one customer become the target: the source's identifiers move over,
    its traits fill the target's gaps, then the source is erased. The audit entry keeps what
    moved (identity row ids, field names) so the merge can be split again."""
    target, source = _get(session, target_id), _get(session, source_id)
    if target_id == source_id:
        raise ValidationFailed(
            "a profile cannot be merged into itself",
            errors=[{"loc": ["body", "source_id"], "msg": "same as target", "type": "value_error"}],
        )
    keys = crypto.keys_for([target_id, source_id], create=True)
    moved: list[dict[str, Any]] = []
    for identity in _identities(session, [source_id])[source_id]:
        value = keys.open(source_id, IDENTITY, identity.kind, identity.sealed_value)
        spec = policy.fields.get(identity.kind)
        # A person's devices add up; a second email or external id would be a conflict.
        clash = (
            None
            if spec is not None and spec.multiple
            else session.scalar(
                select(Identity.id).where(
                    Identity.subject_id == target_id, Identity.kind == identity.kind
                )
            )
        )
        if clash is not None:
            raise Conflict(f"both profiles have a {identity.kind}; resolve it before merging")
        identity.subject_id = target_id
        identity.sealed_value = keys.seal(target_id, IDENTITY, identity.kind, value)
        moved.append({"identity_id": identity.id, "kind": identity.kind})
    filled: list[str] = []
    plain, sealed = dict(target.plain or {}), dict(target.sealed or {})
    for name, value in (source.plain or {}).items():
        if name not in plain:
            plain[name] = value
            filled.append(name)
    for name, ciphertext in (source.sealed or {}).items():
        if name not in sealed:
            text = keys.open(source_id, PROFILE, name, ciphertext)
            sealed[name] = keys.seal(target_id, PROFILE, name, text)
            filled.append(name)
    target.plain, target.sealed, target.updated_at = plain, sealed, utcnow()
    session.flush()
    audit.append(
        session,
        actor=principal.actor,
        action="profile.merge",
        subject=target_id,
        fields=[m["kind"] for m in moved] + filled,
        detail={"source": source_id, "moved_identities": moved, "filled_fields": filled},
    )
    erase(session, crypto=crypto, actor=principal.actor, subject_id=source_id, reason="merged")
    return ProfileView(target.id, target.created_at, target.updated_at, {})
