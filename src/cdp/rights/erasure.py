"""The one deletion routine: every table holding a subject's rows, then the profile and the
subject's data key (crypto-shredding) with the erasure ledger; or, under a legal hold, a
restriction instead (PIPL art. 47)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Table, delete, func, select
from sqlalchemy.orm import Session

from cdp.audit import service as audit
from cdp.consent import status as subject_status
from cdp.crypto import Crypto
from cdp.db import Base
from cdp.errors import NotFound
from cdp.policy import Policy
from cdp.profiles import service as profiles
from cdp.profiles.models import Identity, Profile

SUBJECT_COLUMN = "subject_id"
# The restriction reason a legal hold leaves; a retention run erases the subject when it ends.
LEGAL_HOLD = "legal_hold"
# Tables whose rows outlive the subject's erasure, each holding only the pseudonymous id:
KEPT_TABLES = frozenset(
    {
        # the tamper-evident audit log: entries never hold a PI value (DESIGN.md, audit)
        "audit_entry",
        # the request itself: proof that it was answered on time (art. 50); its free text is
        # sealed with the subject's key, which erasure destroys
        "rights_request",
        # art. 40's yearly count of subjects sent abroad must not shrink when one is erased
        "cross_border_transfer",
    }
)
# Under a legal hold these stay (restricted) and, in tables of named events, the held names.
HELD_EVENT = "event:"
_KEPT_UNDER_HOLD = frozenset(
    {"profile", "identity", "subject_status", "consent_record", "consent_current"}
)
_NAMED_EVENT_TABLES = frozenset({"event", "subject_daily"})
# Erased last, by profiles.service.erase (which shreds the key and writes the ledger).
_PROFILE_TABLES = frozenset({"profile", "identity"})


class LegalHoldLike(Protocol):
    """What the retention domain's LegalHold offers (cdp.retention.service)."""

    @property
    def id(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def data(self) -> list[str]: ...
    @property
    def until(self) -> datetime | None: ...


@dataclass(frozen=True, slots=True)
class KeptData:
    """Data a legal hold keeps (and why), told to the requester (art. 47)."""

    hold: str
    reason: str
    data: list[str]
    until: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "hold": self.hold,
            "reason": self.reason,
            "data": list(self.data),
            "until": self.until.isoformat() if self.until else None,
        }


@dataclass(frozen=True, slots=True)
class ErasureResult:
    """What erase_subject did: rows deleted per table, or the restriction and what was kept."""

    subject_id: str
    erased: bool
    restricted: bool
    deleted: dict[str, int] = field(default_factory=dict)
    kept: list[KeptData] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "erased": self.erased,
            "restricted": self.restricted,
            "deleted": dict(self.deleted),
            "kept": [k.as_dict() for k in self.kept],
        }


ERASURE_WITHHELD_EXAMPLE: dict[str, Any] = {
    "erased": False,
    "restricted": True,
    "deleted": {"feedback": 3, "event": 120},
    "kept": [
        {
            "hold": "accounting_vouchers",
            "reason": "Completed orders are accounting vouchers and are kept for the statutory"
            " period.",
            "data": ["event:Order Completed"],
            "until": "2056-11-20T08:00:00+00:00",
        }
    ],
}


def subject_tables() -> list[Table]:
    """Every table with a subject_id column, dependants before what they reference."""
    import cdp.models  # noqa: F401  registers every domain's tables on Base.metadata

    return [
        t
        for t in reversed(Base.metadata.sorted_tables)
        if SUBJECT_COLUMN in t.c and t.name not in KEPT_TABLES
    ]


def legal_holds(session: Session, *, policy: Policy, subject_id: str) -> list[LegalHoldLike]:
    """The retention domain's holds that apply to the subject now."""
    from cdp.retention import service as retention

    holds: list[LegalHoldLike] = list(
        retention.legal_holds(session, policy=policy, subject_id=subject_id)
    )
    return holds


def _delete_rows(session: Session, subject_id: str, *, with_profile: bool) -> dict[str, int]:
    deleted: dict[str, int] = {}
    for table in subject_tables():
        if table.name in _PROFILE_TABLES and not with_profile:
            continue
        result: Any = session.execute(delete(table).where(table.c[SUBJECT_COLUMN] == subject_id))
        count = int(getattr(result, "rowcount", 0) or 0)
        if count:
            deleted[table.name] = count
    return deleted


def erase_subject(
    session: Session,
    *,
    crypto: Crypto,
    policy: Policy,
    actor: str,
    subject_id: str,
    reason: str,
) -> ErasureResult:
    """Delete everything held about the subject and shred its key; under a legal hold, restrict
    the subject instead and say what is kept and why. reason is a short code, never PI."""
    if len(subject_id) > 36 or session.get(Profile, subject_id) is None:
        raise NotFound("no such profile")
    holds = legal_holds(session, policy=policy, subject_id=subject_id)
    if holds:
        return _restrict_instead(session, actor, subject_id, reason, holds)
    deleted = _delete_rows(session, subject_id, with_profile=False)
    identities = session.scalar(
        select(func.count()).select_from(Identity).where(Identity.subject_id == subject_id)
    )
    profiles.erase(session, crypto=crypto, actor=actor, subject_id=subject_id, reason=reason)
    deleted["profile"] = 1
    if identities:
        deleted["identity"] = int(identities)
    audit.append(
        session,
        actor=actor,
        action="subject.erase",
        subject=subject_id,
        detail={"reason": reason, "tables": sorted(deleted)},
    )
    return ErasureResult(subject_id, erased=True, restricted=False, deleted=deleted)


def _restrict_instead(
    session: Session, actor: str, subject_id: str, reason: str, holds: list[LegalHoldLike]
) -> ErasureResult:
    """Art. 47: what a hold keeps stays, restricted to storage; the rest is deleted. The key is
    kept, or the held records would be unreadable to the obligation that keeps them."""
    kept = [KeptData(h.id, h.reason, list(h.data), h.until) for h in holds]
    data = {d for h in holds for d in h.data}
    events = sorted(d.removeprefix(HELD_EVENT) for d in data if d.startswith(HELD_EVENT))
    deleted: dict[str, int] = {}
    if len(events) == len(data):  # only kinds of data this routine knows how to keep apart
        for table in subject_tables():
            if table.name in _KEPT_UNDER_HOLD:
                continue
            stmt = delete(table).where(table.c[SUBJECT_COLUMN] == subject_id)
            if table.name in _NAMED_EVENT_TABLES:
                stmt = stmt.where(table.c.name.is_(None) | table.c.name.not_in(events))
            count = int(getattr(session.execute(stmt), "rowcount", 0) or 0)
            if count:
                deleted[table.name] = count
    kept.append(
        KeptData(
            "attribution",
            "the profile, its identifiers and consent records stay, restricted, so that the"
            " held records remain attributable and provable",
            ["profile", "identity", "consent_record"],
            max((k.until for k in kept if k.until is not None), default=None),
        )
    )
    subject_status.restrict(session, subject_id=subject_id, reason=LEGAL_HOLD, actor=actor)
    audit.append(
        session,
        actor=actor,
        action="subject.erase_withheld",
        subject=subject_id,
        detail={"reason": reason, "holds": [h.id for h in holds], "tables": sorted(deleted)},
    )
    return ErasureResult(subject_id, erased=False, restricted=True, deleted=deleted, kept=kept)


def replay(session: Session, *, subject_id: str) -> dict[str, int]:
    """Delete again what a restored backup brought back of an erased subject (its key is
    already shredded again by Crypto.replay_erasure); idempotent, writes no ledger row."""
    deleted = _delete_rows(session, subject_id, with_profile=True)
    result: Any = session.execute(delete(Profile).where(Profile.id == subject_id))
    if getattr(result, "rowcount", 0):
        deleted["profile"] = int(result.rowcount)
    return deleted
