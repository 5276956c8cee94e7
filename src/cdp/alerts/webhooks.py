"""Signed webhook delivery of alerts, with retries and back-off and a delivery log.

Each POST carries the alert as JSON and these headers:
- `X-CDP-Timestamp`: Unix seconds when the request was signed;
- `X-CDP-Signature`: `sha256=` + hex HMAC-SHA256 under the endpoint's secret of
  `<timestamp>.` followed by the raw body bytes;
- `X-CDP-Delivery`: the delivery id (the same on every retry, for de-duplication).
A receiver recomputes the HMAC, compares in constant time and refuses old timestamps.
A delivery that fails (no 2xx, or no answer within TIMEOUT) is retried after BACKOFF * 2^n
seconds, MAX_ATTEMPTS times in all; each attempt updates its row in `webhook_delivery`.
Delivery is at least once: an attempt may run before the evaluation's transaction commits.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cdp.alerts.models import Alert, WebhookDelivery, WebhookEndpoint
from cdp.audit import service as audit
from cdp.db import utcnow
from cdp.errors import NotFound, ValidationFailed

MAX_ATTEMPTS = 6
BACKOFF_SECONDS = 30
TIMEOUT_SECONDS = 5.0
SIGNATURE_HEADER = "X-CDP-Signature"
TIMESTAMP_HEADER = "X-CDP-Timestamp"
DELIVERY_HEADER = "X-CDP-Delivery"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The X-CDP-Signature value for a body sent at `timestamp`."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, header: str) -> bool:
    """What a receiver does (used by tests and as a reference for integrators)."""
    try:
        expected = signature(secret, int(timestamp), body)
    except ValueError:
        return False
    return hmac.compare_digest(expected, header)


@dataclass(frozen=True, slots=True)
class Response:
    status: int | None
    error: str | None


Sender = Callable[[str, bytes, dict[str, str]], Response]


def post(url: str, body: bytes, headers: dict[str, str]) -> Response:
    """POST with the standard library; errors are named by kind, never by content."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as answer:  # noqa: S310
            return Response(int(answer.status), None)
    except urllib.error.HTTPError as exc:
        return Response(int(exc.code), f"HTTP {exc.code}")
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        return Response(None, type(exc).__name__)


def _check_url(url: str) -> None:
    if not (url.startswith("https://") or url.startswith("http://")):
        message = "the webhook URL must be http or https"
        raise ValidationFailed(
            message, errors=[{"loc": ["body", "url"], "msg": message, "type": "value_error"}]
        )


def create_endpoint(
    session: Session, *, actor: str, url: str, kinds: list[str]
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its signing secret (returned once)."""
    _check_url(url)
    secret = "whsec_" + secrets.token_urlsafe(32)
    endpoint = WebhookEndpoint(
        id=str(uuid.uuid4()),
        url=url,
        secret=secret,
        kinds=sorted(set(kinds)),
        enabled=True,
        created_by=actor,
        created_at=utcnow(),
    )
    session.add(endpoint)
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="alerts.webhook_create",
        detail={"endpoint_id": endpoint.id, "kinds": endpoint.kinds},
    )
    return endpoint, secret


def list_endpoints(session: Session) -> list[WebhookEndpoint]:
    return list(session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.created_at)))


def disable_endpoint(session: Session, *, actor: str, endpoint_id: str) -> None:
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or not endpoint.enabled:
        raise NotFound("no such webhook endpoint")
    endpoint.enabled = False
    session.flush()
    audit.append(
        session, actor=actor, action="alerts.webhook_disable", detail={"endpoint_id": endpoint_id}
    )


def deliveries(
    session: Session, *, endpoint_id: str, after: int | None, limit: int
) -> tuple[list[WebhookDelivery], int | None]:
    if session.get(WebhookEndpoint, endpoint_id) is None:
        raise NotFound("no such webhook endpoint")
    stmt = (
        select(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    )
    if after is not None:
        stmt = stmt.where(WebhookDelivery.id < after)
    rows = list(session.scalars(stmt))
    return rows, rows[-1].id if len(rows) == limit else None


def enqueue(session: Session, alert: Alert, now: datetime) -> int:
    """A pending delivery of a new alert to every enabled endpoint that wants its kind."""
    endpoints = session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.enabled.is_(True)))
    made = 0
    for endpoint in endpoints:
        if endpoint.kinds and alert.kind not in endpoint.kinds:
            continue
        session.add(
            WebhookDelivery(
                endpoint_id=endpoint.id,
                alert_id=alert.id,
                status="pending",
                attempts=0,
                next_at=now,
                created_at=now,
            )
        )
        made += 1
    session.flush()
    return made


def payload(alert: Alert) -> dict[str, Any]:
    """The alert as sent: what GET /v1/alerts shows, never a PI value."""
    return {
        "event": "alert.raised",
        "alert": {
            "id": alert.id,
            "kind": alert.kind,
            "key": alert.key,
            "severity": alert.severity,
            "status": alert.status,
            "subject_id": alert.subject_id,
            "summary": alert.summary,
            "detail": alert.detail,
            "first_at": alert.first_at.isoformat(),
        },
    }


@dataclass(frozen=True, slots=True)
class DeliveryRun:
    attempted: int
    delivered: int
    failed: int


def deliver_due(
    session: Session, *, now: datetime | None = None, send: Sender = post
) -> DeliveryRun:
    """One attempt for every pending delivery whose time has come."""
    now = now or utcnow()
    due = list(
        session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.status == "pending", WebhookDelivery.next_at <= now)
            .order_by(WebhookDelivery.id)
        )
    )
    delivered = failed = 0
    for delivery in due:
        endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
        alert = session.get(Alert, delivery.alert_id)
        if endpoint is None or alert is None or not endpoint.enabled:
            delivery.status, delivery.last_error = "failed", "endpoint or alert gone"
            failed += 1
            continue
        body = json.dumps(payload(alert), ensure_ascii=False, sort_keys=True).encode()
        stamp = int(now.timestamp())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "cdp-alerts/1",
            TIMESTAMP_HEADER: str(stamp),
            SIGNATURE_HEADER: signature(endpoint.secret, stamp, body),
            DELIVERY_HEADER: str(delivery.id),
        }
        answer = send(endpoint.url, body, headers)
        delivery.attempts += 1
        delivery.last_status_code = answer.status
        if answer.status is not None and 200 <= answer.status < 300:
            delivery.status, delivery.delivered_at, delivery.last_error = "delivered", now, None
            delivered += 1
        else:
            delivery.last_error = (answer.error or f"HTTP {answer.status}")[:200]
            if delivery.attempts >= MAX_ATTEMPTS:
                delivery.status = "failed"
                failed += 1
            else:
                wait = BACKOFF_SECONDS * 2 ** (delivery.attempts - 1)
                delivery.next_at = now + timedelta(seconds=wait)
    session.flush()
    return DeliveryRun(len(due), delivered, failed)
