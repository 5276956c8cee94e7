"""Retention runs (PIPL art. 19) and legal holds: the domain's entry points."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from cdp.errors import NotFound
from cdp.retention.holds import LegalHold, legal_holds
from cdp.retention.models import RetentionRun
from cdp.retention.run import run

__all__ = ["LegalHold", "as_read", "get_run", "legal_holds", "list_runs", "run"]


def get_run(session: Session, run_id: str) -> RetentionRun:
    found = session.get(RetentionRun, run_id)
    if found is None:
        raise NotFound("no such retention run")
    return found


def as_read(record: RetentionRun) -> dict[str, Any]:
    """The run's row and report as one JSON-able mapping."""
    return {
        "id": record.id,
        "dry_run": record.dry_run,
        "actor": record.actor,
        "policy_version": record.policy_version,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        **record.report,
    }


def list_runs(
    session: Session, *, after: str | None, limit: int
) -> tuple[list[RetentionRun], str | None]:
    """Runs newest first; the cursor is the last run's start time and id."""
    stmt = select(RetentionRun)
    if after is not None:
        at_text, _, run_id = after.partition("|")
        at = datetime.fromisoformat(at_text)
        stmt = stmt.where(
            or_(
                RetentionRun.started_at < at,
                and_(RetentionRun.started_at == at, RetentionRun.id < run_id),
            )
        )
    stmt = stmt.order_by(RetentionRun.started_at.desc(), RetentionRun.id.desc()).limit(limit)
    runs = list(session.scalars(stmt))
    last = runs[-1] if len(runs) == limit else None
    return runs, f"{last.started_at.isoformat()}|{last.id}" if last else None
