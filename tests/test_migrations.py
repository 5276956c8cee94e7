"""Models and migrations agree, and the migrations run up and down on both databases."""

from __future__ import annotations

from alembic import command

from cdp.db import alembic_config, make_engine, schema_drift, schema_is_current


def test_models_match_migrations(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert schema_is_current(engine)
        drift = schema_drift(engine)
        assert drift == [], f"models and migrations differ, add an Alembic revision: {drift}"
    finally:
        engine.dispose()


def test_downgrade_to_base_and_upgrade_again(db_url: str) -> None:
    cfg = alembic_config(db_url)
    command.downgrade(cfg, "base")
    engine = make_engine(db_url)
    try:
        assert not schema_is_current(engine)
        command.upgrade(cfg, "head")
        assert schema_is_current(engine)
    finally:
        engine.dispose()
