"""Ingest a batch of events: plan, de-duplication, identity, consent, sealing, rollups.

One call is one transaction (the request's): the de-duplication keys, the events, the daily
rollups, the visitors and the violation counters commit together or not at all, and the
response is sent only after the commit. Statements are set-based (a handful per batch,
whatever its size). Ingestion is not written to the audit log: the event rows themselves record
source and time, the log's global append lock would serialise every batch, and PI reads of
events are audited (list_events).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from cdp.crypto import Crypto
from cdp.db import utcnow
from cdp.errors import InvalidIdentifier, InvalidMessages, SubjectKeyMissing
from cdp.events import gate
from cdp.events.plan import EMPTY_PLAN, IDENTITY_TYPES, REVENUE, EventSpec, TrackingPlan
from cdp.events.writes import (
    Rollup,
    Visitor,
    VisitorUpdate,
    backfill,
    claim_messages,
    insert_events,
    revenue_of,
    write_rollup,
    write_violations,
    write_visitors,
)
from cdp.policy import Policy

MAX_BATCH = 500
EVENT_TABLE = "event"
MAX_MESSAGE_ID = 100
MAX_PROPERTY_NAME = 100


@dataclass(slots=True)
class Message:
    """One message as the native API or a Segment SDK sent it, normalised; `error` set when it
    cannot be used at all (a reason code)."""

    index: int
    type: str
    message_id: str | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    previous_id: str | None = None
    profile_id: str | None = None
    name: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    timestamp: datetime | None = None
    error: str | None = None

    @classmethod
    def invalid(cls, index: int, reason: str) -> Message:
        return cls(index=index, type="", error=reason)


@dataclass
class IngestResult:
    """What became of a batch: stored, already seen, and not stored with a reason."""

    accepted: int = 0
    duplicates: int = 0
    dropped: list[tuple[int, str]] = field(default_factory=list)
    invalid: int = 0


# A visitor is known per source: (source id, blind index of its anonymousId).
VisitorKey = tuple[str, str]


@dataclass(slots=True)
class _Item:
    msg: Message
    source_id: str
    result: IngestResult
    received_at: datetime
    message_id: str
    dedupe: bool
    spec: EventSpec | None
    properties: dict[str, Any]
    user_key: str | None
    anon_key: str | None
    link_key: str | None
    choice: dict[str, bool] | None
    subject_id: str | None = None

    def visitor(self, key: str | None) -> VisitorKey | None:
        return (self.source_id, key) if key else None

    @property
    def label(self) -> str:
        return self.spec.name if self.spec else self.msg.type


@dataclass
class Prepared:
    """One request's messages after the plan check (no database yet), ready to store."""

    source_id: str
    received_at: datetime
    result: IngestResult
    items: list[_Item]
    # (source, kind, name) -> how many; written with the events.
    tally: Counter[tuple[str, str, str]]


def ingest(
    session: Session,
    *,
    crypto: Crypto,
    policy: Policy,
    source_id: str,
    messages: list[Message],
    received_at: datetime,
    strict: bool = False,
) -> IngestResult:
    """Store what may be stored; with strict, a batch whose every message is invalid is a 400
    (Segment: a body with nothing usable) and nothing of it is kept."""
    job = prepare(
        crypto=crypto,
        policy=policy,
        source_id=source_id,
        messages=messages,
        received_at=received_at,
        strict=strict,
    )
    store(session, crypto=crypto, policy=policy, jobs=[job])
    return job.result


def prepare(
    *,
    crypto: Crypto,
    policy: Policy,
    source_id: str,
    messages: list[Message],
    received_at: datetime,
    strict: bool = False,
) -> Prepared:
    """The plan check and blind indexes of a request, without the database."""
    plan = policy.tracking_plan or EMPTY_PLAN
    job = Prepared(source_id, received_at, IngestResult(), [], Counter())
    for msg in messages:
        done = _prepare(msg, job=job, plan=plan, policy=policy, crypto=crypto)
        if isinstance(done, _Item):
            job.items.append(done)
            continue
        reason, invalid = done
        job.result.dropped.append((msg.index, reason))
        job.result.invalid += invalid
        if invalid:
            job.tally[source_id, "invalid_message", reason] += 1
    if strict and messages and job.result.invalid == len(messages):
        raise InvalidMessages(
            "no message in the body can be used",
            errors=[{"loc": ["body", i], "msg": r, "type": r} for i, r in job.result.dropped],
        )
    return job


def store(session: Session, *, crypto: Crypto, policy: Policy, jobs: list[Prepared]) -> None:
    """Stores prepared requests in the session's transaction, as one batch whatever their
    number (group commit), filling in each request's result."""
    plan = policy.tracking_plan or EMPTY_PLAN
    tally: Counter[tuple[str, str, str]] = Counter()
    items: list[_Item] = []
    claimed: dict[str, set[str]] = {}
    for source_id in sorted({job.source_id for job in jobs}):
        mine = [job for job in jobs if job.source_id == source_id]
        claimed[source_id] = claim_messages(
            session,
            source_id=source_id,
            message_ids=(i.message_id for job in mine for i in job.items if i.dedupe),
            received_at=max(job.received_at for job in mine),
        )
    for job in jobs:
        tally.update(job.tally)
        fresh = claimed[job.source_id]
        for item in job.items:
            if item.dedupe:
                if item.message_id not in fresh:
                    item.result.duplicates += 1
                    continue
                fresh.discard(item.message_id)  # a second copy in the same batch is a duplicate
            items.append(item)
    admitted = _admit(session, policy, plan, items, tally)
    _write(session, crypto, admitted, tally)
    for job in jobs:
        job.result.dropped.sort()


def _prepare(
    msg: Message, *, job: Prepared, plan: TrackingPlan, policy: Policy, crypto: Crypto
) -> _Item | tuple[str, bool]:
    """The plan check and blind indexes of one message: an _Item, or (reason, invalid)."""
    if msg.error:
        return msg.error, True
    spec: EventSpec | None = None
    properties: dict[str, Any] = {}
    if msg.type not in IDENTITY_TYPES:
        spec = plan.event(msg.type, msg.name)
        if spec is None:
            name = _printable((msg.name or msg.type)[:200])
            job.tally[job.source_id, "unplanned_event", name] += 1
            return "unplanned_event", plan.unplanned_events == "reject"
        properties, reason = _planned(spec, msg.properties, plan, job)
        if reason is not None:
            return reason, plan.unplanned_properties == "reject"
    try:
        user_key = crypto.blind_index(gate.EXTERNAL_ID, msg.user_id) if msg.user_id else None
        anon_key = _anonymous_key(crypto, msg.anonymous_id)
        link_key = _anonymous_key(crypto, msg.previous_id)
    except InvalidIdentifier:
        return "invalid_id", True
    if msg.type == "identify":
        link_key = anon_key
    message_id, dedupe = _message_id(msg.message_id)
    return _Item(
        msg=msg,
        source_id=job.source_id,
        result=job.result,
        received_at=job.received_at,
        message_id=message_id,
        dedupe=dedupe,
        spec=spec,
        properties=properties,
        user_key=user_key,
        anon_key=anon_key,
        link_key=link_key if msg.type in ("identify", "alias") else None,
        choice=gate.client_consent(msg.context, policy),
    )


def _anonymous_key(crypto: Crypto, anonymous_id: str | None) -> str | None:
    return crypto.blind_index("anonymous_id", anonymous_id) if anonymous_id else None


def _message_id(given: str | None) -> tuple[str, bool]:
    if given is None:
        return f"cdp-{uuid.uuid4().hex}", False
    if len(given) <= MAX_MESSAGE_ID and given.isprintable():
        return given, True
    # Any string is a valid messageId; a long one, or one with control characters (which a
    # database text column may refuse), is kept as its digest.
    return "sha256:" + hashlib.sha256(given.encode("utf-8", "replace")).hexdigest(), True


def _printable(name: str) -> str:
    """A name from the sender, for a counter's label: control characters replaced."""
    return name if name.isprintable() else "".join(c if c.isprintable() else "?" for c in name)


def _planned(
    spec: EventSpec, given: dict[str, Any], plan: TrackingPlan, job: Prepared
) -> tuple[dict[str, Any], str | None]:
    """The planned properties of a message; a reason when the message must be dropped."""
    kept: dict[str, Any] = {}
    reject = plan.unplanned_properties == "reject"
    reason = None
    for key, value in given.items():
        if value is None:
            continue
        prop = spec.properties.get(key)
        if prop is None:
            name = f"{spec.name}.{_printable(str(key)[:MAX_PROPERTY_NAME])}"
            job.tally[job.source_id, "unplanned_property", name] += 1
            reason = reason or ("unplanned_property" if reject else None)
        elif not prop.accepts(value):
            job.tally[job.source_id, "type_mismatch", f"{spec.name}.{key}"] += 1
            reason = reason or ("type_mismatch" if reject or prop.required else None)
        else:
            kept[key] = value
    for key in sorted(spec.required - kept.keys()):
        if key not in given or given[key] is None:
            job.tally[job.source_id, "missing_property", f"{spec.name}.{key}"] += 1
            reason = reason or "missing_property"
    return kept, reason


@dataclass
class _Admitted:
    items: list[_Item]
    visitors: dict[VisitorKey, VisitorUpdate]
    known: dict[VisitorKey, Visitor]
    new_links: dict[VisitorKey, str]


def _admit(
    session: Session,
    policy: Policy,
    plan: TrackingPlan,
    items: list[_Item],
    tally: Counter[tuple[str, str, str]],
) -> _Admitted:
    """Resolves each message's subject and applies the consent gate, in batch order, so an
    identify early in a batch already links the visitor for the messages after it."""
    purpose = policy.purposes.get(plan.purpose)
    by_user = gate.subjects_by_user_key(session, {i.user_key for i in items if i.user_key})
    profiles = gate.existing_profiles(
        session, {i.msg.profile_id for i in items if i.msg.profile_id}
    )
    wanted = {k for i in items for k in (i.visitor(i.anon_key), i.visitor(i.link_key)) if k}
    known = gate.visitors(session, wanted)
    linked = {k: v.subject_id for k, v in known.items() if v.subject_id}
    subjects = set(by_user.values()) | profiles | set(linked.values())
    states = gate.states(session, purpose, subjects)
    choices = {k: dict(v.consent or {}) for k, v in known.items()}
    visitors: dict[VisitorKey, VisitorUpdate] = {}
    new_links: dict[VisitorKey, str] = {}
    stored = []
    for item in items:
        anon, link = item.visitor(item.anon_key), item.visitor(item.link_key)
        if anon and item.choice:
            choices.setdefault(anon, {}).update(item.choice)
            visitors.setdefault(anon, VisitorUpdate()).consent = choices[anon]
        subject, reason = _subject(item, anon, by_user, profiles, linked)
        if reason is None:
            remembered = choices.get(anon, {}) if anon else {}
            choice = (item.choice or {}).get(plan.purpose, remembered.get(plan.purpose))
            reason = gate.decide(
                policy,
                purpose,
                subject_id=subject,
                state=states.get(subject or ""),
                choice=choice,
            )
        if reason is not None:
            item.result.dropped.append((item.msg.index, reason))
            tally[item.source_id, reason, item.label] += 1
            continue
        item.subject_id = subject
        if link and subject:
            linked[link] = new_links[link] = subject
            visitors.setdefault(link, VisitorUpdate()).subject_id = subject
            visitors[link].stored = True
        if anon:
            visitors.setdefault(anon, VisitorUpdate()).stored = True
        stored.append(item)
    return _Admitted(stored, visitors, known, new_links)


def _subject(
    item: _Item,
    anon: VisitorKey | None,
    by_user: dict[str, str],
    profiles: set[str],
    linked: dict[VisitorKey, str],
) -> tuple[str | None, str | None]:
    """(subject id or None for an anonymous visitor, or a drop reason)."""
    msg = item.msg
    if msg.profile_id:
        return (msg.profile_id, None) if msg.profile_id in profiles else (None, "unknown_subject")
    if item.user_key:
        subject = by_user.get(item.user_key)
        if subject is not None:
            return subject, None
        if msg.type == "alias" or anon is None:
            return None, "unknown_subject"
    if anon is not None:
        return linked.get(anon), None
    return None, "unknown_subject"


def _write(
    session: Session,
    crypto: Crypto,
    admitted: _Admitted,
    tally: Counter[tuple[str, str, str]],
) -> None:
    rollup = Rollup()
    for (source_id, key), subject_id in sorted(admitted.new_links.items()):
        backfill(session, source_id, key, subject_id, rollup)
    items = admitted.items
    with_pi = {i.subject_id for i in items if i.subject_id and _pi_of(i)}
    keys = crypto.keys_for(sorted(with_pi)) if with_pi else None
    rows = []
    for item in items:
        msg, spec = item.msg, item.spec
        event_id = uuid.uuid4().hex
        properties, sealed = dict(item.properties), {}
        for prop in _pi_of(item):
            value = properties.pop(prop)
            if item.subject_id is None or keys is None:
                tally[item.source_id, "pi_without_subject", f"{item.label}.{prop}"] += 1
                continue
            plain = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            try:
                sealed[prop] = keys.seal(item.subject_id, EVENT_TABLE, f"{event_id}.{prop}", plain)
            except SubjectKeyMissing:
                break
        else:
            at = _utc(msg.timestamp or item.received_at)
            rows.append(
                {
                    "id": event_id,
                    "timestamp": at,
                    "source_id": item.source_id,
                    "message_id": item.message_id,
                    "subject_id": item.subject_id,
                    "anonymous_key": item.anon_key,
                    "type": msg.type,
                    "name": spec.name if spec else None,
                    "received_at": item.received_at,
                    "properties": properties,
                    "sealed": sealed,
                    "context": sanitise_context(msg.context),
                }
            )
            item.result.accepted += 1
            if item.subject_id and spec is not None:
                revenue = revenue_of(properties.get(REVENUE)) if spec.revenue else None
                rollup.add(item.subject_id, spec.name, at, revenue)
            continue
        # The subject was erased meanwhile: its key is gone, so is the subject.
        item.result.dropped.append((msg.index, "unknown_subject"))
        tally[item.source_id, "unknown_subject", item.label] += 1
    if rows:
        insert_events(session, rows)
    at = max((i.received_at for i in items), default=utcnow())
    write_rollup(session, rollup)
    write_visitors(session, visitors=admitted.visitors, known=admitted.known, at=at)
    write_violations(session, tally=tally, at=at)


def _utc(at: datetime) -> datetime:
    """Stored and rolled up by UTC day; a time without an offset is taken as UTC."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _pi_of(item: _Item) -> list[str]:
    if item.spec is None:
        return []
    return sorted(item.spec.pi_properties & item.properties.keys())


_CONTEXT_TEXT = {"locale": 35, "timezone": 64}
_CONTEXT_MAPS = {
    "library": ("name", "version"),
    "app": ("name", "version", "build"),
    "os": ("name", "version"),
    "device": ("type",),
    "page": ("path",),
    "campaign": ("name", "source", "medium"),
}


def sanitise_context(context: dict[str, Any]) -> dict[str, Any]:
    """The context fields analytics needs and nothing else: no IP address, no user agent
    string, no traits, no full URL or referrer (those can carry personal data)."""
    out: dict[str, Any] = {}
    for key, limit in _CONTEXT_TEXT.items():
        value = context.get(key)
        if isinstance(value, str) and value:
            out[key] = value[:limit]
    for key, names in _CONTEXT_MAPS.items():
        value = context.get(key)
        if isinstance(value, dict):
            kept = {n: str(value[n])[:200] for n in names if isinstance(value.get(n), str | int)}
            if kept:
                out[key] = kept
    return out
