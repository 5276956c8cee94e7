"""Alembic environment: the URL comes from the caller's config or from CDP_* settings."""

from __future__ import annotations

from alembic import context

import cdp.models  # noqa: F401  registers every table
from cdp.config import Settings
from cdp.db import Base, make_engine, not_a_partition

config = context.config
url = config.get_main_option("sqlalchemy.url") or Settings().resolved_database_url()


def run_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            compare_type=True,
            include_name=not_a_partition(connection),
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
