"""`cdp demo seed` and `cdp segments refresh [--segment KEY] [--json]` on both databases."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from cdp.api import Runtime
from cdp.cli import app as cli
from cdp.config import Settings
from cdp.db import unit_of_work
from cdp.profiles.models import Profile
from cdp.segments import service
from cdp.segments.models import SegmentChange, SubjectSummary


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


def test_seed_then_refresh_every_segment(env: Runtime) -> None:
    seeded = CliRunner().invoke(cli, ["demo", "seed", "--profiles", "300", "--seed", "3"])
    assert seeded.exit_code == 0, seeded.output
    assert "seeded 300 customers" in seeded.output
    with unit_of_work(env.sessions) as session:
        assert session.scalar(select(func.count()).select_from(Profile)) == 300
        assert session.scalar(select(func.count()).select_from(SubjectSummary)) > 200
        # No profile carries ciphertext: the generator writes plain traits only.
        assert all(p.sealed == {} for p in session.scalars(select(Profile)))
        counts = {k: service.count(session, policy=env.policy, key=k) for k in env.policy.segments}
    refreshed = CliRunner().invoke(cli, ["segments", "refresh", "--json"])
    assert refreshed.exit_code == 0, refreshed.output
    rows = [json.loads(line) for line in refreshed.output.splitlines()]
    assert {r["segment"]: r["members"] for r in rows} == counts
    assert all(r["entered"] == r["members"] and r["left"] == 0 for r in rows)
    again = CliRunner().invoke(cli, ["segments", "refresh", "--segment", "vip"])
    assert again.exit_code == 0 and "vip" in again.output and "entered=0" in again.output
    with unit_of_work(env.sessions) as session:
        entered = session.scalar(select(func.count()).select_from(SegmentChange))
        assert entered == sum(counts.values())
    missing = CliRunner().invoke(cli, ["segments", "refresh", "--segment", "nope"])
    assert missing.exit_code == 1 and "no segment 'nope'" in missing.output
