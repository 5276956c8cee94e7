"""The compliance officer's reports (/v1/compliance/..., scope compliance:read), JSON and CSV:
consent rates, rights SLA, cross-border counters, subject counts against thresholds, incident
export; on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import dataclasses
import io
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.api.test_consent import consent, new_profile

from cdp.api import Runtime
from cdp.audit.models import AuditEntry
from cdp.consent.models import ConsentRecord, CrossBorderTransfer, SubjectStatus
from cdp.consent.transfers import CHINA, year_of
from cdp.db import unit_of_work
from cdp.profiles.models import Profile
from cdp.rights.models import RightsRequest
from cdp.rights.workdays import add_working_days

Headers = Callable[..., dict[str, str]]
BASE = "/v1/compliance"
REPORTS = ("consent-stats", "rights-sla", "cross-border/years", "subjects")


@pytest.fixture
def officer(token_for: Headers) -> dict[str, str]:
    return token_for("compliance")


@pytest.fixture
def app_h(token_for: Headers) -> dict[str, str]:
    return token_for("app")


def _csv(resp: Any) -> list[dict[str, str]]:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(resp.text)))


def test_reports_need_compliance_read(
    client: TestClient, token_for: Headers, officer: dict[str, str]
) -> None:
    analyst = token_for("analyst")
    for name in (*REPORTS, "incidents?client_id=x"):
        resp = client.get(f"{BASE}/{name}", headers=analyst)
        assert resp.status_code == 403 and resp.json()["code"] == "insufficient_scope", name
        assert client.get(f"{BASE}/{name}").status_code == 401
    for name in REPORTS:
        assert client.get(f"{BASE}/{name}", headers=officer).status_code == 200, name
        resp = client.get(f"{BASE}/{name}", params={"format": "xml"}, headers=officer)
        assert resp.status_code == 422, name
        resp = client.get(f"{BASE}/{name}", params={"fromm": "x"}, headers=officer)
        assert resp.status_code == 422 and resp.json()["code"] == "validation_error", name


def test_consent_rates_per_purpose_and_version_with_small_splits_suppressed(
    client: TestClient, app_h: dict[str, str], officer: dict[str, str]
) -> None:
    subjects = [
        new_profile(client, app_h, external_id=f"shop-{i}", traits={"city": "上海"})
        for i in range(9)
    ]
    for subject in subjects[:6]:
        consent(client, app_h, subject, "marketing", version=2)
    for subject in subjects[4:6]:
        consent(client, app_h, subject, "marketing", "withdrawn", version=2)
    for subject in subjects[6:]:
        consent(client, app_h, subject, "nearby_stores", separate=True)
    resp = client.get(f"{BASE}/consent-stats", headers=officer)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["k"] == 5
    by_purpose = {p["purpose"]: p for p in body["purposes"]}
    marketing = by_purpose["marketing"]
    [v2] = marketing["versions"]
    assert (v2["notice_id"], v2["notice_version"], v2["current"]) == ("privacy-notice", 2, True)
    assert v2["subjects"]["value"] == 6 and v2["granted"]["value"] == 4
    assert v2["withdrawn"]["value"] == 2 and v2["refused"]["value"] == 0
    assert v2["grant_rate"]["value"] == pytest.approx(0.6667)
    assert marketing["granted"]["value"] == 4 and marketing["subjects"]["value"] == 6
    # Three subjects are under k = 5: the split is suppressed, not shown.
    nearby = by_purpose["nearby_stores"]
    assert nearby["subjects"]["suppressed"] and nearby["granted"]["value"] is None
    assert nearby["versions"][0]["granted"] == {
        "value": None,
        "subjects": None,
        "suppressed": True,
        "reason": "k_anonymity",
    }
    # Consent-based purposes nobody answered are listed too, suppressed (0 < k).
    assert by_purpose["third_party_sharing"]["subjects"]["suppressed"]
    assert "service_delivery" not in by_purpose  # contract basis: no consent to count

    rows = _csv(client.get(f"{BASE}/consent-stats", params={"format": "csv"}, headers=officer))
    row = next(r for r in rows if r["purpose"] == "marketing" and r["notice_version"] == "2")
    assert (row["granted"], row["withdrawn"], row["grant_rate"]) == ("4", "2", "0.6667")
    small = next(r for r in rows if r["purpose"] == "nearby_stores" and r["notice_version"] == "1")
    assert small["granted"] == "" and small["subjects"] == ""


def _request(
    session: Any, kind: str, received: datetime, due: datetime, done: datetime | None, status: str
) -> None:
    session.add(
        RightsRequest(
            id=str(uuid.uuid4()),
            subject_id=str(uuid.uuid4()),
            type=kind,
            status=status,
            submitted_by="subject",
            actor="subject:test",
            details={},
            received_at=received,
            due_at=due,
            completed_at=done,
            extended=False,
            updated_at=received,
        )
    )


def test_rights_sla_on_time_late_and_open_by_due_date(
    client: TestClient, runtime: Runtime, officer: dict[str, str]
) -> None:
    now = datetime.now(UTC)
    settings = runtime.policy.settings
    today = now.astimezone(CHINA).date()
    next_working = add_working_days(
        today, 1, holidays=settings.holidays, workdays=settings.workdays
    )
    end_of_today = datetime.combine(today, time(23, 59, 59), tzinfo=CHINA)
    soon = datetime.combine(next_working, time(12, 0), tzinfo=CHINA)
    old = now - timedelta(days=40)
    with unit_of_work(runtime.sessions) as session:
        _request(
            session, "access", old, old + timedelta(days=20), old + timedelta(days=5), "completed"
        )
        _request(
            session, "access", old, old + timedelta(days=20), old + timedelta(days=25), "completed"
        )
        _request(
            session, "deletion", old, old + timedelta(days=20), old + timedelta(days=1), "rejected"
        )
        _request(session, "deletion", old, now - timedelta(days=1), None, "in_progress")
        _request(session, "deletion", now, end_of_today, None, "received")
        _request(session, "correction", now, soon, None, "verified")
        _request(session, "correction", now, now + timedelta(days=30), None, "received")
    resp = client.get(f"{BASE}/rights-sla", headers=officer)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    types = {row["type"]: row for row in body["types"]}
    assert (types["access"]["on_time"], types["access"]["late"]) == (1, 1)
    assert types["deletion"]["rejected"] == 1 and types["deletion"]["on_time"] == 1
    assert types["deletion"]["open"] == {"overdue": 1, "due_today": 1, "due_soon": 0, "later": 0}
    assert types["correction"]["open"] == {"overdue": 0, "due_today": 0, "due_soon": 1, "later": 1}
    total = body["total"]
    assert (total["received"], total["on_time"], total["late"], total["open_total"]) == (7, 2, 1, 4)
    # A window on received_at: only the four received today.
    since = (now - timedelta(hours=1)).isoformat()
    windowed = client.get(f"{BASE}/rights-sla", params={"from": since}, headers=officer).json()
    assert windowed["total"]["received"] == 3 and windowed["total"]["late"] == 0
    bad = client.get(
        f"{BASE}/rights-sla",
        params={"from": now.isoformat(), "to": (now - timedelta(days=1)).isoformat()},
        headers=officer,
    )
    assert bad.status_code == 422 and bad.json()["code"] == "validation_error"
    rows = _csv(client.get(f"{BASE}/rights-sla", params={"format": "csv"}, headers=officer))
    assert rows[-1]["type"] == "all" and rows[-1]["overdue"] == "1" and rows[-1]["late"] == "1"


def test_cross_border_counters_per_year(
    client: TestClient, runtime: Runtime, officer: dict[str, str]
) -> None:
    current = year_of(datetime.now(UTC))
    with unit_of_work(runtime.sessions) as session:
        for i, (year, sensitive) in enumerate(
            [(current - 1, True), (current - 1, False), (current, False)]
        ):
            session.add(
                CrossBorderTransfer(
                    subject_id=f"00000000-0000-4000-8000-00000000000{i}",
                    year=year,
                    purpose="cross_border_transfer",
                    sensitive=sensitive,
                    first_at=datetime.now(UTC),
                )
            )
    body = client.get(f"{BASE}/cross-border/years", headers=officer).json()
    years = [(y["year"], y["subjects"], y["sensitive_subjects"]) for y in body["years"]]
    assert years == [(current, 1, 0), (current - 1, 2, 1)]
    assert body["years"][0]["people_threshold"] == 100000 and not body["years"][0]["alert"]
    rows = _csv(client.get(f"{BASE}/cross-border/years", params={"format": "csv"}, headers=officer))
    assert [r["year"] for r in rows] == [str(current), str(current - 1)]


def test_subject_counts_against_thresholds(
    client: TestClient, runtime: Runtime, officer: dict[str, str]
) -> None:
    ids = [str(uuid.uuid4()) for _ in range(5)]
    now = datetime.now(UTC)
    with unit_of_work(runtime.sessions) as session:
        for i, subject in enumerate(ids):
            sealed = {"name": "ciphertext"}
            if i == 0:
                sealed["id_card_number"] = "ciphertext"  # a sensitive field (art. 28)
            session.add(
                Profile(id=subject, created_at=now, updated_at=now, plain={}, sealed=sealed)
            )
        session.flush()
        session.add(SubjectStatus(subject_id=ids[1], minor=True, updated_at=now))
        session.add(  # precise location: a purpose touching a sensitive category
            ConsentRecord(
                subject_id=ids[2],
                purpose="nearby_stores",
                state="granted",
                notice_id="location-notice",
                notice_version=1,
                channel="app",
                evidence={},
                separate=True,
                actor="test",
                policy_version=runtime.policy.version,
                at=now,
            )
        )
        session.add(  # refused: nothing sensitive processed
            ConsentRecord(
                subject_id=ids[3],
                purpose="nearby_stores",
                state="refused",
                notice_id="location-notice",
                notice_version=1,
                channel="app",
                evidence={},
                separate=True,
                actor="test",
                policy_version=runtime.policy.version,
                at=now,
            )
        )
    settings = runtime.policy.settings.model_copy(update={"pi_officer_people": 5})
    runtime.policy = dataclasses.replace(runtime.policy, settings=settings)
    body = client.get(f"{BASE}/subjects", headers=officer).json()
    assert (body["total"], body["sensitive"], body["minors"]) == (5, 3, 1)
    officer_rule = next(t for t in body["thresholds"] if t["id"] == "pi_protection_officer")
    assert officer_rule["law"] == "PIPL art. 52" and officer_rule["reached"] is True
    audit_rule = next(t for t in body["thresholds"] if t["id"] == "compliance_audit")
    assert audit_rule["threshold"] == 10_000_000 and audit_rule["near"] is False
    rows = _csv(client.get(f"{BASE}/subjects", params={"format": "csv"}, headers=officer))
    assert rows[1] == {**rows[1], "id": "sensitive", "value": "3"}


def test_incident_export_lists_subjects_and_fields_a_client_touched(
    client: TestClient,
    runtime: Runtime,
    token_for: Headers,
    make_client: Callable[..., tuple[str, str]],
    officer: dict[str, str],
) -> None:
    client_id, secret = make_client("app")
    token = client.post(
        "/v1/oauth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    ).json()["access_token"]
    suspect = {"Authorization": f"Bearer {token}"}
    bystander = token_for("app")
    start = datetime.now(UTC) - timedelta(seconds=1)
    touched = new_profile(client, suspect, external_id="shop-1", traits={"name": "张伟"})
    read = client.get(
        f"/v1/profiles/{touched}", headers={**suspect, "X-Purpose": "service_delivery"}
    )
    assert read.status_code == 200
    other = new_profile(client, bystander, external_id="shop-2", traits={"name": "李娜"})
    end = datetime.now(UTC) + timedelta(seconds=1)

    params = {"client_id": client_id, "from": start.isoformat(), "to": end.isoformat()}
    resp = client.get(f"{BASE}/incidents", params=params, headers=officer)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert [s["subject"] for s in body["subjects"]] == [touched]
    [row] = body["subjects"]
    assert {"name", "external_id"} <= set(row["fields"]) and "profile.read" in row["actions"]
    assert other not in resp.text and "张伟" not in resp.text
    assert set(body["fields"]) == set(row["fields"]) and body["entries"] >= 2
    # The export is audited with the client and the window, never a subject.
    with unit_of_work(runtime.sessions) as session:
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "compliance.incident_export")
        ).one()
    assert entry.detail["client"] == client_id and entry.detail["subjects"] == 1
    assert entry.subject is None

    rows = _csv(
        client.get(f"{BASE}/incidents", params={**params, "format": "csv"}, headers=officer)
    )
    assert [r["subject"] for r in rows] == [touched] and "name" in rows[0]["fields"].split(";")
    before = {"client_id": client_id, "to": start.isoformat()}
    assert client.get(f"{BASE}/incidents", params=before, headers=officer).json()["subjects"] == []

    missing = client.get(f"{BASE}/incidents", params={"client_id": "nobody"}, headers=officer)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    for bad in (
        {},
        {"client_id": client_id, "from": "yesterday"},
        {"client_id": client_id, "from": "2026-11-20T00:00:00"},
        {"client_id": client_id, "from": end.isoformat(), "to": start.isoformat()},
    ):
        resp = client.get(f"{BASE}/incidents", params=bad, headers=officer)
        assert resp.status_code == 422, (bad, resp.text)
    with unit_of_work(runtime.sessions) as session:
        exports = session.scalars(
            select(AuditEntry.seq).where(AuditEntry.action == "compliance.incident_export")
        ).all()
    assert len(exports) == 3  # refused requests exported nothing and audited no export
