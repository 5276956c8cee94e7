"""Importing existing customers' consents: CSV and JSON Lines, all or nothing per file."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from cdp.api import Runtime
from cdp.audit.models import AuditEntry
from cdp.consent.models import ConsentRecord
from cdp.db import unit_of_work

SHA = "ef" * 32
URL = "/v1/consents:import"
HEADER = "external_id,purpose,state,notice_id,notice_version,channel,at,text_sha256,locale,separate"


@pytest.fixture
def app_h(token_for: Callable[..., dict[str, str]]) -> dict[str, str]:
    return token_for("app")


def _profile(client: TestClient, headers: dict[str, str], external_id: str) -> str:
    resp = client.post(
        "/v1/profiles",
        json={"external_id": external_id, "email": f"{external_id}@example.cn"},
        headers={**headers, "X-Purpose": "service_delivery"},
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def _count(rt: Runtime, **where: Any) -> int:
    with unit_of_work(rt.sessions) as session:
        stmt = select(func.count()).select_from(AuditEntry if where else ConsentRecord)
        for key, value in where.items():
            stmt = stmt.where(getattr(AuditEntry, key) == value)
        return int(session.scalar(stmt) or 0)


def _csv(*rows: str) -> bytes:
    return ("\n".join([HEADER, *rows]) + "\n").encode()


def _row(external_id: str, purpose: str = "marketing", state: str = "granted", **kw: str) -> str:
    values = {
        "external_id": external_id,
        "purpose": purpose,
        "state": state,
        "notice_id": "privacy-notice",
        "notice_version": "1",
        "channel": "paper",
        "at": "2025-12-01T10:00:00+08:00",
        "text_sha256": SHA,
        "locale": "zh-CN",
        "separate": "false",
        **kw,
    }
    return ",".join(values[c] for c in HEADER.split(","))


def test_csv_import_stores_every_row_and_audits_each(
    client: TestClient, app_h: dict[str, str], runtime: Runtime
) -> None:
    first, second = _profile(client, app_h, "crm-1"), _profile(client, app_h, "crm-2")
    body = _csv(
        _row("crm-1"),
        _row("crm-1", "analytics"),
        _row("crm-2", state="refused"),
        _row("crm-2", at="2026-01-05T09:00:00Z", state="granted"),
    )
    resp = client.post(URL, content=body, headers={**app_h, "Content-Type": "text/csv"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "rows": 4,
        "stored": 4,
        "granted": 3,
        "withdrawn": 0,
        "refused": 1,
        "subjects": 2,
    }
    assert _count(runtime) == 4 and _count(runtime, action="consent.grant") == 3
    assert _count(runtime, action="consent.import") == 1
    # The later record (by time) is current: crm-2 granted after refusing.
    headers = {**app_h, "X-Purpose": "marketing"}
    assert client.get(f"/v1/profiles/{second}", headers=headers).status_code == 200
    assert client.get(f"/v1/profiles/{first}", headers=headers).status_code == 200


def test_one_bad_row_rejects_the_file_naming_lines_not_values(
    client: TestClient, app_h: dict[str, str], runtime: Runtime
) -> None:
    _profile(client, app_h, "crm-1")
    body = _csv(
        _row("crm-1"),
        _row("crm-404-secret"),  # line 3: nobody has this external id
        _row("crm-1", "service_delivery"),  # line 4: not a consent purpose
        _row("crm-1", at="2099-01-01T00:00:00Z"),  # line 5: in the future
        _row("crm-1", notice_version="9"),  # line 6: no such notice version
        _row("crm-1", channel="fax"),  # line 7: unknown channel
        _row("crm-1"),
    )
    before = _count(runtime, action="consent.grant")
    resp = client.post(URL, content=body, headers={**app_h, "Content-Type": "text/csv"})
    assert resp.status_code == 422, resp.text
    problem = resp.json()
    assert problem["code"] == "validation_error" and "nothing was stored" in problem["detail"]
    lines = [(e["loc"][1], e["loc"][2]) for e in problem["errors"]]
    assert lines == [
        (3, "external_id"),
        (4, "purpose"),
        (5, "at"),
        (6, "notice_version"),
        (7, "channel"),
    ]
    assert "crm-404-secret" not in resp.text and "fax" not in resp.text
    assert _count(runtime) == 0 and _count(runtime, action="consent.grant") == before
    [rejected] = [
        e
        for e in _audit(runtime)
        if e.action == "consent.import_rejected"  # the refused import is audited
    ]
    assert rejected.detail == {"rows": 7, "rejected": 5}


def _audit(rt: Runtime) -> list[AuditEntry]:
    with unit_of_work(rt.sessions) as session:
        return list(session.scalars(select(AuditEntry)))


def test_jsonl_import_by_profile_id_with_a_guardian(
    client: TestClient, app_h: dict[str, str], runtime: Runtime
) -> None:
    subject = _profile(client, app_h, "kid-1")
    base = {
        "profile_id": subject,
        "purpose": "customer_care",
        "state": "granted",
        "notice_id": "privacy-notice",
        "notice_version": 2,
        "channel": "phone",
        "at": "2026-02-01T12:00:00+08:00",
        "text_sha256": SHA,
        "locale": "en",
        "ip": "198.51.100.23",
        "guardian_relation": "parent",
        "guardian_method": "household_register",
    }
    lines = [json.dumps(base), "", json.dumps({**base, "state": "withdrawn"})]
    body = ("\n".join(lines) + "\n").encode()
    resp = client.post(URL, content=body, headers={**app_h, "Content-Type": "application/x-ndjson"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["stored"] == 2 and resp.json()["withdrawn"] == 1
    with unit_of_work(runtime.sessions) as session:
        records = list(session.scalars(select(ConsentRecord).order_by(ConsentRecord.id)))
    assert records[0].guardian == {
        "relation": "parent",
        "verified": True,
        "method": "household_register",
    }
    assert records[0].evidence["ip_prefix"] == "198.51.100.0/24"
    assert "198.51.100.23" not in json.dumps([r.evidence for r in records])


def test_import_refuses_other_media_types_and_unreadable_files(
    client: TestClient, app_h: dict[str, str], runtime: Runtime
) -> None:
    resp = client.post(URL, content=b"{}", headers={**app_h, "Content-Type": "application/json"})
    assert resp.status_code == 415 and resp.json()["code"] == "unsupported_media_type"
    cases = [
        (b"", "text/csv"),
        (b"name,phone\nx,y\n", "text/csv"),
        (b"not json\n", "application/x-ndjson"),
        (b"[1, 2]\n", "application/x-ndjson"),
        (HEADER.encode() + b"\n\xff\xfe,broken\n", "text/csv"),
    ]
    for body, media in cases:
        resp = client.post(URL, content=body, headers={**app_h, "Content-Type": media})
        assert resp.status_code == 422, (body, resp.text)
        assert all(e["loc"][0] == "body" for e in resp.json()["errors"])
    assert _count(runtime) == 0


def test_import_of_a_minors_consent_needs_a_guardian(
    client: TestClient, app_h: dict[str, str], token_for: Callable[..., dict[str, str]]
) -> None:
    subject = _profile(client, app_h, "kid-2")
    admin = token_for("admin")
    resp = client.patch(
        f"/v1/profiles/{subject}",
        json={"traits": {"is_minor": True}},
        headers={**admin, "X-Purpose": "storage"},
    )
    assert resp.status_code == 200, resp.text
    resp = client.post(
        URL, content=_csv(_row("kid-2")), headers={**app_h, "Content-Type": "text/csv"}
    )
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["loc"] == ["body", 2, "guardian"]
