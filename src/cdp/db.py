"""Engine, ORM base and the one-transaction-per-request unit of work."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import (
    DateTime,
    Engine,
    MetaData,
    any_,
    bindparam,
    cast,
    column,
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator, TypeEngine

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with stable constraint names for Alembic."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both SQLite (which drops tzinfo) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # The driver's own transaction handling is off so that BEGIN IMMEDIATE below is ours.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    # Writers are serialised from the start of the transaction: a deferred transaction that read
    # first cannot upgrade to a write lock under WAL (SQLITE_BUSY_SNAPSHOT), which would fork or
    # fail audit-chain appends under concurrency.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, **kw: Any) -> Engine:
    """An engine with the dialect settings this project relies on."""
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kw)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kw.setdefault("pool_size", 10)
    kw.setdefault("max_overflow", 20)
    kw.setdefault("pool_pre_ping", True)
    return create_engine(url, **kw)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: committed when the block ends, rolled back when it raises."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


# --- schema migrations (Alembic, in the repository's migrations/ folder) -----------------------

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def schema_is_current(engine: Engine) -> bool:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    heads = set(ScriptDirectory.from_config(alembic_config(str(engine.url))).get_heads())
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    return current == heads


def schema_drift(engine: Engine) -> list[Any]:
    """Differences between the ORM models and a database migrated to head (empty when none)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import cdp.models  # noqa: F401  registers every table on Base.metadata

    with engine.connect() as conn:
        opts = {"compare_type": True, "include_name": not_a_partition(conn)}
        ctx = MigrationContext.configure(conn, opts=opts)
        return list(compare_metadata(ctx, Base.metadata))


def not_a_partition(conn: Any) -> Any:
    """An Alembic include_name filter leaving out partitions (PostgreSQL): the models hold the
    partitioned parent table only, its monthly partitions are made at run time."""
    found: list[set[str]] = []

    def include(name: str | None, type_: str, parent_names: Any) -> bool:
        if type_ != "table" or conn.dialect.name != "postgresql":
            return True
        if not found:  # on first use: a plain `upgrade` must not start a transaction here
            rows = conn.execute(text("SELECT relname FROM pg_class WHERE relispartition"))
            found.append(set(rows.scalars()))
        return name not in found[0]

    return include


def _plain_type(column_type: TypeEngine[Any]) -> TypeEngine[Any]:
    return column_type.impl_instance if isinstance(column_type, TypeDecorator) else column_type


def one_of(session: Session, column: Any, values: Iterable[Any]) -> Any:
    """`column IN values`; on PostgreSQL `column = ANY(array)`, one parameter whatever the
    number of values, so the statement's text stays the same and the server prepares it."""
    values = sorted(set(values))
    if session.get_bind().dialect.name != "postgresql":
        return column.in_(values)
    array = postgresql.ARRAY(_plain_type(column.type))
    return column == any_(bindparam(None, values, type_=array, unique=True))


# (statement, column names) -> the statement reading its rows from one JSON parameter.
_FROM_JSON: dict[tuple[Any, tuple[str, ...]], Any] = {}


def _from_json(stmt: Any, names: tuple[str, ...]) -> Any:
    table = stmt.table
    text_rows = cast(bindparam("rows", type_=postgresql.TEXT()), postgresql.JSON())
    rows = func.json_to_recordset(text_rows).table_valued(
        *(column(name, _plain_type(table.c[name].type)) for name in names)
    )
    source = rows.render_derived(with_types=True)
    return stmt.from_select(list(names), select(*(source.c[name] for name in names)))


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


_rows_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_json_value).encode


def execute_rows(session: Session, stmt: Any, rows: list[dict[str, Any]]) -> Any:
    """Runs an INSERT (with its ON CONFLICT) over rows that all have the same keys.

    PostgreSQL: one INSERT ... SELECT FROM json_to_recordset(rows as one JSON text), whose SQL
    text is the same for any number of rows, so the server parses and plans it once per
    connection; an executemany would send one statement per row, and array parameters cost
    psycopg more Python work per value than the C JSON encoder. Elsewhere: an executemany.
    `stmt` should be built once and reused (SQLAlchemy then compiles it once too).
    """
    conn = session.connection()
    if conn.dialect.name != "postgresql":
        return conn.execute(stmt, rows)
    names = tuple(rows[0])
    key = (stmt, names)
    bulk = _FROM_JSON.get(key)
    if bulk is None:
        if len(_FROM_JSON) > 512:  # a caller that builds its statement per call
            _FROM_JSON.clear()
        bulk = _FROM_JSON[key] = _from_json(stmt, names)
    return conn.execute(bulk, {"rows": _rows_json(rows)})
