"""Feedback over HTTP: complaint lifecycle, encrypted free text, purpose and legal basis."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from tests.api.test_consent import consent, new_profile

from cdp.api import Runtime
from cdp.audit.models import AuditEntry
from cdp.db import unit_of_work
from cdp.feedback import service as feedback_service
from cdp.feedback.models import Feedback

Headers = Callable[..., dict[str, str]]
SERVICE = {"X-Purpose": "service_delivery"}
CARE = {"X-Purpose": "customer_care"}
SECRET_COMMENT = "快递员把包裹扔在门口 zq-sentinel-4711"
SECRET_RESOLUTION = "补发新品并赔偿 zq-sentinel-9902"


@pytest.fixture
def app_h(token_for: Headers) -> dict[str, str]:
    return token_for("app")


def complaint(client: TestClient, h: dict[str, str], subject: str, **extra: Any) -> Any:
    body = {"subject_id": subject, "kind": "complaint", "topic": "delivery", **extra}
    body.setdefault("comment", SECRET_COMMENT)
    return client.post("/v1/feedback", json=body, headers={**h, **SERVICE})


def patch(client: TestClient, h: dict[str, str], fid: str, **body: Any) -> Any:
    return client.patch(f"/v1/feedback/{fid}", json=body, headers={**h, **SERVICE})


def problem_code(resp: Any) -> str:
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.text
    return str(resp.json()["code"])


def test_complaint_lifecycle_and_illegal_transitions(
    client: TestClient, app_h: dict[str, str]
) -> None:
    subject = new_profile(client, app_h)
    created = complaint(client, app_h, subject)
    assert created.status_code == 201, created.text
    body = created.json()
    fid = body["id"]
    assert body["status"] == "open" and body["comment"] == SECRET_COMMENT
    assert body["time_to_resolve_seconds"] is None

    # open -> closed skips the work: refused, and nothing changes.
    resp = patch(client, app_h, fid, status="closed")
    assert resp.status_code == 409 and problem_code(resp) == "invalid_transition"
    assert patch(client, app_h, fid, status="resolved").status_code == 409
    got = client.get(f"/v1/feedback/{fid}", headers={**app_h, **SERVICE})
    assert got.json()["status"] == "open" and got.json()["resolved_at"] is None

    resp = patch(client, app_h, fid, status="in_progress", assignee="agent-17")
    assert resp.status_code == 200 and resp.json()["assignee"] == "agent-17"
    resp = patch(client, app_h, fid, status="resolved", resolution=SECRET_RESOLUTION)
    assert resp.status_code == 200, resp.text
    done = resp.json()
    assert done["status"] == "resolved" and done["resolution"] == SECRET_RESOLUTION
    assert done["time_to_resolve_seconds"] is not None and done["time_to_resolve_seconds"] >= 0
    assert patch(client, app_h, fid, status="in_progress").status_code == 409
    assert patch(client, app_h, fid, status="closed").json()["closed_at"] is not None

    # Reopen: back to open, resolution times cleared, counted.
    reopened = patch(client, app_h, fid, status="open").json()
    assert reopened["status"] == "open" and reopened["reopen_count"] == 1
    assert reopened["resolved_at"] is None and reopened["closed_at"] is None

    # Surveys and suggestions have no lifecycle.
    survey = client.post(
        "/v1/feedback",
        json={"subject_id": subject, "kind": "survey", "csat": 5, "nps": 10},
        headers={**app_h, **SERVICE},
    )
    assert survey.status_code == 201 and survey.json()["status"] is None
    resp = patch(client, app_h, survey.json()["id"], status="in_progress")
    assert resp.status_code == 409 and problem_code(resp) == "invalid_transition"


def test_free_text_is_never_plaintext_in_the_database(
    client: TestClient, app_h: dict[str, str], runtime: Runtime
) -> None:
    subject = new_profile(client, app_h)
    fid = complaint(client, app_h, subject).json()["id"]
    patch(client, app_h, fid, status="in_progress")
    patch(client, app_h, fid, status="resolved", resolution=SECRET_RESOLUTION)
    survey = client.post(
        "/v1/feedback",
        json={
            "subject_id": subject,
            "kind": "survey",
            "csat": 3,
            "answers": {"favourite_store": "zq-sentinel-5555 西湖店"},
        },
        headers={**app_h, **SERVICE},
    )
    assert survey.status_code == 201, survey.text
    with runtime.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM feedback")).all()
        audit = conn.execute(text("SELECT * FROM audit_entry")).all()
    raw = repr(rows) + repr(audit)
    assert len(rows) == 2
    for secret in ("zq-sentinel", "快递员", "补发新品", "西湖店"):
        assert secret not in raw
    row = next(r for r in rows if r.id == fid)
    assert row.comment_sealed.startswith("v1.") and row.resolution_sealed.startswith("v1.")
    if runtime.engine.dialect.name == "sqlite":
        # The database file itself, WAL included.
        path = runtime.engine.url.database
        assert path
        for suffix in ("", "-wal"):
            try:
                data = Path(path + suffix).read_bytes()
            except FileNotFoundError:
                continue
            assert b"zq-sentinel" not in data
    # The API opens them again for a purpose that covers feedback.
    got = client.get(f"/v1/feedback/{fid}", headers={**app_h, **SERVICE}).json()
    assert got["comment"] == SECRET_COMMENT and got["resolution"] == SECRET_RESOLUTION
    answers = client.get(f"/v1/feedback/{survey.json()['id']}", headers={**app_h, **SERVICE})
    assert answers.json()["answers"] == {"favourite_store": "zq-sentinel-5555 西湖店"}


def test_purpose_must_cover_feedback_and_have_a_basis(
    client: TestClient, app_h: dict[str, str], runtime: Runtime
) -> None:
    subject = new_profile(client, app_h)
    fid = complaint(client, app_h, subject).json()["id"]
    # marketing does not cover the feedback category: no collection, no reading.
    resp = client.get(f"/v1/feedback/{fid}", headers={**app_h, "X-Purpose": "marketing"})
    assert resp.status_code == 403 and problem_code(resp) == "field_not_allowed"
    resp = client.post(
        "/v1/feedback",
        json={"subject_id": subject, "kind": "suggestion", "comment": "多开几家店"},
        headers={**app_h, "X-Purpose": "marketing"},
    )
    assert resp.status_code == 403 and problem_code(resp) == "field_not_allowed"
    # customer_care rests on consent: none on record yet.
    resp = client.get(f"/v1/feedback/{fid}", headers={**app_h, **CARE})
    assert resp.status_code == 403 and problem_code(resp) == "consent_required"
    consent(client, app_h, subject, "customer_care")
    assert client.get(f"/v1/feedback/{fid}", headers={**app_h, **CARE}).status_code == 200
    # Withdrawn: customer care stops, but a complaint under the contract is still accepted.
    consent(client, app_h, subject, "customer_care", "withdrawn")
    resp = complaint(client, app_h, subject, comment="第二次投诉")
    assert resp.status_code == 201, resp.text
    assert resp.json()["purpose"] == "service_delivery"
    resp = client.post(
        "/v1/feedback",
        json={"subject_id": subject, "kind": "suggestion", "comment": "多开几家店"},
        headers={**app_h, **CARE},
    )
    assert resp.status_code == 403 and problem_code(resp) == "consent_required"
    # Under customer_care the subject's feedback is left out of lists.
    listed = client.get("/v1/feedback", headers={**app_h, **CARE}).json()
    assert listed["items"] == []
    listed = client.get("/v1/feedback", headers={**app_h, **SERVICE}).json()
    assert len(listed["items"]) == 2
    with unit_of_work(runtime.sessions) as session:
        reads = session.scalar(select(func.count()).where(AuditEntry.action == "feedback.read"))
        assert reads and reads >= 3


def test_bad_feedback_is_422_and_stores_nothing(
    client: TestClient, app_h: dict[str, str], runtime: Runtime
) -> None:
    subject = new_profile(client, app_h)
    bad: list[dict[str, Any]] = [
        {"subject_id": subject, "kind": "survey", "csat": 6},
        {"subject_id": subject, "kind": "survey", "nps": -1},
        {"subject_id": subject, "kind": "survey"},
        {"subject_id": subject, "kind": "complaint"},
        {"subject_id": subject, "kind": "complaint", "comment": "x", "csat": 3},
        {"subject_id": subject, "kind": "praise", "comment": "x"},
        {"subject_id": "not-a-uuid", "kind": "suggestion", "comment": "x"},
    ]
    for body in bad:
        resp = client.post("/v1/feedback", json=body, headers={**app_h, **SERVICE})
        assert resp.status_code == 422, body
        assert problem_code(resp) == "validation_error"
    missing = {"subject_id": "00000000-0000-4000-8000-000000000000", "kind": "suggestion"}
    resp = client.post(
        "/v1/feedback", json={**missing, "comment": "x"}, headers={**app_h, **SERVICE}
    )
    assert resp.status_code == 404
    resp = client.post("/v1/feedback", json={**missing, "comment": "x"}, headers=app_h)
    assert resp.status_code == 400 and problem_code(resp) == "purpose_required"
    with unit_of_work(runtime.sessions) as session:
        assert session.scalar(select(func.count()).select_from(Feedback)) == 0


def test_list_filters_and_pagination(client: TestClient, app_h: dict[str, str]) -> None:
    subject = new_profile(client, app_h)
    ids = [complaint(client, app_h, subject, comment=f"投诉 {i}").json()["id"] for i in range(3)]
    patch(client, app_h, ids[0], status="in_progress", assignee="agent-1")
    first = client.get("/v1/feedback?limit=2", headers={**app_h, **SERVICE}).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = client.get(
        f"/v1/feedback?limit=2&cursor={first['next_cursor']}", headers={**app_h, **SERVICE}
    ).json()
    seen = [i["id"] for i in first["items"] + rest["items"]]
    assert sorted(seen) == sorted(ids) and rest["next_cursor"] is None
    mine = client.get(
        "/v1/feedback?assignee=agent-1&status=in_progress", headers={**app_h, **SERVICE}
    ).json()
    assert [i["id"] for i in mine["items"]] == [ids[0]]


def test_export_subject_holds_only_that_subjects_feedback(
    client: TestClient, app_h: dict[str, str], runtime: Runtime
) -> None:
    one, two = (
        new_profile(client, app_h),
        new_profile(client, app_h, external_id="shop-2", traits={"city": "北京"}),
    )
    complaint(client, app_h, one)
    complaint(client, app_h, two, comment="别人的投诉")
    with unit_of_work(runtime.sessions) as session:
        bundle = feedback_service.export_subject(session, crypto=runtime.crypto, subject_id=one)
    assert [b["comment"] for b in bundle] == [SECRET_COMMENT]
    assert bundle[0]["status"] == "open"


def test_csat_and_nps_equal_hand_computed_values(
    client: TestClient, app_h: dict[str, str], token_for: Headers
) -> None:
    csat = [5, 4, 4, 3, 5, 2]
    nps = [10, 9, 9, 6, 0, 8]
    subjects = [
        new_profile(client, app_h, external_id=f"m-{i}", traits={"city": "上海"}) for i in range(6)
    ]
    for subject, c, n in zip(subjects, csat, nps, strict=True):
        resp = client.post(
            "/v1/feedback",
            json={"subject_id": subject, "kind": "survey", "csat": c, "nps": n},
            headers={**app_h, **SERVICE},
        )
        assert resp.status_code == 201, resp.text
    fids = [complaint(client, app_h, s, comment="投诉").json()["id"] for s in subjects[:5]]
    for fid in fids[:3]:
        patch(client, app_h, fid, status="in_progress")
        patch(client, app_h, fid, status="resolved", resolution="已处理")

    analyst = token_for("analyst")
    resp = client.get("/v1/metrics/feedback?period=all", headers=analyst)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    overall = body["overall"]
    assert body["k"] == 5 and body["periods"] == []
    # CSAT: (5 + 4 + 4 + 3 + 5 + 2) / 6 = 23 / 6 = 3.83
    assert overall["csat_average"] == {
        "value": 3.83,
        "subjects": 6,
        "suppressed": False,
        "reason": None,
    }
    # NPS: promoters 10, 9, 9 (3); detractors 6, 0 (2); 100 * (3 - 2) / 6 = 16.7
    assert overall["nps"]["value"] == 16.7 and overall["nps"]["subjects"] == 6
    # Every CSAT score was given by fewer than k = 5 customers: each bucket is suppressed.
    assert all(
        c["suppressed"] and c["value"] is None for c in overall["csat_distribution"].values()
    )
    # 3 of 5 complaints resolved.
    assert overall["resolution_rate"]["value"] == 0.6
    assert overall["complaints"]["value"] == 5
    # Only 3 customers behind the resolution time: suppressed.
    assert overall["mean_hours_to_resolve"]["suppressed"] is True
    monthly = client.get("/v1/metrics/feedback", headers=analyst).json()
    assert sum(p["surveys"]["value"] or 0 for p in monthly["periods"]) in (0, 6)
    bad = client.get(
        "/v1/metrics/feedback?from=2026-12-01T00:00:00Z&to=2026-11-01T00:00:00Z", headers=analyst
    )
    assert bad.status_code == 422
    assert client.get("/v1/metrics/feedback", headers=app_h).status_code == 403
