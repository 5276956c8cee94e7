"""POST /v1/profiles/batch: an import of many profiles, all or none, errors naming the item."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from cdp.api import Runtime
from cdp.audit.models import AuditEntry
from cdp.db import unit_of_work
from cdp.profiles.models import Identity, Profile

Headers = Callable[..., dict[str, str]]
SERVICE = {"X-Purpose": "service_delivery"}


@pytest.fixture
def app_headers(token_for: Headers) -> dict[str, str]:
    return {**token_for("app"), **SERVICE}


def _customer(i: int) -> dict[str, object]:
    return {
        "external_id": f"crm-{i}",
        "email": f"li.na.{i}@example.cn",
        "phone": f"+8613900{i:06d}",
        "traits": {"name": f"李娜{i}", "city": "杭州"},
    }


def _count(rt: Runtime, model: type) -> int:
    with unit_of_work(rt.sessions) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_batch_creates_every_profile_in_order(
    client: TestClient, app_headers: dict[str, str], runtime: Runtime
) -> None:
    body = {"profiles": [_customer(i) for i in range(3)]}
    resp = client.post("/v1/profiles/batch", json=body, headers=app_headers)
    assert resp.status_code == 201, resp.text
    items = resp.json()["items"]
    assert [it["external_id"] for it in items] == ["crm-0", "crm-1", "crm-2"]
    assert len({it["id"] for it in items}) == 3
    got = client.get(f"/v1/profiles/{items[1]['id']}", headers=app_headers).json()
    assert got["email"] == "li.na.1@example.cn" and got["traits"]["name"] == "李娜1"
    found = client.post(
        "/v1/profiles/lookup", json={"phone": "+8613900000002"}, headers=app_headers
    ).json()
    assert found["id"] == items[2]["id"]
    with unit_of_work(runtime.sessions) as session:
        created = session.scalars(
            select(AuditEntry.subject).where(AuditEntry.action == "profile.create")
        ).all()
    assert sorted(created) == sorted(it["id"] for it in items)


def test_an_identifier_repeated_within_the_batch_stores_nothing(
    client: TestClient, app_headers: dict[str, str], runtime: Runtime
) -> None:
    twins = [_customer(1), _customer(2), {**_customer(3), "email": "LI.NA.1@example.cn"}]
    resp = client.post("/v1/profiles/batch", json={"profiles": twins}, headers=app_headers)
    problem = resp.json()
    assert resp.status_code == 409 and problem["code"] == "conflict"
    assert problem["errors"][0]["loc"] == ["body", "profiles", 2, "email"]
    assert "item 0" in problem["detail"] and "li.na" not in resp.text.lower()
    assert _count(runtime, Profile) == 0 and _count(runtime, Identity) == 0


def test_an_identifier_already_stored_stores_nothing(
    client: TestClient, app_headers: dict[str, str], runtime: Runtime
) -> None:
    assert client.post("/v1/profiles", json=_customer(7), headers=app_headers).status_code == 201
    body = {"profiles": [_customer(5), _customer(6), {"external_id": "crm-7"}]}
    resp = client.post("/v1/profiles/batch", json=body, headers=app_headers)
    assert resp.status_code == 409
    assert resp.json()["errors"][0]["loc"] == ["body", "profiles", 2, "external_id"]
    assert "crm-7" not in resp.text
    assert _count(runtime, Profile) == 1 and _count(runtime, Identity) == 3


def test_an_invalid_item_is_422_naming_it(
    client: TestClient, app_headers: dict[str, str], runtime: Runtime
) -> None:
    bad = {"external_id": "crm-9", "traits": {"favourite_colour": "red"}}
    resp = client.post(
        "/v1/profiles/batch", json={"profiles": [_customer(8), bad]}, headers=app_headers
    )
    assert resp.status_code == 422 and resp.json()["code"] == "validation_error"
    assert resp.json()["errors"][0]["loc"][:3] == ["body", "profiles", 1]
    assert _count(runtime, Profile) == 0


def test_batch_limits_and_purpose(
    client: TestClient, app_headers: dict[str, str], runtime: Runtime
) -> None:
    too_many = {"profiles": [{"external_id": f"x{i}"} for i in range(501)]}
    resp = client.post("/v1/profiles/batch", json=too_many, headers=app_headers)
    assert resp.status_code == 422
    empty = client.post("/v1/profiles/batch", json={"profiles": []}, headers=app_headers)
    assert empty.status_code == 422
    # A consent-based purpose cannot create subjects who have no consent on record yet.
    marketing = {**app_headers, "X-Purpose": "marketing"}
    resp = client.post("/v1/profiles/batch", json={"profiles": [_customer(1)]}, headers=marketing)
    assert resp.status_code == 403
    assert _count(runtime, Profile) == 0


def test_batch_get_returns_allowed_profiles_and_withholds_the_rest(
    client: TestClient, app_headers: dict[str, str], token_for: Headers, runtime: Runtime
) -> None:
    body = {"profiles": [_customer(i) for i in range(3)]}
    ids = [
        it["id"]
        for it in client.post("/v1/profiles/batch", json=body, headers=app_headers).json()["items"]
    ]
    consent = {
        "purpose": "customer_care",
        "state": "granted",
        "notice_id": "privacy-notice",
        "notice_version": 2,
        "channel": "app",
        "evidence": {"text_sha256": "0" * 64, "locale": "zh-CN"},
    }
    headers = token_for("app")
    resp = client.post(f"/v1/profiles/{ids[2]}/consents", json=consent, headers=headers)
    assert resp.status_code == 201, resp.text
    unknown = "00000000-0000-4000-8000-000000000000"
    asked = [ids[2], unknown, ids[0]]
    care = {**headers, "X-Purpose": "customer_care"}
    resp = client.post("/v1/profiles/batch-get", json={"ids": asked}, headers=care)
    assert resp.status_code == 200, resp.text
    got = resp.json()
    # Only the customer who consented to customer care is returned; the rest are withheld.
    assert [it["id"] for it in got["items"]] == [ids[2]]
    assert got["items"][0]["email"] == "li.na.2@example.cn"
    assert got["withheld"] == [unknown, ids[0]]
    resp = client.post("/v1/profiles/batch-get", json={"ids": asked}, headers=app_headers)
    assert [it["id"] for it in resp.json()["items"]] == [ids[2], ids[0]]
    with unit_of_work(runtime.sessions) as session:
        reads = session.scalar(select(func.count()).where(AuditEntry.action == "profile.read"))
    assert reads == 3
    bad = client.post("/v1/profiles/batch-get", json={"ids": ["not-a-uuid"]}, headers=app_headers)
    assert bad.status_code == 422
