"""The key store: wrapped data keys, the blind-index key and the erasure ledger, in a database
apart from the main one (so backups of the main database carry no keys), with its own Alembic
history in migrations/keystore/ and version table ``keystore_alembic_version``.

The per-request paths (reading and creating subject keys) take the Engine and go through the
driver; everything else runs on a Connection the caller opened for one short transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)

from cdp.db import NAMING_CONVENTION, UTCDateTime

MIGRATIONS_DIR = Path(__file__).resolve().parents[3] / "migrations" / "keystore"
VERSION_TABLE = "keystore_alembic_version"
# Bound parameters per IN list; well under SQLite's and PostgreSQL's limits.
CHUNK = 900

metadata = MetaData(naming_convention=NAMING_CONVENTION)

subject_key = Table(
    "subject_key",
    metadata,
    Column("subject_id", String(64), primary_key=True),
    Column("key_version", Integer, nullable=False),
    Column("kek_id", String(32), nullable=False, index=True),
    Column("wrapped", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("rewrapped_at", UTCDateTime, nullable=True),
)

index_key = Table(
    "index_key",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("kek_id", String(32), nullable=False),
    Column("wrapped", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("rewrapped_at", UTCDateTime, nullable=True),
)

erasure = Table(
    "erasure",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subject_id", String(64), nullable=False, index=True),
    Column("erased_at", UTCDateTime, nullable=False, index=True),
    Column("reason", String(200), nullable=False),
)


# --- migrations ---------------------------------------------------------------------------------


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade_keystore(url: str, revision: str = "head") -> None:
    """Migrates the key store to the latest revision."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def keystore_is_current(engine: Engine) -> bool:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    heads = set(ScriptDirectory.from_config(alembic_config(str(engine.url))).get_heads())
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        current = set(ctx.get_current_heads())
    return current == heads


def keystore_drift(engine: Engine) -> list[Any]:
    """Differences between these tables and a key store migrated to head (empty when none)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    def ours(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        return not (type_ == "table" and name == VERSION_TABLE)

    with engine.connect() as conn:
        opts = {"compare_type": True, "include_object": ours, "version_table": VERSION_TABLE}
        ctx = MigrationContext.configure(conn, opts=opts)
        return list(compare_metadata(ctx, metadata))


# --- subject keys: the hot paths go straight to the driver ---------------------------------------
# Reading a subject's key happens on every request that touches PI, and creating one on every new
# profile. Through the DB-API, reads and single-statement writes run in autocommit: one round trip
# on PostgreSQL instead of BEGIN, statement and ROLLBACK/COMMIT, and a SQLite read never queues
# behind writers. SQLite writes still take BEGIN IMMEDIATE (see cdp.db).

KeyRow = tuple[str, int, str, bytes]  # subject_id, key_version, kek_id, wrapped
IndexKeyRow = tuple[int, str, bytes]  # version, kek_id, wrapped
_ROWS_PER_INSERT = CHUNK // 5
# Only placeholder lists are ever added to these.
_SELECT_KEYS = (
    "SELECT subject_id, key_version, kek_id, wrapped FROM subject_key WHERE subject_id IN "
)
_INSERT_KEYS = (
    "INSERT INTO subject_key (subject_id, key_version, kek_id, wrapped, created_at) VALUES "
)
# A subject erased before gets the next key version, so its old ciphertext reads as erased.
_NEXT_VERSION = "1 + (SELECT count(*) FROM erasure WHERE erasure.subject_id = {mark})"


@contextmanager
def driver_cursor(engine: Engine, *, write: bool) -> Iterator[Any]:
    """A DB-API cursor from the engine's pool; each statement is atomic on its own."""
    conn = engine.raw_connection()
    sqlite = engine.dialect.name == "sqlite"
    driver: Any = conn.driver_connection
    if not sqlite:
        driver.autocommit = True
    cur = conn.cursor()
    try:
        if write and sqlite:
            cur.execute("BEGIN IMMEDIATE")
        yield cur
        if write and sqlite:
            conn.commit()
    except BaseException:
        if write and sqlite:
            conn.rollback()
        raise
    finally:
        cur.close()
        if not sqlite:
            try:
                driver.autocommit = False  # the pool's other users expect transactions
            except Exception:
                conn.invalidate()
        conn.close()


def _mark(engine: Engine) -> str:
    return "?" if engine.dialect.paramstyle == "qmark" else "%s"


def fetch_subject_keys(engine: Engine, subject_ids: Sequence[str]) -> list[KeyRow]:
    """(subject_id, key_version, kek_id, wrapped) of those subjects that have a key."""
    rows: list[KeyRow] = []
    mark = _mark(engine)
    with driver_cursor(engine, write=False) as cur:
        for start in range(0, len(subject_ids), CHUNK):
            chunk = list(subject_ids[start : start + CHUNK])
            cur.execute(_SELECT_KEYS + "(" + ", ".join([mark] * len(chunk)) + ")", chunk)
            rows.extend((sid, ver, kek, bytes(blob)) for sid, ver, kek, blob in cur.fetchall())
    return rows


def insert_subject_keys(
    engine: Engine, keys: dict[str, tuple[str, bytes]], *, created_at: datetime
) -> dict[str, int]:
    """Inserts new wrapped keys {subject_id: (kek_id, wrapped)}; returns the key version of each
    one inserted, leaving out subjects that had a key already."""
    ids = list(keys)
    at = subject_key.c.created_at.type.dialect_impl(engine.dialect).bind_processor(engine.dialect)
    stamp = at(created_at) if at is not None else created_at
    mark = _mark(engine)
    row = f"({mark}, {_NEXT_VERSION.format(mark=mark)}, {mark}, {mark}, {mark})"
    inserted: dict[str, int] = {}
    with driver_cursor(engine, write=True) as cur:
        for start in range(0, len(ids), _ROWS_PER_INSERT):
            chunk = ids[start : start + _ROWS_PER_INSERT]
            params: list[Any] = []
            for sid in chunk:
                kek_id, wrapped = keys[sid]
                params += [sid, sid, kek_id, wrapped, stamp]
            cur.execute(
                _INSERT_KEYS
                + ", ".join([row] * len(chunk))
                + " ON CONFLICT (subject_id) DO NOTHING RETURNING subject_id, key_version",
                params,
            )
            inserted.update((sid, int(version)) for sid, version in cur.fetchall())
    return inserted


def _insert_ignoring_conflicts(conn: Connection, table: Table, key: str) -> Any:
    """INSERT .. ON CONFLICT DO NOTHING RETURNING key, for SQLite and PostgreSQL."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing(index_elements=[key]).returning(table.c[key])
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as lite_insert

        stmt = lite_insert(table).on_conflict_do_nothing(index_elements=[key])
        return stmt.returning(table.c[key])
    raise ValueError(f"key store on {conn.dialect.name} is not supported: use SQLite or PostgreSQL")


def delete_subject_key(
    conn: Connection, subject_id: str, *, created_before: datetime | None
) -> int:
    stmt = delete(subject_key).where(subject_key.c.subject_id == subject_id)
    if created_before is not None:
        stmt = stmt.where(subject_key.c.created_at <= created_before)
    return conn.execute(stmt).rowcount


def has_subject_key(conn: Connection, subject_id: str) -> bool:
    query = select(subject_key.c.subject_id).where(subject_key.c.subject_id == subject_id)
    return conn.execute(query).first() is not None


def rewrap_candidates(conn: Connection, target: str, after: str, limit: int) -> list[KeyRow]:
    """The next batch of keys not wrapped by the target version, in subject-id order."""
    query = (
        select(
            subject_key.c.subject_id,
            subject_key.c.key_version,
            subject_key.c.kek_id,
            subject_key.c.wrapped,
        )
        .where(subject_key.c.kek_id != target, subject_key.c.subject_id > after)
        .order_by(subject_key.c.subject_id)
        .limit(limit)
    )
    return [(sid, ver, kek, bytes(blob)) for sid, ver, kek, blob in conn.execute(query)]


def store_rewrapped(conn: Connection, rows: list[dict[str, Any]]) -> int:
    """Compare-and-set: a key shredded or re-wrapped meanwhile is left as it is."""
    stmt = (
        update(subject_key)
        .where(
            subject_key.c.subject_id == bindparam("b_subject_id"),
            subject_key.c.kek_id == bindparam("b_old_kek"),
        )
        .values(
            kek_id=bindparam("b_kek_id"),
            wrapped=bindparam("b_wrapped"),
            rewrapped_at=bindparam("b_at"),
        )
    )
    result = conn.execute(stmt, rows)
    return max(result.rowcount, 0)


def keys_per_version(conn: Connection) -> dict[str, int]:
    query = select(subject_key.c.kek_id, func.count()).group_by(subject_key.c.kek_id)
    return {kek: int(n) for kek, n in conn.execute(query).all()}


# --- the blind-index key ------------------------------------------------------------------------


def current_index_key(conn: Connection) -> IndexKeyRow | None:
    query = (
        select(index_key.c.version, index_key.c.kek_id, index_key.c.wrapped)
        .order_by(index_key.c.version.desc())
        .limit(1)
    )
    row = conn.execute(query).first()
    return None if row is None else (row[0], row[1], bytes(row[2]))


def insert_index_key(conn: Connection, row: dict[str, Any]) -> bool:
    stmt = _insert_ignoring_conflicts(conn, index_key, "version")
    return bool(conn.execute(stmt, [row]).scalars().all())


def index_keys(conn: Connection) -> list[IndexKeyRow]:
    query = select(index_key.c.version, index_key.c.kek_id, index_key.c.wrapped)
    return [(version, kek, bytes(blob)) for version, kek, blob in conn.execute(query)]


def store_rewrapped_index_key(
    conn: Connection, version: int, old_kek: str, kek_id: str, wrapped: bytes, at: datetime
) -> None:
    conn.execute(
        update(index_key)
        .where(index_key.c.version == version, index_key.c.kek_id == old_kek)
        .values(kek_id=kek_id, wrapped=wrapped, rewrapped_at=at)
    )


# --- the erasure ledger -------------------------------------------------------------------------


def record_erasure(conn: Connection, subject_id: str, at: datetime, reason: str) -> None:
    conn.execute(insert(erasure).values(subject_id=subject_id, erased_at=at, reason=reason))


def list_erasures(conn: Connection, after: datetime | None) -> list[tuple[str, datetime]]:
    query = select(erasure.c.subject_id, erasure.c.erased_at).order_by(
        erasure.c.erased_at, erasure.c.id
    )
    if after is not None:
        query = query.where(erasure.c.erased_at > after)
    return [(sid, at) for sid, at in conn.execute(query).all()]


def count_erasures(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(erasure)).scalar_one())
