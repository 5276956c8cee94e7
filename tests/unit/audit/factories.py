"""Small builders for audit tests: a filled chain, checkpoints, exports, owner-rights tampering."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from cdp.api import Runtime
from cdp.audit import checkpoints, service
from cdp.audit.chain import entry_hash
from cdp.audit.export import ExportFilter, Format, start_export, stream
from cdp.audit.models import AuditCheckpoint, AuditEntry
from cdp.audit.service import Event, RequestContext
from cdp.audit.signing import Signer, cached_signer
from cdp.db import unit_of_work

ACTORS = ("client:cli_aaaaaaaaaaaaaaaa", "client:cli_bbbbbbbbbbbbbbbb", "system")
ACTIONS = ("profile.read", "consent.record", "profile.update")


def fill(rt: Runtime, n: int, *, batch: int = 5000, start: int = 0) -> None:
    """Append n entries, batch per transaction; actor, action and subject vary with i."""
    done = 0
    while done < n:
        size = min(batch, n - done)
        with unit_of_work(rt.sessions) as session:
            session.info["ctx"] = RequestContext(rt.policy.version, f"req{done}")
            service.append_many(
                session,
                [
                    Event(
                        actor=ACTORS[i % 3],
                        action=ACTIONS[i % 3],
                        subject=f"00000000-0000-4000-8000-{i % 50:012d}",
                        purpose="customer_care" if i % 2 else None,
                        fields=["email", "city"] if i % 2 else [],
                        detail={"n": i, "说明": "审计"} if i % 5 == 0 else None,
                    )
                    for i in range(start + done, start + done + size)
                ],
            )
        done += size


def signer(rt: Runtime) -> Signer:
    return cached_signer(rt.extras, rt.settings.audit_signing_key_file, rt.settings.data_dir)


def checkpoint(
    rt: Runtime,
    *,
    every: int = 1000,
    minutes: float = 60,
    now: datetime | None = None,
    force: bool = False,
) -> list[AuditCheckpoint]:
    schedule = checkpoints.Schedule(every_entries=every, every=timedelta(minutes=minutes))
    return checkpoints.run_due(
        rt.sessions, signer=signer(rt), schedule=schedule, now=now, force=force
    )


def export(
    rt: Runtime,
    path: Path,
    *,
    fmt: Format = "jsonl",
    wanted: ExportFilter | None = None,
    batch: int = 700,
) -> Path:
    with unit_of_work(rt.sessions) as session:
        session.info["ctx"] = RequestContext(rt.policy.version)
        plan = start_export(
            session, actor="test:officer", fmt=fmt, export_filter=wanted or ExportFilter()
        )
    with path.open("wb") as out:
        for chunk in stream(rt.sessions, plan, signer(rt), batch=batch):
            out.write(chunk)
    return path


def public_keys(rt: Runtime) -> dict[str, bytes]:
    me = signer(rt)
    return {me.key_id: me.public_raw}


def tamper(session: Session, statement: str, **params: Any) -> None:
    """Run a statement as an attacker with the owner's rights would: on PostgreSQL, with the
    append-only triggers disabled for this transaction only."""
    postgres = session.get_bind().dialect.name == "postgresql"
    tables = ("audit_entry", "audit_checkpoint")
    if postgres:
        for table in tables:
            session.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only"))
    session.execute(text(statement), params)
    if postgres:
        for table in tables:
            session.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER {table}_append_only"))


def rewrite_history(rt: Runtime, seq: int, actor: str) -> None:
    """Change entry `seq` and recompute every later hash, so that the chain itself verifies."""
    with unit_of_work(rt.sessions) as session:
        rows = [
            service.as_record(e)
            for e in session.scalars(
                select(AuditEntry).where(AuditEntry.seq >= seq).order_by(AuditEntry.seq)
            )
        ]
        rows[0]["actor"] = actor
        prev = rows[0]["prev_hash"]
        for row in rows:
            row["prev_hash"], row["hash"] = prev, entry_hash(prev, row)
            prev = row["hash"]
            tamper(
                session,
                "UPDATE audit_entry SET actor = :actor, prev_hash = :prev_hash, hash = :hash"
                " WHERE seq = :seq",
                **{k: row[k] for k in ("actor", "prev_hash", "hash", "seq")},
            )


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def manifest(path: Path) -> dict[str, Any]:
    last = lines(path)[-1].decode()
    if last.startswith("# manifest: "):
        found: dict[str, Any] = json.loads(last.removeprefix("# manifest: "))
        return found
    found = json.loads(last)["manifest"]
    return found
