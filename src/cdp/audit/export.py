"""Audit export: the chain streamed in sequence order, ending with a signed manifest.

The export is cut into blocks: the range of each checkpoint (from_seq..seq) and, after the
last checkpoint, an unsigned tail up to the head at export time. Every block holding at least
one entry that matches the filter is exported whole: matching entries in full (every chain
field, prev_hash, hash), the others as skipped lines (seq and hash only). An unfiltered export
has no skipped lines. `cdp.audit.verify` documents what a verifier checks and proves.

JSONL: one JSON object per line (UTF-8, compact, no ASCII escaping):
    {"seq": 1, "at": "2026-11-25T08:00:00.123456Z", "actor": ..., "prev_hash": ..., "hash": ...}
    {"seq": 2, "hash": "...", "skipped": true}
    {"manifest": {...}}                                   <- always the last line
CSV: a header row, then one row per sequence number: `kind` is `entry` or `skipped`, the
chain fields follow as their canonical texts (`cdp.audit.chain.field_text`: "" for null,
compact sorted JSON for `fields` and `detail`), then prev_hash and hash; the last line is
`# manifest: {...}` (not a CSV row). In both, the manifest's body_sha256 covers every byte
before the manifest line and its signature covers the manifest itself.

Memory stays flat: each batch of rows is read in its own short transaction and written out
before the next is read; only the list of checkpoints (one per N entries) is held.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Row, func, select
from sqlalchemy.orm import Session, sessionmaker

from cdp.audit import service
from cdp.audit.chain import CHAIN_FIELDS, field_text, format_time, manifest_message
from cdp.audit.models import AuditCheckpoint, AuditEntry
from cdp.audit.signing import Signer
from cdp.db import utcnow

Format = Literal["jsonl", "csv"]
FORMAT_VERSION = "cdp-audit-export/1"
MEDIA_TYPES: dict[str, str] = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
CSV_COLUMNS = ("kind", *CHAIN_FIELDS, "prev_hash", "hash")
CSV_MANIFEST_PREFIX = "# manifest: "
_COLUMNS = tuple(AuditEntry.__table__.columns)
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@dataclass(frozen=True, slots=True)
class ExportFilter:
    """Which entries an export holds in full; the same rule in SQL and in Python."""

    since: datetime | None = None
    until: datetime | None = None
    actor: str | None = None
    subject: str | None = None
    action: str | None = None
    purpose: str | None = None

    @property
    def is_empty(self) -> bool:
        values = (self.since, self.until, self.actor, self.subject, self.action, self.purpose)
        return all(value is None for value in values)

    def where(self) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        if self.since is not None:
            conditions.append(AuditEntry.at >= self.since)
        if self.until is not None:
            conditions.append(AuditEntry.at < self.until)
        for column, value in self._equalities(AuditEntry):
            if value is not None:
                conditions.append(column == value)
        return conditions

    def matches(self, row: Any) -> bool:
        if self.since is not None and row.at < self.since:
            return False
        if self.until is not None and row.at >= self.until:
            return False
        return all(value is None or column == value for column, value in self._equalities(row))

    def _equalities(self, source: Any) -> list[tuple[Any, str | None]]:
        return [
            (source.actor, self.actor),
            (source.subject, self.subject),
            (source.action, self.action),
            (source.purpose, self.purpose),
        ]

    def as_manifest(self) -> dict[str, str | None]:
        """The filter as the manifest states it; times in the chain's own text form."""
        return {
            "from": format_time(self.since) if self.since else None,
            "to": format_time(self.until) if self.until else None,
            "actor": self.actor,
            "subject": self.subject,
            "action": self.action,
            "purpose": self.purpose,
        }


@dataclass(frozen=True, slots=True)
class Block:
    from_seq: int
    seq: int
    checkpoint: dict[str, Any] | None  # None: the unsigned tail after the last checkpoint


@dataclass(slots=True)
class ExportPlan:
    """What one export covers, fixed at its start: later appends are not part of it."""

    fmt: Format
    filter: ExportFilter
    actor: str
    head_seq: int
    head_hash: str
    blocks: list[Block]
    started_at: datetime = field(default_factory=utcnow)

    @property
    def filename(self) -> str:
        stamp = self.started_at.strftime("%Y%m%dT%H%M%SZ")
        return f"cdp-audit-{stamp}-{self.head_seq}.{self.fmt}"


def _checkpoint_dict(cp: AuditCheckpoint) -> dict[str, Any]:
    return {
        "from_seq": cp.from_seq,
        "seq": cp.seq,
        "hash": cp.hash,
        "range_digest": cp.range_digest,
        "at": format_time(cp.at),
        "key_id": cp.key_id,
        "signature": cp.signature,
    }


def start_export(
    session: Session, *, actor: str, fmt: Format, export_filter: ExportFilter
) -> ExportPlan:
    """Audit the export and fix what it covers: the chain up to its head, checkpoint blocks."""
    service.append(
        session,
        actor=actor,
        action="audit.export",
        detail={"format": fmt, "filter": export_filter.as_manifest()},
    )
    service.flush_pending(session)  # the export covers the entry that records it
    head = session.execute(
        select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
    ).one()
    blocks, covered = [], 0
    for cp in session.scalars(
        select(AuditCheckpoint)
        .where(AuditCheckpoint.seq <= head.seq, AuditCheckpoint.seq >= AuditCheckpoint.from_seq)
        .order_by(AuditCheckpoint.id)
    ):
        blocks.append(Block(cp.from_seq, cp.seq, _checkpoint_dict(cp)))
        covered = max(covered, cp.seq)
    if head.seq > covered:
        blocks.append(Block(covered + 1, head.seq, None))
    return ExportPlan(fmt, export_filter, actor, head.seq, head.hash, blocks)


def _included(sessions: sessionmaker[Session], plan: ExportPlan, batch: int) -> Iterator[Block]:
    """The blocks holding at least one matching entry, found by reading matching seqs only."""
    if plan.filter.is_empty:
        yield from plan.blocks
        return
    starts = [block.from_seq for block in plan.blocks]
    conditions = plan.filter.where()
    after = 0
    while True:
        with sessions() as session:
            seq = session.scalar(
                select(func.min(AuditEntry.seq)).where(
                    AuditEntry.seq > after, AuditEntry.seq <= plan.head_seq, *conditions
                )
            )
        if seq is None:
            return
        index = bisect_right(starts, seq) - 1
        if index < 0 or seq > plan.blocks[index].seq:
            after = seq  # outside every block (a broken checkpoint list): not exported
            continue
        yield plan.blocks[index]
        after = plan.blocks[index].seq


def _rows(
    sessions: sessionmaker[Session], first: int, last: int, batch: int
) -> Iterator[Sequence[Row[Any]]]:
    after = first - 1
    while after < last:
        with sessions() as session:
            rows = session.execute(
                select(*_COLUMNS)
                .where(AuditEntry.seq > after, AuditEntry.seq <= last)
                .order_by(AuditEntry.seq)
                .limit(batch)
            ).all()
        if not rows:
            return
        yield rows
        after = rows[-1].seq


def _jsonl(row: Row[Any], full: bool) -> str:
    if not full:
        return _dumps({"seq": row.seq, "hash": row.hash, "skipped": True}) + "\n"
    record = {name: getattr(row, name) for name in CHAIN_FIELDS}
    record["at"] = format_time(row.at)
    record["prev_hash"], record["hash"] = row.prev_hash, row.hash
    return _dumps(record) + "\n"


def _csv_cells(row: Row[Any], full: bool) -> list[Any]:
    if not full:
        return ["skipped", row.seq, *([""] * (len(CHAIN_FIELDS) - 1)), "", row.hash]
    cells = [field_text(getattr(row, name)) for name in CHAIN_FIELDS]
    return ["entry", *cells, row.prev_hash, row.hash]


@dataclass(slots=True)
class _Tally:
    body: Any = field(default_factory=hashlib.sha256)
    entries: int = 0
    skipped: int = 0
    first: tuple[int, str] | None = None
    last: tuple[int, str] | None = None

    def count(self, row: Row[Any], full: bool) -> None:
        if not full:
            self.skipped += 1
            return
        self.entries += 1
        self.first = self.first or (row.seq, row.hash)
        self.last = (row.seq, row.hash)


def stream(
    sessions: sessionmaker[Session], plan: ExportPlan, signer: Signer, *, batch: int = 5000
) -> Iterator[bytes]:
    """The export's bytes, one chunk per batch of rows, then the signed manifest line."""
    tally, checkpoints, tail = _Tally(), [], None
    matches, everything = plan.filter.matches, plan.filter.is_empty

    def emit(text: str) -> bytes:
        data = text.encode("utf-8")
        tally.body.update(data)
        return data

    if plan.fmt == "csv":
        yield emit(",".join(CSV_COLUMNS) + "\n")
    for block in _included(sessions, plan, batch):
        if block.checkpoint is None:
            tail = {"from_seq": block.from_seq, "seq": block.seq}
        else:
            checkpoints.append(block.checkpoint)
        for rows in _rows(sessions, block.from_seq, block.seq, batch):
            flags = [everything or matches(row) for row in rows]
            for row, full in zip(rows, flags, strict=True):
                tally.count(row, full)
            if plan.fmt == "csv":
                buffer = io.StringIO()
                csv.writer(buffer, lineterminator="\n").writerows(
                    _csv_cells(row, full) for row, full in zip(rows, flags, strict=True)
                )
                yield emit(buffer.getvalue())
            else:
                yield emit(
                    "".join(_jsonl(row, full) for row, full in zip(rows, flags, strict=True))
                )
    manifest: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "encoding": plan.fmt,
        "exported_at": format_time(plan.started_at),
        "exported_by": plan.actor,
        "filter": plan.filter.as_manifest(),
        "filtered": not everything,
        "head": {"seq": plan.head_seq, "hash": plan.head_hash},
        "entries": tally.entries,
        "skipped": tally.skipped,
        "first_seq": tally.first[0] if tally.first else None,
        "first_hash": tally.first[1] if tally.first else None,
        "last_seq": tally.last[0] if tally.last else None,
        "last_hash": tally.last[1] if tally.last else None,
        "checkpoints": checkpoints,
        "unsigned_tail": tail,
        "body_sha256": tally.body.hexdigest(),
        "key_id": signer.key_id,
    }
    manifest["signature"] = signer.sign(manifest_message(manifest))
    if plan.fmt == "csv":
        yield (CSV_MANIFEST_PREFIX + _dumps(manifest) + "\n").encode("utf-8")
    else:
        yield (_dumps({"manifest": manifest}) + "\n").encode("utf-8")
