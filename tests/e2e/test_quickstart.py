"""The README's path on a fresh machine: serve, create a client, get a token, read the policy."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import cdp, cdp_env, running_server
from tests.pgcluster import PgCluster


def _walk_through(env: dict[str, str]) -> None:
    with running_server(env) as base:
        created = cdp(env, "clients", "create", "--name", "me", "--role", "admin", "--json")
        assert created.returncode == 0, created.stderr
        creds = json.loads(created.stdout)
        token = httpx.post(
            f"{base}/v1/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": creds["client_id"],
                "client_secret": creds["client_secret"],
            },
        )
        assert token.status_code == 200, token.text
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        policy = httpx.get(f"{base}/v1/policies", headers=headers)
        assert policy.status_code == 200 and policy.json()["version"].startswith("sha256:")
        assert policy.headers["x-request-id"]
        assert httpx.get(f"{base}/v1/policies").status_code == 401
        # A secret is never written to the server's log.
        logs = "".join(p.read_text() for p in Path(env["CDP_DATA_DIR"]).glob("server-*.log"))
        assert creds["client_secret"] not in logs


def test_fresh_embedded_sqlite(tmp_path: Path) -> None:
    env = cdp_env(tmp_path / "state", CDP_JWT_SECRET="e2e-secret-" + "x" * 32)
    _walk_through(env)
    assert (tmp_path / "state" / "cdp.db").exists()


def test_postgresql_after_db_upgrade(tmp_path: Path, pg_cluster: PgCluster) -> None:
    url = pg_cluster.create_database("e2e_quickstart")
    env = cdp_env(tmp_path / "state", CDP_DATABASE_URL=url)
    upgraded = cdp(env, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    _walk_through(env)


def test_invalid_policy_stops_the_server(tmp_path: Path) -> None:
    bad = tmp_path / "policies"
    bad.mkdir()
    src = Path(__file__).resolve().parents[2] / "policies"
    for f in src.glob("*.yaml"):
        (bad / f.name).write_text(f.read_text())
    text = (bad / "purposes.yaml").read_text().replace("retention_days: ", "retention_days: x", 1)
    (bad / "purposes.yaml").write_text(text)
    env = cdp_env(tmp_path / "state", CDP_POLICY_DIR=str(bad))
    checked = cdp(env, "policies", "check")
    assert checked.returncode != 0 and "purposes.yaml:" in checked.stderr
    with pytest.raises(RuntimeError, match=r"purposes\.yaml"), running_server(env):
        pass
