"""Crypto fixtures: a migrated key store on SQLite and on PostgreSQL, a local master-key file."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from tests.pgcluster import PgCluster

from cdp.crypto import Crypto, LocalMasterKeys, upgrade_keystore
from cdp.crypto.masterkey import create_dev_key_file
from cdp.db import make_engine

_counter = itertools.count()


@pytest.fixture(scope="session")
def keystore_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keystore-template") / "keys.db"
    upgrade_keystore(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def keystore_pg_template(pg_cluster: PgCluster) -> str:
    upgrade_keystore(pg_cluster.create_database("keys_template"))
    return "keys_template"


@pytest.fixture(params=["sqlite", "postgresql"])
def keystore_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh key store at head for one test: a copied SQLite file or a PostgreSQL clone."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("keystore_sqlite_template")
        shutil.copyfile(template, tmp_path / "keys.db")
        yield f"sqlite:///{tmp_path / 'keys.db'}"
        return
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    name = f"k{os.getpid()}_{next(_counter)}"
    yield cluster.create_database(name, template=request.getfixturevalue("keystore_pg_template"))
    cluster.drop_database(name)


@pytest.fixture
def keystore(keystore_url: str) -> Iterator[Engine]:
    engine = make_engine(keystore_url)
    yield engine
    engine.dispose()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "master-key.json"
    create_dev_key_file(path)
    return path


@pytest.fixture
def provider(key_file: Path) -> LocalMasterKeys:
    return LocalMasterKeys(path=key_file)


@pytest.fixture
def crypto(keystore: Engine, provider: LocalMasterKeys) -> Crypto:
    return Crypto(keystore, provider)
