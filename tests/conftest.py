"""Shared fixtures: every database test runs on SQLite and on a real PostgreSQL we start."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cdp.api import Runtime
from cdp.app import create_app
from cdp.audit.service import RequestContext
from cdp.auth import service as auth_service
from cdp.config import Settings
from cdp.db import unit_of_work, upgrade
from tests.pgcluster import PgCluster, find_pg_bin

IN_CI = any(
    os.environ.get(name, "").lower() not in ("", "0", "false", "no")
    for name in ("CI", "CDP_REQUIRE_POSTGRES")
)
BACKENDS = ["sqlite", "postgresql"]
_db_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    if find_pg_bin() is None:
        if IN_CI:
            pytest.fail("PostgreSQL server binaries not found; CI requires PostgreSQL")
        pytest.skip("PostgreSQL not installed here (CI installs it and fails without it)")
    cluster = PgCluster()
    cluster.start()
    try:
        upgrade(cluster.create_database("cdp_template"))
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh migrated database for one test: a copied SQLite file or a PostgreSQL clone."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "cdp.db"
        shutil.copyfile(template, target)
        yield f"sqlite:///{target}"
        return
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    name = f"t{os.getpid()}_{next(_db_counter)}"
    url = cluster.create_database(name, template="cdp_template")
    yield url
    cluster.drop_database(name)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_url,
        keystore_url=f"sqlite:///{tmp_path / 'keys.db'}",
        data_dir=tmp_path / "state",
        jwt_secret="test-signing-secret-that-is-long-enough-0123456789",
        secret_scrypt_n=2**4,
        log_json=False,
        log_level="WARNING",
        rate_limit_per_minute=100_000,
        rate_limit_burst=100_000,
    )


@pytest.fixture
def app(settings: Settings) -> Iterator[object]:
    application = create_app(settings)
    yield application
    rt: Runtime = application.state.runtime
    rt.engine.dispose()
    rt.keystore.dispose()


@pytest.fixture
def runtime(app: object) -> Runtime:
    rt: Runtime = app.state.runtime  # type: ignore[attr-defined]
    return rt


@pytest.fixture
def client(app: object) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:  # type: ignore[arg-type]
        yield c


def _register(rt: Runtime, role: str, purposes: list[str] | None = None) -> tuple[str, str]:
    """Registers an API client directly (as `cdp clients create` does); returns id and secret."""
    with unit_of_work(rt.sessions) as session:
        session.info["ctx"] = RequestContext(rt.policy.version)
        created, secret = auth_service.create_client(
            session,
            policy=rt.policy,
            actor="test",
            name=f"test-{role}",
            role=role,
            purposes=purposes,
            scrypt_n=rt.settings.secret_scrypt_n,
        )
    return created.id, secret


@pytest.fixture
def make_client(runtime: Runtime, client: TestClient) -> Callable[..., tuple[str, str]]:
    def make(role: str = "admin", purposes: list[str] | None = None) -> tuple[str, str]:
        return _register(runtime, role, purposes)

    return make


@pytest.fixture
def token_for(
    client: TestClient, make_client: Callable[..., tuple[str, str]]
) -> Callable[..., dict[str, str]]:
    """Authorization headers for a new client of the given role."""

    def headers(
        role: str = "admin", purposes: list[str] | None = None, **extra: str
    ) -> dict[str, str]:
        cid, secret = make_client(role, purposes)
        resp = client.post(
            "/v1/oauth/token",
            data={"grant_type": "client_credentials", "client_id": cid, "client_secret": secret},
        )
        assert resp.status_code == 200, resp.text
        return {"Authorization": f"Bearer {resp.json()['access_token']}", **extra}

    return headers
