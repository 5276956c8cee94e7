"""Profile and identity rows for the batch paths, straight through the DB-API cursor of the
session's connection (same transaction), in the form SQLAlchemy would store and read them.

SQLAlchemy's per-row work on a batch (compiling parameters, a JSON and two datetime
processors per row) cost more than the rows' encryption; here each type's own processor is
looked up once per batch and the statements go to executemany. SQLite and PostgreSQL only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from cdp.profiles.models import Identity, Profile

PROFILE_TABLE = cast(Table, Profile.__table__)
IDENTITY_TABLE = cast(Table, Identity.__table__)
# Bound parameters per IN list; well under SQLite's and PostgreSQL's limits.
CHUNK = 900


# Only placeholders are ever added to these ("?" becomes the driver's mark).
_INSERT_PROFILE = (
    "INSERT INTO profile (id, created_at, updated_at, plain, sealed) VALUES (?, ?, ?, ?, ?)"
)
_INSERT_IDENTITY = (
    "INSERT INTO identity (subject_id, kind, blind_index, sealed_value, created_at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind, blind_index) DO NOTHING"
)
_SELECT_PROFILES = "SELECT id, created_at, updated_at, plain, sealed FROM profile WHERE id IN "
_SELECT_IDENTITIES = "SELECT subject_id, kind, sealed_value FROM identity WHERE subject_id IN "


def _marks(mark: str, n: int) -> str:
    return "(" + ", ".join([mark] * n) + ")"


@dataclass(frozen=True, slots=True)
class Stored:
    """A profile row as read (from the ORM or from here): what a view is made from."""

    id: str
    created_at: datetime
    updated_at: datetime
    plain: Mapping[str, Any] | None
    sealed: Mapping[str, str] | None

    @classmethod
    def of(cls, profile: Profile) -> Stored:
        return cls(
            profile.id, profile.created_at, profile.updated_at, profile.plain, profile.sealed
        )


def _mark(dialect: Dialect) -> str:
    if dialect.name not in ("sqlite", "postgresql"):
        raise ValueError(f"profiles on {dialect.name} are not supported: use SQLite or PostgreSQL")
    return "?" if dialect.paramstyle == "qmark" else "%s"


def _bind(table: Table, column: str, dialect: Dialect) -> Callable[[Any], Any]:
    process = table.c[column].type.dialect_impl(dialect).bind_processor(dialect)
    return process if process is not None else _same


def _result(table: Table, column: str, dialect: Dialect) -> Callable[[Any], Any]:
    process = table.c[column].type.dialect_impl(dialect).result_processor(dialect, None)
    return process if process is not None else _same


def _same(value: Any) -> Any:
    return value


def _json(dialect: Dialect) -> Callable[[Any], Any]:
    # SQLite stores the JSON text; psycopg sends a str untyped and PostgreSQL casts it to json.
    return cast(Callable[[Any], Any], json.dumps)


def _cursor(session: Session) -> tuple[Any, Dialect]:
    session.flush()  # ORM changes pending in this session first, as a query would
    conn = session.connection()
    return conn.connection.driver_connection.cursor(), conn.dialect  # type: ignore[union-attr]


def insert_profiles(
    session: Session, rows: Sequence[tuple[str, dict[str, Any], dict[str, str]]], at: datetime
) -> None:
    """New profile rows (id, plain, sealed), created and updated at the given time."""
    cur, dialect = _cursor(session)
    mark, stamp, dumps = (
        _mark(dialect),
        _bind(PROFILE_TABLE, "created_at", dialect)(at),
        _json(dialect),
    )
    try:
        cur.executemany(
            _INSERT_PROFILE.replace("?", mark),
            [(sid, stamp, stamp, dumps(plain), dumps(sealed)) for sid, plain, sealed in rows],
        )
    finally:
        cur.close()


def insert_identities(
    session: Session, rows: Sequence[tuple[str, str, str, str]], at: datetime
) -> int:
    """New identity rows (subject id, kind, blind index, sealed value); an identifier another
    profile holds is skipped by the unique constraint. Returns how many were inserted."""
    cur, dialect = _cursor(session)
    mark, stamp = _mark(dialect), _bind(IDENTITY_TABLE, "created_at", dialect)(at)
    try:
        cur.executemany(
            _INSERT_IDENTITY.replace("?", mark),
            [(*row, stamp) for row in rows],
        )
        return int(cur.rowcount)
    finally:
        cur.close()


def stored(session: Session, subject_ids: Sequence[str]) -> dict[str, Stored]:
    """The profile rows of those subjects that exist."""
    if not subject_ids:
        return {}
    cur, dialect = _cursor(session)
    mark = _mark(dialect)
    when = _result(PROFILE_TABLE, "created_at", dialect)
    loads = _result(PROFILE_TABLE, "plain", dialect)
    out: dict[str, Stored] = {}
    try:
        for start in range(0, len(subject_ids), CHUNK):
            chunk = list(subject_ids[start : start + CHUNK])
            cur.execute(_SELECT_PROFILES + _marks(mark, len(chunk)), chunk)
            for sid, created, updated, plain, sealed in cur.fetchall():
                out[sid] = Stored(sid, when(created), when(updated), loads(plain), loads(sealed))
    finally:
        cur.close()
    return out


def identity_values(
    session: Session, subject_ids: Sequence[str]
) -> dict[str, list[tuple[str, str]]]:
    """(kind, sealed value) of each subject's identity rows, in row order."""
    out: dict[str, list[tuple[str, str]]] = {s: [] for s in subject_ids}
    if not subject_ids:
        return out
    cur, dialect = _cursor(session)
    mark = _mark(dialect)
    try:
        for start in range(0, len(subject_ids), CHUNK):
            chunk = list(subject_ids[start : start + CHUNK])
            cur.execute(_SELECT_IDENTITIES + _marks(mark, len(chunk)) + " ORDER BY id", chunk)
            for sid, kind, sealed_value in cur.fetchall():
                out[sid].append((kind, sealed_value))
    finally:
        cur.close()
    return out
