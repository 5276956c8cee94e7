"""`cdp retention run [--dry-run] [--json]` on both databases."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from tests.unit.retention.factories import remaining, seed
from typer.testing import CliRunner

from cdp.api import Runtime
from cdp.cli import app as cli
from cdp.config import Settings


@pytest.fixture
def env(settings: Settings, runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    for name, value in {
        "CDP_DATABASE_URL": settings.database_url,
        "CDP_KEYSTORE_URL": settings.keystore_url,
        "CDP_DATA_DIR": str(settings.data_dir),
        "CDP_JWT_SECRET": settings.jwt_secret or "",
        "CDP_LOG_JSON": "false",
    }.items():
        monkeypatch.setenv(name, value)
    return runtime


def test_dry_run_json_then_real_run(env: Runtime) -> None:
    seeded = seed(env, datetime.now(UTC))
    before = remaining(env)
    result = CliRunner().invoke(cli, ["retention", "run", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    dry = json.loads(result.output)
    assert dry["dry_run"] is True and dry["actor"] == "operator:cli"
    assert remaining(env) == before
    result = CliRunner().invoke(cli, ["retention", "run"])
    assert result.exit_code == 0, result.output
    assert "event Product Viewed [behaviour]: removed 1 before" in result.output
    assert "event Order Completed [transaction]: removed 1 before" in result.output
    assert ", 1 held" in result.output and "totals: " in result.output
    assert f"event={dry['totals']['event']}" in result.output
    after = remaining(env)
    assert after["event"] == before["event"] - seeded.gone["event"]
