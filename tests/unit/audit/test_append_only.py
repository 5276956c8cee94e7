"""PostgreSQL tamper resistance: a trigger refuses UPDATE, DELETE and TRUNCATE on the audit
tables, and `cdp db grant` leaves the application role only INSERT and SELECT on them (only
INSERT on audit_pending, whose rows the owner's trigger chains and removes)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from tests.pgcluster import PgCluster
from typer.testing import CliRunner

from cdp.audit import service
from cdp.audit.service import RequestContext
from cdp.cli import app as cli
from cdp.db import make_engine, make_sessionmaker, unit_of_work

pytestmark = pytest.mark.postgres
_names = itertools.count()
_ENTRY = (
    "INSERT INTO audit_entry (seq, at, actor, action, fields, decision, policy_version, detail,"
    " prev_hash, hash) VALUES (:seq, now(), 'system', 'test', '[]', 'allow', 'v', '{}',"
    " repeat('0', 64), :hash)"
)
_CHECKPOINT = (
    "INSERT INTO audit_key VALUES ('k', 'Ed25519', repeat('a', 64), now());"
    " INSERT INTO audit_checkpoint (from_seq, seq, hash, range_digest, at, key_id, signature)"
    " VALUES (1, 1, repeat('1', 64), repeat('2', 64), now(), 'k', repeat('3', 128))"
)


@pytest.fixture
def owner(pg_cluster: PgCluster) -> Iterator[tuple[Engine, str]]:
    """A migrated database (as the owner) holding one entry, one key and one checkpoint."""
    name = f"append_only_{os.getpid()}_{next(_names)}"
    url = pg_cluster.create_database(name, template="cdp_template")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text(_ENTRY), {"seq": 1, "hash": "1" * 64})
        conn.exec_driver_sql(_CHECKPOINT)
    yield engine, url
    engine.dispose()
    pg_cluster.drop_database(name)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_entry SET actor = 'client:mallory'",
        "DELETE FROM audit_entry WHERE seq = 1",
        "TRUNCATE audit_entry",
        "UPDATE audit_checkpoint SET signature = repeat('0', 128)",
        "DELETE FROM audit_checkpoint",
        "TRUNCATE audit_checkpoint CASCADE",
        "UPDATE audit_key SET public_key = repeat('b', 64)",
        "DELETE FROM audit_key",
    ],
)
def test_changing_audit_rows_fails_even_for_the_owner(
    owner: tuple[Engine, str], statement: str
) -> None:
    engine, _ = owner
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text(statement))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT actor FROM audit_entry")).scalars().all() == ["system"]
        assert conn.execute(text("SELECT count(*) FROM audit_checkpoint")).scalar() == 1


def test_granted_role_may_only_insert_and_select_the_audit_tables(
    owner: tuple[Engine, str],
    pg_cluster: PgCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine, url = owner
    role = f"cdp_app_{os.getpid()}_{next(_names)}"
    with engine.begin() as conn:
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
    app: Engine | None = None
    try:
        monkeypatch.setenv("CDP_DATABASE_URL", url)
        printed = CliRunner().invoke(cli, ["db", "grant", "--role", role])
        assert printed.exit_code == 0, printed.output
        assert "GRANT SELECT, INSERT ON public.audit_entry" in printed.output
        assert "GRANT INSERT ON public.audit_pending" in printed.output
        applied = CliRunner().invoke(cli, ["db", "grant", "--role", role, "--apply"])
        assert applied.exit_code == 0, applied.output
        app = make_engine(url.replace("postgres@", f"{role}@"))
        with app.begin() as conn:  # what the API does: append and read
            conn.execute(text(_ENTRY), {"seq": 2, "hash": "2" * 64})
            assert conn.execute(text("SELECT count(*) FROM audit_entry")).scalar() == 2
            conn.execute(text("SELECT pg_advisory_xact_lock(1)"))
            conn.execute(
                text(
                    "INSERT INTO client (id, name, role, purposes, entrusted, secret_hash,"
                    " created_at) VALUES ('c1', 'n', 'app', '[]', false, 'h', now())"
                )
            )
            conn.execute(text("UPDATE client SET name = 'm' WHERE id = 'c1'"))
        # Appends through the service: pending rows the owner's trigger chains and removes.
        with unit_of_work(make_sessionmaker(app)) as session:
            session.info["ctx"] = RequestContext("v")
            service.append(session, actor="client:app", action="test.granted")
            service.append(session, actor="client:app", action="test.granted")
            assert len(service.search(session, action="test.granted")) == 2
            service.append(session, actor="client:app", action="test.granted")
        with engine.connect() as conn:
            chained = conn.execute(
                text("SELECT seq, prev_hash FROM audit_entry WHERE seq > 2 ORDER BY seq")
            ).all()
            assert [seq for seq, _ in chained] == [3, 4, 5] and chained[0][1] == "2" * 64
            assert conn.execute(text("SELECT count(*) FROM audit_pending")).scalar() == 0
        for statement in (
            "UPDATE audit_entry SET actor = 'x'",
            "DELETE FROM audit_entry",
            "TRUNCATE audit_entry",
            "ALTER TABLE audit_entry DISABLE TRIGGER audit_entry_append_only",
            "DELETE FROM audit_checkpoint",
            "SELECT * FROM audit_pending",
            "UPDATE audit_pending SET actor = 'x'",
            "DELETE FROM audit_pending",
            "TRUNCATE audit_pending",
            "ALTER TABLE audit_pending DISABLE TRIGGER audit_pending_chain",
            "UPDATE alembic_version SET version_num = '0001'",
        ):
            refused = pytest.raises(DBAPIError, match=r"permission denied|must be owner")
            with refused, app.begin() as conn:
                conn.execute(text(statement))
    finally:
        if app is not None:
            app.dispose()
        with engine.begin() as conn:
            conn.execute(text(f'DROP OWNED BY "{role}"'))
        with engine.begin() as conn:
            conn.execute(text(f'DROP ROLE "{role}"'))


def test_grant_refuses_a_strange_role_name() -> None:
    result = CliRunner().invoke(cli, ["db", "grant", "--role", 'x"; DROP TABLE audit_entry; --'])
    assert result.exit_code == 2
