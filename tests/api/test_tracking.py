"""Tracking over HTTP: the native batch, the consent gate, identity resolution, the tracking
plan and its violations, daily rollups, sealed PI properties, reading a subject's events."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.api.tracking import (
    ANALYTICS_NO,
    ANALYTICS_YES,
    Headers,
    activity,
    basic,
    count,
    daily,
    dump,
    events,
    new_profile,
    new_source,
    restrict,
    set_consent,
    violations,
)

from cdp.api import Runtime
from cdp.audit.models import AuditEntry
from cdp.db import unit_of_work
from cdp.events import history
from cdp.policy import load_policy

DEMO = Path(__file__).resolve().parents[2] / "policies"


@pytest.fixture
def app_h(token_for: Headers) -> dict[str, str]:
    return token_for("app")


@pytest.fixture
def source(client: TestClient, token_for: Headers) -> tuple[str, str]:
    return new_source(client, token_for("admin"))


def native(client: TestClient, headers: dict[str, str], *evts: dict[str, Any]) -> dict[str, Any]:
    resp = client.post("/v1/events", json={"events": list(evts)}, headers=headers)
    assert resp.status_code == 202, resp.text
    body: dict[str, Any] = resp.json()
    return body


def segment(client: TestClient, key: str, *batch: dict[str, Any]) -> dict[str, Any]:
    resp = client.post("/v1/batch", json={"batch": list(batch)}, headers=basic(key))
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def order(external_id: str, message_id: str, revenue: float, **props: Any) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "external_id": external_id,
        "name": "Order Completed",
        "timestamp": "2026-11-25T10:00:00+08:00",
        "properties": {"order_id": message_id, "revenue": revenue, **props},
    }


# --- the native batch ---------------------------------------------------------------------------


def test_native_batch_by_profile_external_and_anonymous_id(
    client: TestClient, runtime: Runtime, app_h: dict[str, str]
) -> None:
    subject = new_profile(client, app_h, "shop-1")
    set_consent(client, app_h, subject)
    body = native(
        client,
        app_h,
        {"message_id": "e1", "profile_id": subject, "name": "Signed In"},
        {"message_id": "e2", "external_id": "shop-1", "name": "Signed In"},
        {"message_id": "e3", "anonymous_id": "v1", "name": "Signed In", "context": ANALYTICS_YES},
        {"message_id": "e4", "profile_id": "00000000-0000-4000-8000-000000000000", "name": "x"},
        {"message_id": "e5", "external_id": "nobody", "name": "Signed In"},
        {"message_id": "e6", "external_id": "shop-1", "name": "Rocket Launched"},
    )
    assert body == {
        "accepted": 3,
        "duplicates": 0,
        "dropped": [
            {"index": 3, "reason": "unplanned_event"},
            {"index": 4, "reason": "unknown_subject"},
            {"index": 5, "reason": "unplanned_event"},
        ],
    }
    again = native(client, app_h, {"message_id": "e1", "profile_id": subject, "name": "Signed In"})
    assert again == {"accepted": 0, "duplicates": 1, "dropped": []}
    stored = events(runtime)
    assert [e.subject_id for e in stored].count(subject) == 2


def test_native_batch_limits_and_schema(
    client: TestClient, runtime: Runtime, app_h: dict[str, str]
) -> None:
    many = [{"message_id": f"m{i}", "anonymous_id": "v", "name": "Signed In"} for i in range(501)]
    resp = client.post("/v1/events", json={"events": many}, headers=app_h)
    assert resp.status_code == 422 and resp.json()["code"] == "batch_too_large"
    for bad in (
        {"name": "Signed In"},  # nobody
        {"anonymous_id": "v", "type": "track"},  # no name
        {"anonymous_id": "v", "name": "Signed In", "timestamp": "1700000000"},
        {"type": "alias", "previous_id": "v"},
    ):
        resp = client.post("/v1/events", json={"events": [bad]}, headers=app_h)
        assert resp.status_code == 422 and resp.json()["code"] == "validation_error", bad
    assert count(runtime, "event") == 0 and count(runtime, "event_message") == 0


# --- the consent gate ---------------------------------------------------------------------------


def test_server_side_consent_decides_for_a_known_subject(
    client: TestClient, runtime: Runtime, app_h: dict[str, str], source: tuple[str, str]
) -> None:
    source_id, key = source
    subject = new_profile(client, app_h, "shop-2")
    signed_in = {"type": "track", "userId": "shop-2", "event": "Signed In"}
    # Nothing on record and nothing in the message: no legal basis, not stored.
    body = segment(client, key, {**signed_in, "messageId": "a"})
    assert body["dropped"] == [{"index": 0, "reason": "consent_required"}]
    set_consent(client, app_h, subject)
    assert segment(client, key, {**signed_in, "messageId": "b"})["accepted"] == 1
    set_consent(client, app_h, subject, "withdrawn")
    # The withdrawal wins over whatever the page's consent banner says (PIPL art. 15).
    body = segment(client, key, {**signed_in, "messageId": "c", "context": ANALYTICS_YES})
    assert body["dropped"] == [{"index": 0, "reason": "consent_required"}]
    set_consent(client, app_h, subject)
    restrict(runtime, subject)
    body = segment(client, key, {**signed_in, "messageId": "d"})
    assert body["dropped"] == [{"index": 0, "reason": "processing_restricted"}]
    assert [e.message_id for e in events(runtime)] == ["b"]
    counted = violations(runtime, source_id)
    assert counted[("consent_required", "Signed In")] == 2
    assert counted[("processing_restricted", "Signed In")] == 1


def test_a_subject_with_nothing_on_record_follows_the_message_consent(
    client: TestClient, runtime: Runtime, app_h: dict[str, str], source: tuple[str, str]
) -> None:
    _, key = source
    subject = new_profile(client, app_h, "shop-3")
    msg = {"type": "track", "userId": "shop-3", "event": "Signed In"}
    assert segment(client, key, {**msg, "context": ANALYTICS_YES})["accepted"] == 1
    assert segment(client, key, {**msg, "context": ANALYTICS_NO})["accepted"] == 0
    assert [e.subject_id for e in events(runtime)] == [subject]


def test_anonymous_visitor_category_preferences_and_memory(
    client: TestClient, runtime: Runtime, source: tuple[str, str]
) -> None:
    _, key = source
    msg = {"type": "track", "anonymousId": "v-1", "event": "Signed In"}
    assert segment(client, key, msg)["dropped"][0]["reason"] == "consent_required"
    # Keyed by the purpose id or an alias that purposes.yaml declares.
    by_id = {"consent": {"categoryPreferences": {"analytics": True, "Advertising": False}}}
    assert segment(client, key, {**msg, "context": by_id})["accepted"] == 1
    # The visitor's choice is remembered for messages that do not repeat it ...
    assert segment(client, key, msg)["accepted"] == 1
    # ... and so is its withdrawal, although nothing of that message is stored.
    assert segment(client, key, {**msg, "context": ANALYTICS_NO})["accepted"] == 0
    assert segment(client, key, msg)["accepted"] == 0
    assert len(events(runtime)) == 2
    assert "v-1" not in dump(runtime)


def test_rudderstack_consent_management(
    client: TestClient, runtime: Runtime, source: tuple[str, str]
) -> None:
    _, key = source

    def managed(allowed: list[str], denied: list[str]) -> dict[str, Any]:
        cm = {"provider": "oneTrust", "allowedConsentIds": allowed, "deniedConsentIds": denied}
        return {
            "type": "track",
            "anonymousId": f"r-{len(allowed)}-{len(denied)}",
            "event": "Signed In",
            "context": {"consentManagement": cm},
        }

    assert segment(client, key, managed(["Analytics"], []))["accepted"] == 1
    assert segment(client, key, managed(["C0001"], ["analytics"]))["accepted"] == 0
    assert segment(client, key, managed(["analytics", "marketing"], ["analytics"]))["accepted"] == 0
    assert len(events(runtime)) == 1


# --- identity resolution ------------------------------------------------------------------------


def test_identify_links_the_visitor_and_backfills_its_events(
    client: TestClient, runtime: Runtime, app_h: dict[str, str], source: tuple[str, str]
) -> None:
    _, key = source
    subject = new_profile(client, app_h, "shop-4")
    set_consent(client, app_h, subject)
    browse = {
        "type": "track",
        "anonymousId": "v-4",
        "event": "Product Viewed",
        "properties": {"product_id": "p1"},
        "context": ANALYTICS_YES,
        "timestamp": "2026-11-24T09:00:00Z",
    }
    segment(client, key, browse)
    [anonymous] = events(runtime)
    assert anonymous.subject_id is None and daily(runtime, subject) == {}
    body = segment(
        client,
        key,
        {"type": "identify", "userId": "shop-4", "anonymousId": "v-4", "traits": {}},
        {**browse, "timestamp": "2026-11-25T09:00:00Z"},  # after the identify: the subject's
    )
    assert body["accepted"] == 2
    assert {e.subject_id for e in events(runtime)} == {subject}
    assert daily(runtime, subject) == {
        ("2026-11-24", "Product Viewed"): (1, 0.0),
        ("2026-11-25", "Product Viewed"): (1, 0.0),
    }
    # An alias names the visitor and the user the same way.
    segment(client, key, {**browse, "anonymousId": "v-5"})
    segment(client, key, {"type": "alias", "previousId": "v-5", "userId": "shop-4"})
    assert {e.subject_id for e in events(runtime)} == {subject}
    assert activity(runtime, subject).events == 3  # type: ignore[union-attr]


def test_unknown_user_id_counts_as_the_visitor_or_is_dropped(
    client: TestClient, runtime: Runtime, source: tuple[str, str]
) -> None:
    source_id, key = source
    msg = {"type": "track", "userId": "not-yet-a-profile", "event": "Signed In"}
    body = segment(client, key, {**msg, "anonymousId": "v-6", "context": ANALYTICS_YES}, msg)
    assert body["accepted"] == 1 and body["dropped"] == [{"index": 1, "reason": "unknown_subject"}]
    [event] = events(runtime)
    assert event.subject_id is None and event.anonymous_key
    assert "not-yet-a-profile" not in dump(runtime)
    assert violations(runtime, source_id)[("unknown_subject", "Signed In")] == 1


# --- the plan, its violations, rollups and sealed properties ------------------------------------


def test_plan_violations_are_counted_and_visible(
    client: TestClient, runtime: Runtime, token_for: Headers, source: tuple[str, str]
) -> None:
    source_id, key = source
    visitor = {"type": "track", "anonymousId": "v", "context": ANALYTICS_YES}
    body = segment(
        client,
        key,
        {**visitor, "event": "Rocket Launched"},
        {**visitor, "event": "Product Viewed", "properties": {"product_id": "p", "gift": 1}},
        {**visitor, "event": "Product Viewed", "properties": {"product_id": "p", "price": "9"}},
        {**visitor, "event": "Product Viewed", "properties": {"price": 9}},
        {**visitor, "event": "Order Completed", "properties": {"order_id": "o", "revenue": "9"}},
    )
    assert body["accepted"] == 2
    assert body["dropped"] == [
        {"index": 0, "reason": "unplanned_event"},
        {"index": 3, "reason": "missing_property"},
        {"index": 4, "reason": "type_mismatch"},
    ]
    stored = [e.properties for e in events(runtime)]
    assert stored == [{"product_id": "p"}, {"product_id": "p"}]  # gift and price left out
    admin = token_for("admin")
    resp = client.get(f"/v1/sources/{source_id}/violations", headers=admin)
    assert resp.status_code == 200, resp.text
    seen = {(v["kind"], v["name"]): v["count"] for v in resp.json()["items"]}
    assert seen == {
        ("unplanned_event", "Rocket Launched"): 1,
        ("unplanned_property", "Product Viewed.gift"): 1,
        ("type_mismatch", "Product Viewed.price"): 1,
        ("missing_property", "Product Viewed.product_id"): 1,
        ("type_mismatch", "Order Completed.revenue"): 1,
    }
    page = client.get(f"/v1/sources/{source_id}/violations?limit=2", headers=admin).json()
    rest = client.get(
        f"/v1/sources/{source_id}/violations",
        params={"cursor": page["next_cursor"], "limit": 10},
        headers=admin,
    ).json()
    assert len(page["items"]) == 2 and len(rest["items"]) == 3 and rest["next_cursor"] is None
    missing = client.get("/v1/sources/src_nothing/violations", headers=admin)
    assert missing.status_code == 404


def test_reject_mode_refuses_the_whole_message(
    tmp_path: Path, client: TestClient, runtime: Runtime, source: tuple[str, str]
) -> None:
    folder = tmp_path / "policies"
    shutil.copytree(DEMO, folder)
    plan = folder / "tracking-plan.yaml"
    text = plan.read_text().replace("unplanned_properties: drop", "unplanned_properties: reject")
    plan.write_text(text.replace("unplanned_events: drop", "unplanned_events: reject"))
    runtime.policy = load_policy(folder)
    _, key = source
    visitor = {"type": "track", "anonymousId": "v", "context": ANALYTICS_YES}
    extra = {**visitor, "event": "Product Viewed", "properties": {"product_id": "p", "gift": 1}}
    body = segment(client, key, extra, {**visitor, "event": "Signed In"})
    assert body["accepted"] == 1 and body["dropped"] == [
        {"index": 0, "reason": "unplanned_property"}
    ]
    resp = client.post("/v1/track", json={**visitor, "event": "Rocket"}, headers=basic(key))
    assert resp.status_code == 400 and resp.json()["code"] == "invalid_message"


def test_rollups_after_a_batch(client: TestClient, runtime: Runtime, app_h: dict[str, str]) -> None:
    subject = new_profile(client, app_h, "shop-5")
    set_consent(client, app_h, subject)
    native(
        client,
        app_h,
        order("shop-5", "o1", 199.9),
        order("shop-5", "o2", 100.1),
        {**order("shop-5", "o3", 50), "timestamp": "2026-11-26T01:00:00+08:00"},
        {
            "message_id": "s1",
            "external_id": "shop-5",
            "name": "Signed In",
            "timestamp": "2026-11-24T23:59:59Z",
        },
    )
    assert daily(runtime, subject) == {
        ("2026-11-25", "Order Completed"): (
            3,
            350.0,
        ),  # 01:00 in Beijing is 17:00 UTC the day before
        ("2026-11-24", "Signed In"): (1, 0.0),
    }
    seen = activity(runtime, subject)
    assert seen is not None and seen.events == 4
    assert seen.first_seen.isoformat() == "2026-11-24T23:59:59+00:00"
    assert seen.last_seen.isoformat() == "2026-11-25T17:00:00+00:00"
    # A second batch adds to the same rows.
    native(client, app_h, order("shop-5", "o4", 0.5))
    assert daily(runtime, subject)[("2026-11-25", "Order Completed")] == (4, 350.5)


def test_pi_property_is_sealed_and_read_back_only_where_allowed(
    client: TestClient, runtime: Runtime, app_h: dict[str, str], token_for: Headers
) -> None:
    subject = new_profile(client, app_h, "shop-6")
    set_consent(client, app_h, subject)
    native(client, app_h, order("shop-6", "o1", 88, shipping_city="杭州市西湖区"))
    [event] = events(runtime)
    assert "shipping_city" not in event.properties and event.sealed["shipping_city"]
    assert "杭州" not in dump(runtime)
    # analytics covers `location`: the city is opened for it.
    url = f"/v1/profiles/{subject}/events"
    got = client.get(url, headers={**app_h, "X-Purpose": "analytics"})
    assert got.status_code == 200, got.text
    [item] = got.json()["items"]
    assert item["properties"]["shipping_city"] == "杭州市西湖区"
    assert item["properties"]["revenue"] == 88
    # customer_care sees transactions, not locations.
    set_consent_care(client, app_h, subject)
    got = client.get(url, headers={**app_h, "X-Purpose": "customer_care"})
    [item] = got.json()["items"]
    assert "shipping_city" not in item["properties"] and item["properties"]["order_id"] == "o1"
    with unit_of_work(runtime.sessions) as session:
        reads = (
            session.query(AuditEntry)
            .filter(AuditEntry.action == "events.read")
            .order_by(AuditEntry.seq)
            .all()
        )
        assert [r.fields for r in reads] == [["Order Completed.shipping_city"], []]
    # An anonymous visitor has no key to seal with: the PI property is dropped and counted.
    source_id, key = new_source(client, token_for("admin"))
    segment(
        client,
        key,
        {
            "type": "track",
            "anonymousId": "v",
            "event": "Order Completed",
            "properties": {"order_id": "o9", "revenue": 1, "shipping_city": "杭州"},
            "context": ANALYTICS_YES,
        },
    )
    assert (
        violations(runtime, source_id)[("pi_without_subject", "Order Completed.shipping_city")] == 1
    )
    assert "杭州" not in dump(runtime)


def set_consent_care(client: TestClient, app_h: dict[str, str], subject: str) -> None:
    body = {
        "purpose": "customer_care",
        "state": "granted",
        "notice_id": "privacy-notice",
        "notice_version": 2,
        "channel": "web",
        "evidence": {"text_sha256": "ab" * 32, "locale": "zh-CN"},
    }
    assert (
        client.post(f"/v1/profiles/{subject}/consents", json=body, headers=app_h).status_code == 201
    )


def test_reading_events_is_purpose_checked_and_paged(
    client: TestClient, runtime: Runtime, app_h: dict[str, str], token_for: Headers
) -> None:
    subject = new_profile(client, app_h, "shop-8")
    url = f"/v1/profiles/{subject}/events"
    # No analytics consent on record: the read is refused like any other use.
    resp = client.get(url, headers={**app_h, "X-Purpose": "analytics"})
    assert resp.status_code == 403 and resp.json()["code"] == "consent_required"
    set_consent(client, app_h, subject)
    native(
        client,
        app_h,
        *[
            {
                "message_id": f"p{i}",
                "external_id": "shop-8",
                "name": "Product Viewed",
                "properties": {"product_id": f"sku-{i}"},
                "timestamp": f"2026-11-2{i}T00:00:00Z",
            }
            for i in range(5)
        ],
        order("shop-8", "o1", 10),
    )
    first = client.get(url, params={"limit": 4}, headers={**app_h, "X-Purpose": "analytics"})
    body = first.json()
    assert [i["name"] for i in body["items"]][:1] == ["Order Completed"]
    rest = client.get(
        url,
        params={"limit": 4, "cursor": body["next_cursor"]},
        headers={**app_h, "X-Purpose": "analytics"},
    ).json()
    ids = [i["message_id"] for i in body["items"] + rest["items"]]
    assert ids == ["o1", "p4", "p3", "p2", "p1", "p0"] and rest["next_cursor"] is None
    # service_delivery sees transactions but not browsing behaviour.
    contract = client.get(url, headers={**app_h, "X-Purpose": "service_delivery"}).json()
    assert [i["message_id"] for i in contract["items"]] == ["o1"]
    missing = "00000000-0000-4000-8000-000000000000"
    resp = client.get(
        f"/v1/profiles/{missing}/events", headers={**app_h, "X-Purpose": "service_delivery"}
    )
    assert resp.status_code == 404


def test_expiry_per_event_type_and_subject_erasure(
    client: TestClient, runtime: Runtime, app_h: dict[str, str]
) -> None:
    subject = new_profile(client, app_h, "shop-9")
    set_consent(client, app_h, subject)
    now = datetime.now(UTC)
    old = (now - timedelta(days=120)).isoformat()
    native(
        client,
        app_h,
        {
            "message_id": "a",
            "external_id": "shop-9",
            "name": "Product Viewed",
            "properties": {"product_id": "x"},
            "timestamp": old,
        },  # kept 180 days
        {"message_id": "b", "external_id": "shop-9", "type": "page", "timestamp": old},  # 90
        {"message_id": "c", "external_id": "shop-9", "name": "Signed In"},
    )
    with unit_of_work(runtime.sessions) as session:
        removed = history.expire(session, policy=runtime.policy, now=now)
    assert removed["Page Viewed"] == 1 and removed["Product Viewed"] == 0
    assert sorted(e.message_id for e in events(runtime)) == ["a", "c"]
    with unit_of_work(runtime.sessions) as session:
        assert history.erase_subject(session, subject_id=subject) == 2
    assert events(runtime) == [] and daily(runtime, subject) == {}
