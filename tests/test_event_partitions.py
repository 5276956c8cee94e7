"""Events are partitioned by month on PostgreSQL; partitions are made ahead and rows already
in the default partition move into a month's partition when it is created."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from alembic import command
from sqlalchemy import insert, text

from cdp.db import alembic_config, make_engine, schema_drift, upgrade
from cdp.events import partitions
from cdp.events.models import Event
from tests.pgcluster import PgCluster


def _event(i: int, at: datetime) -> dict[str, object]:
    return {
        "id": f"{i:032x}",
        "timestamp": at,
        "source_id": "src_x",
        "message_id": f"m{i}",
        "subject_id": None,
        "anonymous_key": None,
        "type": "track",
        "name": "Signed In",
        "received_at": at,
        "properties": {},
        "sealed": {},
        "context": {},
    }


def test_monthly_partitions_on_postgresql(pg_cluster: PgCluster) -> None:
    url = pg_cluster.create_database("event_parts", template="cdp_template")
    engine = make_engine(url)
    try:
        march = datetime(2031, 3, 15, tzinfo=UTC)
        with engine.begin() as conn:
            conn.execute(
                insert(Event), [_event(1, march), _event(2, datetime(2031, 5, 1, tzinfo=UTC))]
            )
        created = partitions.ensure(engine, today=date(2031, 3, 9), months_ahead=1)
        assert created == ["event_y2031m03", "event_y2031m04"]
        assert partitions.ensure(engine, today=date(2031, 3, 9), months_ahead=1) == []
        with engine.connect() as conn:
            count = conn.execute(text("SELECT count(*) FROM event_y2031m03")).scalar_one()
            left = conn.execute(text("SELECT count(*) FROM event_default")).scalar_one()
            total = conn.execute(text("SELECT count(*) FROM event")).scalar_one()
        assert (count, left, total) == (1, 1, 2)  # May has no partition yet: still the default's
        # The partitions are not models: no drift, and the migrations still go down and up.
        assert schema_drift(engine) == []
        engine.dispose()
        command.downgrade(alembic_config(url), "0003")
        command.upgrade(alembic_config(url), "head")
    finally:
        engine.dispose()
        pg_cluster.drop_database("event_parts")


def test_sqlite_keeps_one_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cdp.db'}"
    upgrade(url)
    engine = make_engine(url)
    assert partitions.ensure(engine) == [] and partitions.existing(engine) == []
    engine.dispose()
