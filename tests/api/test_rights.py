"""Rights requests end to end over HTTP (PIPL arts. 44-50), on SQLite and PostgreSQL: every
request type, the lifecycle and its 409s, due dates, downloads, erasure across every table."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import String, func, insert, or_, select

from cdp.api import Runtime
from cdp.audit.models import AuditEntry
from cdp.audit.service import RequestContext
from cdp.db import Base, unit_of_work, utcnow
from cdp.events.models import Event
from cdp.events.service import EVENT_TABLE
from cdp.feedback.models import Feedback
from cdp.profiles.models import Identity, Profile
from cdp.rights import service as rights_service
from cdp.rights.erasure import KEPT_TABLES
from cdp.rights.models import RightsRequest

Headers = Callable[..., dict[str, str]]
SHA = "ab" * 32
SD = {"X-Purpose": "service_delivery"}


@pytest.fixture
def app_h(token_for: Headers) -> dict[str, str]:
    return token_for("app")


@pytest.fixture
def officer(token_for: Headers) -> dict[str, str]:
    return token_for("compliance")


def new_profile(client: TestClient, app_h: dict[str, str], email: str, **traits: Any) -> str:
    body = {
        "email": email,
        "external_id": email.split("@")[0],
        "traits": traits or {"city": "上海"},
    }
    resp = client.post("/v1/profiles", json=body, headers={**app_h, **SD})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def customer(client: TestClient, app_h: dict[str, str], subject: str) -> dict[str, str]:
    resp = client.post(f"/v1/profiles/{subject}/subject-token", headers=app_h)
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def grant(client: TestClient, app_h: dict[str, str], subject: str, purpose: str) -> None:
    body = {
        "purpose": purpose,
        "state": "granted",
        "notice_id": "privacy-notice",
        "notice_version": 2,
        "channel": "app",
        "evidence": {"text_sha256": SHA, "locale": "zh-CN"},
    }
    resp = client.post(f"/v1/profiles/{subject}/consents", json=body, headers=app_h)
    assert resp.status_code == 201, resp.text


def add_data(rt: Runtime, subject: str, *, events: int = 3, names: tuple[str, ...] = ()) -> None:
    """Events (one PI property sealed) and a feedback comment, as the domains store them."""
    now = utcnow()
    keys = rt.crypto.keys_for([subject])
    rows = []
    for i in range(events):
        event_id = uuid.uuid4().hex
        rows.append(
            {
                "id": event_id,
                "timestamp": now - timedelta(minutes=i),
                "source_id": "src_test",
                "message_id": f"m-{event_id}",
                "subject_id": subject,
                "type": "track",
                "name": names[i % len(names)] if names else "Product Viewed",
                "received_at": now,
                "properties": {"sku": f"SKU-{i}"},
                "sealed": {
                    "address": keys.seal(
                        subject, EVENT_TABLE, f"{event_id}.address", '"静安路 1 号"'
                    )
                },
                "context": {},
            }
        )
    with unit_of_work(rt.sessions) as session:
        session.info["ctx"] = RequestContext(rt.policy.version)
        session.execute(insert(Event), rows)
        session.add(
            Feedback(
                id=str(uuid.uuid4()),
                subject_id=subject,
                kind="complaint",
                status="open",
                purpose="customer_care",
                comment_sealed=keys.seal(subject, "feedback", "comment", "快递太慢了"),
                reopen_count=0,
                created_by="client:test",
                created_at=now,
                updated_at=now,
            )
        )


def submit_self(client: TestClient, token: dict[str, str], **body: Any) -> dict[str, Any]:
    resp = client.post("/v1/self/rights-requests", json=body, headers=token)
    assert resp.status_code == 201, resp.text
    out: dict[str, Any] = resp.json()
    assert out["status"] == "verified" and out["submitted_by"] == "subject"
    return out


def act(client: TestClient, officer: dict[str, str], rid: str, action: str, **body: Any) -> Any:
    return client.post(f"/v1/rights-requests/{rid}/{action}", json=body or None, headers=officer)


def complete(client: TestClient, officer: dict[str, str], rid: str) -> dict[str, Any]:
    resp = act(client, officer, rid, "complete")
    assert resp.status_code == 200, resp.text
    out: dict[str, Any] = resp.json()
    assert out["status"] == "completed" and out["completed_at"]
    return out


def download(client: TestClient, headers: dict[str, str], path: str, fmt: str = "json") -> Any:
    link = client.get(path, headers=headers)
    assert link.status_code == 200, link.text
    resp = client.get(link.json()["url"], params={"format": fmt})
    assert resp.status_code == 200, resp.text
    return resp


def holding(rt: Runtime, subject: str) -> dict[str, int]:
    """Rows per table where any string column holds the subject id (every table walked)."""
    import cdp.models  # noqa: F401

    found = {}
    with unit_of_work(rt.sessions) as session:
        for table in Base.metadata.sorted_tables:
            columns = [c for c in table.c if isinstance(c.type, String) and c.type.length]
            columns = [c for c in columns if (c.type.length or 0) >= 36]
            if not columns:
                continue
            where = [c == subject for c in columns]
            n = session.scalar(select(func.count()).select_from(table).where(or_(*where)))
            if n:
                found[table.name] = int(n)
    return found


def test_access_end_to_end_holds_this_customer_only(
    client: TestClient, runtime: Runtime, app_h: dict[str, str], officer: dict[str, str]
) -> None:
    me = new_profile(client, app_h, "wang.fang@example.cn", city="上海")
    other = new_profile(client, app_h, "zhao.lei@example.cn", city="北京")
    grant(client, app_h, me, "marketing")
    add_data(runtime, me)
    add_data(runtime, other)
    token = customer(client, app_h, me)
    req = submit_self(client, token, type="access")
    queue = client.get("/v1/rights-requests", params={"status": "verified"}, headers=officer)
    assert [r["id"] for r in queue.json()["items"]] == [req["id"]]
    done = complete(client, officer, req["id"])
    assert done["result"]["sections"]["events"] == 3
    bundle = download(client, token, f"/v1/self/rights-requests/{req['id']}/export").json()
    text = json.dumps(bundle, ensure_ascii=False)
    assert (
        bundle["subject_id"] == me
        and bundle["profile"]["fields"]["email"] == "wang.fang@example.cn"
    )
    assert "静安路 1 号" in text and "快递太慢了" in text
    assert [c["purpose"] for c in bundle["consents"]["current"]] == ["marketing"]
    assert any(
        p["purpose"] == "third_party_sharing" and "recipients" in p for p in bundle["processing"]
    )
    assert other not in text and "zhao.lei" not in text and "北京" not in text
    # The same through the CSV zip, and the officer's own link.
    csv_zip = download(client, officer, f"/v1/rights-requests/{req['id']}/export", "csv")
    names = zipfile.ZipFile(io.BytesIO(csv_zip.content)).namelist()
    assert {"profile.csv", "identities.csv", "events.csv", "consent_history.csv"} <= set(names)
    raw = b"".join(zipfile.ZipFile(io.BytesIO(csv_zip.content)).read(n) for n in names)
    assert b"wang.fang" in raw and b"zhao.lei" not in raw and other.encode() not in raw
    with unit_of_work(runtime.sessions) as session:
        actions = set(session.scalars(select(AuditEntry.action).where(AuditEntry.subject == me)))
        details = " ".join(
            json.dumps(d, ensure_ascii=False)
            for d in session.scalars(select(AuditEntry.detail).where(AuditEntry.subject == me))
        )
    assert {"rights.submit", "rights.complete", "rights.export_link", "rights.export"} <= actions
    assert "wang.fang" not in details and "静安路" not in details
    # Another customer cannot get a link to it.
    theirs = client.get(
        f"/v1/self/rights-requests/{req['id']}/export", headers=customer(client, app_h, other)
    )
    assert theirs.status_code == 404


def test_self_data_and_list(client: TestClient, runtime: Runtime, app_h: dict[str, str]) -> None:
    me = new_profile(client, app_h, "liu.yang@example.cn")
    token = customer(client, app_h, me)
    resp = client.get("/v1/self/data", headers=token)
    assert (
        resp.status_code == 200
        and {i["kind"]: i["value"] for i in resp.json()["identities"]}["email"]
        == "liu.yang@example.cn"
    )
    first = submit_self(client, token, type="portability")
    second = submit_self(client, token, type="explanation")
    page = client.get("/v1/self/rights-requests", params={"limit": 1}, headers=token).json()
    assert [r["id"] for r in page["items"]] == [second["id"]] and page["next_cursor"]
    rest = client.get(
        "/v1/self/rights-requests", params={"cursor": page["next_cursor"]}, headers=token
    ).json()
    assert [r["id"] for r in rest["items"]] == [first["id"]]


def test_forged_or_unfinished_downloads_are_refused(
    client: TestClient,
    app_h: dict[str, str],
    officer: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    me = new_profile(client, app_h, "sun.li@example.cn")
    req = submit_self(client, customer(client, app_h, me), type="portability")
    early = client.get(f"/v1/rights-requests/{req['id']}/export", headers=officer)
    assert early.status_code == 409 and early.json()["code"] == "invalid_transition"
    complete(client, officer, req["id"])
    url = client.get(f"/v1/rights-requests/{req['id']}/export", headers=officer).json()["url"]
    copy = client.get(url)
    assert copy.status_code == 200 and copy.headers["cache-control"] == "no-store"
    assert copy.json()["identities"] and copy.json()["subject_id"] == me
    assert "attachment" in copy.headers["content-disposition"]
    forged = url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB")
    resp = client.get(forged)
    assert resp.status_code == 403 and resp.json()["code"] == "download_link_invalid"
    assert client.get("/v1/rights-exports/garbage").status_code == 403
    # A link past its 15 minutes is refused.
    monkeypatch.setattr(rights_service, "LINK_TTL", timedelta(seconds=-1))
    stale = client.get(f"/v1/rights-requests/{req['id']}/export", headers=officer).json()["url"]
    resp = client.get(stale)
    assert resp.status_code == 403 and "expired" in resp.json()["detail"]


def test_correction_restriction_withdrawal_explanation(
    client: TestClient, runtime: Runtime, app_h: dict[str, str], officer: dict[str, str]
) -> None:
    me = new_profile(client, app_h, "zhou.min@example.cn", city="上海")
    grant(client, app_h, me, "marketing")
    grant(client, app_h, me, "analytics")
    token = customer(client, app_h, me)

    fix = submit_self(client, token, type="correction", patch={"city": "杭州"})
    assert fix["details"] == {"fields": ["city"]} and "patch" not in fix
    seen = client.get(f"/v1/rights-requests/{fix['id']}", headers=officer).json()
    assert seen["patch"] == {"city": "杭州"}
    complete(client, officer, fix["id"])
    read = client.get(f"/v1/profiles/{me}", headers={**app_h, **SD}).json()
    assert read["traits"]["city"] == "杭州"

    out = submit_self(client, token, type="withdrawal", purposes=["marketing"])
    assert complete(client, officer, out["id"])["result"] == {"withdrawn": ["marketing"]}
    denied = client.get(f"/v1/profiles/{me}", headers={**app_h, "X-Purpose": "marketing"})
    assert denied.status_code == 403 and denied.json()["code"] == "consent_required"

    why = submit_self(client, token, type="explanation")
    complete(client, officer, why["id"])
    found = download(client, token, f"/v1/self/rights-requests/{why['id']}/export").json()
    purposes = {p["purpose"]: p for p in found["purposes"]}
    assert purposes["analytics"]["uses_your_data_now"] is True
    assert purposes["marketing"]["why_not"] == "consent_required"
    assert [a["purpose"] for a in found["automated_decisions"]] == ["marketing"]

    stop = submit_self(client, token, type="restriction")
    complete(client, officer, stop["id"])
    blocked = client.get(f"/v1/profiles/{me}", headers={**app_h, "X-Purpose": "analytics"})
    assert blocked.status_code == 403 and blocked.json()["code"] == "processing_restricted"


def test_lifecycle_relative_reasons_and_409s(
    client: TestClient, runtime: Runtime, app_h: dict[str, str], officer: dict[str, str]
) -> None:
    me = new_profile(client, app_h, "he.jun@example.cn")
    body = {
        "subject_id": me,
        "type": "access",
        "requester": {"kind": "relative", "relation": "spouse", "evidence": "死亡证明 No. 3301"},
    }
    resp = client.post("/v1/rights-requests", json=body, headers=app_h)
    assert resp.status_code == 201, resp.text
    req = resp.json()
    assert req["status"] == "received" and req["relation"] == "spouse" and "evidence" not in req
    with unit_of_work(runtime.sessions) as session:
        row = session.get(RightsRequest, req["id"])
        assert row is not None and row.evidence and "3301" not in row.evidence
    assert act(client, officer, req["id"], "complete").status_code == 409
    seen = client.get(f"/v1/rights-requests/{req['id']}", headers=officer).json()
    assert seen["evidence"] == "死亡证明 No. 3301"
    assert act(client, officer, req["id"], "verify").json()["status"] == "verified"
    again = act(client, officer, req["id"], "verify")
    assert again.status_code == 409 and again.json()["code"] == "invalid_transition"
    assert act(client, officer, req["id"], "start").json()["status"] == "in_progress"
    no_reason = act(client, officer, req["id"], "reject", reason="")
    assert no_reason.status_code == 422
    rejected = act(client, officer, req["id"], "reject", reason="证明材料不完整; 请补充。")
    assert rejected.status_code == 200
    assert rejected.json()["status"] == "rejected"
    assert rejected.json()["rejection_reason"] == "证明材料不完整; 请补充。"
    assert act(client, officer, req["id"], "complete").status_code == 409
    # A relative may not ask for a restriction, and must say who they are.
    bad = {**body, "type": "restriction"}
    assert client.post("/v1/rights-requests", json=bad, headers=app_h).status_code == 422
    bad = {**body, "requester": {"kind": "relative", "relation": "spouse"}}
    assert client.post("/v1/rights-requests", json=bad, headers=app_h).status_code == 422


def test_app_submits_for_a_verified_customer_and_extends(
    client: TestClient, app_h: dict[str, str], officer: dict[str, str]
) -> None:
    me = new_profile(client, app_h, "ma.chao@example.cn")
    resp = client.post(
        "/v1/rights-requests", json={"subject_id": me, "type": "access"}, headers=app_h
    )
    assert resp.status_code == 201 and resp.json()["status"] == "verified"
    req = resp.json()
    moved = act(client, officer, req["id"], "extend", working_days=2, reason="archive")
    assert moved.status_code == 200 and moved.json()["extended"] is True
    assert moved.json()["due_at"] > req["due_at"] and moved.json()["extension_reason"] == "archive"
    too_far = act(client, officer, req["id"], "extend", working_days=20, reason="more")
    assert too_far.status_code == 422
    assert (
        client.get(f"/v1/rights-requests/{req['id']}", headers=officer).json()["due_at"]
        == (moved.json()["due_at"])
    )
    soon = client.get(
        "/v1/rights-requests", params={"due_before": moved.json()["due_at"]}, headers=officer
    ).json()
    assert soon["items"] == []
    missing = client.post(
        "/v1/rights-requests",
        json={"subject_id": str(uuid.uuid4()), "type": "access"},
        headers=app_h,
    )
    assert missing.status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"type": "access", "patch": {"city": "x"}},
        {"type": "correction"},
        {"type": "correction", "patch": {"no_such_field": 1}},
        {"type": "withdrawal", "purposes": ["service_delivery"]},
        {"type": "correction", "patch": {"email": "not-an-email"}},
        {"type": "correction", "patch": {"birth_date": "yesterday"}},
        {"type": "access", "purposes": ["marketing"]},
        {"type": "teleport"},
    ],
)
def test_bad_requests_are_422_and_store_nothing(
    client: TestClient, runtime: Runtime, app_h: dict[str, str], body: dict[str, Any]
) -> None:
    token = customer(client, app_h, new_profile(client, app_h, "qian.bo@example.cn"))
    resp = client.post("/v1/self/rights-requests", json=body, headers=token)
    assert resp.status_code == 422 and resp.json()["code"] == "validation_error", resp.text
    with unit_of_work(runtime.sessions) as session:
        assert session.scalar(select(func.count()).select_from(RightsRequest)) == 0


def _backup(rt: Runtime, subject: str) -> dict[str, list[dict[str, Any]]]:
    """A logical copy of the subject's rows in every table (what a database backup holds)."""
    import cdp.models  # noqa: F401

    copy: dict[str, list[dict[str, Any]]] = {}
    with unit_of_work(rt.sessions) as session:
        for table in Base.metadata.sorted_tables:
            key = table.c.id if table.name == "profile" else table.c.get("subject_id")
            if key is None:
                continue
            copy[table.name] = [
                dict(r._mapping) for r in session.execute(select(table).where(key == subject))
            ]
    return copy


def _restore(rt: Runtime, copy: dict[str, list[dict[str, Any]]]) -> None:
    """Put the copied rows back (the kept tables never lost theirs)."""
    with unit_of_work(rt.sessions) as session:
        for table in Base.metadata.sorted_tables:
            rows = copy.get(table.name)
            if rows and table.name not in KEPT_TABLES:
                session.execute(insert(table), rows)


def test_deletion_erases_every_table_and_backups_stay_unreadable(
    client: TestClient, runtime: Runtime, app_h: dict[str, str], officer: dict[str, str]
) -> None:
    from cdp.errors import SubjectKeyMissing

    me = new_profile(client, app_h, "gone@example.cn", city="上海")
    keep = new_profile(client, app_h, "stays@example.cn")
    grant(client, app_h, me, "analytics")
    add_data(runtime, me)
    add_data(runtime, keep)
    client.post("/v1/self/verification", json={"email": "gone@example.cn"})
    token = customer(client, app_h, me)
    req = submit_self(client, token, type="deletion")
    backup = _backup(runtime, me)
    assert backup["event"] and backup["identity"] and backup["verification_code"]
    done = complete(client, officer, req["id"])
    assert done["result"]["erased"] is True and done["result"]["kept"] == []
    assert {"event", "feedback", "consent_record", "verification_code"} <= set(
        done["result"]["deleted"]
    )
    assert set(holding(runtime, me)) <= KEPT_TABLES
    assert not runtime.crypto.has_key(me)
    # The token of an erased customer stops at once; the other customer is untouched.
    assert client.get("/v1/self/consents", headers=token).status_code == 401
    assert holding(runtime, keep)["event"] == 3
    lookup = client.post(
        "/v1/profiles/lookup", json={"email": "gone@example.cn"}, headers={**app_h, **SD}
    )
    assert lookup.status_code == 404
    # The pre-deletion copy yields no plaintext: the key is gone.
    sealed = backup["identity"][0]["sealed_value"]
    with pytest.raises(SubjectKeyMissing):
        runtime.crypto.open(me, "identity", "email", sealed)
    # Restoring the copy brings the rows back; replaying the erasure ledger removes them again.
    _restore(runtime, backup)
    assert "event" in holding(runtime, me)
    [(subject, erased_at)] = [(s, at) for s, at in runtime.crypto.erasures() if s == me]
    with unit_of_work(runtime.sessions) as session:
        session.info["ctx"] = RequestContext(runtime.policy.version)
        assert rights_service.replay_erasure(session, subject_id=subject, erased_at=erased_at) > 0
    assert set(holding(runtime, me)) <= KEPT_TABLES
    with unit_of_work(runtime.sessions) as session:
        session.info["ctx"] = RequestContext(runtime.policy.version)
        assert rights_service.replay_erasure(session, subject_id=subject, erased_at=erased_at) == 0


def test_delete_profile_uses_the_same_routine(
    client: TestClient, runtime: Runtime, app_h: dict[str, str], token_for: Headers
) -> None:
    me = new_profile(client, app_h, "bye@example.cn")
    add_data(runtime, me)
    resp = client.delete(f"/v1/profiles/{me}", headers=token_for("admin"))
    assert resp.status_code == 204
    assert set(holding(runtime, me)) <= KEPT_TABLES


def test_legal_hold_restricts_instead_and_says_why(
    client: TestClient,
    runtime: Runtime,
    app_h: dict[str, str],
    officer: dict[str, str],
    token_for: Headers,
) -> None:
    me = new_profile(client, app_h, "buyer@example.cn")
    add_data(runtime, me, events=4, names=("Order Completed", "Product Viewed"))
    req = submit_self(client, customer(client, app_h, me), type="deletion")
    result = complete(client, officer, req["id"])["result"]
    assert result["erased"] is False and result["restricted"] is True
    holds = {k["hold"]: k for k in result["kept"]}
    assert holds["accounting_vouchers"]["data"] == ["event:Order Completed"]
    assert holds["accounting_vouchers"]["reason"] and holds["accounting_vouchers"]["until"]
    with unit_of_work(runtime.sessions) as session:
        names = list(session.scalars(select(Event.name).where(Event.subject_id == me)))
        assert names == ["Order Completed", "Order Completed"]
        assert (
            session.scalar(
                select(func.count()).select_from(Feedback).where(Feedback.subject_id == me)
            )
            == 0
        )
        assert session.get(Profile, me) is not None
        assert (
            session.scalar(
                select(func.count()).select_from(Identity).where(Identity.subject_id == me)
            )
            == 2
        )
    assert runtime.crypto.has_key(me)
    blocked = client.get(f"/v1/profiles/{me}", headers={**app_h, **SD})
    assert blocked.status_code == 403 and blocked.json()["code"] == "processing_restricted"
    # DELETE /v1/profiles says the same.
    resp = client.delete(f"/v1/profiles/{me}", headers=token_for("admin"))
    assert resp.status_code == 200 and resp.json()["restricted"] is True
    assert resp.json()["kept"][0]["data"] == ["event:Order Completed"]
