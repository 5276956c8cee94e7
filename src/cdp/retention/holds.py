"""Legal holds: data a law requires keeping beyond its purpose's retention (retention.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cdp.db import utcnow
from cdp.events.models import Event
from cdp.policy import Policy
from cdp.retention.policy import HoldSpec


@dataclass(frozen=True, slots=True)
class LegalHold:
    """A hold that applies to one subject: which data it keeps, why, and until when."""

    id: str
    reason: str
    data: list[str]
    until: datetime | None


def add_years(moment: datetime, years: int) -> datetime:
    """The same moment `years` later (29 February becomes 28 February)."""
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:
        return moment.replace(year=moment.year + years, day=28)


def hold_cutoff(hold: HoldSpec, now: datetime) -> datetime:
    """Data of the hold's kinds newer than this is held."""
    try:
        return now.replace(year=now.year - hold.keep_years)
    except ValueError:
        return now.replace(year=now.year - hold.keep_years, day=28)


def legal_holds(
    session: Session, *, policy: Policy, subject_id: str, now: datetime | None = None
) -> list[LegalHold]:
    """The holds that apply to the subject now: those whose kinds of data the subject has
    within the hold period; `until` is when the subject's newest such data leaves it."""
    spec = policy.retention
    if spec is None:
        return []
    now = now or utcnow()
    found: list[LegalHold] = []
    for hold in spec.legal_holds:
        newest = session.scalar(
            select(func.max(Event.timestamp)).where(
                Event.subject_id == subject_id,
                Event.name.in_(hold.events),
                Event.timestamp >= hold_cutoff(hold, now),
            )
        )
        if newest is not None:
            until = add_years(_aware(newest), hold.keep_years)
            found.append(LegalHold(hold.id, hold.reason, hold.data, until))
    return found


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
