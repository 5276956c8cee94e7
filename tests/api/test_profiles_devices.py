"""Device ids: several per profile, each blind-indexed, found by lookup, never shared."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from cdp.api import Runtime
from cdp.db import unit_of_work
from cdp.profiles.models import Identity, Profile

Headers = Callable[..., dict[str, str]]
SERVICE = {"X-Purpose": "service_delivery"}
PHONE, TABLET = "ios-7f3a9c", "ipad-51e0d2"


@pytest.fixture
def headers(token_for: Headers) -> dict[str, str]:
    return {**token_for("app"), **SERVICE}


def _count(rt: Runtime, model: type) -> int:
    with unit_of_work(rt.sessions) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _lookup(client: TestClient, headers: dict[str, str], device: str) -> int:
    return client.post("/v1/profiles/lookup", json={"device_id": device}, headers=headers)


def test_devices_are_stored_read_and_looked_up(
    client: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    body = {"external_id": "m-1", "device_ids": [PHONE, TABLET, PHONE]}
    made = client.post("/v1/profiles", json=body, headers=headers)
    assert made.status_code == 201, made.text
    pid = made.json()["id"]
    assert made.json()["device_ids"] == [PHONE, TABLET]  # a repeat is kept once
    got = client.get(f"/v1/profiles/{pid}", headers=headers).json()
    assert got["device_ids"] == [PHONE, TABLET] and "device_id" not in got["traits"]
    for device in (PHONE, TABLET):
        assert _lookup(client, headers, device).json()["id"] == pid
    assert _lookup(client, headers, "unknown-device").status_code == 404
    assert _count(runtime, Identity) == 3


def test_a_device_belongs_to_one_profile(
    client: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    first = client.post("/v1/profiles", json={"device_ids": [PHONE]}, headers=headers)
    assert first.status_code == 201
    resp = client.post(
        "/v1/profiles", json={"external_id": "m-2", "device_ids": [TABLET, PHONE]}, headers=headers
    )
    assert resp.status_code == 409 and PHONE not in resp.text
    assert _count(runtime, Profile) == 1 and _count(runtime, Identity) == 1


def test_patch_replaces_or_removes_the_devices(client: TestClient, headers: dict[str, str]) -> None:
    pid = client.post(
        "/v1/profiles", json={"external_id": "m-3", "device_ids": [PHONE]}, headers=headers
    ).json()["id"]
    patched = client.patch(f"/v1/profiles/{pid}", json={"device_ids": [TABLET]}, headers=headers)
    assert patched.status_code == 200, patched.text
    assert _lookup(client, headers, PHONE).status_code == 404
    assert _lookup(client, headers, TABLET).json()["id"] == pid
    cleared = client.patch(f"/v1/profiles/{pid}", json={"device_ids": None}, headers=headers)
    assert cleared.status_code == 200
    assert "device_ids" not in client.get(f"/v1/profiles/{pid}", headers=headers).json()


@pytest.mark.parametrize(
    "devices", [[], [""], ["x" * 501], [f"d{i}" for i in range(21)], [7]], ids=str
)
def test_invalid_device_lists_are_422_and_store_nothing(
    client: TestClient, headers: dict[str, str], runtime: Runtime, devices: list[object]
) -> None:
    resp = client.post(
        "/v1/profiles", json={"external_id": "m-4", "device_ids": devices}, headers=headers
    )
    assert resp.status_code == 422 and resp.json()["code"] == "validation_error"
    assert _count(runtime, Profile) == 0


def test_merge_brings_the_devices_together(client: TestClient, headers: dict[str, str]) -> None:
    target = client.post(
        "/v1/profiles", json={"external_id": "m-5", "device_ids": [PHONE]}, headers=headers
    ).json()["id"]
    source = client.post("/v1/profiles", json={"device_ids": [TABLET]}, headers=headers).json()[
        "id"
    ]
    resp = client.post(f"/v1/profiles/{target}/merge", json={"source_id": source}, headers=headers)
    assert resp.status_code == 200, resp.text
    got = client.get(f"/v1/profiles/{target}", headers=headers).json()
    assert sorted(got["device_ids"]) == sorted([PHONE, TABLET])
    assert _lookup(client, headers, TABLET).json()["id"] == target
