"""Consent and purpose limitation over HTTP, one test per PIPL.md row (arts. 13-17, 23, 24,
28-29, 31, 38-40, 44, 47), on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from cdp.api import Runtime
from cdp.audit.models import AuditEntry
from cdp.audit.service import RequestContext
from cdp.consent import status as subject_status
from cdp.consent.models import ConsentRecord
from cdp.db import unit_of_work
from cdp.policy import load_policy

Headers = Callable[..., dict[str, str]]
DEMO = Path(__file__).resolve().parents[2] / "policies"
SHA = "ab" * 32
NOTICE = {
    "customer_care": "privacy-notice",
    "analytics": "privacy-notice",
    "marketing": "privacy-notice",
    "nearby_stores": "location-notice",
    "third_party_sharing": "partner-sharing-notice",
    "cross_border_transfer": "cross-border-notice",
}
GUARDIAN = {"relation": "parent", "verified": True, "method": "id_document"}


@pytest.fixture
def app_h(token_for: Headers) -> dict[str, str]:
    return token_for("app")


@pytest.fixture
def admin_h(token_for: Headers) -> dict[str, str]:
    return token_for("admin")


def purpose(name: str) -> dict[str, str]:
    return {"X-Purpose": name}


def new_profile(client: TestClient, headers: dict[str, str], **body: Any) -> str:
    body = body or {"external_id": "shop-1", "traits": {"name": "张伟", "city": "上海"}}
    resp = client.post(
        "/v1/profiles", json=body, headers={**headers, **purpose("service_delivery")}
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def consent(
    client: TestClient,
    headers: dict[str, str],
    subject: str,
    name: str,
    state: str = "granted",
    *,
    version: int = 1,
    separate: bool = False,
    guardian: dict[str, Any] | None = None,
    ip: str | None = None,
    expect: int = 201,
) -> dict[str, Any]:
    body = {
        "purpose": name,
        "state": state,
        "notice_id": NOTICE[name],
        "notice_version": version,
        "channel": "app",
        "evidence": {"text_sha256": SHA, "locale": "zh-CN", "ip": ip},
        "separate": separate,
        "guardian": guardian,
    }
    resp = client.post(f"/v1/profiles/{subject}/consents", json=body, headers=headers)
    assert resp.status_code == expect, resp.text
    return resp.json()  # type: ignore[no-any-return]


def read(client: TestClient, headers: dict[str, str], subject: str, name: str) -> Any:
    return client.get(f"/v1/profiles/{subject}", headers={**headers, **purpose(name)})


def customer(client: TestClient, headers: dict[str, str], subject: str) -> dict[str, str]:
    resp = client.post(f"/v1/profiles/{subject}/subject-token", headers=headers)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["scope"] == "self" and body["subject_id"] == subject
    return {"Authorization": f"Bearer {body['access_token']}"}


def code(resp: Any) -> str:
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.text
    return str(resp.json()["code"])


def audit_rows(rt: Runtime, **where: Any) -> list[AuditEntry]:
    with unit_of_work(rt.sessions) as session:
        stmt = select(AuditEntry).order_by(AuditEntry.seq)
        for key, value in where.items():
            stmt = stmt.where(getattr(AuditEntry, key) == value)
        return list(session.scalars(stmt))


def restrict(rt: Runtime, subject: str, lift: bool = False) -> None:
    with unit_of_work(rt.sessions) as session:
        session.info["ctx"] = RequestContext(rt.policy.version)
        if lift:
            subject_status.lift_restriction(session, subject_id=subject, actor="officer:test")
        else:
            subject_status.restrict(
                session, subject_id=subject, reason="legal_hold", actor="officer:test"
            )


# --- art. 13: legal bases ---------------------------------------------------------------------


def test_art13_contract_basis_works_without_consent_consent_basis_does_not(
    client: TestClient, app_h: dict[str, str], runtime: Runtime
) -> None:
    subject = new_profile(client, app_h)
    assert read(client, app_h, subject, "service_delivery").status_code == 200
    denied = read(client, app_h, subject, "marketing")
    assert denied.status_code == 403 and code(denied) == "consent_required"
    assert "张伟" not in denied.text
    # The denial is audited with the subject and the purpose, and no value.
    [entry] = audit_rows(runtime, action="access.denied", code="consent_required")
    assert (entry.subject, entry.purpose, entry.decision) == (subject, "marketing", "deny")
    consent(client, app_h, subject, "marketing")
    assert read(client, app_h, subject, "marketing").status_code == 200
    # Apps create profiles under a contract purpose; a consent purpose has nothing on record yet.
    resp = client.post(
        "/v1/profiles", json={"email": "x2@example.cn"}, headers={**app_h, **purpose("marketing")}
    )
    assert resp.status_code == 403 and code(resp) == "consent_required"


def test_lookup_and_update_obey_the_subjects_consent(
    client: TestClient, app_h: dict[str, str]
) -> None:
    subject = new_profile(client, app_h, email="li.na@example.cn", traits={"city": "上海"})
    headers = {**app_h, **purpose("marketing")}
    found = client.post("/v1/profiles/lookup", json={"email": "li.na@example.cn"}, headers=headers)
    assert found.status_code == 403 and code(found) == "consent_required"
    patch = {"traits": {"city": "杭州"}}
    resp = client.patch(f"/v1/profiles/{subject}", json=patch, headers=headers)
    assert resp.status_code == 403 and code(resp) == "consent_required"
    consent(client, app_h, subject, "marketing")
    found = client.post("/v1/profiles/lookup", json={"email": "li.na@example.cn"}, headers=headers)
    assert found.status_code == 200 and found.json()["id"] == subject
    assert client.patch(f"/v1/profiles/{subject}", json=patch, headers=headers).status_code == 200


def test_consent_on_a_non_consent_purpose_is_refused(
    client: TestClient, app_h: dict[str, str]
) -> None:
    subject = new_profile(client, app_h)
    body = {
        "purpose": "service_delivery",
        "state": "granted",
        "notice_id": "privacy-notice",
        "notice_version": 1,
        "channel": "web",
        "evidence": {"text_sha256": SHA, "locale": "zh-CN"},
    }
    url = f"/v1/profiles/{subject}/consents"
    resp = client.post(url, json=body, headers=app_h)
    assert resp.status_code == 422 and "contract" in resp.json()["detail"]
    cases = [
        ({"purpose": "lottery"}, "purpose"),
        ({"purpose": "marketing", "notice_id": "location-notice"}, "notice_id"),
        ({"purpose": "marketing", "notice_version": 9}, "notice_version"),
        ({"purpose": "marketing", "evidence": {"text_sha256": SHA, "locale": "fr"}}, "locale"),
        (
            {"purpose": "marketing", "evidence": {"text_sha256": SHA, "locale": "en", "ip": "x"}},
            "ip",
        ),
    ]
    for change, field in cases:
        resp = client.post(url, json={**body, **change}, headers=app_h)
        assert resp.status_code == 422, (change, resp.text)
        assert resp.json()["errors"][0]["loc"][-1] == field
        assert "lottery" not in resp.text
    missing = "00000000-0000-4000-8000-000000000000"
    resp = client.post(
        f"/v1/profiles/{missing}/consents", json={**body, "purpose": "marketing"}, headers=app_h
    )
    assert resp.status_code == 404


# --- art. 14: informed consent bound to a notice version -------------------------------------


def _bumped_policy(tmp_path: Path) -> Any:
    """The demo policy plus privacy-notice version 3, which asks again about marketing."""
    copy = tmp_path / "bumped"
    shutil.copytree(DEMO, copy)
    notice = copy / "notices" / "privacy-notice.yaml"
    text_ = notice.read_text(encoding="utf-8")
    last = text_[text_.index("  - version: 2") :]
    v3 = last.replace("version: 2", "version: 3", 1).replace(
        "reconsent: false", "reconsent: [marketing]", 1
    )
    notice.write_text(text_ + "\n" + v3.replace("published: 2026-06-01", "published: 2026-11-01"))
    return load_policy(copy)


def test_art14_notice_bump_retires_the_old_consent(
    client: TestClient, app_h: dict[str, str], runtime: Runtime, tmp_path: Path
) -> None:
    subject = new_profile(client, app_h)
    consent(client, app_h, subject, "marketing", version=2)
    consent(client, app_h, subject, "analytics", version=2)
    assert read(client, app_h, subject, "marketing").status_code == 200
    runtime.policy = _bumped_policy(tmp_path)  # a deployment with the new notice version
    denied = read(client, app_h, subject, "marketing")
    assert denied.status_code == 403 and code(denied) == "consent_required"
    assert "version 3" in denied.json()["detail"]
    # The bump names marketing only: analytics keeps its consent.
    assert read(client, app_h, subject, "analytics").status_code == 200
    me = customer(client, app_h, subject)
    view = {i["purpose"]: i for i in client.get("/v1/self/consents", headers=me).json()["items"]}
    assert view["marketing"]["notice"]["version"] == 3
    assert view["marketing"]["effective"] is False
    assert view["marketing"]["denial"] == "consent_required"
    # A grant must name the version shown: the old one is refused, the new one counts.
    old = {"consents": [{"purpose": "marketing", "state": "granted", "notice_version": 2}]}
    assert client.put("/v1/self/consents", json=old, headers=me).status_code == 422
    new = {"consents": [{"purpose": "marketing", "state": "granted", "notice_version": 3}]}
    resp = client.put("/v1/self/consents", json=new, headers=me)
    assert resp.status_code == 200, resp.text
    assert read(client, app_h, subject, "marketing").status_code == 200


# --- art. 15: withdrawal as easy as consent, effective at once ---------------------------------


def test_art15_withdrawal_effective_next_request(
    client: TestClient, app_h: dict[str, str], runtime: Runtime
) -> None:
    subject = new_profile(client, app_h)
    me = customer(client, app_h, subject)
    grant = {
        "consents": [
            {"purpose": "marketing", "state": "granted", "notice_version": 2},
            {"purpose": "analytics", "state": "granted", "notice_version": 2},
        ],
        "locale": "en",
        "channel": "web",
    }
    assert client.put("/v1/self/consents", json=grant, headers=me).status_code == 200
    assert read(client, app_h, subject, "marketing").status_code == 200
    # Withdrawing is one call, as granting was; the very next use is refused.
    withdraw = {"consents": [{"purpose": "marketing", "state": "withdrawn"}]}
    resp = client.put("/v1/self/consents", json=withdraw, headers=me)
    assert resp.status_code == 200, resp.text
    denied = read(client, app_h, subject, "marketing")
    assert denied.status_code == 403 and code(denied) == "consent_required"
    assert "withdrawn" in denied.json()["detail"]
    # An app records a withdrawal the customer made elsewhere (e.g. by phone): same effect.
    consent(client, app_h, subject, "analytics", "withdrawn")
    assert code(read(client, app_h, subject, "analytics")) == "consent_required"
    # The self grant carried the server's evidence: the hash of the text in the locale shown.
    notice = client.get("/v1/notices/privacy-notice", headers=me).json()
    with unit_of_work(runtime.sessions) as session:
        first = session.scalars(
            select(ConsentRecord).where(ConsentRecord.actor == f"subject:{subject}")
        ).first()
    assert first is not None and first.separate and first.channel == "web"
    assert first.evidence["text_sha256"] == notice["texts"]["en"]["text_sha256"]
    assert "ip_prefix" not in first.evidence  # the test client has no IP address
    # Repeating a choice records nothing new (PUT is idempotent).
    before = len(audit_rows(runtime, subject=subject, action="consent.withdraw"))
    assert client.put("/v1/self/consents", json=withdraw, headers=me).status_code == 200
    assert len(audit_rows(runtime, subject=subject, action="consent.withdraw")) == before


# --- art. 16: no refusal of the product for declining non-essential processing ----------------


def test_art16_refusing_every_consent_keeps_the_service(
    client: TestClient, app_h: dict[str, str], admin_h: dict[str, str]
) -> None:
    subject = new_profile(client, app_h)
    for name in NOTICE:
        consent(client, admin_h, subject, name, "refused")
    assert read(client, app_h, subject, "service_delivery").status_code == 200
    resp = client.patch(
        f"/v1/profiles/{subject}",
        json={"traits": {"city": "杭州"}},
        headers={**app_h, **purpose("service_delivery")},
    )
    assert resp.status_code == 200 and resp.json()["traits"]["city"] == "杭州"
    for name in ("customer_care", "marketing", "analytics"):
        assert code(read(client, app_h, subject, name)) == "consent_required"
    # The policy check refuses a policy that would gate the core service on consent (art. 16):
    # see tests/unit/policy/test_notices.py::test_art16_essential_purpose_cannot_rest_on_consent.
    purposes = client.get("/v1/policies/purposes", headers=app_h).json()["items"]
    assert all(p["legal_basis"] != "consent" for p in purposes if p["essential"])


# --- art. 17: notice before collection ---------------------------------------------------------


def test_art17_notice_served_with_every_section(client: TestClient, app_h: dict[str, str]) -> None:
    subject = new_profile(client, app_h)
    for headers in (app_h, customer(client, app_h, subject)):
        resp = client.get("/v1/notices/privacy-notice", headers=headers)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["version"] == body["latest_version"] == 2 and body["versions"] == [1, 2]
        assert set(body["texts"]) == {"zh-CN", "en"}
        for text_ in body["texts"].values():
            assert {
                "processor",
                "contact",
                "purposes",
                "methods",
                "pi_types",
                "retention",
                "rights",
            } <= set(text_["sections"])
            assert len(text_["text_sha256"]) == 64
        assert "个人信息处理者" in body["texts"]["zh-CN"]["sections"]["processor"]
    old = client.get("/v1/notices/privacy-notice?version=1", headers=app_h).json()
    assert old["version"] == 1 and old["latest_version"] == 2
    sharing = client.get("/v1/notices/partner-sharing-notice", headers=app_h).json()
    assert "recipients" in sharing["texts"]["en"]["sections"]
    assert client.get("/v1/notices/cookie-notice", headers=app_h).status_code == 404
    assert client.get("/v1/notices/privacy-notice?version=7", headers=app_h).status_code == 404
    assert client.get("/v1/notices/privacy-notice").status_code == 401


# --- art. 23: third-party sharing needs separate consent -------------------------------------


def test_art23_general_consent_does_not_unlock_a_third_party_purpose(
    client: TestClient, app_h: dict[str, str], admin_h: dict[str, str]
) -> None:
    subject = new_profile(client, app_h)
    consent(client, admin_h, subject, "third_party_sharing", separate=False)
    denied = read(client, admin_h, subject, "third_party_sharing")
    assert denied.status_code == 403 and code(denied) == "separate_consent_required"
    consent(client, admin_h, subject, "third_party_sharing", separate=True)
    assert read(client, admin_h, subject, "third_party_sharing").status_code == 200


# --- art. 24: personalisation opt-out ----------------------------------------------------------


def test_art24_opted_out_subject_absent_from_personalised_lists(
    client: TestClient, app_h: dict[str, str]
) -> None:
    out = new_profile(client, app_h, external_id="a", traits={"city": "北京"})
    stays = new_profile(client, app_h, external_id="b", traits={"city": "北京"})
    for subject in (out, stays):
        consent(client, app_h, subject, "marketing", version=2)
        consent(client, app_h, subject, "analytics", version=2)
    me = customer(client, app_h, out)
    resp = client.put("/v1/self/consents", json={"personalisation_opt_out": True}, headers=me)
    assert resp.status_code == 200 and resp.json()["personalisation_opt_out"] is True
    members = client.get("/v1/profiles", headers={**app_h, **purpose("marketing")}).json()
    assert [p["id"] for p in members["items"]] == [stays]
    denied = read(client, app_h, out, "marketing")
    assert denied.status_code == 403 and code(denied) == "personalisation_opted_out"
    # The opt-out is about personalisation only: analytics still runs on its consent.
    assert read(client, app_h, out, "analytics").status_code == 200
    view = {i["purpose"]: i for i in client.get("/v1/self/consents", headers=me).json()["items"]}
    assert view["marketing"]["state"] == "granted"
    assert view["marketing"]["denial"] == "personalisation_opted_out"
    assert (
        client.put("/v1/self/consents", json={"personalisation_opt_out": False}, headers=me).json()[
            "personalisation_opt_out"
        ]
        is False
    )
    assert read(client, app_h, out, "marketing").status_code == 200


# --- arts. 28-29: sensitive PI -----------------------------------------------------------------


def test_art28_29_sensitive_field_unreadable_with_general_consent(
    client: TestClient, admin_h: dict[str, str], runtime: Runtime
) -> None:
    subject = new_profile(client, admin_h)
    # nearby_stores reads precise location, sensitive PI: a general consent is not enough.
    consent(client, admin_h, subject, "nearby_stores")
    resp = client.patch(
        f"/v1/profiles/{subject}",
        json={"traits": {"precise_location": "31.2304,121.4737"}},
        headers={**admin_h, **purpose("nearby_stores")},
    )
    assert resp.status_code == 403 and code(resp) == "separate_consent_required"
    consent(client, admin_h, subject, "nearby_stores", separate=True)
    resp = client.patch(
        f"/v1/profiles/{subject}",
        json={"traits": {"precise_location": "31.2304,121.4737"}},
        headers={**admin_h, **purpose("nearby_stores")},
    )
    assert resp.status_code == 200, resp.text
    # A purpose whose categories include a sensitive field without being a separate-consent
    # purpose: the field is withheld under a general consent and shown under a separate one.
    spec = runtime.policy.purposes["analytics"]
    wider = spec.model_copy(update={"categories": [*spec.categories, "location_track"]})
    runtime.policy = dataclasses.replace(
        runtime.policy, purposes={**runtime.policy.purposes, "analytics": wider}
    )
    consent(client, admin_h, subject, "analytics")
    general = read(client, admin_h, subject, "analytics")
    assert general.status_code == 200 and "precise_location" not in general.json()["traits"]
    assert general.json()["traits"]["city"] == "上海"
    consent(client, admin_h, subject, "analytics", separate=True)
    separate = read(client, admin_h, subject, "analytics")
    assert separate.json()["traits"]["precise_location"] == "31.2304,121.4737"


# --- art. 31: minors under 14 ------------------------------------------------------------------


def test_art31_consent_for_a_minor_needs_a_guardian(
    client: TestClient, app_h: dict[str, str]
) -> None:
    subject = new_profile(client, app_h)
    consent(client, app_h, subject, "analytics")
    child = date.today().replace(year=date.today().year - 10).isoformat()
    resp = client.patch(
        f"/v1/profiles/{subject}",
        json={"traits": {"birth_date": child}},
        headers={**app_h, **purpose("analytics")},
    )
    assert resp.status_code == 200, resp.text
    # From the next request on, the subject is a minor: the adult-style consent no longer counts.
    denied = read(client, app_h, subject, "analytics")
    assert denied.status_code == 403 and code(denied) == "guardian_consent_required"
    refused = consent(client, app_h, subject, "analytics", expect=422)
    assert refused["code"] == "validation_error" and "art. 31" in refused["detail"]
    assert refused["errors"][0]["loc"] == ["body", "guardian"]
    consent(client, app_h, subject, "analytics", guardian=GUARDIAN)
    assert read(client, app_h, subject, "analytics").status_code == 200
    overview = client.get(f"/v1/profiles/{subject}/consents", headers=app_h).json()
    assert overview["minor"] is True
    assert overview["history"][0]["guardian"] == GUARDIAN
    # The child cannot grant by itself.
    me = customer(client, app_h, subject)
    grant = {"consents": [{"purpose": "marketing", "state": "granted", "notice_version": 2}]}
    resp = client.put("/v1/self/consents", json=grant, headers=me)
    assert resp.status_code == 422 and "guardian" in resp.json()["detail"]
    # A corrected birth date showing an adult lifts the flag; withdrawing is always possible.
    resp = client.patch(
        f"/v1/profiles/{subject}",
        json={"traits": {"birth_date": "1990-05-01"}},
        headers={**app_h, **purpose("analytics")},
    )
    assert resp.status_code == 200, resp.text
    assert client.get(f"/v1/profiles/{subject}/consents", headers=app_h).json()["minor"] is False
    withdraw = {"consents": [{"purpose": "analytics", "state": "withdrawn"}]}
    assert client.put("/v1/self/consents", json=withdraw, headers=me).status_code == 200


# --- arts. 38-40: cross-border transfer --------------------------------------------------------


def test_art38_40_cross_border_needs_separate_consent_and_is_counted(
    client: TestClient, admin_h: dict[str, str], token_for: Headers, runtime: Runtime
) -> None:
    officer = token_for("compliance")
    counter = "/v1/compliance/cross-border"
    assert client.get(counter, headers=officer).json()["subjects"] == 0
    first = new_profile(client, admin_h, external_id="c1")
    second = new_profile(client, admin_h, external_id="c2")
    consent(client, admin_h, first, "cross_border_transfer")
    denied = read(client, admin_h, first, "cross_border_transfer")
    assert denied.status_code == 403 and code(denied) == "separate_consent_required"
    assert client.get(counter, headers=officer).json()["subjects"] == 0
    consent(client, admin_h, first, "cross_border_transfer", separate=True)
    for _ in range(2):  # counted once per subject and year
        assert read(client, admin_h, first, "cross_border_transfer").status_code == 200
    body = client.get(counter, headers=officer).json()
    assert (body["subjects"], body["sensitive_subjects"], body["alert"]) == (1, 0, False)
    consent(client, admin_h, second, "cross_border_transfer", separate=True)
    listed = client.get("/v1/profiles", headers={**admin_h, **purpose("cross_border_transfer")})
    assert len(listed.json()["items"]) == 2
    # Thresholds come from policy; the alert fires at 80 % of either.
    settings = runtime.policy.settings.model_copy(update={"cross_border_people_per_year": 2})
    runtime.policy = dataclasses.replace(runtime.policy, settings=settings)
    body = client.get(counter, headers=officer).json()
    assert body["subjects"] == 2 and body["alert"] is True and body["people_threshold"] == 2
    assert client.get(f"{counter}?year=2022", headers=officer).json()["subjects"] == 0
    # Erasure does not lower the count: the law counts people sent abroad in the year.
    assert client.delete(f"/v1/profiles/{second}", headers=admin_h).status_code == 204
    assert client.get(counter, headers=officer).json()["subjects"] == 2
    assert client.get(counter, headers=token_for("app")).status_code == 403


# --- arts. 44 and 47: restriction --------------------------------------------------------------


def test_art44_restricted_subject_excluded_from_all_but_storage_and_legal_duties(
    client: TestClient, app_h: dict[str, str], admin_h: dict[str, str], runtime: Runtime
) -> None:
    subject = new_profile(client, app_h, external_id="r1", traits={"city": "深圳"})
    other = new_profile(client, app_h, external_id="r2", traits={"city": "深圳"})
    for s in (subject, other):
        consent(client, app_h, s, "marketing")
    restrict(runtime, subject)
    for name in ("marketing", "service_delivery"):
        denied = read(client, app_h, subject, name)
        assert denied.status_code == 403 and code(denied) == "processing_restricted", name
    for name in ("storage", "legal_compliance"):
        assert read(client, admin_h, subject, name).status_code == 200, name
    listed = client.get("/v1/profiles", headers={**app_h, **purpose("service_delivery")}).json()
    assert [p["id"] for p in listed["items"]] == [other]
    overview = client.get(f"/v1/profiles/{subject}/consents", headers=app_h).json()
    assert overview["restricted"] is True
    assert overview["current"][0]["denial"] == "processing_restricted"
    [entry] = audit_rows(runtime, action="subject.restrict")
    assert entry.subject == subject and entry.detail == {"reason": "legal_hold"}
    restrict(runtime, subject, lift=True)
    assert read(client, app_h, subject, "marketing").status_code == 200


def test_art47_erasure_ends_the_customer_token_and_the_consents(
    client: TestClient, app_h: dict[str, str], runtime: Runtime
) -> None:
    subject = new_profile(client, app_h)
    consent(client, app_h, subject, "marketing")
    me = customer(client, app_h, subject)
    assert client.get("/v1/self/consents", headers=me).status_code == 200
    assert client.delete(f"/v1/profiles/{subject}", headers=app_h).status_code == 204
    resp = client.get("/v1/self/consents", headers=me)
    assert resp.status_code == 401 and code(resp) == "invalid_token"
    with unit_of_work(runtime.sessions) as session:
        left = session.scalar(select(func.count()).select_from(ConsentRecord))
    assert left == 0
    # The audit trail of the consent remains, without PI.
    [entry] = audit_rows(runtime, action="consent.grant")
    assert entry.subject == subject and "ip" not in json.dumps(entry.detail)


# --- records, history, tokens ------------------------------------------------------------------


def test_record_keeps_evidence_without_the_full_ip(
    client: TestClient, app_h: dict[str, str], runtime: Runtime, settings: Any
) -> None:
    subject = new_profile(client, app_h)
    v4 = consent(client, app_h, subject, "marketing", ip="203.0.113.57")
    assert v4["evidence"] == {"text_sha256": SHA, "locale": "zh-CN", "ip_prefix": "203.0.113.0/24"}
    assert v4["actor"].startswith("client:") and v4["policy_version"] == runtime.policy.version
    v6 = consent(client, app_h, subject, "analytics", ip="2001:db8:1234:5678::1")
    assert v6["evidence"]["ip_prefix"] == "2001:db8:1234::/48"
    with runtime.engine.connect() as conn:
        raw = " ".join(str(r) for r in conn.execute(text("SELECT evidence FROM consent_record")))
    assert "203.0.113.57" not in raw and "5678" not in raw
    [entry] = audit_rows(runtime, action="consent.grant", purpose="marketing")
    assert entry.subject == subject and entry.detail["notice_version"] == 1
    assert "203.0.113" not in json.dumps(entry.detail)


def test_history_is_never_rewritten_and_pages(
    client: TestClient, app_h: dict[str, str], runtime: Runtime
) -> None:
    subject = new_profile(client, app_h)
    states = ["granted", "withdrawn", "granted", "refused", "granted"]
    for state in states:
        consent(client, app_h, subject, "marketing", state)
    url = f"/v1/profiles/{subject}/consents"
    first = client.get(f"{url}?limit=2", headers=app_h).json()
    assert [c["state"] for c in first["current"]] == ["granted"]
    seen = [h["state"] for h in first["history"]]
    cursor = first["next_cursor"]
    while cursor:
        page = client.get(f"{url}?limit=2&cursor={cursor}", headers=app_h).json()
        seen += [h["state"] for h in page["history"]]
        cursor = page["next_cursor"]
    assert seen == list(reversed(states))
    assert client.get(f"{url}?cursor=forged", headers=app_h).status_code == 422
    assert len(audit_rows(runtime, action="consent.read", subject=subject)) >= 3
    # The table refuses an UPDATE: history is append-only in the database too.
    with pytest.raises(Exception, match="append-only"), runtime.engine.begin() as conn:
        conn.execute(text("UPDATE consent_record SET state = 'granted'"))
    missing = "00000000-0000-4000-8000-000000000000"
    assert client.get(f"/v1/profiles/{missing}/consents", headers=app_h).status_code == 404


def test_subject_token_is_audited_and_needs_an_existing_profile(
    client: TestClient, app_h: dict[str, str], token_for: Headers, runtime: Runtime
) -> None:
    subject = new_profile(client, app_h)
    customer(client, app_h, subject)
    [entry] = audit_rows(runtime, action="subject_token.issue")
    assert entry.subject == subject and entry.actor.startswith("client:")
    missing = "00000000-0000-4000-8000-000000000000"
    assert client.post(f"/v1/profiles/{missing}/subject-token", headers=app_h).status_code == 404
    support = token_for("support")  # no subjects:token scope
    resp = client.post(f"/v1/profiles/{subject}/subject-token", headers=support)
    assert resp.status_code == 403 and code(resp) == "insufficient_scope"


def test_self_view_lists_every_consent_purpose_with_its_notice(
    client: TestClient, app_h: dict[str, str], runtime: Runtime
) -> None:
    subject = new_profile(client, app_h)
    me = customer(client, app_h, subject)
    body = client.get("/v1/self/consents", headers=me).json()
    consent_purposes = {p for p, s in runtime.policy.purposes.items() if s.legal_basis == "consent"}
    assert {i["purpose"] for i in body["items"]} == consent_purposes
    item = next(i for i in body["items"] if i["purpose"] == "cross_border_transfer")
    assert item["separate_consent"] is True and item["state"] is None
    assert item["notice"] == {
        "id": "cross-border-notice",
        "version": 1,
        "url": "/v1/notices/cross-border-notice?version=1",
    }
    resp = client.put(
        "/v1/self/consents",
        json={"consents": [{"purpose": "service_delivery", "state": "granted"}]},
        headers=me,
    )
    assert resp.status_code == 422
    twice = {"consents": [{"purpose": "analytics", "state": "withdrawn"}] * 2}
    assert client.put("/v1/self/consents", json=twice, headers=me).status_code == 422
