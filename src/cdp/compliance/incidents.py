"""Incident export (PIPL art. 57): which subjects, and which of their fields, one API client
touched in a time window, read from the audit log, so the people affected can be told."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cdp.audit import service as audit
from cdp.audit.models import AuditEntry
from cdp.auth.models import Client
from cdp.db import utcnow
from cdp.errors import NotFound


@dataclass(slots=True)
class Touched:
    """One subject the client touched: fields, actions and purposes, first and last time."""

    subject: str
    first_at: datetime
    last_at: datetime
    entries: int = 0
    fields: set[str] = field(default_factory=set)
    actions: set[str] = field(default_factory=set)
    purposes: set[str] = field(default_factory=set)
    denied: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "subject": self.subject,
            "fields": sorted(self.fields),
            "actions": sorted(self.actions),
            "purposes": sorted(self.purposes),
            "entries": self.entries,
            "denied": self.denied,
            "first_at": self.first_at,
            "last_at": self.last_at,
        }


@dataclass(frozen=True, slots=True)
class IncidentExport:
    generated_at: datetime
    client_id: str
    since: datetime | None
    until: datetime | None
    entries: int
    subjects: list[Touched]
    fields: list[str]
    # Entries without a subject (searches, exports, token requests) in the window.
    unattributed: int


def incident_export(
    session: Session,
    *,
    actor: str,
    client_id: str,
    since: datetime | None,
    until: datetime | None,
) -> IncidentExport:
    """Every audit entry of the client in [since, until), grouped by subject; the export
    itself is audited (client and window only)."""
    if session.get(Client, client_id) is None:
        raise NotFound("no such client")
    stmt = select(
        AuditEntry.at,
        AuditEntry.subject,
        AuditEntry.fields,
        AuditEntry.action,
        AuditEntry.purpose,
        AuditEntry.decision,
    ).where(AuditEntry.actor == f"client:{client_id}")
    if since is not None:
        stmt = stmt.where(AuditEntry.at >= since)
    if until is not None:
        stmt = stmt.where(AuditEntry.at < until)
    touched: dict[str, Touched] = {}
    entries = unattributed = 0
    for at, subject, fields, action, purpose, decision in session.execute(
        stmt.order_by(AuditEntry.seq).execution_options(yield_per=5000)
    ):
        entries += 1
        if not subject:
            unattributed += 1
            continue
        row = touched.get(subject)
        if row is None:
            row = touched[subject] = Touched(subject, at, at)
        row.entries += 1
        row.last_at = max(row.last_at, at)
        row.first_at = min(row.first_at, at)
        row.actions.add(action)
        if purpose:
            row.purposes.add(purpose)
        if decision == "allow":
            row.fields.update(str(f) for f in fields or ())
        else:
            row.denied += 1
    subjects = sorted(touched.values(), key=lambda t: (t.first_at, t.subject))
    audit.append(
        session,
        actor=actor,
        action="compliance.incident_export",
        detail={
            "client": client_id,
            "from": since.isoformat() if since else None,
            "to": until.isoformat() if until else None,
            "subjects": len(subjects),
        },
    )
    return IncidentExport(
        generated_at=utcnow(),
        client_id=client_id,
        since=since,
        until=until,
        entries=entries,
        subjects=subjects,
        fields=sorted({f for t in subjects for f in t.fields}),
        unattributed=unattributed,
    )


CSV_COLUMNS = (
    "subject",
    "fields",
    "actions",
    "purposes",
    "entries",
    "denied",
    "first_at",
    "last_at",
)


def csv_rows(report: IncidentExport) -> Iterator[list[object]]:
    for t in report.subjects:
        yield [
            t.subject,
            ";".join(sorted(t.fields)),
            ";".join(sorted(t.actions)),
            ";".join(sorted(t.purposes)),
            t.entries,
            t.denied,
            t.first_at.isoformat(),
            t.last_at.isoformat(),
        ]
