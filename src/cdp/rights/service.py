"""Rights requests (PIPL arts. 44-50): submit, verify, work, complete or reject with a reason,
extend within GB/T 35273's 30 days; completing runs the request's action."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from cdp.audit import service as audit
from cdp.auth.principal import Principal
from cdp.consent import service as consent
from cdp.consent import status as subject_status
from cdp.crypto import Crypto
from cdp.db import utcnow
from cdp.errors import (
    DownloadLinkInvalid,
    InvalidIdentifier,
    InvalidTransition,
    NotFound,
    SubjectKeyMissing,
    ValidationFailed,
)
from cdp.policy import Policy, text_sha256
from cdp.policy.decide import STORAGE_PURPOSE
from cdp.profiles import service as profiles
from cdp.profiles import traits
from cdp.profiles.models import Profile
from cdp.rights import bundle, erasure
from cdp.rights.explanation import explain
from cdp.rights.models import RightsRequest
from cdp.rights.workdays import add_working_days

TABLE = "rights_request"
CHINA = timezone(timedelta(hours=8))
# GB/T 35273-2020 8.7: an answer within 30 days of receipt, extensions included.
MAX_TOTAL_DAYS = 30
# Close relatives (民法典 art. 1045) who may act for a deceased customer (PIPL art. 49).
RELATIONS = ("spouse", "parent", "child", "sibling", "grandparent", "grandchild")
RELATIVE_TYPES = frozenset({"access", "portability", "correction", "deletion"})
EXPORTABLE = frozenset({"access", "portability", "explanation"})
FINAL = frozenset({"completed", "rejected"})
LINK_TTL = timedelta(minutes=15)
# action -> (statuses it may start from, status it leads to)
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "verify": (frozenset({"received"}), "verified"),
    "start": (frozenset({"verified"}), "in_progress"),
    "complete": (frozenset({"verified", "in_progress"}), "completed"),
    "reject": (frozenset({"received", "verified", "in_progress"}), "rejected"),
}


@dataclass(frozen=True, slots=True)
class Submission:
    type: str
    purposes: list[str] | None = None
    patch: Mapping[str, Any] | None = None
    relation: str | None = None
    evidence: str | None = None


@dataclass(frozen=True, slots=True)
class RequestView:
    """A request with its sealed texts opened (None once the subject's key is shredded)."""

    row: RightsRequest
    rejection_reason: str | None
    extension_reason: str | None
    evidence: str | None = None
    patch: dict[str, Any] | None = None


def _invalid(loc: list[str | int], message: str) -> ValidationFailed:
    return ValidationFailed(message, errors=[{"loc": loc, "msg": message, "type": "value_error"}])


def due_at(policy: Policy, received_at: datetime, working_days: int | None = None) -> datetime:
    """End of the n-th working day (China time) after receipt, in UTC."""
    n = policy.settings.rights_due_working_days if working_days is None else working_days
    return _end_of(_due_day(policy, received_at.astimezone(CHINA).date(), n))


def _due_day(policy: Policy, start: Any, n: int) -> Any:
    s = policy.settings
    return add_working_days(start, n, holidays=s.holidays, workdays=s.workdays)


def _end_of(day: Any) -> datetime:
    return datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=CHINA).astimezone(UTC)


def _check(crypto: Crypto, policy: Policy, sub: Submission, submitted_by: str) -> dict[str, Any]:
    """The submission's details (no PI), or ValidationFailed naming the wrong field."""
    details: dict[str, Any] = {}
    if sub.purposes is not None and sub.type != "withdrawal":
        raise _invalid(["body", "purposes"], "purposes belong to a withdrawal request only")
    if sub.patch is not None and sub.type != "correction":
        raise _invalid(["body", "patch"], "a patch belongs to a correction request only")
    if sub.type == "withdrawal" and sub.purposes:
        for i, name in enumerate(sub.purposes):
            spec = policy.purposes.get(name)
            if spec is None or spec.legal_basis != "consent":
                raise _invalid(["body", "purposes", i], "not a consent purpose of purposes.yaml")
        details["purposes"] = sorted(set(sub.purposes))
    if sub.type == "correction":
        if not sub.patch:
            raise _invalid(["body", "patch"], "a correction needs the fields to correct")
        for name, value in sub.patch.items():
            field = policy.fields.get(name)
            if field is None:
                raise _invalid(["body", "patch", name[:64]], "unknown field: not in fields.yaml")
            if value is None:
                continue
            if field.storage == "encrypted+blind_index":
                if not isinstance(value, str):
                    raise _invalid(["body", "patch", name], "must be a string")
                try:
                    crypto.normalise(name, value)
                except InvalidIdentifier:
                    raise InvalidIdentifier(name, loc=["body", "patch", name]) from None
            else:
                traits.check_value(field, value)
        details["fields"] = sorted(sub.patch)
    if submitted_by == "relative":
        if sub.type not in RELATIVE_TYPES:
            raise _invalid(
                ["body", "type"],
                f"a relative may ask for {', '.join(sorted(RELATIVE_TYPES))} (PIPL art. 49)",
            )
        if sub.relation not in RELATIONS:
            raise _invalid(["body", "requester", "relation"], "not a close relative's relation")
        if not sub.evidence or not sub.evidence.strip():
            raise _invalid(["body", "requester", "evidence"], "evidence of death and kinship")
    return details


def submit(
    session: Session,
    *,
    crypto: Crypto,
    policy: Policy,
    actor: str,
    subject_id: str,
    submitted_by: str,
    sub: Submission,
) -> RequestView:
    """A new request; a customer's own or an app's verified customer's starts verified, a
    relative's waits for an officer to check the evidence."""
    details = _check(crypto, policy, sub, submitted_by)
    if len(subject_id) > 36 or session.get(Profile, subject_id) is None:
        raise NotFound("no such profile")
    keys = crypto.keys_for([subject_id])
    now = utcnow()
    row = RightsRequest(
        id=str(uuid.uuid4()),
        subject_id=subject_id,
        type=sub.type,
        status="received" if submitted_by == "relative" else "verified",
        submitted_by=submitted_by,
        actor=actor,
        relation=sub.relation if submitted_by == "relative" else None,
        details=details,
        received_at=now,
        verified_at=None if submitted_by == "relative" else now,
        due_at=due_at(policy, now),
        extended=False,
        updated_at=now,
    )
    if submitted_by == "relative" and sub.evidence:
        row.evidence = keys.seal(subject_id, TABLE, "evidence", sub.evidence.strip())
    if sub.patch is not None:
        text = json.dumps(dict(sub.patch), ensure_ascii=False, sort_keys=True)
        row.patch = keys.seal(subject_id, TABLE, "patch", text)
    session.add(row)
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="rights.submit",
        subject=subject_id,
        fields=details.get("fields", ()),
        detail={"request": row.id, "type": sub.type, "by": submitted_by, "status": row.status},
    )
    return _view(crypto, row)


def _open(crypto: Crypto, row: RightsRequest, column: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return crypto.keys_for([row.subject_id]).open(row.subject_id, TABLE, column, value)
    except SubjectKeyMissing:
        return None  # the subject was erased: its texts with it


def _view(crypto: Crypto, row: RightsRequest, *, full: bool = False) -> RequestView:
    patch_text = _open(crypto, row, "patch", row.patch) if full else None
    return RequestView(
        row=row,
        rejection_reason=_open(crypto, row, "rejection_reason", row.rejection_reason),
        extension_reason=_open(crypto, row, "extension_reason", row.extension_reason),
        evidence=_open(crypto, row, "evidence", row.evidence) if full else None,
        patch=json.loads(patch_text) if patch_text else None,
    )


def list_own(
    session: Session,
    *,
    crypto: Crypto,
    subject_id: str,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[RequestView]:
    """The customer's requests, newest first."""
    r = RightsRequest
    stmt = select(r).where(r.subject_id == subject_id)
    if after is not None:
        at, rid = after
        stmt = stmt.where(or_(r.received_at < at, and_(r.received_at == at, r.id < rid)))
    rows = session.scalars(stmt.order_by(r.received_at.desc(), r.id.desc()).limit(limit))
    return [_view(crypto, row) for row in rows]


def queue(
    session: Session,
    *,
    crypto: Crypto,
    status: str | None,
    type_: str | None,
    due_before: datetime | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[RequestView]:
    """Requests by due date, soonest first (the compliance officer's queue)."""
    r = RightsRequest
    stmt = select(r)
    if status is not None:
        stmt = stmt.where(r.status == status)
    if type_ is not None:
        stmt = stmt.where(r.type == type_)
    if due_before is not None:
        stmt = stmt.where(r.due_at < due_before)
    if after is not None:
        at, rid = after
        stmt = stmt.where(or_(r.due_at > at, and_(r.due_at == at, r.id > rid)))
    rows = session.scalars(stmt.order_by(r.due_at, r.id).limit(limit))
    return [_view(crypto, row) for row in rows]


def _load(session: Session, request_id: str, *, lock: bool = False) -> RightsRequest:
    stmt = select(RightsRequest).where(RightsRequest.id == request_id)
    row = (
        session.scalar(stmt.with_for_update() if lock else stmt) if len(request_id) <= 36 else None
    )
    if row is None:
        raise NotFound("no such rights request")
    return row


def read(session: Session, *, crypto: Crypto, actor: str, request_id: str) -> RequestView:
    """One request with its evidence and patch opened; the read is audited."""
    row = _load(session, request_id)
    view = _view(crypto, row, full=True)
    opened = [n for n in ("evidence", "patch") if getattr(view, n) is not None]
    audit.append(
        session,
        actor=actor,
        action="rights.read",
        subject=row.subject_id,
        fields=opened,
        detail={"request": row.id},
    )
    return view


def _move(session: Session, row: RightsRequest, action: str, actor: str, **detail: Any) -> None:
    sources, target = TRANSITIONS[action]
    if row.status not in sources:
        raise InvalidTransition(
            f"a {row.status} request cannot be {action}: it must be {' or '.join(sorted(sources))}"
        )
    now = utcnow()
    row.status, row.updated_at = target, now
    if target == "verified":
        row.verified_at = now
    elif target == "in_progress":
        row.started_at = now
    elif target in FINAL:
        row.completed_at = now
    session.flush()
    audit.append(
        session,
        actor=actor,
        action=f"rights.{action}",
        subject=row.subject_id,
        detail={"request": row.id, "type": row.type, **detail},
    )


def transition(
    session: Session, *, crypto: Crypto, actor: str, request_id: str, action: str
) -> RequestView:
    """verify or start."""
    row = _load(session, request_id, lock=True)
    _move(session, row, action, actor)
    return _view(crypto, row)


def reject(
    session: Session, *, crypto: Crypto, actor: str, request_id: str, reason: str
) -> RequestView:
    """Refuse with the reason the customer is told (PIPL art. 50)."""
    if not reason.strip():
        raise _invalid(["body", "reason"], "a rejection needs a reason (PIPL art. 50)")
    row = _load(session, request_id, lock=True)
    sources, _ = TRANSITIONS["reject"]
    if row.status in sources:
        row.rejection_reason = crypto.keys_for([row.subject_id]).seal(
            row.subject_id, TABLE, "rejection_reason", reason.strip()
        )
    _move(session, row, "reject", actor)
    return _view(crypto, row)


def extend(
    session: Session,
    *,
    crypto: Crypto,
    policy: Policy,
    actor: str,
    request_id: str,
    working_days: int,
    reason: str,
) -> RequestView:
    """Move the due date by working days, never beyond 30 days from receipt (GB/T 35273)."""
    if not reason.strip():
        raise _invalid(["body", "reason"], "an extension needs a reason")
    row = _load(session, request_id, lock=True)
    if row.status in FINAL:
        raise InvalidTransition(f"a {row.status} request cannot be extended")
    received = row.received_at.astimezone(CHINA).date()
    new_day = _due_day(policy, row.due_at.astimezone(CHINA).date(), working_days)
    if (new_day - received).days > MAX_TOTAL_DAYS:
        raise _invalid(
            ["body", "working_days"],
            f"the answer would be due {(new_day - received).days} days after receipt; "
            f"GB/T 35273-2020 8.7 allows {MAX_TOTAL_DAYS}",
        )
    row.due_at, row.extended, row.updated_at = _end_of(new_day), True, utcnow()
    row.extension_reason = crypto.keys_for([row.subject_id]).seal(
        row.subject_id, TABLE, "extension_reason", reason.strip()
    )
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="rights.extend",
        subject=row.subject_id,
        detail={"request": row.id, "working_days": working_days, "due_at": row.due_at.isoformat()},
    )
    return _view(crypto, row)


def complete(
    session: Session, *, crypto: Crypto, policy: Policy, principal: Principal, request_id: str
) -> RequestView:
    """Run the request's action and record what it did (no PI in the result)."""
    row = _load(session, request_id, lock=True)
    sources, _ = TRANSITIONS["complete"]
    if row.status not in sources:
        _move(session, row, "complete", principal.actor)  # raises InvalidTransition
    result = _run(session, crypto, policy, principal, row)
    row.result = result
    _move(session, row, "complete", principal.actor, result=_summary(result))
    return _view(crypto, row)


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k in ("erased", "restricted", "withdrawn")}


def _run(
    session: Session, crypto: Crypto, policy: Policy, principal: Principal, row: RightsRequest
) -> dict[str, Any]:
    subject_id, kind = row.subject_id, row.type
    if kind in ("access", "portability"):
        built = bundle.build(session, crypto=crypto, policy=policy, subject_id=subject_id)
        return {"sections": bundle.counts(built)}
    if kind == "explanation":
        found = explain(session, policy=policy, subject_id=subject_id)
        return {
            "purposes": len(found["purposes"]),
            "segments": len(found["segments"]),
            "automated_decisions": len(found["automated_decisions"]),
        }
    if kind == "correction":
        patch = _view(crypto, row, full=True).patch or {}
        # Correction is the processor's duty (art. 46): under the storage purpose, which every
        # category and even a restricted subject allow.
        officer = replace(principal, purposes=frozenset({STORAGE_PURPOSE}))
        profiles.update(
            session,
            crypto=crypto,
            policy=policy,
            principal=officer,
            purpose=STORAGE_PURPOSE,
            subject_id=subject_id,
            patch=patch,
        )
        return {"fields": sorted(patch)}
    if kind == "restriction":
        subject_status.restrict(
            session,
            subject_id=subject_id,
            reason=f"rights_request:{row.id}",
            actor=principal.actor,
        )
        return {"restricted": True}
    if kind == "withdrawal":
        return {"withdrawn": _withdraw(session, policy, row)}
    if kind == "deletion":
        done = erasure.erase_subject(
            session,
            crypto=crypto,
            policy=policy,
            actor=principal.actor,
            subject_id=subject_id,
            reason=f"rights_request:{row.id}",
        )
        return done.as_dict()
    raise ValueError(f"unknown request type {kind!r}")


def _withdraw(session: Session, policy: Policy, row: RightsRequest) -> list[str]:
    state = consent.load_states(session, [row.subject_id])[row.subject_id]
    wanted = row.details.get("purposes") or sorted(
        p for p, grant in state.consents.items() if grant.state == "granted"
    )
    done = []
    for name in wanted:
        spec = policy.purposes[name]
        grant = state.consents.get(name)
        if spec.notice is None or (grant is not None and grant.state != "granted"):
            continue
        notice = policy.notices[spec.notice]
        version = notice.latest
        locale = "zh-CN" if "zh-CN" in version.texts else next(iter(version.texts))
        consent.record(
            session,
            policy=policy,
            actor=row.actor,
            subject_id=row.subject_id,
            change=consent.ConsentInput(
                purpose=name,
                state="withdrawn",
                notice_id=notice.id,
                notice_version=version.version,
                channel="web" if row.submitted_by == "subject" else "app",
                text_sha256=text_sha256(notice.id, version, locale),
                locale=locale,
            ),
            source="rights_request",
        )
        done.append(name)
    return done


# --- the customer's data: on demand and through time-limited download links -----------------


def own_data(session: Session, *, crypto: Crypto, policy: Policy, subject_id: str) -> bytes:
    """The customer's access bundle as JSON (art. 45); the read is audited."""
    built = bundle.build(session, crypto=crypto, policy=policy, subject_id=subject_id)
    audit.append(
        session,
        actor=f"subject:{subject_id}",
        action="rights.access",
        subject=subject_id,
        fields=sorted(built["profile"].get("fields", {})),
    )
    return bundle.as_json(built)


@dataclass(frozen=True, slots=True)
class ExportLink:
    url: str
    expires_at: datetime


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def link_key(secret: bytes) -> bytes:
    return hmac.new(secret, b"cdp-rights-export", hashlib.sha256).digest()


def export_link(
    session: Session,
    *,
    key: bytes,
    actor: str,
    request_id: str,
    subject_id: str | None = None,
) -> ExportLink:
    """A signed link to a completed access, portability or explanation request's data, valid
    for 15 minutes; subject_id set: only that customer's own request (404 otherwise)."""
    row = _load(session, request_id)
    if subject_id is not None and row.subject_id != subject_id:
        raise NotFound("no such rights request")
    if row.type not in EXPORTABLE:
        raise InvalidTransition(f"a {row.type} request has no data to download")
    if row.status != "completed":
        raise InvalidTransition(f"the request is {row.status}: its data is ready once completed")
    expires = int(time.time() + LINK_TTL.total_seconds())
    payload = json.dumps({"r": row.id, "e": expires, "a": actor}, separators=(",", ":")).encode()
    mac = hmac.new(key, payload, hashlib.sha256).digest()[:20]
    audit.append(
        session,
        actor=actor,
        action="rights.export_link",
        subject=row.subject_id,
        detail={"request": row.id, "expires": expires},
    )
    return ExportLink(
        url=f"/v1/rights-exports/{_b64(payload)}.{_b64(mac)}",
        expires_at=datetime.fromtimestamp(expires, UTC),
    )


def download(
    session: Session, *, crypto: Crypto, policy: Policy, key: bytes, token: str, fmt: str
) -> tuple[bytes, str, str]:
    """The data behind a download link: (body, media type, file name); audited."""
    try:
        part, _, sig = token.partition(".")
        payload, mac = _unb64(part), _unb64(sig)
        good = hmac.compare_digest(mac, hmac.new(key, payload, hashlib.sha256).digest()[:20])
        if not good:
            raise ValueError("bad signature")
        claims = json.loads(payload)
        request_id, expires, actor = str(claims["r"]), int(claims["e"]), str(claims["a"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DownloadLinkInvalid("this download link was not issued here") from exc
    if expires < time.time():
        raise DownloadLinkInvalid("this download link has expired: ask for a new one")
    row = _load(session, request_id)
    if row.type not in EXPORTABLE or row.status != "completed":
        raise DownloadLinkInvalid("this request has no data to download")
    if row.type == "explanation":
        data = explain(session, policy=policy, subject_id=row.subject_id)
    else:
        data = bundle.build(session, crypto=crypto, policy=policy, subject_id=row.subject_id)
    audit.append(
        session,
        actor=actor,
        action="rights.export",
        subject=row.subject_id,
        detail={"request": row.id, "format": fmt, "type": row.type},
    )
    name = f"{row.type}-{row.id}"
    if fmt == "csv":
        return bundle.as_csv_zip(data), "application/zip", f"{name}.zip"
    return bundle.as_json(data), "application/json", f"{name}.json"


# --- after a restore -------------------------------------------------------------------------


def replay_erasure(session: Session, *, subject_id: str, erased_at: datetime) -> int:
    """Delete again what a restored backup brought back of a subject erased at `erased_at`
    (`cdp rights replay-erasures`); returns the rows deleted, 0 when nothing came back."""
    deleted = erasure.replay(session, subject_id=subject_id)
    total = sum(deleted.values())
    if total:
        audit.append(
            session,
            actor="operator:cli",
            action="subject.erase_replay",
            subject=subject_id,
            detail={"erased_at": erased_at.isoformat(), "tables": sorted(deleted)},
        )
    return total
