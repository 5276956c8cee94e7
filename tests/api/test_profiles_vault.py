"""Profiles with the master key in Vault transit (a real-HTTP test double of Vault, see
tests/unit/crypto/vault_double.py): round trip, Vault down or refusing the token -> 503
problem+json `kms_unavailable` (never a 500, never the token), erasure still shreds."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.unit.crypto.vault_double import TransitDouble

from cdp.api import Runtime
from cdp.config import Settings
from cdp.crypto import keystore as store

Headers = Callable[..., dict[str, str]]
TOKEN = "hvs.API-double-token-77aa01"
SERVICE = {"X-Purpose": "service_delivery"}


@pytest.fixture
def vault() -> Iterator[TransitDouble]:
    with TransitDouble(token=TOKEN) as double:
        yield double


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "vault-token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
def settings(settings: Settings, vault: TransitDouble, token_file: Path) -> Settings:
    return settings.model_copy(
        update={
            "kms_provider": "vault",
            "vault_addr": vault.addr,
            "vault_token_file": token_file,
            "vault_retries": 2,
        }
    )


@pytest.fixture
def app_headers(token_for: Headers) -> dict[str, str]:
    return {**token_for("app"), **SERVICE}


def _create(client: TestClient, headers: dict[str, str], n: int = 1) -> str:
    body = {
        "external_id": f"vault-{n}",
        "email": f"chen.jing.{n}@example.cn",
        "traits": {"name": f"陈静{n}", "city": "成都"},
    }
    resp = client.post("/v1/profiles", json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def _problem(resp: object) -> dict[str, object]:
    assert resp.status_code == 503, resp.text  # type: ignore[attr-defined]
    assert resp.headers["content-type"].startswith("application/problem+json")  # type: ignore[attr-defined]
    body: dict[str, object] = resp.json()  # type: ignore[attr-defined]
    assert body["code"] == "kms_unavailable"
    assert TOKEN not in resp.text  # type: ignore[attr-defined]
    return body


def test_round_trip_through_vault(
    client: TestClient, app_headers: dict[str, str], runtime: Runtime, vault: TransitDouble
) -> None:
    subject = _create(client, app_headers)
    got = client.get(f"/v1/profiles/{subject}", headers=app_headers)
    assert got.status_code == 200 and got.json()["traits"]["name"] == "陈静1"
    with runtime.keystore.connect() as conn:
        kek, blob = conn.execute(
            select(store.subject_key.c.kek_id, store.subject_key.c.wrapped).where(
                store.subject_key.c.subject_id == subject
            )
        ).one()
    assert kek == "v1" and bytes(blob).startswith(b"vault:v1:")
    assert vault.calls("decrypt")


def test_vault_down_is_a_503_problem_not_a_500(
    client: TestClient,
    app_headers: dict[str, str],
    vault: TransitDouble,
    caplog: pytest.LogCaptureFixture,
) -> None:
    subject = _create(client, app_headers)
    caplog.set_level(logging.DEBUG)
    vault.stop()
    body = _problem(client.get(f"/v1/profiles/{subject}", headers=app_headers))
    assert "did not answer" in str(body["detail"])
    batch = {"ids": [subject]}
    _problem(client.post("/v1/profiles/batch-get", json=batch, headers=app_headers))
    for n in range(2, 70):  # past the ids whose keys were made before Vault went down
        resp = client.post("/v1/profiles", json={"external_id": f"down-{n}"}, headers=app_headers)
        if resp.status_code != 201:
            _problem(resp)
            break
    else:
        pytest.fail("creating profiles never needed Vault")
    assert TOKEN not in caplog.text
    vault.start()
    assert client.get(f"/v1/profiles/{subject}", headers=app_headers).status_code == 200


def test_a_refused_token_is_a_clear_503(
    client: TestClient,
    app_headers: dict[str, str],
    token_file: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    subject = _create(client, app_headers)
    caplog.set_level(logging.DEBUG)
    token_file.write_text("hvs.revoked-token-0000\n")
    body = _problem(client.get(f"/v1/profiles/{subject}", headers=app_headers))
    assert "refused this server's credentials" in str(body["detail"])
    assert "CDP_VAULT_TOKEN" in caplog.text  # the operator's hint is in the log
    assert "hvs.revoked-token-0000" not in caplog.text and TOKEN not in caplog.text


def test_erasure_shreds_even_with_vault_down(
    client: TestClient, app_headers: dict[str, str], runtime: Runtime, vault: TransitDouble
) -> None:
    subject = _create(client, app_headers)
    vault.stop()  # erasure needs no key: it destroys one
    assert client.delete(f"/v1/profiles/{subject}", headers=app_headers).status_code == 204
    assert not runtime.crypto.has_key(subject)
    vault.start()
    assert client.get(f"/v1/profiles/{subject}", headers=app_headers).status_code == 404
