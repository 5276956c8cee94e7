"""Consent records: record them, derive the current state, decide with it.

The current consent of a subject for a purpose is the latest record by (at, id); history is
never rewritten. A trigger copies that latest record into consent_current in the inserting
transaction, so the state is read with one primary-key probe. Writers for one subject are
serialised on its profile row, so (at, id) order is commit order. decide() reads the state on
every call, with no cache: a withdrawal stops the very next request (PIPL art. 15).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal, cast

from sqlalchemy import Table, and_, bindparam, literal, select
from sqlalchemy.orm import Session

from cdp.audit import service as audit
from cdp.auth.principal import Principal
from cdp.consent import transfers
from cdp.consent.models import ConsentCurrent, ConsentRecord, SubjectStatus
from cdp.db import one_of, utcnow
from cdp.errors import CdpError, Forbidden, NotFound, ValidationFailed
from cdp.policy import (
    NO_RECORD,
    ConsentGrant,
    Decision,
    Policy,
    Purpose,
    SubjectState,
    for_subject,
)
from cdp.policy import decide as policy_decide
from cdp.profiles.models import Profile

CHANNELS = ("web", "app", "mini_program", "paper", "phone")
ACTIONS = {"granted": "consent.grant", "withdrawn": "consent.withdraw", "refused": "consent.refuse"}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

Cur = ConsentCurrent
_CURRENT = cast(Table, ConsentCurrent.__table__).c
_STATUS = cast(Table, SubjectStatus.__table__).c


@dataclass(frozen=True, slots=True)
class ConsentInput:
    """One consent event as a client, the customer or an import row describes it."""

    purpose: str
    state: Literal["granted", "withdrawn", "refused"]
    notice_id: str
    notice_version: int
    channel: str
    text_sha256: str
    locale: str
    ip: str | None = None
    separate: bool = False
    guardian: Mapping[str, Any] | None = None
    at: datetime | None = None


def ip_prefix(ip: str) -> str:
    """The network an address belongs to, IPv4 /24 or IPv6 /48: evidence without the full IP."""
    address = ipaddress.ip_address(ip.strip())
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    bits = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{bits}", strict=False))


def _invalid(loc: list[Any], message: str, kind: str = "value_error") -> ValidationFailed:
    return ValidationFailed(message, errors=[{"loc": loc, "msg": message, "type": kind}])


def check_input(
    policy: Policy, change: ConsentInput, *, minor: bool, loc: tuple[Any, ...] = ("body",)
) -> Purpose:
    """The purpose the change is about, or ValidationFailed naming the first wrong field."""
    spec = policy.purposes.get(change.purpose)
    if spec is None:
        raise _invalid([*loc, "purpose"], "unknown purpose: not in purposes.yaml")
    if spec.legal_basis != "consent":
        raise _invalid(
            [*loc, "purpose"],
            f"purpose {spec.id!r} rests on {spec.legal_basis}, not consent: nothing to record",
        )
    if change.notice_id != spec.notice:
        raise _invalid(
            [*loc, "notice_id"], f"consents for {spec.id!r} bind to notice {spec.notice!r}"
        )
    notice = policy.notices[change.notice_id]
    version = notice.version(change.notice_version)
    if version is None:
        raise _invalid(
            [*loc, "notice_version"],
            f"notice {notice.id!r} has no version {change.notice_version}",
        )
    if change.channel not in CHANNELS:
        raise _invalid([*loc, "channel"], f"channel must be one of {', '.join(CHANNELS)}")
    if not _SHA256.match(change.text_sha256):
        raise _invalid([*loc, "text_sha256"], "text_sha256 must be 64 lower-case hex digits")
    if change.locale not in version.texts:
        raise _invalid(
            [*loc, "locale"],
            f"version {version.version} of {notice.id!r} has texts in"
            f" {', '.join(version.texts)} only",
        )
    if change.ip is not None:
        try:
            ip_prefix(change.ip)
        except ValueError:
            raise _invalid([*loc, "ip"], "not an IP address") from None
    if minor and change.state == "granted" and not change.guardian:
        raise _invalid(
            [*loc, "guardian"],
            f"the subject is under {policy.settings.minor_age_years}: a guardian must give"
            " the consent (PIPL art. 31)",
            "guardian_required",
        )
    return spec


def lock_subject(session: Session, subject_id: str) -> None:
    """Serialises writers of one subject (PostgreSQL row lock; SQLite writers are serial)."""
    found = (
        session.scalar(select(Profile.id).where(Profile.id == subject_id).with_for_update())
        if len(subject_id) <= 36
        else None
    )
    if found is None:
        raise NotFound("no such profile")


def _status(session: Session, subject_id: str) -> SubjectStatus | None:
    return session.get(SubjectStatus, subject_id)


def new_record(
    policy: Policy, actor: str, subject_id: str, change: ConsentInput, at: datetime
) -> ConsentRecord:
    evidence: dict[str, Any] = {"text_sha256": change.text_sha256, "locale": change.locale}
    if change.ip is not None:
        evidence["ip_prefix"] = ip_prefix(change.ip)
    guardian = None
    if change.guardian:
        guardian = {
            "relation": change.guardian["relation"],
            "verified": True,
            "method": change.guardian["method"],
        }
    return ConsentRecord(
        subject_id=subject_id,
        purpose=change.purpose,
        state=change.state,
        notice_id=change.notice_id,
        notice_version=change.notice_version,
        channel=change.channel,
        evidence=evidence,
        separate=change.separate,
        guardian=guardian,
        actor=actor,
        policy_version=policy.version,
        at=at,
    )


def audit_event(actor: str, record: ConsentRecord, source: str) -> audit.Event:
    """The audit entry of one consent change: ids and facts, never the evidence itself."""
    return audit.Event(
        actor=actor,
        action=ACTIONS[record.state],
        subject=record.subject_id,
        purpose=record.purpose,
        detail={
            "record_id": record.id,
            "notice_id": record.notice_id,
            "notice_version": record.notice_version,
            "channel": record.channel,
            "separate": record.separate,
            "guardian": record.guardian is not None,
            "source": source,
        },
    )


def record(
    session: Session,
    *,
    policy: Policy,
    actor: str,
    subject_id: str,
    change: ConsentInput,
    source: str = "api",
) -> ConsentRecord:
    """Append one consent event and its audit entry; the time is the server's, never earlier
    than the subject's last record for the purpose, so the newest write is the current one."""
    lock_subject(session, subject_id)
    status = _status(session, subject_id)
    check_input(policy, change, minor=bool(status and status.minor))
    # The current record has the latest `at` of the subject's records for the purpose.
    last = session.scalar(
        select(Cur.at).where(Cur.subject_id == subject_id, Cur.purpose == change.purpose)
    )
    now = utcnow()
    entry = new_record(policy, actor, subject_id, change, max(now, last) if last else now)
    session.add(entry)
    session.flush()
    audit.append_many(session, [audit_event(actor, entry, source)])
    return entry


# --- the current state ------------------------------------------------------------------------


def _grant(row: Any) -> ConsentGrant:
    return ConsentGrant(
        state=row.state,
        notice_id=row.notice_id,
        notice_version=row.notice_version,
        separate=bool(row.separate),
        guardian=bool(row.guardian),
        at=row.at,
    )


def current(
    session: Session, subject_ids: Iterable[str], purposes: Iterable[str] | None = None
) -> dict[str, dict[str, ConsentGrant]]:
    """The current consent per subject and purpose, for many subjects in one query."""
    ids = list(subject_ids)
    out: dict[str, dict[str, ConsentGrant]] = {s: {} for s in ids}
    if not ids:
        return out
    session.flush()  # Core below: no autoflush of records added to the session
    c = _CURRENT
    stmt = select(
        c.subject_id,
        c.purpose,
        c.state,
        c.notice_id,
        c.notice_version,
        c.separate,
        c.guardian,
        c.at,
    ).where(one_of(session, c.subject_id, ids))
    if purposes is not None:
        stmt = stmt.where(one_of(session, c.purpose, purposes))
    # Core rows through the connection: loading ORM objects cost more than the query (this
    # runs for every ingested batch and every list decision).
    for row in session.connection().execute(stmt):
        out[row.subject_id][row.purpose] = _grant(row)
    return out


def _state(status: Any, consents: Mapping[str, ConsentGrant]) -> SubjectState:
    return SubjectState(
        consents=MappingProxyType(dict(consents)),
        minor=bool(status and status.minor),
        restricted=bool(status and status.restricted_at is not None),
        personalisation_opt_out=bool(status and status.personalisation_opt_out_at is not None),
    )


def load_states(
    session: Session, subject_ids: Iterable[str], purposes: Iterable[str] | None = None
) -> dict[str, SubjectState]:
    """SubjectState for many subjects: two queries whatever their number."""
    ids = list(subject_ids)
    consents = current(session, ids, purposes)
    statuses = {}
    if ids:
        st = _STATUS
        found = session.connection().execute(
            select(st.subject_id, st.minor, st.restricted_at, st.personalisation_opt_out_at).where(
                one_of(session, st.subject_id, ids)
            )
        )
        statuses = {row.subject_id: row for row in found}
    return {s: _state(statuses.get(s), consents[s]) for s in ids}


# One round trip for a decision: the subject's status and its current consent for one purpose.
_STATE_COLUMNS = (
    SubjectStatus.minor,
    SubjectStatus.restricted_at,
    SubjectStatus.personalisation_opt_out_at,
)
_ONE_PURPOSE = (
    select(
        *_STATE_COLUMNS,
        Cur.state,
        Cur.notice_id,
        Cur.notice_version,
        Cur.separate,
        Cur.guardian,
        Cur.at,
    )
    .select_from(Profile)
    .outerjoin(SubjectStatus, SubjectStatus.subject_id == Profile.id)
    .outerjoin(Cur, and_(Cur.subject_id == Profile.id, Cur.purpose == bindparam("purpose")))
    .where(Profile.id == bindparam("subject"))
)
_NO_PURPOSE = (
    select(*_STATE_COLUMNS, literal(None).label("state"))
    .select_from(Profile)
    .outerjoin(SubjectStatus, SubjectStatus.subject_id == Profile.id)
    .where(Profile.id == bindparam("subject"))
)


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A statement compiled once per dialect: its SQL, parameter order and the `at` reader."""

    sql: str
    order: tuple[str, ...] | None  # positional parameter names; None for named styles
    defaults: dict[str, Any]
    read_at: Callable[[Any], Any] | None

    def first(self, session: Session, **params: Any) -> Any:
        """The first row, read with the DBAPI cursor of the session's own connection (so in
        its transaction): a plain tuple, without SQLAlchemy's per-call result set-up."""
        values = {**self.defaults, **params}
        args = tuple(values[n] for n in self.order) if self.order is not None else values
        cursor = session.connection().connection.cursor()
        try:
            cursor.execute(self.sql, args)
            return cursor.fetchone()
        finally:
            cursor.close()


_PREPARED: dict[tuple[str, bool], _Prepared] = {}


def _prepared(session: Session, with_consent: bool) -> _Prepared:
    # Every PI request decides: SQLAlchemy's per-call statement caching and result set-up
    # cost several times the query itself, so the SQL is compiled once per dialect.
    dialect = session.get_bind().dialect
    found = _PREPARED.get((dialect.name, with_consent))
    if found is None:
        compiled = (_ONE_PURPOSE if with_consent else _NO_PURPOSE).compile(dialect=dialect)
        order = tuple(compiled.positiontup or ()) if compiled.positional else None
        read_at = Cur.__table__.c.at.type.dialect_impl(dialect).result_processor(dialect, None)
        found = _Prepared(str(compiled), order, dict(compiled.params), read_at)
        _PREPARED[(dialect.name, with_consent)] = found
    return found


def load_state(session: Session, subject_id: str, purpose: Purpose) -> SubjectState:
    """What decide needs for one subject and purpose, in one query; the consent is read only
    when the purpose rests on consent. A subject that does not exist has nothing on record."""
    with_consent = purpose.legal_basis == "consent"
    prepared = _prepared(session, with_consent)
    if with_consent:
        row = prepared.first(session, subject=subject_id, purpose=purpose.id)
    else:
        row = prepared.first(session, subject=subject_id)
    if row is None:
        return NO_RECORD
    consents = {}
    if row[3] is not None:
        at = prepared.read_at(row[8]) if prepared.read_at else row[8]
        consents[purpose.id] = ConsentGrant(
            state=row[3],
            notice_id=row[4],
            notice_version=row[5],
            separate=bool(row[6]),
            guardian=bool(row[7]),
            at=at,
        )
    return SubjectState(
        consents=MappingProxyType(consents),
        minor=bool(row[0]),
        restricted=row[1] is not None,
        personalisation_opt_out=row[2] is not None,
    )


# --- deciding with consent --------------------------------------------------------------------


def decide(
    session: Session,
    *,
    policy: Policy,
    principal: Principal,
    purpose: str | None,
    subject: str | None = None,
    fields: Iterable[str] | None = None,
    required_scope: str | None = None,
) -> Decision:
    """policy.decide with the subject's state read now; subject=None decides for the policy
    alone (filter rows with allowed_subjects). A cross-border use is counted (art. 38-40)."""
    if fields is not None and not isinstance(fields, str):
        fields = list(fields)
    decision = policy_decide(
        policy, principal, purpose, subject=subject, fields=fields, required_scope=required_scope
    )
    if subject is None:
        return decision
    spec = policy.purposes[decision.purpose]
    state = load_state(session, subject, spec)
    decision = for_subject(policy, decision, state, explicit=fields is not None)
    if spec.cross_border:
        transfers.count(session, policy=policy, decision=decision, minor=state.minor)
    return decision


def decide_collection(
    *, policy: Policy, principal: Principal, purpose: str | None, fields: Iterable[str]
) -> Decision:
    """Collecting from a subject not yet on record (profile creation): no consent exists, so
    only a non-consent basis (e.g. service_delivery, a contract) can create a profile."""
    return policy_decide(policy, principal, purpose, fields=fields, state=NO_RECORD)


def allowed_subjects(
    session: Session, *, policy: Policy, decision: Decision, subject_ids: list[str]
) -> dict[str, Decision]:
    """The subjects of a list that have a basis for the decision's purpose, each with its own
    decision (sensitive fields may be withheld for some); the others are left out, not errors."""
    spec = policy.purposes[decision.purpose]
    purposes = [spec.id] if spec.legal_basis == "consent" else []
    states = load_states(session, subject_ids, purposes)
    out: dict[str, Decision] = {}
    for subject_id in subject_ids:
        row = Decision(
            decision.purpose, decision.allowed_fields, decision.denied_fields, subject_id
        )
        try:
            out[subject_id] = for_subject(policy, row, states[subject_id])
        except Forbidden:
            continue
        if spec.cross_border:
            transfers.count(
                session, policy=policy, decision=out[subject_id], minor=states[subject_id].minor
            )
    return out


def effective(policy: Policy, purpose: str, subject_id: str, state: SubjectState) -> str | None:
    """None when the purpose may use the subject's data now, else the denial code."""
    try:
        for_subject(policy, Decision(purpose, frozenset(), frozenset(), subject_id), state)
    except CdpError as exc:
        return exc.code
    return None


def consent_purposes(policy: Policy) -> list[Purpose]:
    return [p for p in policy.purposes.values() if p.legal_basis == "consent"]
