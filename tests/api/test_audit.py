"""The audit log over HTTP: export (JSONL, CSV, filtered) verified offline with the published
keys, checkpoints, verification of the stored chain, the checkpoint schedule."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from tests.unit.audit.factories import checkpoint, fill

from cdp.api import Runtime
from cdp.app import create_app
from cdp.audit import verify
from cdp.audit.models import AuditCheckpoint, AuditEntry
from cdp.config import Settings
from cdp.db import unit_of_work

Headers = Callable[..., dict[str, str]]


def _keys(client: TestClient, headers: dict[str, str], tmp_path: Path) -> Path:
    resp = client.get("/v1/audit/keys", headers=headers)
    assert resp.status_code == 200, resp.text
    path = tmp_path / "keys.json"
    path.write_text(resp.text)
    return path


def _verified(
    client: TestClient, body: bytes, headers: dict[str, str], tmp_path: Path
) -> verify.Report:
    export = tmp_path / "export"
    export.write_bytes(body)
    keys = verify.load_public_keys(_keys(client, headers, tmp_path).read_bytes())
    return verify.verify_file(export, keys)


@pytest.mark.parametrize(
    ("fmt", "media"), [("jsonl", "application/x-ndjson"), ("csv", "text/csv; charset=utf-8")]
)
def test_export_streams_and_verifies_offline(
    client: TestClient, runtime: Runtime, token_for: Headers, tmp_path: Path, fmt: str, media: str
) -> None:
    officer = token_for("compliance")
    fill(runtime, 1200)
    checkpoint(runtime, every=500)
    resp = client.get("/v1/audit/export", params={"format": fmt}, headers=officer)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == media
    assert resp.headers["content-disposition"].startswith('attachment; filename="cdp-audit-')
    report = _verified(client, resp.content, officer, tmp_path)
    assert report.ok, report.summary()
    assert report.checkpoints == 2 and report.entries > 1200
    with unit_of_work(runtime.sessions) as session:
        exports = session.scalars(select(AuditEntry).where(AuditEntry.action == "audit.export"))
        entry = exports.one()
    assert entry.actor.startswith("client:") and entry.detail["format"] == fmt
    # The export covers the entry that records it: its head is that entry.
    head = resp.headers["content-disposition"].rsplit("-", 1)[1].split(".")[0]
    assert int(head) == entry.seq


def test_filtered_export_over_http(
    client: TestClient, runtime: Runtime, token_for: Headers, tmp_path: Path
) -> None:
    officer = token_for("compliance")
    fill(runtime, 300)
    checkpoint(runtime, every=100)
    subject = "00000000-0000-4000-8000-000000000003"
    resp = client.get(
        "/v1/audit/export",
        params={"subject": subject, "action": "profile.read", "from": "2020-01-01T00:00:00Z"},
        headers=officer,
    )
    assert resp.status_code == 200, resp.text
    report = _verified(client, resp.content, officer, tmp_path)
    assert report.ok and report.filtered and report.entries == 2, report.summary()
    manifest = json.loads(resp.content.splitlines()[-1])["manifest"]
    assert manifest["filter"]["subject"] == subject
    assert manifest["filter"]["from"] == "2020-01-01T00:00:00.000000Z"


def test_export_refuses_times_without_offset(client: TestClient, token_for: Headers) -> None:
    officer = token_for("compliance")
    resp = client.get("/v1/audit/export", params={"from": "2026-01-01T00:00:00"}, headers=officer)
    assert resp.status_code == 422 and resp.json()["errors"][0]["loc"] == ["query", "from"]
    resp = client.get("/v1/audit/export", params={"format": "xml"}, headers=officer)
    assert resp.status_code == 422


def test_a_misspelt_filter_is_refused_not_ignored(client: TestClient, token_for: Headers) -> None:
    officer = token_for("compliance")
    resp = client.get("/v1/audit/export", params={"subjet": "x"}, headers=officer)
    assert resp.status_code == 422 and resp.json()["errors"][0]["loc"] == ["query", "subjet"]


def test_export_needs_the_export_scope(client: TestClient, token_for: Headers) -> None:
    resp = client.get("/v1/audit/export", headers=token_for("app"))
    assert resp.status_code == 403 and resp.json()["code"] == "insufficient_scope"


def test_checkpoints_and_keys_are_published(
    client: TestClient, runtime: Runtime, token_for: Headers
) -> None:
    officer = token_for("compliance")
    keys = client.get("/v1/audit/keys", headers=officer).json()["items"]
    assert len(keys) == 1 and keys[0]["current"] and keys[0]["created_at"] is None
    fill(runtime, 250)
    made = checkpoint(runtime, every=100)
    keys = client.get("/v1/audit/keys", headers=officer).json()["items"]
    assert keys[0]["created_at"] is not None and keys[0]["algorithm"] == "Ed25519"
    assert keys[0]["public_key_pem"].startswith("-----BEGIN PUBLIC KEY-----")
    page = client.get("/v1/audit/checkpoints", params={"limit": 1}, headers=officer).json()
    assert page["items"][0]["seq"] == made[0].seq and page["next_cursor"]
    rest = client.get(
        "/v1/audit/checkpoints", params={"cursor": page["next_cursor"]}, headers=officer
    ).json()
    assert [c["seq"] for c in rest["items"]] == [made[1].seq]
    assert rest["items"][0]["key_id"] == keys[0]["key_id"]


def test_verify_checks_stored_checkpoints(
    client: TestClient, runtime: Runtime, token_for: Headers
) -> None:
    officer = token_for("compliance")
    fill(runtime, 250)
    checkpoint(runtime, every=100)
    body = client.post("/v1/audit/verify", headers=officer).json()
    assert body["valid"] and body["checkpoints_checked"] == 2, body


def test_the_api_signs_checkpoints_on_its_schedule(settings: Settings, token_for: Headers) -> None:
    fast = settings.model_copy(
        update={"audit_checkpoint_every": 3, "audit_checkpoint_tick_seconds": 0.05}
    )
    app = create_app(fast)
    rt: Runtime = app.state.runtime
    try:
        with TestClient(app) as client:
            for _ in range(4):
                assert client.get("/v1/oauth/jwks").status_code == 200
            fill(rt, 5)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with unit_of_work(rt.sessions) as session:
                    count = session.scalar(select(func.count()).select_from(AuditCheckpoint))
                if count:
                    break
                time.sleep(0.05)
            assert count, "no checkpoint signed by the schedule"
    finally:
        rt.engine.dispose()
        rt.keystore.dispose()
