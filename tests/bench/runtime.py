"""A started Runtime on a fresh PostgreSQL database of the test cluster, for benchmarks that
call services directly (no HTTP)."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cdp.api import Runtime
from cdp.app import build_runtime, start
from cdp.config import Settings
from tests.pgcluster import PgCluster


@contextmanager
def pg_runtime(tmp_path: Path, cluster: PgCluster, prefix: str) -> Iterator[Runtime]:
    """A migrated database cloned from the cluster's template, a key store file and a master
    key of their own; everything is dropped afterwards."""
    name = f"{prefix}_{os.getpid()}"
    url = cluster.create_database(name, template="cdp_template")
    settings = Settings(
        database_url=url,
        keystore_url=f"sqlite:///{tmp_path / 'keys.db'}",
        data_dir=tmp_path,
        jwt_secret="bench-" + "b" * 40,
        master_key="k1:" + base64.b64encode(os.urandom(32)).decode(),
        log_level="WARNING",
    )
    runtime = build_runtime(settings)
    start(runtime)
    try:
        yield runtime
    finally:
        runtime.engine.dispose()
        runtime.keystore.dispose()
        cluster.drop_database(name)
