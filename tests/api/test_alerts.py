"""Alerts: fire on a synthetic drop or spike and not on noise, de-duplicate, move through their
lifecycle, and reach a webhook receiver (a real local HTTP server) that verifies the signature.
SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import random
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select
from typer.testing import CliRunner

from cdp.alerts import service as alerts
from cdp.alerts import webhooks
from cdp.alerts.models import Alert, WebhookDelivery
from cdp.api import Runtime
from cdp.audit.service import RequestContext
from cdp.cli import app as cli
from cdp.consent.models import CrossBorderTransfer
from cdp.db import unit_of_work
from cdp.events.models import SubjectDaily
from cdp.feedback.models import Feedback
from cdp.rights.models import RightsRequest

Headers = Callable[..., dict[str, str]]


@pytest.fixture
def admin_h(token_for: Headers) -> dict[str, str]:
    return token_for("admin")


def in_session(rt: Runtime, fn: Callable[[Any], Any]) -> Any:
    with unit_of_work(rt.sessions) as session:
        session.info["ctx"] = RequestContext(rt.policy.version)
        return fn(session)


def complaints(rt: Runtime, per_day: dict[int, int]) -> None:
    """`n` complaints `days_ago` days back (0 = today, UTC), written directly."""
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=30, microsecond=0)
    rows = []
    for days_ago, n in per_day.items():
        at = midnight - timedelta(days=days_ago)
        for _ in range(n):
            rows.append(
                {
                    "id": str(uuid.uuid4()),
                    "subject_id": str(uuid.uuid4()),
                    "kind": "complaint",
                    "status": "open",
                    "purpose": "service_delivery",
                    "reopen_count": 0,
                    "created_by": "client:test",
                    "created_at": at,
                    "updated_at": at,
                }
            )
    in_session(rt, lambda s: s.execute(insert(Feedback), rows))


def evaluate(client: TestClient, h: dict[str, str]) -> dict[str, Any]:
    resp = client.post("/v1/alerts/evaluate", headers=h)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def test_complaint_spike_fires_on_a_spike_not_on_noise_and_once(
    client: TestClient, admin_h: dict[str, str], runtime: Runtime
) -> None:
    rule = client.post(
        "/v1/alert-rules",
        json={
            "kind": "complaint_spike",
            "name": "投诉激增",
            "params": {"sigma": 3, "min_count": 5},
        },
        headers=admin_h,
    )
    assert rule.status_code == 201, rule.text
    noise = random.Random(3)
    complaints(runtime, {d: noise.randint(3, 7) for d in range(1, 29)})
    complaints(runtime, {0: 7})  # a busy day within the noise
    first = evaluate(client, admin_h)
    assert first["raised"] == [] and first["checks"] == 3

    complaints(runtime, {0: 18})  # 25 today: far above mean + 3 sigma
    spike = evaluate(client, admin_h)
    (alert,) = spike["raised"]
    assert alert["kind"] == "complaint_spike" and alert["status"] == "open"
    assert alert["detail"]["count"] == 25 and alert["rule_id"] == rule.json()["id"]
    assert alert["detail"]["threshold"] < 25

    again = evaluate(client, admin_h)  # the same spike is not raised twice
    assert again["raised"] == [] and again["updated"] == 1
    listed = client.get("/v1/alerts?status=open", headers=admin_h).json()["items"]
    assert [a["id"] for a in listed] == [alert["id"]] and listed[0]["seen"] == 2

    ack = client.patch(
        f"/v1/alerts/{alert['id']}", json={"status": "acknowledged"}, headers=admin_h
    )
    assert ack.status_code == 200 and ack.json()["acknowledged_by"].startswith("client:")
    assert evaluate(client, admin_h)["raised"] == []  # acknowledged still counts as open
    done = client.patch(f"/v1/alerts/{alert['id']}", json={"status": "resolved"}, headers=admin_h)
    assert done.status_code == 200 and done.json()["status"] == "resolved"
    back = client.patch(
        f"/v1/alerts/{alert['id']}", json={"status": "acknowledged"}, headers=admin_h
    )
    assert back.status_code == 409 and back.json()["code"] == "invalid_transition"
    # Resolved while the spike goes on: the next evaluation raises it again.
    assert len(evaluate(client, admin_h)["raised"]) == 1


def test_activity_drop_fires_for_the_dropping_subject_only(
    client: TestClient, admin_h: dict[str, str], runtime: Runtime
) -> None:
    steady, dropping = str(uuid.uuid4()), str(uuid.uuid4())
    noise = random.Random(5)
    today = datetime.now(UTC).date()
    rows = []
    for days_ago in range(1, 36):
        recent = days_ago <= 7
        for subject in (steady, dropping):
            count = noise.randint(8, 12)
            if subject == dropping and recent:
                count = noise.randint(0, 3)
            rows.append(
                {
                    "subject_id": subject,
                    "day": today - timedelta(days=days_ago),
                    "name": "Page Viewed",
                    "count": count,
                    "revenue": Decimal("0"),
                }
            )
    in_session(runtime, lambda s: s.execute(insert(SubjectDaily), rows))
    for subject in (steady, dropping):
        resp = client.post(
            "/v1/alert-rules",
            json={"kind": "activity_drop", "name": "活跃度", "params": {"subject_id": subject}},
            headers=admin_h,
        )
        assert resp.status_code == 201, resp.text
    result = evaluate(client, admin_h)
    (alert,) = result["raised"]
    assert alert["kind"] == "activity_drop" and alert["subject_id"] == dropping
    assert alert["detail"]["drop"] > 0.5
    assert alert["detail"]["baseline_per_day"] >= 8


def test_rights_requests_near_due_date_and_cross_border(
    client: TestClient, admin_h: dict[str, str], runtime: Runtime
) -> None:
    now = datetime.now(UTC)

    def request(status: str, due_in: timedelta) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()),
            "subject_id": str(uuid.uuid4()),
            "type": "access",
            "status": status,
            "submitted_by": "app",
            "actor": "client:test",
            "details": {},
            "received_at": now - timedelta(days=10),
            "due_at": now + due_in,
            "extended": False,
            "updated_at": now,
        }

    rows = [
        request("verified", timedelta(hours=20)),  # due tomorrow: warning
        request("in_progress", timedelta(days=-1)),  # overdue: critical
        request("completed", timedelta(hours=20)),  # done: nothing
        request("verified", timedelta(days=40)),  # far away: nothing
    ]
    in_session(runtime, lambda s: s.execute(insert(RightsRequest), rows))
    result = evaluate(client, admin_h)
    found = {a["detail"]["request_id"]: a["severity"] for a in result["raised"]}
    assert found == {rows[0]["id"]: "warning", rows[1]["id"]: "critical"}
    # Answered: the alert resolves itself on the next run; the overdue one stays.
    done = rows[0]["id"]

    def complete(session: Any) -> None:
        request = session.get(RightsRequest, done)
        request.status, request.completed_at = "completed", now

    in_session(runtime, complete)
    after = evaluate(client, admin_h)
    assert after["cleared"] == 1 and after["updated"] == 1 and after["raised"] == []
    resolved = client.get("/v1/alerts?status=resolved", headers=admin_h).json()["items"]
    assert [a["detail"]["request_id"] for a in resolved] == [done]
    assert resolved[0]["resolved_by"] == "system:alerts"

    # Cross-border: 4 of 5 people (80 %) under a policy with a tiny threshold.
    policy = dataclasses.replace(
        runtime.policy,
        settings=runtime.policy.settings.model_copy(update={"cross_border_people_per_year": 5}),
    )
    transfers = [
        {
            "subject_id": str(uuid.uuid4()),
            "year": (now + timedelta(hours=8)).year,
            "purpose": "cross_border_transfer",
            "sensitive": False,
            "first_at": now,
        }
        for _ in range(4)
    ]
    in_session(runtime, lambda s: s.execute(insert(CrossBorderTransfer), transfers))
    assert evaluate(client, admin_h)["raised"] == []  # 4 of 100,000 under the real policy
    raised = in_session(
        runtime, lambda s: [a.kind for a in alerts.evaluate(s, policy=policy, actor="t").raised]
    )
    assert raised == ["cross_border"]


class Receiver:
    """A webhook receiver: checks each request's signature; fails the first `fail` requests."""

    def __init__(self, fail: int) -> None:
        self.secret = ""
        self.fail = fail
        self.received: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stamp = self.headers["X-CDP-Timestamp"]
                mac = hmac.new(
                    receiver.secret.encode(), stamp.encode() + b"." + body, hashlib.sha256
                ).hexdigest()
                valid = hmac.compare_digest("sha256=" + mac, self.headers["X-CDP-Signature"])
                receiver.received.append(
                    {
                        "valid": valid,
                        "delivery": self.headers["X-CDP-Delivery"],
                        "body": json.loads(body),
                    }
                )
                code = 500 if len(receiver.received) <= receiver.fail else 204
                self.send_response(code if valid else 401)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/cdp"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver(fail=1)
    found.thread.start()
    yield found
    found.server.shutdown()
    found.server.server_close()


def test_webhook_is_signed_retried_with_backoff_and_logged(
    client: TestClient, admin_h: dict[str, str], runtime: Runtime, receiver: Receiver
) -> None:
    created = client.post(
        "/v1/alert-webhooks",
        json={"url": receiver.url, "kinds": ["complaint_spike"]},
        headers=admin_h,
    )
    assert created.status_code == 201, created.text
    receiver.secret = created.json()["secret"]
    endpoint = created.json()["id"]
    listed = client.get("/v1/alert-webhooks", headers=admin_h).json()["items"]
    assert "secret" not in listed[0]
    client.post(
        "/v1/alert-rules",
        json={"kind": "complaint_spike", "name": "spike", "params": {"min_count": 3}},
        headers=admin_h,
    )
    complaints(runtime, {0: 6})
    result = evaluate(client, admin_h)
    assert len(result["raised"]) == 1 and result["deliveries_attempted"] == 1
    assert result["deliveries_delivered"] == 0  # the receiver answered 500 the first time
    (first,) = receiver.received
    assert first["valid"] and first["body"]["alert"]["id"] == result["raised"][0]["id"]

    log = client.get(f"/v1/alert-webhooks/{endpoint}/deliveries", headers=admin_h).json()
    (entry,) = log["items"]
    assert entry["status"] == "pending" and entry["attempts"] == 1
    assert entry["last_status_code"] == 500
    wait = datetime.fromisoformat(entry["next_at"]) - datetime.fromisoformat(entry["created_at"])
    assert wait == timedelta(seconds=webhooks.BACKOFF_SECONDS)

    # Not yet due: nothing is sent; once due, the retry goes through.
    run = in_session(runtime, lambda s: webhooks.deliver_due(s))
    assert run.attempted == 0
    later = datetime.fromisoformat(entry["next_at"]) + timedelta(seconds=1)
    run = in_session(runtime, lambda s: webhooks.deliver_due(s, now=later))
    assert (run.attempted, run.delivered) == (1, 1)
    assert len(receiver.received) == 2 and receiver.received[1]["valid"]
    assert receiver.received[0]["delivery"] == receiver.received[1]["delivery"]
    (entry,) = client.get(f"/v1/alert-webhooks/{endpoint}/deliveries", headers=admin_h).json()[
        "items"
    ]
    assert entry["status"] == "delivered" and entry["attempts"] == 2
    # A receiver with another secret would refuse the signature.
    body = json.dumps(first["body"]).encode()
    assert not webhooks.verify(
        "whsec_other", "1700000000", body, webhooks.signature(receiver.secret, 1700000000, body)
    )
    assert client.delete(f"/v1/alert-webhooks/{endpoint}", headers=admin_h).status_code == 204
    with unit_of_work(runtime.sessions) as session:
        assert session.scalar(select(func.count()).select_from(WebhookDelivery)) == 1
        assert session.scalar(select(func.count()).select_from(Alert)) == 1


def test_bad_rules_are_422(client: TestClient, admin_h: dict[str, str]) -> None:
    for params in (
        {"unknown": 1},
        {"drop_ratio": 1.5},
        {"segment": "vip", "subject_id": "x"},
        {"recent_days": -3},
        {"recent_days": "seven"},
        {"segment": "no_such_segment"},
        {"each": "perhaps"},
    ):
        resp = client.post(
            "/v1/alert-rules",
            json={"kind": "activity_drop", "name": "x", "params": params},
            headers=admin_h,
        )
        assert resp.status_code == 422, (params, resp.text)
    resp = client.post("/v1/alert-webhooks", json={"url": "ftp://example.cn/x"}, headers=admin_h)
    assert resp.status_code == 422
    assert client.get("/v1/alert-rules", headers=admin_h).json()["items"] == []


def test_cli_alerts_run(client: TestClient, admin_h: dict[str, str], runtime: Runtime) -> None:
    s = runtime.settings
    env = {
        "CDP_DATABASE_URL": s.resolved_database_url(),
        "CDP_KEYSTORE_URL": s.resolved_keystore_url(),
        "CDP_DATA_DIR": str(s.data_dir),
        "CDP_JWT_SECRET": s.jwt_secret or "",
        "CDP_LOG_JSON": "false",
    }
    client.post(
        "/v1/alert-rules",
        json={"kind": "complaint_spike", "name": "spike", "params": {"min_count": 3}},
        headers=admin_h,
    )
    complaints(runtime, {0: 4})
    runner = CliRunner()
    first = runner.invoke(cli, ["alerts", "run", "--json"], env=env)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.output)
    assert [a["kind"] for a in summary["raised"]] == ["complaint_spike"]
    second = runner.invoke(cli, ["alerts", "run"], env=env)
    assert second.exit_code == 0 and "0 new alerts, 1 still open" in second.output


def daily_activity(rt: Runtime, subjects: dict[str, bool], seed: int) -> None:
    """35 days of 8-12 events a day per subject; the last 7 days drop to 0-3 where True."""
    noise = random.Random(seed)
    today = datetime.now(UTC).date()
    rows = []
    for subject, drops in subjects.items():
        for days_ago in range(1, 36):
            count = noise.randint(0, 3) if drops and days_ago <= 7 else noise.randint(8, 12)
            rows.append(
                {
                    "subject_id": subject,
                    "day": today - timedelta(days=days_ago),
                    "name": "Order Completed",
                    "count": count,
                    "revenue": Decimal("0"),
                }
            )
    in_session(rt, lambda s: s.execute(insert(SubjectDaily), rows))


def test_activity_drop_per_member_of_a_segment(
    client: TestClient,
    admin_h: dict[str, str],
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    steady, dropping, outsider = (str(uuid.uuid4()) for _ in range(3))
    daily_activity(runtime, {steady: False, dropping: True, outsider: True}, seed=11)
    monkeypatch.setattr(
        alerts,
        "segment_members",
        lambda session, *, policy, key, purpose: [steady, dropping] if key == "vip" else [],
    )
    each = client.post(
        "/v1/alert-rules",
        json={"kind": "activity_drop", "name": "VIP", "params": {"segment": "vip", "each": True}},
        headers=admin_h,
    )
    assert each.status_code == 201 and each.json()["params"]["each"] is True
    whole = client.post(
        "/v1/alert-rules",
        json={"kind": "activity_drop", "name": "VIP 整体", "params": {"segment": "vip"}},
        headers=admin_h,
    )
    assert whole.status_code == 201
    raised = evaluate(client, admin_h)["raised"]
    # One member of two dropped: an alert for that member; the segment as a whole fell by
    # about 40 %, under the 50 % of drop_ratio: no segment alert.
    assert [(a["subject_id"], a["rule_id"]) for a in raised] == [(dropping, each.json()["id"])]
    assert evaluate(client, admin_h)["raised"] == []
