"""Follow-ups over HTTP: scheduling respects consent, channel and quiet hours; tasks complete
into encrypted interactions; segment triggers make tasks once. SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select, text
from tests.api.test_consent import consent, new_profile
from typer.testing import CliRunner

from cdp.api import Runtime
from cdp.audit.service import RequestContext
from cdp.auth.principal import Principal
from cdp.cli import app as cli
from cdp.consent import service as consent_service
from cdp.consent import status as subject_status
from cdp.db import unit_of_work
from cdp.errors import CdpError
from cdp.followups import service as followups
from cdp.followups.models import FollowupPlan, FollowupTask, Interaction

Headers = Callable[..., dict[str, str]]
CARE = {"X-Purpose": "customer_care"}
NOTES = "客户说下周搬家 zq-note-3141"


@pytest.fixture
def app_h(token_for: Headers) -> dict[str, str]:
    return token_for("app")


_counter = iter(range(10_000))


def person(client: TestClient, h: dict[str, str], *, phone: bool = True, **more: Any) -> str:
    n = next(_counter)
    body: dict[str, Any] = {"external_id": f"fu-{n}", "email": f"fu{n}@example.cn", **more}
    if phone:
        body["phone"] = f"+86138{n:08d}"
    return new_profile(client, h, **body)


def plan(client: TestClient, h: dict[str, str], **body: Any) -> Any:
    base = {"name": "回访", "purpose": "customer_care", "channel": "phone", "owner": "agent-17"}
    return client.post("/v1/followup-plans", json={**base, **body}, headers=h)


def schedule(client: TestClient, h: dict[str, str], plan_id: str) -> dict[str, Any]:
    resp = client.post(f"/v1/followup-plans/{plan_id}/schedule", headers=h)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def tasks_of(client: TestClient, h: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    resp = client.get("/v1/followups", params=params, headers=h)
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


def in_session(rt: Runtime, fn: Callable[[Any], Any]) -> Any:
    with unit_of_work(rt.sessions) as session:
        session.info["ctx"] = RequestContext(rt.policy.version)
        return fn(session)


def test_scheduling_skips_subjects_without_basis_or_contact_and_quiet_hours(
    client: TestClient, app_h: dict[str, str], runtime: Runtime
) -> None:
    ok = person(client, app_h)
    no_consent = person(client, app_h)
    withdrawn = person(client, app_h)
    no_phone = person(client, app_h, phone=False)
    restricted = person(client, app_h)
    for subject in (ok, withdrawn, no_phone, restricted):
        consent(client, app_h, subject, "customer_care")
    consent(client, app_h, withdrawn, "customer_care", "withdrawn")
    in_session(
        runtime,
        lambda s: subject_status.restrict(
            s, subject_id=restricted, reason="legal_hold", actor="officer:test"
        ),
    )
    members = [ok, no_consent, withdrawn, no_phone, restricted]
    # 22:30 in Shanghai is inside the policy's quiet hours (21:00-09:00).
    created = plan(
        client,
        app_h,
        subject_ids=members,
        start_at="2026-12-01T22:30:00+08:00",
        every_days=7,
        occurrences=2,
        team="care-east",
    )
    assert created.status_code == 201, created.text
    assert created.json()["members"] == 5
    plan_id = created.json()["id"]

    result = schedule(client, app_h, plan_id)
    assert result["members"] == 5 and result["eligible"] == 1 and result["skipped"] == 4
    assert result["created"] == 2
    shanghai_9am = [
        datetime(2026, 12, 2, 1, 0, tzinfo=UTC),  # 09:00 +08:00 the next morning
        datetime(2026, 12, 9, 1, 0, tzinfo=UTC),
    ]
    assert [datetime.fromisoformat(d) for d in result["due"]] == shanghai_9am
    queue = tasks_of(client, app_h, owner="agent-17")
    assert {t["subject_id"] for t in queue} == {ok}
    assert [datetime.fromisoformat(t["due_at"]) for t in queue] == shanghai_9am
    assert all(t["status"] == "open" and t["team"] == "care-east" for t in queue)

    # The SQL rule agrees with consent.service.decide, subject by subject.
    principal = Principal(kind="client", id="t", role="app", purposes=frozenset({"customer_care"}))

    def decided(session: Any) -> set[str]:
        allowed = set()
        for subject in members:
            try:
                consent_service.decide(
                    session,
                    policy=runtime.policy,
                    principal=principal,
                    purpose="customer_care",
                    subject=subject,
                )
            except CdpError:
                continue
            allowed.add(subject)
        return allowed

    assert in_session(runtime, decided) == {ok, no_phone}  # no_phone: basis, but no phone

    # Running it again creates nothing twice; a subject who consents later is added.
    consent(client, app_h, no_consent, "customer_care")
    again = schedule(client, app_h, plan_id)
    assert again["created"] == 2 and again["eligible"] == 2
    assert len(tasks_of(client, app_h, plan_id=plan_id)) == 4
    assert schedule(client, app_h, plan_id)["created"] == 0


def test_personalisation_opt_out_is_respected(
    client: TestClient, app_h: dict[str, str], runtime: Runtime
) -> None:
    keeps, opts_out = person(client, app_h), person(client, app_h)
    for subject in (keeps, opts_out):
        consent(client, app_h, subject, "marketing")
    in_session(
        runtime,
        lambda s: subject_status.set_personalisation_opt_out(
            s, subject_id=opts_out, opt_out=True, actor="subject:test"
        ),
    )
    start = (datetime.now(UTC) + timedelta(days=1)).replace(hour=3, minute=0)  # 11:00 Shanghai
    created = plan(
        client,
        app_h,
        purpose="marketing",
        channel="email",
        subject_ids=[keeps, opts_out],
        start_at=start.isoformat(),
    ).json()
    result = schedule(client, app_h, created["id"])
    assert result["eligible"] == 1 and result["created"] == 1
    assert [t["subject_id"] for t in tasks_of(client, app_h, plan_id=created["id"])] == [keeps]
    assert datetime.fromisoformat(result["due"][0]) == start  # 11:00 in Shanghai: not quiet


def test_completing_a_task_records_an_encrypted_interaction(
    client: TestClient, app_h: dict[str, str], runtime: Runtime
) -> None:
    subject = person(client, app_h)
    consent(client, app_h, subject, "customer_care")
    plan_id = plan(client, app_h, subject_ids=[subject], owner="agent-9").json()["id"]
    schedule(client, app_h, plan_id)
    (task,) = tasks_of(client, app_h, owner="agent-9", status="open")

    bad = client.patch(f"/v1/followups/{task['id']}", json={"status": "done"}, headers=app_h)
    assert bad.status_code == 422
    done = client.patch(
        f"/v1/followups/{task['id']}",
        json={"status": "done", "outcome": "reached", "notes": NOTES, "next_step": "寄送样品"},
        headers=app_h,
    )
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["status"] == "done" and body["outcome"] == "reached" and body["on_time"] is True
    assert body["interaction_id"] is not None
    again = client.patch(f"/v1/followups/{task['id']}", json={"status": "cancelled"}, headers=app_h)
    assert again.status_code == 409 and again.json()["code"] == "invalid_transition"

    listed = client.get(f"/v1/profiles/{subject}/interactions", headers={**app_h, **CARE})
    assert listed.status_code == 200, listed.text
    (item,) = listed.json()["items"]
    assert item["notes"] == NOTES and item["next_step"] == "寄送样品"
    assert item["task_id"] == task["id"] and item["channel"] == "phone"

    with runtime.engine.connect() as conn:
        raw = repr(conn.execute(text("SELECT * FROM interaction")).all())
    assert "zq-note" not in raw and "寄送样品" not in raw and "v1." in raw

    # A purpose not covering feedback may not read notes.
    resp = client.get(
        f"/v1/profiles/{subject}/interactions", headers={**app_h, "X-Purpose": "marketing"}
    )
    assert resp.status_code == 403 and resp.json()["code"] == "field_not_allowed"
    # A contact outside any task.
    direct = client.post(
        f"/v1/profiles/{subject}/interactions",
        json={"channel": "visit", "outcome": "resolved", "notes": "上门安装完成"},
        headers={**app_h, **CARE},
    )
    assert direct.status_code == 201 and direct.json()["task_id"] is None
    with unit_of_work(runtime.sessions) as session:
        assert session.scalar(select(func.count()).select_from(Interaction)) == 2
    bundle = in_session(
        runtime,
        lambda s: followups.export_subject(s, crypto=runtime.crypto, subject_id=subject),
    )
    assert [t["status"] for t in bundle["tasks"]] == ["done"]
    assert {i["notes"] for i in bundle["interactions"]} == {NOTES, "上门安装完成"}


def test_segment_trigger_creates_tasks_once_for_vips(
    client: TestClient,
    app_h: dict[str, str],
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vip, other_vip, not_vip = (person(client, app_h) for _ in range(3))
    for subject in (vip, not_vip):
        consent(client, app_h, subject, "customer_care")
    monkeypatch.setattr(
        followups,
        "segment_members",
        lambda session, *, policy, key, purpose: [vip, other_vip] if key == "vip" else [],
    )
    created = plan(
        client,
        app_h,
        trigger={"segment": "churn_risk", "on": "enter", "within_days": 2, "only_segment": "vip"},
    )
    assert created.status_code == 201, created.text
    plan_id = created.json()["id"]
    at = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
    rows = [
        {"segment_key": "churn_risk", "subject_id": s, "change": c, "at": at}
        for s, c in ((vip, "enter"), (other_vip, "enter"), (not_vip, "enter"), (vip, "leave"))
    ]
    table = followups.SEGMENT_CHANGE
    in_session(runtime, lambda s: s.execute(insert(table), rows))

    first = schedule(client, app_h, plan_id)
    # other_vip has no consent, not_vip is not a VIP: one task, due two days later.
    assert first["created"] == 1 and first["members"] == 3
    (task,) = tasks_of(client, app_h, plan_id=plan_id)
    assert task["subject_id"] == vip and task["segment_key"] == "churn_risk"
    assert datetime.fromisoformat(task["due_at"]) == at + timedelta(days=2)
    assert schedule(client, app_h, plan_id)["created"] == 0  # the watermark moved on
    later = {**rows[0], "at": at + timedelta(days=3)}
    in_session(runtime, lambda s: s.execute(insert(table), [later]))
    # `cdp followups triggers` runs every triggered plan (e.g. after `cdp segments refresh`).
    settings = runtime.settings
    env = {
        "CDP_DATABASE_URL": settings.resolved_database_url(),
        "CDP_KEYSTORE_URL": settings.resolved_keystore_url(),
        "CDP_DATA_DIR": str(settings.data_dir),
        "CDP_JWT_SECRET": settings.jwt_secret or "",
    }
    ran = CliRunner().invoke(cli, ["followups", "triggers", "--json"], env=env)
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.output) == [{"plan_id": plan_id, "changes": 1, "created": 1}]
    with unit_of_work(runtime.sessions) as session:
        saved = session.get(FollowupPlan, plan_id)
        assert saved is not None and saved.watermark > 0


def test_bad_plans_are_422_and_store_nothing(
    client: TestClient, app_h: dict[str, str], runtime: Runtime
) -> None:
    subject = person(client, app_h)
    cases: list[dict[str, Any]] = [
        {"purpose": "analytics", "subject_ids": [subject]},  # analytics covers no contact data
        {"segment_key": "vip", "subject_ids": [subject]},
        {},
        {"subject_ids": ["00000000-0000-4000-8000-000000000000"]},
        {"subject_ids": [subject], "occurrences": 3},
        {"subject_ids": [subject], "channel": "fax"},
        {"trigger": {"segment": "churn_risk", "on": "stay", "within_days": 2}},
        {"subject_ids": [subject], "start_at": "2026-12-01T10:00:00"},  # no offset
    ]
    for body in cases:
        resp = plan(client, app_h, **body)
        assert resp.status_code == 422, (body, resp.text)
        assert resp.json()["code"] == "validation_error"
    resp = plan(client, app_h, purpose="legal_compliance", subject_ids=[subject])
    assert resp.status_code == 403 and resp.json()["code"] == "purpose_not_allowed"
    naive = client.get("/v1/followups?due_before=2026-12-01T10:00:00", headers=app_h)
    assert naive.status_code == 422 and naive.json()["code"] == "validation_error"
    unknown = client.get("/v1/followups?ownr=agent-17", headers=app_h)
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["loc"] == ["query", "ownr"]
    missing = client.post(
        "/v1/followup-plans/00000000-0000-4000-8000-000000000000/schedule", headers=app_h
    )
    assert missing.status_code == 404
    with unit_of_work(runtime.sessions) as session:
        assert session.scalar(select(func.count()).select_from(FollowupPlan)) == 0
        assert session.scalar(select(func.count()).select_from(FollowupTask)) == 0


def test_followup_rate_and_monthly_report(
    client: TestClient, app_h: dict[str, str], runtime: Runtime, token_for: Headers
) -> None:
    main = [person(client, app_h) for _ in range(5)]
    small = [person(client, app_h) for _ in range(2)]
    for subject in main + small:
        consent(client, app_h, subject, "customer_care")
    start = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    a = plan(client, app_h, subject_ids=main, owner="agent-17", start_at=start).json()["id"]
    b = plan(client, app_h, subject_ids=small, owner="agent-x", start_at=start).json()["id"]
    schedule(client, app_h, a)
    schedule(client, app_h, b)
    for task in tasks_of(client, app_h, plan_id=a)[:3]:
        resp = client.patch(
            f"/v1/followups/{task['id']}",
            json={"status": "done", "outcome": "reached"},
            headers=app_h,
        )
        assert resp.json()["on_time"] is True
    # Two days pass: every task is now due.
    shift = timedelta(days=2)

    def age(session: Any) -> None:
        for task in session.scalars(select(FollowupTask)):
            task.due_at -= shift
            if task.completed_at is not None:
                task.completed_at -= shift

    in_session(runtime, age)
    analyst = token_for("analyst")
    resp = client.get("/v1/metrics/followups?by=owner", headers=analyst)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    # 3 of 7 tasks done on time.
    assert body["overall"]["followup_rate"]["value"] == round(3 / 7, 4)
    assert body["overall"]["due"]["value"] == 7
    groups = {g["group"]: g for g in body["groups"]}
    assert groups["agent-17"]["followup_rate"]["value"] == 0.6
    assert groups["agent-x"]["followup_rate"] == {
        "value": None,
        "subjects": None,
        "suppressed": True,
        "reason": "k_anonymity",
    }

    due = datetime.fromisoformat(tasks_of(client, app_h, plan_id=a)[0]["due_at"])
    month = due.astimezone(UTC).strftime("%Y-%m")
    report = client.get(f"/v1/metrics/followups/report?month={month}", headers=analyst)
    assert report.status_code == 200, report.text
    data = report.json()
    assert data["followups"]["done_on_time"]["value"] == 3
    assert [g["group"] for g in data["by_channel"]] == ["phone"]
    assert data["outcomes"]["reached"]["suppressed"] is True  # 3 customers < k
    csv_resp = client.get(
        f"/v1/metrics/followups/report?month={month}", headers={**analyst, "Accept": "text/csv"}
    )
    assert csv_resp.headers["content-type"].startswith("text/csv")
    lines = csv_resp.text.splitlines()
    assert lines[0] == "section,group,metric,value,subjects,suppressed"
    assert f"followups,all,followup_rate,{round(3 / 7, 4)},7,false" in lines
    assert "by_owner,agent-x,followup_rate,,,true" in lines
    same = client.get(f"/v1/metrics/followups/report?month={month}&format=csv", headers=analyst)
    assert same.text == csv_resp.text
    bad = client.get("/v1/metrics/followups/report?month=2026-13", headers=analyst)
    assert bad.status_code == 422 and bad.json()["code"] == "validation_error"


def test_erasure_removes_tasks_interactions_and_membership(
    client: TestClient, app_h: dict[str, str], runtime: Runtime, token_for: Headers
) -> None:
    subject, other = person(client, app_h), person(client, app_h)
    for s in (subject, other):
        consent(client, app_h, s, "customer_care")
    plan_id = plan(client, app_h, subject_ids=[subject, other]).json()["id"]
    schedule(client, app_h, plan_id)
    client.post(
        f"/v1/profiles/{subject}/interactions",
        json={"channel": "phone", "outcome": "reached", "notes": NOTES},
        headers={**app_h, **CARE},
    )
    client.post(
        "/v1/feedback",
        json={"subject_id": subject, "kind": "suggestion", "comment": "多开几家店"},
        headers={**app_h, **CARE},
    )
    assert client.delete(f"/v1/profiles/{subject}", headers=token_for("admin")).status_code == 204
    with runtime.engine.connect() as conn:
        for name in ("followup_task", "followup_plan_member", "interaction", "feedback"):
            left = conn.execute(text(f"SELECT subject_id FROM {name}")).scalars().all()
            assert subject not in left, name
    assert [t["subject_id"] for t in tasks_of(client, app_h, plan_id=plan_id)] == [other]


def test_segment_plan_and_trigger_with_real_segment_refresh(
    client: TestClient, app_h: dict[str, str], runtime: Runtime, token_for: Headers
) -> None:
    from cdp.segments import service as segments

    hz = [person(client, app_h, traits={"city": "杭州"}) for _ in range(3)]
    sh = person(client, app_h, traits={"city": "上海"})
    for subject in (hz[0], hz[1], sh):
        consent(client, app_h, subject, "customer_care")
    created = client.post(
        "/v1/segments",
        json={
            "key": "hz_buyers",
            "name": "杭州客户",
            "condition": {"trait": "city", "op": "eq", "value": "杭州"},
        },
        headers=token_for("admin"),
    )
    assert created.status_code == 201, created.text
    trigger = plan(
        client, app_h, trigger={"segment": "hz_buyers", "on": "enter", "within_days": 1}
    ).json()["id"]
    in_session(
        runtime, lambda s: segments.refresh(s, policy=runtime.policy, actor="t", key="hz_buyers")
    )
    by_segment = plan(client, app_h, segment_key="hz_buyers").json()["id"]
    result = schedule(client, app_h, by_segment)
    # The segment hands over only members with a basis for the purpose; both get a task.
    assert result["eligible"] == 2 and result["created"] == 2
    assert {t["subject_id"] for t in tasks_of(client, app_h, plan_id=by_segment)} == {
        hz[0],
        hz[1],
    }
    entered = schedule(client, app_h, trigger)
    assert entered["members"] == 3 and entered["created"] == 2
    assert {t["segment_key"] for t in tasks_of(client, app_h, plan_id=trigger)} == {"hz_buyers"}
    for body in (
        {"segment_key": "no_such_segment"},
        {"trigger": {"segment": "hz_buyers", "on": "enter", "within_days": 1, "only_segment": "x"}},
    ):
        resp = plan(client, app_h, **body)
        assert resp.status_code == 422 and resp.json()["code"] == "validation_error"
