"""Tests for tests/pgcluster.py, the throw-away PostgreSQL used by the test suite.

Without PostgreSQL these skip locally, but fail in CI (``CI`` set, or
``CDP_REQUIRE_POSTGRES=1``), so a CI run can never pass by skipping them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from tests.pgcluster import PgCluster, default_base_dir, find_pg_bin

PGCLUSTER_PY = Path(__file__).with_name("pgcluster.py")


def _postgres_required() -> bool:
    ci = os.environ.get("CI", "").strip().lower()
    return ci not in ("", "0", "false", "no") or os.environ.get("CDP_REQUIRE_POSTGRES") == "1"


@pytest.fixture(scope="module")
def pg_bin() -> Path:
    found = find_pg_bin()
    if found is None:
        reason = (
            "PostgreSQL server binaries (initdb, postgres) not found in "
            "/usr/lib/postgresql/*/bin, `pg_config --bindir`, PATH or $CDP_PG_BIN "
            "(Debian: apt-get install postgresql)"
        )
        if _postgres_required():
            pytest.fail(f"CI requires PostgreSQL: {reason}")
        pytest.skip(f"NO POSTGRESQL, test skipped: {reason}")
    return found


@pytest.fixture(scope="module")
def cluster(pg_bin: Path) -> Iterator[PgCluster]:
    with PgCluster() as pg:
        yield pg


@pytest.fixture
def roomy_dir() -> Iterator[Path]:
    """A base_dir of our own that the postgres user can traverse."""
    path = Path(tempfile.mkdtemp(prefix="cdp-pgtest-", dir=default_base_dir()))
    path.chmod(0o755)
    try:
        yield path
    finally:
        subprocess.run(["rm", "-rf", str(path)], check=False)


def _scalar(url: str, query: str) -> object:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(query)).scalar_one()
    finally:
        engine.dispose()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _pid_alive(pid: int) -> bool:
    """True for a live process; a zombie (dead, not yet reaped by init) is not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.02)
    return False


def test_find_pg_bin(pg_bin: Path) -> None:
    assert (pg_bin / "initdb").is_file()
    assert (pg_bin / "postgres").is_file()


def test_query_through_sqlalchemy(cluster: PgCluster) -> None:
    url = cluster.url()
    assert url == f"postgresql+psycopg://postgres@127.0.0.1:{cluster.port}/postgres"
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                sa.text(
                    "SELECT current_user, current_setting('fsync'),"
                    " current_setting('max_connections'), 6 * 7"
                )
            ).one()
    finally:
        engine.dispose()
    assert tuple(row) == ("postgres", "off", "200", 42)


def test_server_does_not_run_as_root(cluster: PgCluster) -> None:
    assert cluster._proc is not None
    status = Path(f"/proc/{cluster._proc.pid}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert int(uid_line.split()[1]) != 0
    assert (cluster.base.stat().st_mode & 0o777) == 0o700
    assert (cluster.socket_dir.stat().st_mode & 0o777) == 0o700
    assert cluster.base.stat().st_uid == int(uid_line.split()[1])


def test_create_database(cluster: PgCluster) -> None:
    url = cluster.create_database("plain db")  # needs quoting
    assert url == cluster.url("plain db")
    assert _scalar(url, "SELECT current_database()") == "plain db"
    cluster.drop_database("plain db")


def test_create_database_from_template(cluster: PgCluster) -> None:
    tpl_url = cluster.create_database("tpl")
    engine = sa.create_engine(tpl_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE widget (id int PRIMARY KEY, name text NOT NULL)"))
        conn.execute(sa.text("INSERT INTO widget VALUES (1, 'sprocket')"))
    engine.dispose()  # a template with open connections cannot be copied

    copy_url = cluster.create_database("copy", template="tpl")
    engine = sa.create_engine(copy_url)
    with engine.begin() as conn:
        assert conn.execute(sa.text("SELECT id, name FROM widget")).all() == [(1, "sprocket")]
        conn.execute(sa.text("INSERT INTO widget VALUES (2, 'cog')"))
    engine.dispose()
    assert _scalar(tpl_url, "SELECT count(*) FROM widget") == 1  # template untouched

    cluster.drop_database("copy")
    cluster.drop_database("tpl")


def test_template_in_use_is_an_explicit_error(cluster: PgCluster) -> None:
    """PostgreSQL waits 5 s for the template's sessions to go, then refuses."""
    cluster.create_database("busy")
    engine = sa.create_engine(cluster.url("busy"))
    try:
        with engine.connect(), pytest.raises(psycopg.errors.ObjectInUse) as info:
            cluster.create_database("busy_copy", template="busy")
        assert any("open connections" in note for note in info.value.__notes__)
    finally:
        engine.dispose()
        cluster.drop_database("busy")


def test_drop_database_forces_out_connections(cluster: PgCluster) -> None:
    engine = sa.create_engine(cluster.create_database("doomed"))
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            cluster.drop_database("doomed")  # WITH (FORCE): our session is killed
    except sa.exc.OperationalError:
        pass  # closing the killed connection may complain; that's fine
    finally:
        engine.dispose()
    exists = _scalar(cluster.url(), "SELECT count(*) FROM pg_database WHERE datname = 'doomed'")
    assert exists == 0
    cluster.drop_database("doomed")  # IF EXISTS: a second drop is fine


def test_stop_removes_everything_and_is_idempotent(pg_bin: Path) -> None:
    pg = PgCluster()
    with pg:
        base, port = pg.base, pg.port
        assert (base / "data" / "PG_VERSION").is_file()
        assert _scalar(pg.url(), "SELECT 1") == 1
        assert pg.running
    assert not base.exists()
    assert not _port_open(port)
    assert not pg.running
    pg.stop()  # second stop is a no-op
    with pytest.raises(RuntimeError, match="not started"):
        pg.url()


def test_cluster_can_be_restarted(pg_bin: Path) -> None:
    pg = PgCluster()
    pg.start()
    with pytest.raises(RuntimeError, match="already started"):
        pg.start()
    first = pg.base
    pg.stop()
    pg.start()
    try:
        assert pg.base != first
        assert _scalar(pg.url(), "SELECT 2") == 2
    finally:
        pg.stop()


_CHILD = textwrap.dedent(
    """
    import importlib.util, sys, time
    from pathlib import Path
    spec = importlib.util.spec_from_file_location("pgcluster", sys.argv[1])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    pg = mod.PgCluster(Path(sys.argv[2]))
    pg.start()
    print(pg.base, pg._proc.pid, pg.port, flush=True)
    if sys.argv[3] == "hang":
        time.sleep(600)
    # else: exit without stop(); atexit must clean up
    """
)


def _child(base_dir: Path, mode: str) -> tuple[subprocess.Popen[str], Path, int, int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(PGCLUSTER_PY), str(base_dir), mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    assert len(line) == 3, f"child failed to start a cluster (rc={proc.poll()})"
    return proc, Path(line[0]), int(line[1]), int(line[2])


def test_atexit_stops_server(pg_bin: Path, roomy_dir: Path) -> None:
    proc, base, pid, port = _child(roomy_dir, "exit")
    assert proc.wait(timeout=30) == 0
    assert _wait_gone(pid)
    assert not base.exists()
    assert not _port_open(port)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_killed_test_run_leaves_no_server(pg_bin: Path, roomy_dir: Path) -> None:
    proc, base, pid, _port = _child(roomy_dir, "hang")
    assert _pid_alive(pid) and base.exists()
    proc.send_signal(signal.SIGKILL)  # no atexit, no finally: only the kernel can help
    proc.wait(timeout=10)
    assert _wait_gone(pid), "postmaster survived its parent's SIGKILL"
    assert base.exists()  # nobody could clean up ...
    with PgCluster(roomy_dir):  # ... until the next start in the same base_dir
        assert not base.exists()


def test_untraversable_base_dir_is_an_explicit_error(pg_bin: Path, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root hands the cluster to another user")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(RuntimeError, match="cannot traverse"):
        PgCluster(private).start()
