"""Streaming a query's single column (member ids) at the database's pace.

On PostgreSQL the select runs in a server-side cursor that SQLAlchemy declares (so it binds the
parameters with their types) and the ids are fetched in batches by the driver's own cursor,
plain tuples: building a SQLAlchemy Row per id cost more than the query. SQLite reads its
rows lazily anyway, so SQLAlchemy streams them itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement, Executable

BATCH = 10_000


class _DeclareCursor(Executable, ClauseElement):
    """DECLARE <name> NO SCROLL CURSOR FOR <select>, in the session's transaction."""

    inherit_cache = False

    def __init__(self, name: str, select: Select[Any]) -> None:
        self.name = name
        self.select = select


@compiles(_DeclareCursor, "postgresql")
def _declare(element: _DeclareCursor, compiler: SQLCompiler, **kw: Any) -> str:
    return f"DECLARE {element.name} NO SCROLL CURSOR FOR {compiler.process(element.select, **kw)}"


def first_column(session: Session, stmt: Select[Any], batch: int = BATCH) -> Iterator[Any]:
    """The first column of every row, in the statement's order, batch rows at a time."""
    if session.get_bind().dialect.name != "postgresql":
        result = session.execute(stmt.execution_options(yield_per=batch))
        for partition in result.scalars().partitions():
            yield from partition
        return
    # A name of its own, so that two streams can be open in one transaction.
    name = f"stream_{uuid.uuid4().hex}"
    session.execute(_DeclareCursor(name, stmt))
    driver: Any = session.connection().connection.driver_connection
    with driver.cursor() as cursor:
        # Not prepared: PostgreSQL cannot prepare FETCH.
        fetch = f"FETCH FORWARD {int(batch)} FROM {name}"
        while rows := cursor.execute(fetch, prepare=False).fetchall():
            for (value,) in rows:
                yield value
        cursor.execute(f"CLOSE {name}", prepare=False)
