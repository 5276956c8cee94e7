"""Customer verification by one-time code: no enumeration, brute force stopped, codes hashed,
rate limits per identifier and per client address; on SQLite and PostgreSQL."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from cdp.api import Runtime
from cdp.auth.ratelimit import RateLimiter
from cdp.db import unit_of_work, utcnow
from cdp.notifier.outbox import Outbox
from cdp.rights.models import VerificationCode

Headers = Callable[..., dict[str, str]]
EMAIL = "li.na@example.cn"


@pytest.fixture
def subject(client: TestClient, token_for: Headers) -> str:
    resp = client.post(
        "/v1/profiles",
        json={"email": EMAIL, "phone": "+86 139 0000 1111"},
        headers={**token_for("app"), "X-Purpose": "service_delivery"},
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def outbox(rt: Runtime, to: str | None = None) -> list[dict[str, Any]]:
    return Outbox(rt.settings.data_dir / "outbox.jsonl").messages(to)


def start(client: TestClient, **body: str) -> Any:
    return client.post("/v1/self/verification", json=body)


def code_sent(rt: Runtime, to: str = EMAIL) -> str:
    body = str(outbox(rt, to)[-1]["body"])
    return next(w for w in body.replace("\uff0c", " ").split() if w.isdigit() and len(w) == 6)


def confirm(client: TestClient, vid: str, code: str) -> Any:
    return client.post("/v1/self/verification/confirm", json={"verification_id": vid, "code": code})


def codes(rt: Runtime) -> int:
    with unit_of_work(rt.sessions) as session:
        return int(session.scalar(select(func.count()).select_from(VerificationCode)) or 0)


def test_code_gives_a_customer_token(client: TestClient, runtime: Runtime, subject: str) -> None:
    resp = start(client, email="  LI.NA@example.cn ")
    assert resp.status_code == 202, resp.text
    vid = resp.json()["verification_id"]
    [message] = outbox(runtime, EMAIL)
    assert message["channel"] == "email"
    token = confirm(client, vid, code_sent(runtime))
    assert token.status_code == 200, token.text
    body = token.json()
    assert body["subject_id"] == subject and body["scope"] == "self"
    mine = client.get(
        "/v1/self/consents", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert mine.status_code == 200 and mine.json()["subject_id"] == subject
    # One use only.
    again = confirm(client, vid, code_sent(runtime))
    assert again.status_code == 400 and again.json()["code"] == "verification_failed"


def test_sms_goes_to_the_phone(client: TestClient, runtime: Runtime, subject: str) -> None:
    resp = start(client, phone="13900001111")
    assert resp.status_code == 202 and resp.json()["channel"] == "sms"
    [message] = outbox(runtime, "+8613900001111")
    assert message["channel"] == "sms"
    token = confirm(client, resp.json()["verification_id"], code_sent(runtime, "+8613900001111"))
    assert token.status_code == 200 and token.json()["subject_id"] == subject


def test_known_and_unknown_identifiers_answer_alike(
    client: TestClient, runtime: Runtime, subject: str
) -> None:
    known, unknown = start(client, email=EMAIL), start(client, email="nobody@example.cn")
    assert known.status_code == unknown.status_code == 202
    assert set(known.json()) == set(unknown.json())
    assert {k: v for k, v in known.json().items() if k != "verification_id"} == {
        k: v for k, v in unknown.json().items() if k != "verification_id"
    }
    assert len(known.json()["verification_id"]) == len(unknown.json()["verification_id"])
    assert known.headers.keys() - {"x-request-id"} == unknown.headers.keys() - {"x-request-id"}
    # The same work was done: a stored code for each; a message only to the real customer.
    assert codes(runtime) == 2
    assert outbox(runtime, "nobody@example.cn") == [] and len(outbox(runtime, EMAIL)) == 1
    # Wrong codes fail alike for both.
    a = confirm(client, known.json()["verification_id"], "000000")
    b = confirm(client, unknown.json()["verification_id"], "000000")
    assert a.status_code == b.status_code == 400
    strip = ("request_id",)
    assert {k: v for k, v in a.json().items() if k not in strip} == {
        k: v for k, v in b.json().items() if k not in strip
    }


def test_timing_does_not_tell_known_from_unknown(
    client: TestClient, runtime: Runtime, subject: str
) -> None:
    def timed(email: str) -> float:
        began = time.perf_counter()
        assert start(client, email=email).status_code == 202
        return time.perf_counter() - began

    start(client, email="warm-up@example.cn")
    known, unknown = [], []
    for i in range(5):  # interleaved, so a slower moment hits both alike
        known.append(timed(EMAIL))
        unknown.append(timed(f"x{i}@example.cn"))
    ratio = statistics.median(known) / statistics.median(unknown)
    # The code is sent after the response (a real SMTP or SMS call would take far longer than
    # the request itself); a lookup hit and a miss cost the same.
    assert 0.4 < ratio < 2.5, ratio


def test_brute_force_is_stopped(client: TestClient, runtime: Runtime, subject: str) -> None:
    vid = start(client, email=EMAIL).json()["verification_id"]
    right = code_sent(runtime)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for _ in range(5):
        resp = confirm(client, vid, wrong)
        assert resp.status_code == 400 and resp.json()["code"] == "verification_failed"
    # Five attempts spent: even the right code is refused now.
    resp = confirm(client, vid, right)
    assert resp.status_code == 400 and resp.json()["code"] == "verification_failed"
    with unit_of_work(runtime.sessions) as session:
        row = session.get(VerificationCode, vid)
        assert row is not None and row.attempts == 5 and row.consumed_at is None


def test_codes_are_stored_hashed_and_expire(
    client: TestClient, runtime: Runtime, subject: str
) -> None:
    vid = start(client, email=EMAIL).json()["verification_id"]
    code = code_sent(runtime)
    with unit_of_work(runtime.sessions) as session:
        row = session.get(VerificationCode, vid)
        assert row is not None and row.subject_id == subject
        assert code not in row.code_hash and EMAIL not in row.identifier_index
        assert row.expires_at - row.created_at == timedelta(minutes=10)
        session.execute(
            update(VerificationCode)
            .where(VerificationCode.id == vid)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    resp = confirm(client, vid, code)
    assert resp.status_code == 400 and resp.json()["code"] == "verification_failed"


def test_rate_limited_per_identifier(client: TestClient, runtime: Runtime, subject: str) -> None:
    for email in (EMAIL, "ghost@example.cn"):
        for _ in range(5):
            assert start(client, email=email).status_code == 202
        resp = start(client, email=email)
        assert resp.status_code == 429 and resp.json()["code"] == "rate_limited"
        assert int(resp.headers["retry-after"]) > 0
    assert codes(runtime) == 10
    assert start(client, email="other@example.cn").status_code == 202


def test_rate_limited_per_client_address(client: TestClient, runtime: Runtime) -> None:
    runtime.extras["verification_limiter"] = RateLimiter(1, 3)
    for i in range(3):
        assert start(client, email=f"u{i}@example.cn").status_code == 202
    resp = start(client, email="u9@example.cn")
    assert resp.status_code == 429 and "retry-after" in resp.headers
    resp = confirm(client, "00000000-0000-4000-8000-000000000000", "123456")
    assert resp.status_code == 429


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email"},
        {"phone": "12"},
        {},
        {"email": EMAIL, "phone": "+8613900001111"},
        {"email": EMAIL, "extra": 1},
    ],
)
def test_bad_input_is_422_and_stores_nothing(
    client: TestClient, runtime: Runtime, body: dict[str, Any]
) -> None:
    resp = client.post("/v1/self/verification", json=body)
    assert resp.status_code == 422 and resp.json()["code"] == "validation_error", resp.text
    assert "not-an-email" not in resp.text
    assert codes(runtime) == 0


@pytest.mark.parametrize(
    "body", [{"verification_id": "x", "code": "12345"}, {"verification_id": "x", "code": "abcdef"}]
)
def test_bad_confirm_is_422(client: TestClient, body: dict[str, Any]) -> None:
    resp = client.post("/v1/self/verification/confirm", json=body)
    assert resp.status_code == 422 and resp.json()["code"] == "validation_error"
