"""The key store's own migrations: at head, no drift from the tables, up and down, apart."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Engine, inspect

from cdp.crypto import keystore_drift, keystore_is_current, upgrade_keystore
from cdp.crypto.keystore import VERSION_TABLE, alembic_config
from cdp.db import make_engine, schema_is_current, upgrade


def test_tables_match_migrations(keystore: Engine) -> None:
    assert keystore_is_current(keystore)
    drift = keystore_drift(keystore)
    assert drift == [], f"key store tables and migrations differ: {drift}"


def test_downgrade_to_base_and_upgrade_again(keystore_url: str) -> None:
    cfg = alembic_config(keystore_url)
    command.downgrade(cfg, "base")
    engine = make_engine(keystore_url)
    try:
        assert not keystore_is_current(engine)
        assert set(inspect(engine).get_table_names()) <= {VERSION_TABLE}
        upgrade_keystore(keystore_url)
        assert keystore_is_current(engine)
    finally:
        engine.dispose()


def test_key_store_and_main_schema_can_share_one_database(keystore_url: str) -> None:
    # Separate version tables: pointing both URLs at one database must not confuse either.
    upgrade(keystore_url)
    engine = make_engine(keystore_url)
    try:
        assert schema_is_current(engine) and keystore_is_current(engine)
        tables = set(inspect(engine).get_table_names())
        assert {"subject_key", "audit_entry", VERSION_TABLE, "alembic_version"} <= tables
    finally:
        engine.dispose()
