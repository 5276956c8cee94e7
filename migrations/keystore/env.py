"""Alembic environment of the key store: its own tables, history and version table."""

from __future__ import annotations

from alembic import context

from cdp.config import Settings
from cdp.crypto.keystore import VERSION_TABLE, metadata
from cdp.db import make_engine

config = context.config
url = config.get_main_option("sqlalchemy.url") or Settings().resolved_keystore_url()


def run_offline() -> None:
    context.configure(
        url=url, target_metadata=metadata, literal_binds=True, version_table=VERSION_TABLE
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            compare_type=True,
            version_table=VERSION_TABLE,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
