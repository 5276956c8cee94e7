"""Helpers shared by the tracking tests: sources, profiles, consent, and reading tables."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select, text

from cdp.api import Runtime
from cdp.audit.service import RequestContext
from cdp.consent import status as subject_status
from cdp.db import unit_of_work
from cdp.events.models import Event, PlanViolation, SubjectDaily
from cdp.segments.models import SubjectSummary

Headers = Callable[..., dict[str, str]]
SHA = "ab" * 32
ANALYTICS_YES = {"consent": {"categoryPreferences": {"Analytics": True}}}
ANALYTICS_NO = {"consent": {"categoryPreferences": {"Analytics": False}}}


def new_source(client: TestClient, admin: dict[str, str], name: str = "web") -> tuple[str, str]:
    resp = client.post("/v1/sources", json={"name": name}, headers=admin)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    return str(body["id"]), str(body["write_key"])


def basic(write_key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}


def new_profile(client: TestClient, app: dict[str, str], external_id: str) -> str:
    resp = client.post(
        "/v1/profiles",
        json={"external_id": external_id, "traits": {"city": "上海"}},
        headers={**app, "X-Purpose": "service_delivery"},
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def set_consent(
    client: TestClient, app: dict[str, str], subject: str, state: str = "granted"
) -> None:
    body = {
        "purpose": "analytics",
        "state": state,
        "notice_id": "privacy-notice",
        "notice_version": 2,
        "channel": "web",
        "evidence": {"text_sha256": SHA, "locale": "zh-CN"},
    }
    resp = client.post(f"/v1/profiles/{subject}/consents", json=body, headers=app)
    assert resp.status_code == 201, resp.text


def restrict(rt: Runtime, subject: str) -> None:
    with unit_of_work(rt.sessions) as session:
        session.info["ctx"] = RequestContext(rt.policy.version)
        subject_status.restrict(session, subject_id=subject, reason="legal_hold", actor="test")


def events(rt: Runtime, **where: Any) -> list[Event]:
    with unit_of_work(rt.sessions) as session:
        stmt = select(Event).order_by(Event.timestamp, Event.id)
        for key, value in where.items():
            stmt = stmt.where(getattr(Event, key) == value)
        return list(session.scalars(stmt))


def daily(rt: Runtime, subject: str) -> dict[tuple[str, str], tuple[int, float]]:
    with unit_of_work(rt.sessions) as session:
        rows = session.scalars(select(SubjectDaily).where(SubjectDaily.subject_id == subject))
        return {(r.day.isoformat(), r.name): (r.count, float(r.revenue)) for r in rows}


def activity(rt: Runtime, subject: str) -> SubjectSummary | None:
    with unit_of_work(rt.sessions) as session:
        return session.get(SubjectSummary, subject)


def violations(rt: Runtime, source_id: str) -> dict[tuple[str, str], int]:
    with unit_of_work(rt.sessions) as session:
        rows = session.scalars(select(PlanViolation).where(PlanViolation.source_id == source_id))
        return {(r.kind, r.name): r.count for r in rows}


def count(rt: Runtime, table: str) -> int:
    with rt.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def dump(rt: Runtime) -> str:
    """Every row of the event tables as text, to prove what is not stored in plaintext."""
    out = []
    with rt.engine.connect() as conn:
        for table in ("event", "anonymous_visitor", "plan_violation", "event_message"):
            out += [repr(tuple(row)) for row in conn.execute(text(f"SELECT * FROM {table}"))]
    return "\n".join(out)
