"""`cdp rights replay-erasures` after a restore and `cdp notifier outbox`, on both databases."""

from __future__ import annotations

import json
from collections.abc import Callable

from fastapi.testclient import TestClient
from tests.api.test_rights import KEPT_TABLES, _backup, _restore, add_data, holding, new_profile
from typer.testing import CliRunner

from cdp.api import Runtime
from cdp.cli import app as cli

Headers = Callable[..., dict[str, str]]


def _env(rt: Runtime) -> dict[str, str]:
    s = rt.settings
    return {
        "CDP_DATABASE_URL": s.resolved_database_url(),
        "CDP_KEYSTORE_URL": s.resolved_keystore_url(),
        "CDP_DATA_DIR": str(s.data_dir),
        "CDP_JWT_SECRET": s.jwt_secret or "",
        "CDP_LOG_JSON": "false",
    }


def test_replay_erasures_after_restore(
    client: TestClient, runtime: Runtime, token_for: Headers
) -> None:
    app_h = token_for("app")
    me = new_profile(client, app_h, "restored@example.cn")
    add_data(runtime, me)
    backup = _backup(runtime, me)
    assert client.delete(f"/v1/profiles/{me}", headers=token_for("admin")).status_code == 204
    _restore(runtime, backup)
    assert "event" in holding(runtime, me)
    runner = CliRunner()
    result = runner.invoke(cli, ["rights", "replay-erasures"], env=_env(runtime))
    assert result.exit_code == 0, result.output
    assert "1 subject(s) erased again" in result.output and "warning" not in result.output
    assert set(holding(runtime, me)) <= KEPT_TABLES


def test_notifier_outbox_lists_codes(
    client: TestClient, runtime: Runtime, token_for: Headers
) -> None:
    new_profile(client, token_for("app"), "inbox@example.cn")
    assert (
        client.post("/v1/self/verification", json={"email": "inbox@example.cn"}).status_code == 202
    )
    runner = CliRunner()
    result = runner.invoke(
        cli, ["notifier", "outbox", "--to", "INBOX@example.cn", "--json"], env=_env(runtime)
    )
    assert result.exit_code == 0, result.output
    [message] = json.loads(result.output)
    assert message["to"] == "inbox@example.cn" and message["channel"] == "email"
    other = runner.invoke(cli, ["notifier", "outbox", "--to", "x@example.cn"], env=_env(runtime))
    assert other.exit_code == 0 and "0 message(s)" in other.output
