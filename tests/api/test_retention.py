"""Retention runs over HTTP: POST /v1/retention/runs (dry or real) and GET the report, scope
retention:run; on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from tests.unit.retention.factories import remaining, seed

from cdp.api import Runtime
from cdp.audit.models import AuditEntry
from cdp.audit.service import RequestContext
from cdp.db import unit_of_work
from cdp.events.models import Event
from cdp.profiles.models import Profile
from cdp.retention import service as retention
from cdp.retention.models import RetentionRun

Headers = Callable[..., dict[str, str]]
URL = "/v1/retention/runs"


def _runs(rt: Runtime) -> int:
    with unit_of_work(rt.sessions) as session:
        return int(session.scalar(select(func.count()).select_from(RetentionRun)) or 0)


def _counts(body: dict[str, object]) -> list[tuple[object, ...]]:
    items = body["items"]
    assert isinstance(items, list)
    return [(i["table"], i["name"], i["purpose"], i["count"], i["held"]) for i in items]


def test_dry_run_then_real_run_remove_what_the_dry_run_counted(
    client: TestClient, runtime: Runtime, token_for: Headers
) -> None:
    seeded = seed(runtime, datetime.now(UTC))
    before = remaining(runtime)
    officer = token_for("compliance")
    dry = client.post(URL, json={"dry_run": True}, headers=officer)
    assert dry.status_code == 201, dry.text
    assert dry.json()["dry_run"] is True and remaining(runtime) == before
    real = client.post(URL, json={}, headers=officer)
    assert real.status_code == 201, real.text
    body = real.json()
    assert body["dry_run"] is False and body["actor"].startswith("client:")
    assert _counts(dry.json()) == _counts(body)
    after = remaining(runtime)
    for table in before:
        assert after[table] == before[table] - seeded.gone.get(table, set()), table
    assert body["totals"]["held"] == 1
    assert body["legal_holds"][0]["id"] == "accounting_vouchers"

    got = client.get(f"{URL}/{body['id']}", headers=officer)
    assert got.status_code == 200 and got.json() == body
    with unit_of_work(runtime.sessions) as session:
        actions = session.scalars(
            select(AuditEntry.detail).where(AuditEntry.action == "retention.run")
        ).all()
    assert [a["dry_run"] for a in actions] == [True, False]


def test_scope_and_bad_input(client: TestClient, runtime: Runtime, token_for: Headers) -> None:
    officer = token_for("compliance")
    analyst = token_for("analyst")
    resp = client.post(URL, json={"dry_run": True}, headers=analyst)
    assert resp.status_code == 403 and resp.json()["code"] == "insufficient_scope"
    assert client.post(URL, json={"dry_run": True}).status_code == 401
    bad_bodies: list[Any] = [
        {"dry_run": "perhaps"},
        {"dry_run": 0},  # never a real run by accident
        {"dry_run": "false"},
        {"dry_run": True, "tables": ["event"]},
        [1],
    ]
    for bad in bad_bodies:
        resp = client.post(URL, json=bad, headers=officer)
        assert resp.status_code == 422, resp.text
        assert resp.headers["content-type"].startswith("application/problem+json")
    assert _runs(runtime) == 0  # nothing partial was stored
    missing = client.get(f"{URL}/00000000-0000-4000-8000-000000000000", headers=officer)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert client.get(f"{URL}/not-a-uuid", headers=officer).status_code == 422


def test_runs_are_listed_newest_first_with_a_cursor(
    client: TestClient, runtime: Runtime, token_for: Headers
) -> None:
    officer = token_for("compliance")
    made = [
        client.post(URL, json={"dry_run": i % 2 == 0}, headers=officer).json()["id"]
        for i in range(3)
    ]
    first = client.get(URL, params={"limit": 2}, headers=officer)
    assert first.status_code == 200, first.text
    body = first.json()
    assert [r["id"] for r in body["items"]] == made[::-1][:2]
    assert body["items"][0]["dry_run"] is True and "event" in body["items"][0]["totals"]
    rest = client.get(
        URL, params={"limit": 2, "cursor": body["next_cursor"]}, headers=officer
    ).json()
    assert [r["id"] for r in rest["items"]] == [made[0]] and rest["next_cursor"] is None
    forged = client.get(URL, params={"cursor": "forged"}, headers=officer)
    assert forged.status_code == 422


def test_a_subject_kept_by_a_legal_hold_is_erased_when_the_hold_ends(
    client: TestClient, runtime: Runtime, token_for: Callable[..., dict[str, str]]
) -> None:
    app = {**token_for("app"), "X-Purpose": "service_delivery"}
    pid = client.post("/v1/profiles", json={"external_id": "held-1"}, headers=app).json()["id"]
    ordered = datetime.now(UTC) - timedelta(days=400)
    with unit_of_work(runtime.sessions) as session:
        session.add(
            Event(
                id=uuid.uuid4().hex,
                timestamp=ordered,
                source_id="src-test",
                message_id="order-1",
                subject_id=pid,
                anonymous_key=None,
                type="track",
                name="Order Completed",
                received_at=ordered,
                properties={},
                sealed={},
                context={},
            )
        )
    # Accounting law keeps the order: the deletion becomes a restriction (PIPL art. 47).
    resp = client.delete(f"/v1/profiles/{pid}", headers=token_for("admin"))
    assert resp.status_code == 200 and resp.json()["restricted"] is True
    later = ordered + timedelta(days=30 * 366 + 2)
    with unit_of_work(runtime.sessions) as session:
        session.info["ctx"] = RequestContext(runtime.policy.version)
        dry = retention.run(
            session,
            crypto=runtime.crypto,
            policy=runtime.policy,
            actor="t",
            dry_run=True,
            now=later,
        )
        assert dry.report["totals"]["profile"] == 1
    assert runtime.crypto.has_key(pid)
    with unit_of_work(runtime.sessions) as session:
        session.info["ctx"] = RequestContext(runtime.policy.version)
        real = retention.run(
            session,
            crypto=runtime.crypto,
            policy=runtime.policy,
            actor="t",
            dry_run=False,
            now=later,
        )
        assert real.report["totals"]["profile"] == 1
    with unit_of_work(runtime.sessions) as session:
        assert session.get(Profile, pid) is None
        assert session.scalar(select(func.count()).where(Event.subject_id == pid)) == 0
        erased = session.scalar(
            select(func.count()).where(
                AuditEntry.action == "subject.erase", AuditEntry.subject == pid
            )
        )
    assert erased == 1 and not runtime.crypto.has_key(pid)
