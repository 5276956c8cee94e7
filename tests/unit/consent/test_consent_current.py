"""consent_current, the derived current state: always the latest consent_record by (at, id),
whoever inserts the records (API, import, bulk insert), and backfilled by its migration."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import insert, select
from sqlalchemy.orm import Session
from tests.api.test_rights import add_data

from cdp.api import Runtime
from cdp.audit.service import RequestContext
from cdp.consent.models import ConsentCurrent, ConsentRecord
from cdp.db import UTCDateTime, alembic_config, make_engine, unit_of_work
from cdp.rights import erasure

SHA = "ab" * 32
Row = tuple[int, str, str, int, bool, bool, datetime]


def _latest(session: Session) -> dict[tuple[str, str], Row]:
    """What consent_current must hold: the latest record by (at, id), computed here."""
    found: dict[tuple[str, str], ConsentRecord] = {}
    for rec in session.scalars(select(ConsentRecord)):
        key = (rec.subject_id, rec.purpose)
        if key not in found or (rec.at, rec.id) > (found[key].at, found[key].id):
            found[key] = rec
    return {
        key: (
            r.id,
            r.state,
            r.notice_id,
            r.notice_version,
            r.separate,
            r.guardian is not None,
            r.at,
        )
        for key, r in found.items()
    }


def _current(session: Session) -> dict[tuple[str, str], Row]:
    return {
        (c.subject_id, c.purpose): (
            c.record_id,
            c.state,
            c.notice_id,
            c.notice_version,
            c.separate,
            c.guardian,
            c.at,
        )
        for c in session.scalars(select(ConsentCurrent))
    }


def _profile(client: TestClient, app: dict[str, str], external_id: str) -> str:
    resp = client.post(
        "/v1/profiles",
        json={"external_id": external_id},
        headers={**app, "X-Purpose": "service_delivery"},
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def _consent(
    client: TestClient, app: dict[str, str], subject: str, purpose: str, state: str
) -> None:
    body = {
        "purpose": purpose,
        "state": state,
        "notice_id": "privacy-notice",
        "notice_version": 2,
        "channel": "web",
        "evidence": {"text_sha256": SHA, "locale": "zh-CN"},
    }
    resp = client.post(f"/v1/profiles/{subject}/consents", json=body, headers=app)
    assert resp.status_code == 201, resp.text


def _record(subject: str, purpose: str, state: str, at: datetime, **kw: Any) -> dict[str, Any]:
    return {
        "subject_id": subject,
        "purpose": purpose,
        "state": state,
        "notice_id": "privacy-notice",
        "notice_version": 2,
        "channel": "app",
        "evidence": {"text_sha256": SHA, "locale": "zh-CN"},
        "separate": False,
        "guardian": None,
        "actor": "test",
        "policy_version": "test",
        "at": at,
        **kw,
    }


def test_current_state_is_the_latest_record_through_grants_withdrawals_and_imports(
    client: TestClient, runtime: Runtime, token_for: Callable[..., dict[str, str]]
) -> None:
    app = token_for("app")
    one, two, three = (_profile(client, app, f"cur-{i}") for i in range(3))
    _consent(client, app, one, "marketing", "granted")
    _consent(client, app, one, "analytics", "granted")
    _consent(client, app, one, "marketing", "withdrawn")
    _consent(client, app, two, "analytics", "granted")
    with unit_of_work(runtime.sessions) as session:
        current = _current(session)
    assert current[(one, "marketing")][1] == "withdrawn"
    assert current[(one, "analytics")][1] == current[(two, "analytics")][1] == "granted"

    # An import may carry older records: they join the history without becoming current.
    # Two rows for one subject and purpose in one file: the later `at` wins, not file order.
    header = "external_id,purpose,state,notice_id,notice_version,channel,at,text_sha256,locale"
    rows = [
        f"cur-1,analytics,withdrawn,privacy-notice,1,paper,2025-12-01T10:00:00Z,{SHA},zh-CN",
        f"cur-2,marketing,granted,privacy-notice,1,paper,2026-01-05T09:00:00Z,{SHA},zh-CN",
        f"cur-2,marketing,refused,privacy-notice,1,paper,2025-11-05T09:00:00Z,{SHA},zh-CN",
    ]
    resp = client.post(
        "/v1/consents:import",
        content="\n".join([header, *rows]) + "\n",
        headers={**app, "Content-Type": "text/csv"},
    )
    assert resp.status_code == 200, resp.text
    with unit_of_work(runtime.sessions) as session:
        current = _current(session)
        assert current == _latest(session)
    assert current[(two, "analytics")][1] == "granted"
    assert current[(three, "marketing")][1:4] == ("granted", "privacy-notice", 1)

    # A bulk insert (as the demo seed writes) in one statement, several rows per key, ties
    # on `at` broken by id, and a guardian's consent.
    at = datetime(2026, 2, 1, tzinfo=UTC)
    with unit_of_work(runtime.sessions) as session:
        session.execute(
            insert(ConsentRecord),
            [
                _record(two, "analytics", "withdrawn", at),
                _record(two, "analytics", "granted", at + timedelta(days=1)),
                _record(two, "analytics", "refused", at),
                _record(two, "marketing", "refused", at, guardian={"relation": "parent"}),
                _record(two, "marketing", "granted", at, separate=True),
            ],
        )
    with unit_of_work(runtime.sessions) as session:
        current = _current(session)
        assert current == _latest(session)
        assert set(current) == {(one, "marketing"), (one, "analytics"), (two, "analytics")} | {
            (two, "marketing"),
            (three, "marketing"),
        }
    assert current[(two, "marketing")][1:] == ("granted", "privacy-notice", 2, True, False, at)
    # The API's next write is later than anything on record, so it becomes current.
    _consent(client, app, two, "analytics", "withdrawn")
    with unit_of_work(runtime.sessions) as session:
        current = _current(session)
        assert current == _latest(session)
    assert current[(two, "analytics")][1] == "withdrawn"
    assert current[(two, "analytics")][6] >= at + timedelta(days=1)


def test_erasure_removes_the_current_state_with_the_records(
    client: TestClient, runtime: Runtime, token_for: Callable[..., dict[str, str]]
) -> None:
    app = token_for("app")
    gone, kept = _profile(client, app, "erase-me"), _profile(client, app, "keep-me")
    for subject in (gone, kept):
        _consent(client, app, subject, "analytics", "granted")
    resp = client.delete(f"/v1/profiles/{gone}", headers=token_for("admin"))
    assert resp.status_code == 204, resp.text
    with unit_of_work(runtime.sessions) as session:
        assert set(_current(session)) == {(kept, "analytics")}
        assert _current(session) == _latest(session)


def test_a_legal_hold_keeps_the_current_state_with_the_records(
    client: TestClient, runtime: Runtime, token_for: Callable[..., dict[str, str]]
) -> None:
    app = token_for("app")
    held = _profile(client, app, "held")
    _consent(client, app, held, "analytics", "granted")
    # Completed orders are accounting vouchers (policies/retention.yaml): erasure is withheld.
    add_data(runtime, held, events=2, names=("Order Completed",))
    with unit_of_work(runtime.sessions) as session:
        session.info["ctx"] = RequestContext(runtime.policy.version)
        result = erasure.erase_subject(
            session,
            crypto=runtime.crypto,
            policy=runtime.policy,
            actor="test",
            subject_id=held,
            reason="test",
        )
    assert result.restricted and not result.erased
    with unit_of_work(runtime.sessions) as session:
        assert set(_current(session)) == {(held, "analytics")}
        assert _current(session) == _latest(session)


def _old_schema_rows(engine: sa.Engine) -> dict[str, list[str]]:
    """Profiles and consent records written before consent_current existed (revision 0009)."""
    profile = sa.table(
        "profile",
        sa.column("id"),
        sa.column("created_at", UTCDateTime()),
        sa.column("updated_at", UTCDateTime()),
        sa.column("plain", sa.JSON()),
        sa.column("sealed", sa.JSON()),
    )
    record = sa.table(
        "consent_record",
        *(sa.column(c) for c in ("subject_id", "purpose", "state", "notice_id")),
        *(sa.column(c) for c in ("notice_version", "channel", "separate", "actor")),
        sa.column("policy_version"),
        sa.column("evidence", sa.JSON()),
        sa.column("guardian", sa.JSON(none_as_null=True)),
        sa.column("at", UTCDateTime()),
    )
    at = datetime(2026, 1, 1, tzinfo=UTC)
    ids = [str(uuid.uuid4()) for _ in range(3)]
    with engine.begin() as conn:
        conn.execute(
            insert(profile),
            [{"id": i, "created_at": at, "updated_at": at, "plain": {}, "sealed": {}} for i in ids],
        )
        rows = [
            _record(ids[0], "analytics", "granted", at),
            _record(ids[0], "analytics", "withdrawn", at + timedelta(hours=1)),
            _record(ids[0], "marketing", "granted", at),
            _record(ids[1], "analytics", "withdrawn", at),
            _record(ids[1], "analytics", "granted", at, guardian={"relation": "parent"}),
            _record(ids[1], "analytics", "refused", at - timedelta(days=1)),
        ]
        for row in rows:
            conn.execute(insert(record), [row])
    return {"subjects": ids}


def test_migration_backfills_the_current_state_and_keeps_it_after(db_url: str) -> None:
    cfg = alembic_config(db_url)
    command.downgrade(cfg, "0009")
    engine = make_engine(db_url)
    try:
        ids = _old_schema_rows(engine)["subjects"]
        command.upgrade(cfg, "head")
        with Session(engine) as session:
            current = _current(session)
            assert current == _latest(session)
            assert {k: v[1] for k, v in current.items()} == {
                (ids[0], "analytics"): "withdrawn",
                (ids[0], "marketing"): "granted",
                # Same `at`: the higher id (inserted later) wins.
                (ids[1], "analytics"): "granted",
            }
            assert current[(ids[1], "analytics")][5] is True  # a guardian's consent
        # The trigger keeps the backfilled rows current from now on.
        with engine.begin() as conn:
            later = datetime(2026, 3, 1, tzinfo=UTC)
            conn.execute(insert(ConsentRecord), [_record(ids[1], "analytics", "withdrawn", later)])
            conn.execute(insert(ConsentRecord), [_record(ids[2], "marketing", "granted", later)])
        with Session(engine) as session:
            current = _current(session)
            assert current == _latest(session)
            assert current[(ids[1], "analytics")][1] == "withdrawn"
            assert current[(ids[2], "marketing")][1] == "granted"
    finally:
        engine.dispose()
