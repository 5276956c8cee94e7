"""Errors, limits, request ids, health, metrics, policies, clients and sources over HTTP."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from cdp.api import Runtime
from cdp.audit.models import AuditEntry
from cdp.auth.models import Client
from cdp.db import unit_of_work
from cdp.profiles import service as profiles_service

Headers = Callable[..., dict[str, str]]


def _count(rt: Runtime, model: type, **where: str) -> int:
    with unit_of_work(rt.sessions) as session:
        stmt = select(func.count()).select_from(model)
        for key, value in where.items():
            stmt = stmt.where(getattr(model, key) == value)
        return int(session.scalar(stmt) or 0)


def test_unknown_route_and_method_are_problem_json(client: TestClient) -> None:
    resp = client.get("/v1/nope")
    assert resp.status_code == 404 and resp.json()["code"] == "not_found"
    assert resp.headers["content-type"] == "application/problem+json"
    resp = client.put("/healthz")
    assert resp.status_code == 405 and resp.json()["code"] == "method_not_allowed"


def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == (
        "abc-123"
    )
    generated = client.get("/healthz").headers["x-request-id"]
    assert len(generated) == 16
    # A hostile request id is replaced, not echoed.
    assert (
        client.get("/healthz", headers={"X-Request-ID": "x" * 500}).headers["x-request-id"]
        != "x" * 500
    )
    body = client.get("/v1/nope", headers={"X-Request-ID": "trace-9"}).json()
    assert body["request_id"] == "trace-9"


def test_oversized_body_is_413_and_stores_nothing(
    client: TestClient, runtime: Runtime, token_for: Headers
) -> None:
    headers = token_for("admin")
    before = _count(runtime, Client)
    resp = client.post(
        "/v1/clients", headers=headers, json={"name": "x" * (1024 * 1024 + 10), "role": "app"}
    )
    assert resp.status_code == 413 and resp.json()["code"] == "payload_too_large"
    assert _count(runtime, Client) == before


def test_chunked_oversized_body_is_413(client: TestClient, token_for: Headers) -> None:
    headers = token_for("admin")

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(40):
            yield b"x" * 32768

    resp = client.post(
        "/v1/clients", headers={**headers, "Content-Type": "application/json"}, content=chunks()
    )
    assert resp.status_code == 413


def test_rate_limit_answers_429_with_retry_after(
    client: TestClient, runtime: Runtime, token_for: Headers
) -> None:
    headers = token_for("admin")
    runtime.limiter.rate, runtime.limiter.burst = 1 / 60, 3
    runtime.limiter._buckets.clear()
    statuses = [client.get("/v1/policies", headers=headers).status_code for _ in range(5)]
    assert statuses[:3] == [200, 200, 200] and statuses[-1] == 429
    resp = client.get("/v1/policies", headers=headers)
    assert resp.json()["code"] == "rate_limited" and int(resp.headers["retry-after"]) >= 1


def test_health_readiness_and_metrics(client: TestClient, runtime: Runtime) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["policy"] == runtime.policy.version
    text = client.get("/metrics").text
    assert 'cdp_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert "cdp_http_request_duration_seconds_bucket" in text


def test_readiness_fails_when_keystore_is_unreachable(client: TestClient, runtime: Runtime) -> None:
    from cdp.db import make_engine

    runtime.crypto.keystore = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    resp = client.get("/readyz")
    assert resp.status_code == 503 and resp.json()["code"] == "service_unavailable"


def test_policy_is_served_with_its_version(
    client: TestClient, runtime: Runtime, token_for: Headers
) -> None:
    headers = token_for("tracker")
    body = client.get("/v1/policies", headers=headers).json()
    assert body["version"] == runtime.policy.version and body["version"].startswith("sha256:")
    assert {"service_delivery", "marketing"} <= {p["id"] for p in body["purposes"]}
    purposes = client.get("/v1/policies/purposes", headers=headers).json()["items"]
    bases = {p["id"]: p["legal_basis"] for p in purposes}
    assert bases["service_delivery"] == "contract" and bases["marketing"] == "consent"


def test_policy_load_is_audited(client: TestClient, runtime: Runtime) -> None:
    assert _count(runtime, AuditEntry, action="policy.load") == 1


def test_client_lifecycle_is_audited_and_secret_hashed(
    client: TestClient, runtime: Runtime, token_for: Headers
) -> None:
    headers = token_for("admin")
    resp = client.post(
        "/v1/clients",
        headers=headers,
        json={"name": "crm", "role": "support", "organisation": "Example Co."},
    )
    assert resp.status_code == 201
    created = resp.json()
    secret = created["client_secret"]
    assert created["purposes"] and created["revoked_at"] is None
    with unit_of_work(runtime.sessions) as session:
        row = session.get(Client, created["id"])
        assert row is not None and secret not in row.secret_hash
        assert row.secret_hash.startswith("scrypt$")
    # The secret appears only once: listing never shows it.
    listing = client.get("/v1/clients", headers=headers).text
    assert secret not in listing
    assert client.delete(f"/v1/clients/{created['id']}", headers=headers).json()["revoked_at"]
    assert _count(runtime, AuditEntry, action="client.create") >= 2
    assert _count(runtime, AuditEntry, action="client.revoke") == 1
    assert _count(runtime, AuditEntry, action="token.issue") >= 1
    resp = client.post(
        "/v1/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": created["id"],
            "client_secret": secret,
        },
    )
    assert resp.status_code == 401


def test_client_with_unknown_role_or_purpose_is_422(
    client: TestClient, runtime: Runtime, token_for: Headers
) -> None:
    headers = token_for("admin")
    before = _count(runtime, Client)
    for body in (
        {"name": "x", "role": "superuser"},
        {"name": "x", "role": "tracker", "purposes": ["marketing"]},
        {"name": "x", "role": "app", "extra": 1},
        {"name": "", "role": "app"},
    ):
        resp = client.post("/v1/clients", headers=headers, json=body)
        assert resp.status_code == 422, body
        assert resp.json()["code"] == "validation_error" and resp.json()["errors"]
    assert _count(runtime, Client) == before


def test_validation_errors_do_not_echo_input(client: TestClient, token_for: Headers) -> None:
    headers = token_for("admin")
    resp = client.post("/v1/clients", headers=headers, json={"name": 13800138000, "role": "app"})
    assert resp.status_code == 422 and "13800138000" not in resp.text


def test_pagination_with_signed_cursor(
    client: TestClient, make_client: Callable[..., tuple[str, str]], token_for: Headers
) -> None:
    headers = token_for("admin")
    for _ in range(4):
        make_client("tracker")
    first = client.get("/v1/clients?limit=2", headers=headers).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = client.get(f"/v1/clients?limit=2&cursor={first['next_cursor']}", headers=headers)
    ids = {c["id"] for c in first["items"]} | {c["id"] for c in second.json()["items"]}
    assert len(ids) == 4
    forged = client.get("/v1/clients?cursor=eyJhIjoiY2xpXzAifQ", headers=headers)
    assert forged.status_code == 422 and forged.json()["code"] == "validation_error"
    assert client.get("/v1/clients?limit=0", headers=headers).status_code == 422
    assert client.get("/v1/clients?limit=501", headers=headers).status_code == 422


def test_sources_write_key_shown_once(
    client: TestClient, runtime: Runtime, token_for: Headers
) -> None:
    from cdp.auth import service

    headers = token_for("admin")
    created = client.post("/v1/sources", headers=headers, json={"name": "web-shop"}).json()
    key = created["write_key"]
    assert key.startswith("wk_") and key not in client.get("/v1/sources", headers=headers).text
    with unit_of_work(runtime.sessions) as session:
        found = service.source_for_write_key(session, key)
        assert found is not None and found.id == created["id"]
    client.delete(f"/v1/sources/{created['id']}", headers=headers)
    with unit_of_work(runtime.sessions) as session:
        assert service.source_for_write_key(session, key) is None


def test_denials_are_audited(client: TestClient, runtime: Runtime, token_for: Headers) -> None:
    tracker = token_for("tracker")
    assert client.get("/v1/clients", headers=tracker).status_code == 403
    with unit_of_work(runtime.sessions) as session:
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "access.denied")
        ).one()
    assert entry.decision == "deny" and entry.code == "insufficient_scope"
    assert entry.actor.startswith("client:cli_")
    client.post(
        "/v1/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "cli_x", "client_secret": "nope"},
    )
    assert _count(runtime, AuditEntry, action="token.denied") == 1


def test_database_failure_is_503_problem_without_driver_text(
    client: TestClient, token_for: Headers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dropped connection or an aborted transaction is a retryable 503 problem, never a 500,
    and the driver's message (which can quote SQL parameters) is not passed on."""
    app = token_for("app")
    made = client.post(
        "/v1/profiles",
        json={"external_id": "db-down-1"},
        headers={**app, "X-Purpose": "service_delivery"},
    )
    assert made.status_code == 201, made.text

    def refuse(*_: object, **__: object) -> None:
        raise OperationalError("SELECT secret", {"email": "wang@example.cn"}, Exception("gone"))

    monkeypatch.setattr(profiles_service, "read", refuse)
    resp = client.get(
        f"/v1/profiles/{made.json()['id']}", headers={**app, "X-Purpose": "service_delivery"}
    )
    assert resp.status_code == 503
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.headers["retry-after"] == "1"
    body = resp.json()
    assert body["code"] == "database_unavailable"
    assert "wang@example.cn" not in resp.text and "SELECT" not in resp.text
