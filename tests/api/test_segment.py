"""The Segment-compatible HTTP API as the SDKs really call it: every liberal-input case of
API.md, every rejection, write keys in all three places, gzip, text/plain, retries."""

from __future__ import annotations

import gzip
import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.api.tracking import (
    ANALYTICS_YES,
    Headers,
    basic,
    count,
    events,
    new_profile,
    new_source,
    set_consent,
    violations,
)

from cdp.api import Runtime
from cdp.audit.service import RequestContext
from cdp.auth import service as auth_service
from cdp.auth.writekeys import WriteKeys
from cdp.db import unit_of_work


@pytest.fixture
def admin(token_for: Headers) -> dict[str, str]:
    return token_for("admin")


@pytest.fixture
def source(client: TestClient, admin: dict[str, str]) -> tuple[str, str]:
    return new_source(client, admin)


def track(**extra: Any) -> dict[str, Any]:
    """A message the plan knows, from a visitor who allowed analytics."""
    msg: dict[str, Any] = {
        "type": "track",
        "anonymousId": "anon-1",
        "event": "Product Viewed",
        "properties": {"product_id": "SKU-1"},
        "context": ANALYTICS_YES,
    }
    msg.update(extra)
    return msg


def post(client: TestClient, path: str, body: Any, key: str, **kw: Any) -> Any:
    return client.post(path, json=body, headers={**basic(key), **kw.pop("headers", {})}, **kw)


def ok(resp: Any, accepted: int) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    assert body["success"] is True and body["accepted"] == accepted, body
    return body


def segment_error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    # What the SDKs read (code, message) and the problem+json fields, together.
    assert body["code"] == code and body["message"] and body["status"] == status, body
    assert resp.headers["content-type"].startswith("application/problem+json")
    return body


# --- where the write key comes from ------------------------------------------------------------


def test_write_key_in_body_basic_or_header(
    client: TestClient, runtime: Runtime, source: tuple[str, str]
) -> None:
    source_id, key = source
    ok(client.post("/v1/track", json={**track(messageId="m1"), "writeKey": key}), 1)
    ok(client.post("/v1/batch", json={"batch": [track(messageId="m2")], "writeKey": key}), 1)
    ok(client.post("/v1/track", json=track(messageId="m3"), headers=basic(key)), 1)
    ok(client.post("/v1/track", json=track(messageId="m4"), headers={"X-Write-Key": key}), 1)
    stored = events(runtime)
    assert sorted(e.message_id for e in stored) == ["m1", "m2", "m3", "m4"]
    assert {e.source_id for e in stored} == {source_id}


def test_bad_missing_or_revoked_write_key_is_401_with_code_and_message(
    client: TestClient, runtime: Runtime, source: tuple[str, str], admin: dict[str, str]
) -> None:
    source_id, key = source
    body = segment_error(post(client, "/v1/track", track(), "wk_wrong"), 401, "invalid_write_key")
    assert "wk_wrong" not in json.dumps(body)
    segment_error(client.post("/v1/track", json=track()), 401, "unauthorized")
    resp = client.post("/v1/track", json=track(), headers={"Authorization": "Basic %%%"})
    segment_error(resp, 401, "invalid_write_key")
    ok(post(client, "/v1/track", track(messageId="before"), key), 1)  # the worker knows the key
    assert client.delete(f"/v1/sources/{source_id}", headers=admin).status_code == 200
    # Revoked here, so refused at once (other workers let go within writekeys.TTL_SECONDS).
    segment_error(post(client, "/v1/track", track(), key), 401, "invalid_write_key")
    assert count(runtime, "event") == 1


def test_another_worker_lets_go_of_a_revoked_key_within_the_ttl(
    runtime: Runtime, source: tuple[str, str]
) -> None:
    source_id, key = source
    other_worker = WriteKeys(ttl=0.2)
    with unit_of_work(runtime.sessions) as session:
        assert other_worker.source_id(session, key) == source_id
        session.info["ctx"] = RequestContext(runtime.policy.version)
        auth_service.revoke_source(session, actor="client:admin", source_id=source_id)
    with unit_of_work(runtime.sessions) as session:
        assert other_worker.source_id(session, key) == source_id  # remembered, for now
        time.sleep(0.25)
        assert other_worker.source_id(session, key) is None
        assert other_worker.source_id(session, "wk_" + "x" * 300) is None


def test_bearer_token_with_events_write_is_accepted(
    client: TestClient, runtime: Runtime, token_for: Headers
) -> None:
    tracker = token_for("tracker")
    ok(client.post("/v1/track", json=track(), headers=tracker), 1)
    support = token_for("support")  # no events:write
    segment_error(
        client.post("/v1/track", json=track(), headers=support), 403, "insufficient_scope"
    )
    bad = {"Authorization": "Bearer not-a-token"}
    segment_error(client.post("/v1/track", json=track(), headers=bad), 401, "invalid_token")


# --- liberal input (API.md) ---------------------------------------------------------------------


def test_type_missing_or_capitalised_and_short_paths_with_text_plain(
    client: TestClient, runtime: Runtime, source: tuple[str, str]
) -> None:
    _, key = source
    untyped = {k: v for k, v in track(messageId="a").items() if k != "type"}
    ok(post(client, "/v1/track", untyped, key), 1)  # the path says track
    ok(post(client, "/v1/batch", {"batch": [untyped | {"messageId": "b"}]}, key), 1)  # has event
    ok(post(client, "/v1/batch", {"batch": [track(type="Track", messageId="c")]}, key), 1)
    # analytics.js: short paths, text/plain, write key in the body.
    raw = json.dumps({**untyped, "messageId": "d", "writeKey": key})
    resp = client.post("/v1/t", content=raw, headers={"Content-Type": "text/plain"})
    ok(resp, 1)
    page = {"anonymousId": "anon-1", "name": "首页", "context": ANALYTICS_YES, "writeKey": key}
    ok(client.post("/v1/p", content=json.dumps(page), headers={"Content-Type": "text/plain"}), 1)
    stored = {e.message_id: e for e in events(runtime)}
    assert {"a", "b", "c", "d"} <= set(stored)
    [page_event] = [e for e in stored.values() if e.type == "page"]
    assert page_event.name == "Page Viewed" and page_event.properties == {"name": "首页"}


def test_numeric_user_id_null_and_empty_ids(
    client: TestClient, runtime: Runtime, source: tuple[str, str], token_for: Headers
) -> None:
    _, key = source
    app = token_for("app")
    subject = new_profile(client, app, "10086")
    set_consent(client, app, subject)
    batch = [
        track(userId=10086, anonymousId=None, messageId="n1"),  # a number: external id "10086"
        track(userId="", anonymousId="anon-2", messageId="n2"),  # "" is no id
        track(userId=None, anonymousId="anon-3", messageId="n3"),
        track(userId="", anonymousId="", messageId="n4"),  # neither: unusable
    ]
    body = ok(post(client, "/v1/batch", {"batch": batch}, key), 3)
    assert body["dropped"] == [{"index": 3, "reason": "missing_id"}]
    by_id = {e.message_id: e for e in events(runtime)}
    assert by_id["n1"].subject_id == subject
    assert by_id["n2"].subject_id is None and by_id["n2"].anonymous_key
    # The anonymous id is kept only as a blind index.
    assert "anon-2" not in json.dumps([e.anonymous_key for e in by_id.values()])


def test_missing_message_id_is_assigned_and_not_deduplicated(
    client: TestClient, runtime: Runtime, source: tuple[str, str]
) -> None:
    _, key = source
    msg = track()
    ok(post(client, "/v1/track", msg, key), 1)
    ok(post(client, "/v1/track", msg, key), 1)
    ids = [e.message_id for e in events(runtime)]
    assert len(ids) == 2 and len(set(ids)) == 2 and all(i.startswith("cdp-") for i in ids)


def test_properties_null_or_empty_list_and_integrations_of_any_shape(
    client: TestClient, runtime: Runtime, source: tuple[str, str]
) -> None:
    _, key = source
    batch = [
        {"type": "track", "anonymousId": "v", "event": "Signed In", "properties": None},
        {"type": "track", "anonymousId": "v", "event": "Signed In", "properties": []},
        {
            "type": "track",
            "anonymousId": "v",
            "event": "Signed In",
            "integrations": {"All": False, "Mixpanel": True, "Amplitude": {"session_id": 1}},
            "channel": "server",
        },
        {"type": "track", "anonymousId": "v", "event": "Signed In", "properties": "x"},
    ]
    body = ok(post(client, "/v1/batch", {"batch": batch, "context": ANALYTICS_YES}, key), 3)
    assert body["dropped"] == [{"index": 3, "reason": "invalid_properties"}]
    assert [e.properties for e in events(runtime)] == [{}, {}, {}]


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("2026-11-25T08:00:00Z", "2026-11-25T08:00:00+00:00"),
        ("2026-11-25T16:00:00+08:00", "2026-11-25T08:00:00+00:00"),
        ("2026-11-25T08:00:00.5Z", "2026-11-25T08:00:00.500000+00:00"),
        ("2026-11-25T16:00:00.123456789+08:00", "2026-11-25T08:00:00.123456+00:00"),
        ("2026-11-25T08:00:00.1234567z", "2026-11-25T08:00:00.123456+00:00"),
        ("2026-11-25 08:00:00.12-05:00", "2026-11-25T13:00:00.120000+00:00"),
    ],
)
def test_timestamps_with_z_or_offset_and_0_to_9_fraction_digits(
    client: TestClient, runtime: Runtime, source: tuple[str, str], sent: str, stored: str
) -> None:
    _, key = source
    ok(post(client, "/v1/track", track(timestamp=sent), key), 1)
    [event] = events(runtime)
    assert event.timestamp.isoformat() == stored


def test_clock_skew_is_corrected_with_sent_at(
    client: TestClient, runtime: Runtime, source: tuple[str, str]
) -> None:
    _, key = source
    # The device clock is a year behind: the event happened 5 s before it was sent.
    msg = track(timestamp="2025-11-25T08:00:00Z", sentAt="2025-11-25T08:00:05Z")
    before = datetime.now(UTC)
    ok(post(client, "/v1/track", msg, key), 1)
    [event] = events(runtime)
    assert abs((before - event.timestamp).total_seconds() - 5) < 3


def test_batch_level_context_timestamp_and_write_key_apply_to_every_item(
    client: TestClient, runtime: Runtime, source: tuple[str, str]
) -> None:
    _, key = source
    item = {"anonymousId": "v", "event": "Signed In", "context": {"locale": "zh-CN"}}
    body = {
        "batch": [item, {**item, "timestamp": "2026-11-20T00:00:00Z"}],
        "context": {**ANALYTICS_YES, "library": {"name": "analytics.js", "version": "4.1"}},
        "timestamp": "2026-11-24T00:00:00Z",
        "writeKey": key,
    }
    ok(client.post("/v1/batch", json=body), 2)
    first, second = events(runtime)
    assert first.timestamp.isoformat() == "2026-11-20T00:00:00+00:00"
    assert second.timestamp.isoformat() == "2026-11-24T00:00:00+00:00"
    assert second.context == {
        "locale": "zh-CN",
        "library": {"name": "analytics.js", "version": "4.1"},
    }


def test_context_is_minimised_no_ip_or_user_agent(
    client: TestClient, runtime: Runtime, source: tuple[str, str]
) -> None:
    _, key = source
    context = {
        **ANALYTICS_YES,
        "ip": "203.0.113.77",
        "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)",
        "traits": {"email": "zhang.wei@example.cn"},
        "page": {"path": "/cart", "url": "https://shop.example.cn/cart?phone=13800138000"},
    }
    ok(post(client, "/v1/track", track(context=context), key), 1)
    [event] = events(runtime)
    assert event.context == {"page": {"path": "/cart"}}
    stored = json.dumps([event.properties, event.context])
    for secret in ("203.0.113", "Mozilla", "zhang.wei", "13800138000"):
        assert secret not in stored


def test_identify_group_alias_and_screen_are_stored(
    client: TestClient, runtime: Runtime, source: tuple[str, str], token_for: Headers
) -> None:
    _, key = source
    app = token_for("app")
    subject = new_profile(client, app, "shop-7")
    set_consent(client, app, subject)
    batch = [
        {"type": "identify", "userId": "shop-7", "traits": {"email": "a@example.cn"}},
        {"type": "identify", "userId": "shop-7", "context": {"traits": {"name": "张伟"}}},
        {"type": "group", "userId": "shop-7", "groupId": "store-1", "traits": {}},
        {"type": "screen", "userId": "shop-7", "name": "Cart"},
        {"type": "alias", "previousId": "anon-9", "userId": "shop-7"},
    ]
    ok(post(client, "/v1/batch", {"batch": batch}, key), 5)
    stored = events(runtime)
    assert sorted(e.type for e in stored) == ["alias", "group", "identify", "identify", "screen"]
    assert {e.subject_id for e in stored} == {subject}
    dumped = json.dumps([[e.properties, e.context] for e in stored], ensure_ascii=False)
    assert "a@example.cn" not in dumped and "张伟" not in dumped  # traits are not stored


# --- what is refused ----------------------------------------------------------------------------


def test_unusable_messages_are_reported_and_the_rest_kept(
    client: TestClient, runtime: Runtime, source: tuple[str, str]
) -> None:
    source_id, key = source
    batch = [
        track(messageId="good"),
        {"type": "track", "event": "Signed In"},  # neither id
        {"type": "track", "anonymousId": "v"},  # no event name
        {"type": "launch", "anonymousId": "v"},  # unknown type
        "not an object",
        {"type": "alias", "userId": "x"},  # alias without previousId
    ]
    body = ok(post(client, "/v1/batch", {"batch": batch}, key), 1)
    assert body["dropped"] == [
        {"index": 1, "reason": "missing_id"},
        {"index": 2, "reason": "missing_event"},
        {"index": 3, "reason": "invalid_type"},
        {"index": 4, "reason": "not_an_object"},
        {"index": 5, "reason": "missing_id"},
    ]
    assert [e.message_id for e in events(runtime)] == ["good"]
    assert violations(runtime, source_id)[("invalid_message", "missing_id")] == 2


def test_a_body_with_nothing_usable_is_400(
    client: TestClient, runtime: Runtime, source: tuple[str, str]
) -> None:
    _, key = source
    body = segment_error(
        post(client, "/v1/track", {"anonymousId": "v"}, key), 400, "invalid_message"
    )
    assert body["errors"] == [{"loc": ["body", 0], "msg": "missing_event", "type": "missing_event"}]
    segment_error(
        post(client, "/v1/batch", {"batch": [{"event": "x"}]}, key), 400, "invalid_message"
    )
    for raw in (b"{not json", b"[1, 2]", b'"text"', b'{"x": NaN}', b"\xff\xfe"):
        resp = client.post("/v1/track", content=raw, headers=basic(key))
        segment_error(resp, 400, "bad_request")
    segment_error(post(client, "/v1/batch", {"batch": {"a": 1}}, key), 400, "bad_request")
    segment_error(post(client, "/v1/batch", track(), key), 400, "bad_request")
    assert count(runtime, "event") == 0


def test_501_messages_is_422_and_nothing_is_stored(
    client: TestClient, runtime: Runtime, source: tuple[str, str]
) -> None:
    _, key = source
    batch = [track(messageId=f"m{i}") for i in range(501)]
    segment_error(post(client, "/v1/batch", {"batch": batch}, key), 422, "batch_too_large")
    assert count(runtime, "event") == 0 and count(runtime, "event_message") == 0
    ok(post(client, "/v1/batch", {"batch": batch[:500]}, key), 500)


def test_gzip_bodies_and_the_size_limit_after_inflating(
    client: TestClient, runtime: Runtime, source: tuple[str, str]
) -> None:
    _, key = source
    packed = gzip.compress(json.dumps({"batch": [track(messageId="z")]}).encode())
    headers = {**basic(key), "Content-Encoding": "gzip", "Content-Type": "application/json"}
    ok(client.post("/v1/batch", content=packed, headers=headers), 1)
    # A small body that inflates past 1 MiB (a zip bomb) is refused, not inflated.
    bomb = gzip.compress(b'{"batch": [' + b" " * (3 * 1024 * 1024) + b"]}")
    assert len(bomb) < 10_000
    segment_error(client.post("/v1/batch", content=bomb, headers=headers), 413, "payload_too_large")
    segment_error(client.post("/v1/batch", content=b"nope", headers=headers), 400, "bad_request")
    truncated = packed[: len(packed) // 2]
    segment_error(client.post("/v1/batch", content=truncated, headers=headers), 400, "bad_request")
    resp = client.post("/v1/batch", content=packed, headers={**headers, "Content-Encoding": "br"})
    segment_error(resp, 415, "unsupported_media_type")
    assert count(runtime, "event") == 1


def test_a_body_over_one_mib_is_413(client: TestClient, source: tuple[str, str]) -> None:
    _, key = source
    big = {"batch": [track(properties={"product_id": "x" * (1024 * 1024)})]}
    # Refused by the edge before any route runs, still with the `message` the SDKs read.
    segment_error(post(client, "/v1/batch", big, key), 413, "payload_too_large")


# --- retries ------------------------------------------------------------------------------------


def test_a_retried_batch_stores_nothing_twice(
    client: TestClient, runtime: Runtime, source: tuple[str, str]
) -> None:
    _, key = source
    batch = {"batch": [track(messageId=f"r{i}") for i in range(5)]}
    ok(post(client, "/v1/batch", batch, key), 5)
    again = ok(post(client, "/v1/batch", batch, key), 0)
    assert again["duplicates"] == 5
    # A repeat inside one batch is a duplicate too, and any string is a messageId.
    odd = "ü" * 150
    body = {"batch": [track(messageId=odd), track(messageId=odd), track(messageId=7)]}
    assert ok(post(client, "/v1/batch", body, key), 2)["duplicates"] == 1
    assert count(runtime, "event") == 7


def test_concurrent_retries_of_one_batch_store_it_once(
    client: TestClient, runtime: Runtime, source: tuple[str, str]
) -> None:
    _, key = source
    batch = {"batch": [track(messageId=f"c{i}") for i in range(50)]}
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def send() -> None:
        try:
            resp = post(client, "/v1/batch", batch, key)
            assert resp.status_code == 200, resp.text
            results.append(resp.json())
        except BaseException as exc:  # collected, re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sum(r["accepted"] for r in results) == 50
    assert sum(r["duplicates"] for r in results) == 50 * 5
    assert count(runtime, "event") == 50


def test_control_characters_and_broken_unicode_cannot_break_a_batch(
    client: TestClient, runtime: Runtime, source: tuple[str, str]
) -> None:
    source_id, key = source
    nul = {
        "type": "track",
        "anonymousId": "v\x00",
        "messageId": "m\x00",
        "event": "Rocket\x00",
        "properties": {"k\x00": 1},
        "context": ANALYTICS_YES,
    }
    planned = track(messageId="m\x01", properties={"product_id": "a\x00b", "x\x00": 1})
    body = ok(
        post(client, "/v1/batch", {"batch": [nul, planned, track(messageId="plain")]}, key), 2
    )
    assert body["dropped"] == [{"index": 0, "reason": "unplanned_event"}]
    assert ("unplanned_event", "Rocket?") in violations(runtime, source_id)
    raw = b'{"batch": [{"anonymousId": "v", "event": "Signed In", "name": "\\ud800"}]}'
    resp = client.post("/v1/batch", content=raw, headers=basic(key))
    segment_error(resp, 400, "bad_request")
    assert count(runtime, "event") == 2
