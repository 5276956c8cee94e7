"""Importing the consents of existing customers: CSV or JSON Lines, all or nothing per file.

Rows are read and checked one at a time; a rejected row is reported with its line number and
the reason, never its values. If any row is rejected nothing is stored.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from cdp.audit import service as audit
from cdp.consent import service
from cdp.consent.models import ConsentRecord, SubjectStatus
from cdp.consent.service import ConsentInput
from cdp.crypto import Crypto
from cdp.db import utcnow
from cdp.errors import CdpError, ValidationFailed
from cdp.policy import Policy
from cdp.profiles.models import Identity, Profile

MAX_REPORTED = 1000
BATCH = 500
# Clocks differ a little between the system that exported and this one.
FUTURE_SLACK = timedelta(minutes=5)
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")

Row = tuple[int, dict[str, Any] | str]  # line number, the row or why it could not be read


def _rfc3339(value: Any) -> Any:
    if isinstance(value, str) and not _RFC3339.fullmatch(value):
        raise ValueError("expected an RFC 3339 date-time with offset, e.g. 2024-05-01T10:00:00Z")
    return value


def _blank_is_none(value: Any) -> Any:
    return None if value == "" else value


Optional = Annotated[str | None, BeforeValidator(_blank_is_none), Field(max_length=320)]


class ImportRow(BaseModel):
    """One consent of an existing customer, by profile id or the app's external id."""

    model_config = ConfigDict(extra="forbid")
    profile_id: Optional = None
    external_id: Optional = None
    purpose: str = Field(max_length=64)
    state: Literal["granted", "withdrawn", "refused"]
    notice_id: str = Field(max_length=64)
    notice_version: int = Field(ge=1)
    channel: Literal["web", "app", "mini_program", "paper", "phone"]
    at: Annotated[datetime, BeforeValidator(_rfc3339)]
    text_sha256: str = Field(max_length=64)
    locale: str = Field(max_length=16)
    ip: Optional = None
    separate: Annotated[bool, BeforeValidator(lambda v: False if v == "" else v)] = False
    guardian_relation: Annotated[
        Literal["parent", "grandparent", "legal_guardian", "other_guardian"] | None,
        BeforeValidator(_blank_is_none),
    ] = None
    guardian_method: Annotated[
        Literal["id_document", "household_register", "guardian_account", "in_person", "other"]
        | None,
        BeforeValidator(_blank_is_none),
    ] = None


COLUMNS = tuple(ImportRow.model_fields)


def csv_rows(body: bytes) -> Iterator[Row]:
    """Rows of a CSV file with a header line; line numbers are the file's own."""
    text = io.TextIOWrapper(io.BytesIO(body), encoding="utf-8-sig", newline="")
    reader = csv.DictReader(text, strict=True)
    try:
        header = reader.fieldnames or []
    except (UnicodeDecodeError, csv.Error):
        yield 1, "the header line is not readable UTF-8 CSV"
        return
    unknown = [h for h in header if h not in COLUMNS]
    if unknown or not header:
        yield (
            1,
            f"unknown column(s) {', '.join(h[:40] for h in unknown[:5])}; columns: "
            + (", ".join(COLUMNS)),
        )
        return
    while True:
        try:
            raw = next(reader)
        except StopIteration:
            return
        except (UnicodeDecodeError, csv.Error):
            yield reader.line_num + 1, "the line is not readable UTF-8 CSV"
            return
        if None in raw:
            yield reader.line_num, "more values than columns"
            continue
        yield reader.line_num, {k: v for k, v in raw.items() if v is not None}


def jsonl_rows(body: bytes) -> Iterator[Row]:
    """Rows of a JSON Lines file: one object per line; blank lines are skipped."""
    for number, line in enumerate(body.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            yield number, "not a JSON object"
            continue
        yield (number, value) if isinstance(value, dict) else (number, "not a JSON object")


@dataclass(slots=True)
class ImportReport:
    rows: int = 0
    stored: int = 0
    by_state: dict[str, int] = field(
        default_factory=lambda: {"granted": 0, "withdrawn": 0, "refused": 0}
    )
    subjects: set[str] = field(default_factory=set)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    rejected_count: int = 0

    def reject(self, line: int, key: str | None, message: str) -> None:
        self.rejected_count += 1
        if len(self.rejected) < MAX_REPORTED:
            loc: list[Any] = ["body", line] + ([key] if key else [])
            self.rejected.append({"loc": loc, "msg": message, "type": "row_rejected"})


class _Subjects:
    """Resolves profile ids and external ids once each; never echoes the identifier."""

    def __init__(self, session: Session, crypto: Crypto) -> None:
        self.session, self.crypto = session, crypto
        self.by_external: dict[str, str | None] = {}
        self.known: dict[str, bool] = {}
        self.minor: dict[str, bool] = {}

    def resolve(self, row: ImportRow) -> tuple[str | None, str | None]:
        """(subject id, None) or (None, reason)."""
        subject = None
        if row.external_id is not None:
            if row.external_id not in self.by_external:
                try:
                    index = self.crypto.blind_index("external_id", row.external_id)
                except CdpError:
                    return None, "external_id is not valid"
                self.by_external[row.external_id] = self.session.scalar(
                    select(Identity.subject_id).where(
                        Identity.kind == "external_id", Identity.blind_index == index
                    )
                )
            subject = self.by_external[row.external_id]
            if subject is None:
                return None, "no profile has this external_id"
        if row.profile_id is not None:
            if subject is not None and subject != row.profile_id:
                return None, "profile_id and external_id name different profiles"
            if row.profile_id not in self.known:
                fits = len(row.profile_id) <= 36
                found = fits and self.session.get(Profile, row.profile_id) is not None
                self.known[row.profile_id] = found
            if not self.known[row.profile_id]:
                return None, "no profile has this profile_id"
            subject = row.profile_id
        if subject is None:
            return None, "give profile_id or external_id"
        return subject, None

    def is_minor(self, subject: str) -> bool:
        if subject not in self.minor:
            status = self.session.get(SubjectStatus, subject)
            self.minor[subject] = bool(status and status.minor)
        return self.minor[subject]


def import_consents(
    session: Session, *, policy: Policy, crypto: Crypto, actor: str, rows: Iterator[Row]
) -> ImportReport:
    """Check every row; store all of them, or none and raise ValidationFailed listing the
    rejected ones (line, column, reason). Each stored consent has its audit entry."""
    report = ImportReport()
    subjects = _Subjects(session, crypto)
    pending: list[tuple[ConsentRecord, ConsentInput]] = []
    stored: list[ConsentRecord] = []
    latest = utcnow() + FUTURE_SLACK
    for line, raw in rows:
        report.rows += 1
        if isinstance(raw, str):
            report.reject(line, None, raw)
            continue
        change, subject = _checked_row(policy, subjects, report, line, raw, latest)
        if change is None or subject is None or report.rejected_count:
            continue
        entry = service.new_record(policy, actor, subject, change, row_at(change, latest))
        pending.append((entry, change))
        if len(pending) >= BATCH:
            stored += _flush(session, pending)
    if report.rejected_count or not report.rows:
        if not report.rows:
            report.reject(1, None, "the file holds no rows")
        raise ValidationFailed(
            f"{report.rejected_count} of {report.rows} row(s) rejected; nothing was stored",
            errors=report.rejected,
            audit={
                "action": "consent.import_rejected",
                "detail": {"rows": report.rows, "rejected": report.rejected_count},
            },
        )
    stored += _flush(session, pending)
    for entry in stored:
        report.stored += 1
        report.by_state[entry.state] += 1
        report.subjects.add(entry.subject_id)
    events = [service.audit_event(actor, entry, "import") for entry in stored]
    events.append(
        audit.Event(
            actor=actor,
            action="consent.import",
            detail={"rows": report.rows, "stored": report.stored, "subjects": len(report.subjects)},
        )
    )
    audit.append_many(session, events)
    return report


def _checked_row(
    policy: Policy,
    subjects: _Subjects,
    report: ImportReport,
    line: int,
    raw: dict[str, Any],
    latest: datetime,
) -> tuple[ConsentInput | None, str | None]:
    try:
        row = ImportRow.model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors(include_url=False)[:5]:
            key = str(error["loc"][0]) if error["loc"] else None
            report.reject(line, key, str(error["msg"]))
        return None, None
    if row.at.tzinfo is None or row.at > latest:
        report.reject(line, "at", "at must have an offset and not be in the future")
        return None, None
    subject, reason = subjects.resolve(row)
    if subject is None:
        report.reject(line, "external_id" if row.external_id else "profile_id", reason or "")
        return None, None
    guardian = None
    if row.guardian_relation or row.guardian_method:
        if not (row.guardian_relation and row.guardian_method):
            report.reject(line, "guardian_method", "give guardian_relation and guardian_method")
            return None, None
        guardian = {"relation": row.guardian_relation, "method": row.guardian_method}
    change = ConsentInput(
        purpose=row.purpose,
        state=row.state,
        notice_id=row.notice_id,
        notice_version=row.notice_version,
        channel=row.channel,
        text_sha256=row.text_sha256,
        locale=row.locale,
        ip=row.ip,
        separate=row.separate,
        guardian=guardian,
        at=row.at,
    )
    try:
        service.check_input(policy, change, minor=subjects.is_minor(subject), loc=())
    except ValidationFailed as exc:
        for problem in exc.errors or []:
            report.reject(line, str(problem["loc"][0]), problem["msg"])
        return None, None
    return change, subject


def row_at(change: ConsentInput, default: datetime) -> datetime:
    return change.at if change.at is not None else default


def _flush(
    session: Session, pending: list[tuple[ConsentRecord, ConsentInput]]
) -> list[ConsentRecord]:
    records = [entry for entry, _ in pending]
    session.add_all(records)
    session.flush()
    pending.clear()
    return records
