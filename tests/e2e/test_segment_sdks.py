"""The real Segment and RudderStack Python SDKs pointed at a real `cdp serve` process: identify,
track, page, screen, alias, group and a batch flush arrive once each; a bad write key makes the
SDK report an error and carry on."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rudderstack.analytics.client import Client as RudderClient
from segment.analytics.client import Client as SegmentClient
from sqlalchemy import create_engine, text

from tests.e2e.server import cdp, cdp_env, running_server

CONSENT = {"consent": {"categoryPreferences": {"Analytics": True}}}
RUDDER_CONSENT = {"consentManagement": {"provider": "custom", "allowedConsentIds": ["analytics"]}}
SHA = "ab" * 32


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A server on embedded SQLite, a source's write key, and a customer with analytics consent."""
    state = tmp_path_factory.mktemp("sdk") / "state"
    env = cdp_env(state, CDP_JWT_SECRET="e2e-secret-" + "s" * 32)
    with running_server(env) as base:
        made = cdp(env, "sources", "create", "--name", "shop-web", "--json")
        assert made.returncode == 0, made.stderr
        source = json.loads(made.stdout)
        app = json.loads(
            cdp(env, "clients", "create", "--name", "shop", "--role", "app", "--json").stdout
        )
        token = httpx.post(
            f"{base}/v1/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": app["client_id"],
                "client_secret": app["client_secret"],
            },
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        subjects = {}
        for external_id in ("seg-user", "rudder-user"):
            resp = httpx.post(
                f"{base}/v1/profiles",
                json={"external_id": external_id},
                headers={**headers, "X-Purpose": "service_delivery"},
            )
            assert resp.status_code == 201, resp.text
            subjects[external_id] = resp.json()["id"]
            consent = {
                "purpose": "analytics",
                "state": "granted",
                "notice_id": "privacy-notice",
                "notice_version": 2,
                "channel": "web",
                "evidence": {"text_sha256": SHA, "locale": "zh-CN"},
            }
            url = f"{base}/v1/profiles/{subjects[external_id]}/consents"
            assert httpx.post(url, json=consent, headers=headers).status_code == 201
        yield {"base": base, "write_key": source["write_key"], "db": state / "cdp.db", **subjects}


def stored(db: Path, message_ids: list[str]) -> dict[str, list[tuple[str, str | None]]]:
    """(type, subject) of each stored event with one of the message ids."""
    engine = create_engine(f"sqlite:///{db}")
    out: dict[str, list[tuple[str, str | None]]] = {m: [] for m in message_ids}
    with engine.connect() as conn:
        for mid, kind, subject in conn.execute(
            text("SELECT message_id, type, subject_id FROM event")
        ):
            if mid in out:
                out[mid].append((kind, subject))
    engine.dispose()
    return out


def _send_all(client: Any, user: str, anon: str, context: dict[str, Any]) -> list[str]:
    sent = [
        client.identify(user, {"membership_level": "gold"}, anonymous_id=anon),
        client.track(user, "Order Completed", {"order_id": "SO-1", "revenue": 299.0}),
        client.track(user, "Product Viewed", {"product_id": "SKU-1", "price": 9.9}),
        client.page(anonymous_id=anon, name="首页", properties={"path": "/"}, context=context),
        client.screen(user, name="Cart"),
        client.alias(anon + "-old", user),
        client.group(user, "store-hz-01", {"name": "Hangzhou West Lake"}),
    ]
    for ok, _ in sent:
        assert ok
    client.flush()
    client.join()
    return [msg["messageId"] for _, msg in sent]


def test_segment_analytics_python(server: dict[str, Any]) -> None:
    errors: list[Exception] = []
    client = SegmentClient(
        server["write_key"],
        host=server["base"],
        on_error=lambda e, batch: errors.append(e),
        gzip=True,
        upload_size=3,
    )
    ids = _send_all(client, "seg-user", "seg-anon", CONSENT)
    assert not errors, errors
    got = stored(server["db"], ids)
    assert all(len(rows) == 1 for rows in got.values()), got
    kinds = sorted(rows[0][0] for rows in got.values())
    assert kinds == ["alias", "group", "identify", "page", "screen", "track", "track"]
    # The page came with the anonymous id only; identify had linked it to the customer.
    assert {rows[0][1] for rows in got.values()} == {server["seg-user"]}


def test_rudder_sdk_python(server: dict[str, Any]) -> None:
    errors: list[Exception] = []
    client = RudderClient(
        server["write_key"],
        host=server["base"],
        on_error=lambda e, batch: errors.append(e),
        upload_size=4,
    )
    ids = _send_all(client, "rudder-user", "rudder-anon", RUDDER_CONSENT)
    assert not errors, errors
    got = stored(server["db"], ids)
    assert all(len(rows) == 1 for rows in got.values()), got
    assert {rows[0][1] for rows in got.values()} == {server["rudder-user"]}


def test_a_flush_twice_and_a_resent_batch_store_each_message_once(server: dict[str, Any]) -> None:
    client = SegmentClient(server["write_key"], host=server["base"], sync_mode=True)
    ok, msg = client.track("seg-user", "Signed In", {"method": "wechat"})
    assert ok
    # The SDK retried after a lost response: the same batch again.
    body = {"batch": [msg], "writeKey": server["write_key"]}
    resent = httpx.post(f"{server['base']}/v1/batch", json=body)
    assert resent.status_code == 200 and resent.json()["duplicates"] == 1
    assert len(stored(server["db"], [msg["messageId"]])[msg["messageId"]]) == 1


@pytest.mark.parametrize("sdk", [SegmentClient, RudderClient])
def test_bad_write_key_is_reported_without_crashing(server: dict[str, Any], sdk: Any) -> None:
    errors: list[Any] = []
    done = threading.Event()

    def on_error(exc: Exception, batch: Any) -> None:
        errors.append(exc)
        done.set()

    client = sdk("wk_not-a-key", host=server["base"], on_error=on_error, max_retries=1)
    ok, msg = client.track("seg-user", "Signed In", {"method": "wechat"})
    assert ok
    client.flush()
    client.join()
    assert done.wait(10)
    assert getattr(errors[0], "status", None) == 401
    assert getattr(errors[0], "code", None) == "invalid_write_key"
    assert stored(server["db"], [msg["messageId"]])[msg["messageId"]] == []
