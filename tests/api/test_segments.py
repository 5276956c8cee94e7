"""Segments over HTTP on the fixed dataset (tests/unit/segments/dataset.py): definitions,
k-anonymous previews, purpose-filtered members (PIPL art. 24 opt-out, restriction, consent),
explanations for staff and for the customer, and snapshots with enter/leave history."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.api.tracking import new_profile, set_consent
from tests.unit.segments import dataset

from cdp.api import Runtime
from cdp.audit.models import AuditEntry
from cdp.audit.service import RequestContext
from cdp.consent import service as consent
from cdp.consent import status as subject_status
from cdp.db import unit_of_work
from cdp.events.writes import Rollup, write_rollup
from cdp.profiles.models import Profile
from cdp.segments import service
from cdp.segments.models import Segment, SegmentChange

Headers = Callable[..., dict[str, str]]
BUILTINS = ["vip", "new", "potential", "active", "silent", "churn_risk"]


@pytest.fixture
def data(runtime: Runtime) -> dict[str, str]:
    with unit_of_work(runtime.sessions) as session:
        session.info["ctx"] = RequestContext(runtime.policy.version)
        return dataset.build(session)


@pytest.fixture
def analyst(token_for: Headers) -> dict[str, str]:
    return token_for("analyst")


def _grant(
    runtime: Runtime, subject_ids: list[str], purposes: list[str], state: str = "granted"
) -> None:
    with unit_of_work(runtime.sessions) as session:
        session.info["ctx"] = RequestContext(runtime.policy.version)
        for sid in subject_ids:
            for purpose in purposes:
                notice = runtime.policy.purposes[purpose].notice or ""
                change = consent.ConsentInput(
                    purpose=purpose,
                    state=state,  # type: ignore[arg-type]
                    notice_id=notice,
                    notice_version=runtime.policy.notices[notice].latest.version,
                    channel="app",
                    text_sha256="ab" * 32,
                    locale="zh-CN",
                )
                consent.record(
                    session, policy=runtime.policy, actor="test", subject_id=sid, change=change
                )


def _names(data: dict[str, str], ids: list[str]) -> set[str]:
    names = {v: k for k, v in data.items()}
    return {names[i] for i in ids}


def _problem(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = resp.json()
    assert body["code"] == code
    return body


def test_definitions_crud_and_builtins_are_read_only(
    client: TestClient, runtime: Runtime, analyst: dict[str, str]
) -> None:
    listed = client.get("/v1/segments", headers=analyst)
    assert listed.status_code == 200
    assert [s["key"] for s in listed.json()["items"]][:6] == BUILTINS
    vip = client.get("/v1/segments/vip", headers=analyst).json()
    assert vip["builtin"] is True and vip["names"]["zh"] == "重要客户"
    assert vip["condition"]["value"] == 100000

    body = {
        "key": "sh",
        "name": "Shanghai",
        "condition": {"trait": "city", "op": "eq", "value": "上海"},
    }
    created = client.post("/v1/segments", json=body, headers=analyst)
    assert created.status_code == 201, created.text
    assert created.json()["builtin"] is False
    _problem(client.post("/v1/segments", json=body, headers=analyst), 409, "segment_exists")
    _problem(
        client.post("/v1/segments", json={**body, "key": "vip"}, headers=analyst),
        409,
        "segment_exists",
    )
    ref = {
        "key": "sh_vip",
        "name": "SH VIP",
        "condition": {"all": [{"segment": "sh"}, {"segment": "vip"}]},
    }
    assert client.post("/v1/segments", json=ref, headers=analyst).status_code == 201

    update = {
        "name": "Shanghai or Beijing",
        "condition": {"trait": "city", "op": "in", "value": ["上海", "北京"]},
    }
    put = client.put("/v1/segments/sh", json=update, headers=analyst)
    assert put.status_code == 200 and put.json()["condition"]["op"] == "in"
    self_ref = {"name": "loop", "condition": {"segment": "sh_vip"}}
    _problem(
        client.put("/v1/segments/sh", json=self_ref, headers=analyst), 422, "invalid_condition"
    )
    _problem(client.put("/v1/segments/vip", json=update, headers=analyst), 409, "segment_builtin")
    _problem(client.delete("/v1/segments/vip", headers=analyst), 409, "segment_builtin")
    _problem(client.delete("/v1/segments/sh", headers=analyst), 409, "segment_in_use")
    assert client.delete("/v1/segments/sh_vip", headers=analyst).status_code == 204
    assert client.delete("/v1/segments/sh", headers=analyst).status_code == 204
    _problem(client.get("/v1/segments/sh", headers=analyst), 404, "not_found")


def test_an_encrypted_field_is_refused_with_its_path_and_nothing_is_stored(
    client: TestClient, runtime: Runtime, analyst: dict[str, str]
) -> None:
    condition = {
        "any": [{"trait": "city", "op": "eq", "value": "上海"}, {"trait": "phone", "op": "exists"}]
    }
    body = {"key": "bad", "name": "Bad", "condition": condition}
    problem = _problem(
        client.post("/v1/segments", json=body, headers=analyst), 422, "invalid_condition"
    )
    assert problem["errors"] == [
        {
            "loc": ["body", "condition", "any", 1, "trait"],
            "msg": "field 'phone' is stored encrypted+blind_index: encrypted fields cannot be used"
            " in segment conditions",
            "type": "encrypted_field",
        }
    ]
    with unit_of_work(runtime.sessions) as session:
        assert session.scalars(select(Segment)).all() == []
    _problem(client.get("/v1/segments/bad", headers=analyst), 404, "not_found")
    preview = client.post("/v1/segments/preview", json={"condition": condition}, headers=analyst)
    _problem(preview, 422, "invalid_condition")


def test_preview_counts_and_suppresses_small_groups(
    client: TestClient, data: dict[str, str], analyst: dict[str, str]
) -> None:
    # k = 5: the 4 active customers would be revealed, so the count is suppressed.
    four = client.post(
        "/v1/segments/preview", json={"condition": {"segment": "active"}}, headers=analyst
    )
    assert four.status_code == 200
    assert four.json()["count"] == {
        "value": None,
        "subjects": None,
        "suppressed": True,
        "reason": "k_anonymity",
    }
    everyone_but_one = {"not": {"metric": "open_complaints", "op": "gte", "value": 1}}
    six = client.post("/v1/segments/preview", json={"condition": everyone_but_one}, headers=analyst)
    assert six.json()["count"] == {"value": 6, "subjects": 6, "suppressed": False, "reason": None}


def test_members_leave_out_opted_out_restricted_and_unconsented_subjects(
    client: TestClient, runtime: Runtime, data: dict[str, str], analyst: dict[str, str]
) -> None:
    _grant(runtime, [data[n] for n in ("p1", "p2", "p3", "p6", "p7")], ["marketing", "analytics"])
    with unit_of_work(runtime.sessions) as session:
        session.info["ctx"] = RequestContext(runtime.policy.version)
        subject_status.set_personalisation_opt_out(
            session, subject_id=data["p1"], opt_out=True, actor="test"
        )
        subject_status.restrict(session, subject_id=data["p2"], reason="legal_hold", actor="test")

    def members(key: str, purpose: str) -> set[str]:
        with unit_of_work(runtime.sessions) as session:
            ids = service.member_ids(session, policy=runtime.policy, key=key, purpose=purpose)
        return _names(data, ids)

    # analytics is not personalisation: the opted-out p1 stays; restricted p2 and the
    # subjects without consent (p4, p5) are left out.
    assert members("active", "analytics") == {"p1", "p3", "p6"}
    assert members("churn_risk", "analytics") == {"p6", "p7"}
    # marketing is personalisation (art. 24): p1 leaves every segment at once.
    personalisation = [p for p, spec in runtime.policy.purposes.items() if spec.personalisation]
    assert personalisation == ["marketing"]
    for key in BUILTINS:
        assert "p1" not in members(key, "marketing")
    assert members("vip", "analytics") == {"p1"}
    assert members("vip", "marketing") == set()
    assert members("active", "marketing") == {"p3", "p6"}
    # A minor's consent needs a guardian's (PIPL art. 31): p3's does not have one. Nobody
    # else is affected by one subject being a minor.
    with unit_of_work(runtime.sessions) as session:
        session.info["ctx"] = RequestContext(runtime.policy.version)
        subject_status.set_minor(session, subject_id=data["p3"], minor=True)
    assert members("active", "analytics") == {"p1", "p6"}
    with unit_of_work(runtime.sessions) as session:
        session.info["ctx"] = RequestContext(runtime.policy.version)
        subject_status.set_minor(session, subject_id=data["p3"], minor=False)
    # The latest record counts: p6 withdraws analytics and leaves at once.
    _grant(runtime, [data["p6"]], ["analytics"], state="withdrawn")
    assert members("active", "analytics") == {"p1", "p3"}
    assert members("active", "marketing") == {"p3", "p6"}

    # Over HTTP, page by page, and audited.
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        resp = client.get(
            "/v1/segments/active/members",
            params=params,
            headers={**analyst, "X-Purpose": "marketing"},
        )
        assert resp.status_code == 200, resp.text
        seen += resp.json()["items"]
        cursor = resp.json()["next_cursor"]
        if cursor is None:
            break
    assert _names(data, seen) == {"p3", "p6"} and seen == sorted(seen)
    with unit_of_work(runtime.sessions) as session:
        reads = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "segment.members.read")
        ).all()
    assert reads and all(r.purpose == "marketing" for r in reads)
    missing = client.get("/v1/segments/active/members", headers=analyst)
    _problem(missing, 400, "purpose_required")
    nope = client.get("/v1/segments/nope/members", headers={**analyst, "X-Purpose": "marketing"})
    _problem(nope, 404, "not_found")


def test_explanation_lists_exactly_the_deciding_conditions(
    client: TestClient, data: dict[str, str], analyst: dict[str, str]
) -> None:
    def explain(key: str, name: str) -> dict[str, Any]:
        resp = client.get(f"/v1/segments/{key}/members/{data[name]}/explanation", headers=analyst)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    # any: a member because of the complaint alone; the activity condition did not decide.
    p7 = explain("churn_risk", "p7")
    assert p7["member"] is True
    assert [(c["path"], c["matched"], c["values"]) for c in p7["conditions"]] == [
        ("segment.churn_risk.any[1]", True, {"value": 1})
    ]
    p6 = explain("churn_risk", "p6")
    assert [(c["path"], c["values"]) for c in p6["conditions"]] == [
        ("segment.churn_risk.any[0]", {"current": 2, "previous": 10})
    ]
    # any, not a member: every condition failed, and each one is listed.
    p1 = explain("churn_risk", "p1")
    assert p1["member"] is False
    assert [(c["path"], c["matched"]) for c in p1["conditions"]] == [
        ("segment.churn_risk.any[0]", False),
        ("segment.churn_risk.any[1]", False),
    ]
    # all, not a member: only the failing condition (p1 was active, but it has bought).
    potential = explain("potential", "p1")
    assert [(c["path"], c["matched"], c["values"]) for c in potential["conditions"]] == [
        ("segment.potential.all[1]", False, {"value": 2})
    ]
    vip = explain("vip", "p2")
    assert vip["member"] is False and vip["conditions"][0]["values"] == {"value": 90000.0}
    missing = client.get(
        f"/v1/segments/vip/members/{'0' * 8}-0000-4000-8000-000000000000/explanation",
        headers=analyst,
    )
    _problem(missing, 404, "not_found")


def test_the_customer_sees_own_segments_and_why(
    client: TestClient, runtime: Runtime, data: dict[str, str], token_for: Headers
) -> None:
    app = token_for("app")
    token = client.post(f"/v1/profiles/{data['p7']}/subject-token", headers=app)
    assert token.status_code == 200, token.text
    me = {"Authorization": f"Bearer {token.json()['access_token']}"}
    mine = client.get("/v1/self/segments", headers=me)
    assert mine.status_code == 200, mine.text
    member_of = {i["segment"] for i in mine.json()["items"] if i["member"]}
    assert member_of == {"silent", "churn_risk"}
    why = client.get("/v1/self/segments/churn_risk/explanation", headers=me)
    assert why.status_code == 200
    assert why.json()["subject_id"] == data["p7"] and why.json()["member"] is True
    # For the access bundle (rights): every segment, with membership and explanation.
    with unit_of_work(runtime.sessions) as session:
        bundle = service.subject_segments(session, policy=runtime.policy, subject_id=data["p7"])
    assert {b["key"] for b in bundle if b["member"]} == {"silent", "churn_risk"}


def test_a_profiles_segments_need_a_basis_for_the_purpose(
    client: TestClient, runtime: Runtime, data: dict[str, str], analyst: dict[str, str]
) -> None:
    _grant(runtime, [data["p1"]], ["analytics"])
    resp = client.get(
        f"/v1/profiles/{data['p1']}/segments", headers={**analyst, "X-Purpose": "analytics"}
    )
    assert resp.status_code == 200, resp.text
    assert {i["key"] for i in resp.json()["items"]} == {"vip", "new", "active"}
    denied = client.get(
        f"/v1/profiles/{data['p4']}/segments", headers={**analyst, "X-Purpose": "analytics"}
    )
    _problem(denied, 403, "consent_required")


def test_refresh_records_who_entered_and_who_left(
    client: TestClient, runtime: Runtime, data: dict[str, str], analyst: dict[str, str]
) -> None:
    first = client.post("/v1/segments/active/refresh", headers=analyst)
    assert first.status_code == 200, first.text
    assert {k: first.json()[k] for k in ("segment", "members", "entered", "left")} == {
        "segment": "active",
        "members": 4,
        "entered": 4,
        "left": 0,
    }
    body = {
        "key": "sh",
        "name": "Shanghai",
        "condition": {"trait": "city", "op": "eq", "value": "上海"},
    }
    assert client.post("/v1/segments", json=body, headers=analyst).status_code == 201
    assert client.post("/v1/segments/sh/refresh", headers=analyst).json()["entered"] == 2
    with unit_of_work(runtime.sessions) as session:
        session.info["ctx"] = RequestContext(runtime.policy.version)
        p4 = session.get(Profile, data["p4"])
        assert p4 is not None
        p4.plain = {"city": "杭州"}
        rollup = Rollup()
        rollup.add(data["p5"], "Page Viewed", datetime.now(UTC), None)
        write_rollup(session, rollup)
    again = client.post("/v1/segments/active/refresh", headers=analyst).json()
    assert (again["members"], again["entered"], again["left"]) == (5, 1, 0)
    sh = client.post("/v1/segments/sh/refresh", headers=analyst).json()
    assert (sh["members"], sh["entered"], sh["left"]) == (1, 0, 1)
    with unit_of_work(runtime.sessions) as session:
        changes = session.scalars(select(SegmentChange).order_by(SegmentChange.id)).all()
        history = [(c.segment_key, _names(data, [c.subject_id]).pop(), c.change) for c in changes]
    assert history[-2:] == [("active", "p5", "enter"), ("sh", "p4", "leave")]
    assert sorted(h for h in history if h[0] == "sh") == [
        ("sh", "p1", "enter"),
        ("sh", "p4", "enter"),
        ("sh", "p4", "leave"),
    ]


def test_ingestion_keeps_the_summary_current(
    client: TestClient, runtime: Runtime, token_for: Headers, analyst: dict[str, str]
) -> None:
    """Events sent through POST /v1/events update subject_summary in the same transaction:
    the customer is active and, with two orders this month, a VIP after the second."""
    app = token_for("app")
    subject = new_profile(client, app, "shop-seg-1")
    set_consent(client, app, subject)
    now = datetime.now(UTC)

    def order(message_id: str, revenue: float) -> dict[str, Any]:
        return {
            "message_id": message_id,
            "external_id": "shop-seg-1",
            "name": "Order Completed",
            "timestamp": now.isoformat(),
            "properties": {"order_id": message_id, "revenue": revenue},
        }

    def explain(key: str) -> dict[str, Any]:
        resp = client.get(f"/v1/segments/{key}/members/{subject}/explanation", headers=analyst)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    assert explain("active")["member"] is False
    sent = client.post("/v1/events", json={"events": [order("o1", 60000)]}, headers=app)
    assert sent.status_code == 202 and sent.json()["accepted"] == 1, sent.text
    assert explain("active")["member"] is True
    assert explain("vip")["member"] is False
    # A retry of o1 is a duplicate and must not count twice.
    again = [order("o1", 60000), order("o2", 50000)]
    assert client.post("/v1/events", json={"events": again}, headers=app).status_code == 202
    vip = explain("vip")
    assert vip["member"] is True
    assert vip["conditions"][0]["values"] == {"value": 110000.0}
    assert explain("potential")["conditions"][-1]["values"] == {"value": 2}


def test_members_over_http_follow_each_consent_change_at_once(
    client: TestClient,
    runtime: Runtime,
    data: dict[str, str],
    analyst: dict[str, str],
    token_for: Headers,
) -> None:
    app = token_for("app")
    headers = {**analyst, "X-Purpose": "analytics"}

    def consent_change(subject: str, state: str) -> None:
        body = {
            "purpose": "analytics",
            "state": state,
            "notice_id": "privacy-notice",
            "notice_version": 2,
            "channel": "app",
            "evidence": {"text_sha256": "ab" * 32, "locale": "zh-CN"},
        }
        resp = client.post(f"/v1/profiles/{subject}/consents", json=body, headers=app)
        assert resp.status_code == 201, resp.text

    def members() -> set[str]:
        resp = client.get("/v1/segments/active/members", params={"limit": 100}, headers=headers)
        assert resp.status_code == 200, resp.text
        return _names(data, resp.json()["items"])

    assert members() == set()
    for name in ("p3", "p6"):
        consent_change(data[name], "granted")
    assert members() == {"p3", "p6"}
    # The very next request after a withdrawal leaves the subject out (PIPL art. 15) ...
    consent_change(data["p6"], "withdrawn")
    assert members() == {"p3"}
    consent_change(data["p6"], "granted")
    assert members() == {"p3", "p6"}
    # ... and an imported older grant joins the history without undoing a later withdrawal.
    consent_change(data["p3"], "withdrawn")
    row = {
        "profile_id": data["p3"],
        "purpose": "analytics",
        "state": "granted",
        "notice_id": "privacy-notice",
        "notice_version": 2,
        "channel": "paper",
        "at": "2026-01-10T09:00:00+08:00",
        "text_sha256": "ab" * 32,
        "locale": "zh-CN",
    }
    resp = client.post(
        "/v1/consents:import",
        content=json.dumps(row) + "\n",
        headers={**app, "Content-Type": "application/x-ndjson"},
    )
    assert resp.status_code == 200, resp.text
    assert members() == {"p6"}
    with unit_of_work(runtime.sessions) as session:
        ids = list(
            service.stream_member_ids(
                session, policy=runtime.policy, key="active", purpose="analytics"
            )
        )
    assert _names(data, ids) == {"p6"}
