"""Ingestion through the service layer, without HTTP, one thread (`make bench`): parse a Segment
batch body, prepare (plan, blind indexes), store (identity, consent gate, events, rollups,
summary) and commit, against a raw executemany of the same event rows on the same database
in the same run. CPU-bound and single-threaded, so less noisy than the server benchmark."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert

from cdp.api import Runtime
from cdp.db import unit_of_work, utcnow
from cdp.events import segment as segment_api
from cdp.events import service
from cdp.events.models import Event
from tests.api.tracking import new_profile, new_source, set_consent
from tests.bench.test_tracking import CUSTOMERS, _message

pytestmark = pytest.mark.slow

BATCH = 100
BATCHES = 200


def _ingest(rt: Runtime, source_id: str, body: bytes) -> None:
    received = utcnow()
    parsed = segment_api.parse(body, kind="batch", received_at=received)
    with unit_of_work(rt.sessions) as session:
        service.ingest(
            session,
            crypto=rt.crypto,
            policy=rt.policy,
            source_id=source_id,
            messages=parsed.messages,
            received_at=received,
        )


def test_service_ingestion(
    runtime: Runtime, client: TestClient, token_for: Callable[..., dict[str, str]]
) -> None:
    rt = runtime
    source_id, _ = new_source(client, token_for("admin"))
    app = token_for("app")
    for i in range(CUSTOMERS):
        set_consent(client, app, new_profile(client, app, f"cust-{i}"))
    bodies = [
        json.dumps({"batch": [_message(b * BATCH + i) for i in range(BATCH)]}).encode()
        for b in range(BATCHES)
    ]
    for body in bodies[:10]:  # warm up: statement caches, prepared statements, visitors
        _ingest(rt, source_id, body)
    cpu, wall = time.process_time(), time.perf_counter()
    for body in bodies[10:]:
        _ingest(rt, source_id, body)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    events = (BATCHES - 10) * BATCH
    rate = events / wall

    now = utcnow()
    rows = [
        {
            "id": uuid.uuid4().hex,
            "timestamp": now,
            "source_id": source_id,
            "message_id": uuid.uuid4().hex,
            "subject_id": None,
            "anonymous_key": uuid.uuid4().hex * 2,
            "type": "track",
            "name": "Product Viewed",
            "received_at": now,
            "properties": {"product_id": f"SKU-{i % 300}", "price": 12.0},
            "sealed": {},
            "context": {},
        }
        for i in range(events)
    ]
    raw = time.perf_counter()
    for start in range(0, events, BATCH):
        with unit_of_work(rt.sessions) as session:
            session.connection().execute(insert(Event.__table__), rows[start : start + BATCH])
    raw_rate = events / (time.perf_counter() - raw)
    backend = rt.engine.dialect.name
    print(
        f"\nbench: tracking_service_events_per_s_{backend} {rate:.0f} events/s"
        f" ratio={rate / raw_rate:.2f} baseline=Core executemany of the same number of event"
        f" rows, {BATCH}/transaction, one thread ({raw_rate:.0f} events/s);"
        f" service CPU {cpu * 1e6 / events:.0f} us/event"
    )
