"""Profiles over HTTP: encryption at rest, purpose-limited reads, blind-index lookups, erasure."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from cdp.api import Runtime
from cdp.audit.models import AuditEntry
from cdp.db import make_engine, unit_of_work
from cdp.errors import SubjectKeyMissing
from cdp.profiles.models import Identity, Profile

Headers = Callable[..., dict[str, str]]
SERVICE = {"X-Purpose": "service_delivery"}
ZHANG = {
    "external_id": "shop-10086",
    "email": "Zhang.Wei@Example.cn ",
    "phone": "138 0013 8000",
    "traits": {"name": "张伟", "city": "上海"},
}
ANALYTICS = {"X-Purpose": "analytics"}


@pytest.fixture
def app_headers(token_for: Headers) -> dict[str, str]:
    return token_for("app")


def _count(rt: Runtime, model: type) -> int:
    with unit_of_work(rt.sessions) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _create(client: TestClient, headers: dict[str, str], body: dict[str, object]) -> dict:  # type: ignore[type-arg]
    resp = client.post("/v1/profiles", json=body, headers={**headers, **SERVICE})
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


def test_create_and_read_back_normalised(client: TestClient, app_headers: dict[str, str]) -> None:
    created = _create(client, app_headers, ZHANG)
    got = client.get(f"/v1/profiles/{created['id']}", headers={**app_headers, **SERVICE}).json()
    assert got["email"] == "zhang.wei@example.cn" and got["phone"] == "+8613800138000"
    assert got["external_id"] == "shop-10086"
    assert got["traits"] == {"name": "张伟", "city": "上海"}


def test_collection_is_limited_to_the_purpose(
    client: TestClient, app_headers: dict[str, str], runtime: Runtime
) -> None:
    body = {"external_id": "u1", "traits": {"name": "张伟", "birth_date": "1990-05-01"}}
    resp = client.post("/v1/profiles", json=body, headers={**app_headers, **SERVICE})
    # birth_date is demographic, which service_delivery may not collect.
    assert resp.status_code == 403 and resp.json()["code"] == "field_not_allowed"
    assert "birth_date" in resp.json()["detail"] and _count(runtime, Profile) == 0


def test_purpose_limits_the_fields_returned(
    client: TestClient, app_headers: dict[str, str], runtime: Runtime
) -> None:
    created = _create(client, app_headers, ZHANG)
    # analytics rests on consent (PIPL art. 13): the customer gave it first.
    consent = {
        "purpose": "analytics",
        "state": "granted",
        "notice_id": "privacy-notice",
        "notice_version": 2,
        "channel": "app",
        "evidence": {"text_sha256": "0" * 64, "locale": "zh-CN"},
    }
    resp = client.post(f"/v1/profiles/{created['id']}/consents", json=consent, headers=app_headers)
    assert resp.status_code == 201, resp.text
    patched = client.patch(
        f"/v1/profiles/{created['id']}",
        json={"traits": {"gender": "male", "birth_date": "1990-05-01"}},
        headers={**app_headers, **ANALYTICS},
    )
    assert patched.status_code == 200, patched.text
    got = client.get(f"/v1/profiles/{created['id']}", headers={**app_headers, **ANALYTICS}).json()
    # analytics has no contact or identifier category: no email, phone, name, external id.
    assert "email" not in got and "phone" not in got and "external_id" not in got
    assert got["traits"] == {"city": "上海", "gender": "male", "birth_date": "1990-05-01"}
    service_view = client.get(f"/v1/profiles/{created['id']}", headers={**app_headers, **SERVICE})
    assert "birth_date" not in service_view.json()["traits"]
    with unit_of_work(runtime.sessions) as session:
        entry = session.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "profile.read", AuditEntry.purpose == "analytics"
            )
        ).one()
    assert entry.subject == created["id"] and "name" not in entry.fields
    assert set(entry.fields) == {"city", "gender", "birth_date"}
    assert "上海" not in str(entry.detail) and "上海" not in entry.hash


def test_purpose_header_rules(
    client: TestClient, app_headers: dict[str, str], token_for: Headers
) -> None:
    created = _create(client, app_headers, ZHANG)
    url = f"/v1/profiles/{created['id']}"
    assert client.get(url, headers=app_headers).json()["code"] == "purpose_required"
    resp = client.get(url, headers={**app_headers, "X-Purpose": "gossip"})
    assert resp.status_code == 400 and resp.json()["code"] == "unknown_purpose"
    support = token_for("support")
    resp = client.get(url, headers={**support, "X-Purpose": "marketing"})
    assert resp.status_code == 403 and resp.json()["code"] == "purpose_not_allowed"
    # Writing a field the purpose may not collect is refused, and nothing is stored.
    resp = client.patch(
        url, json={"traits": {"birth_date": "1991-01-01"}}, headers={**app_headers, **SERVICE}
    )
    assert resp.status_code == 403 and resp.json()["code"] == "field_not_allowed"


def test_lookup_by_each_identifier(client: TestClient, app_headers: dict[str, str]) -> None:
    created = _create(client, app_headers, ZHANG)
    headers = {**app_headers, **SERVICE}
    for body in (
        {"email": "  ZHANG.wei@example.CN"},
        {"phone": "+86-138-0013-8000"},
        {"external_id": "shop-10086"},
    ):
        resp = client.post("/v1/profiles/lookup", json=body, headers=headers)
        assert resp.status_code == 200 and resp.json()["id"] == created["id"], body


def test_lookup_miss_reveals_nothing(
    client: TestClient, app_headers: dict[str, str], runtime: Runtime
) -> None:
    _create(client, app_headers, ZHANG)
    headers = {**app_headers, **SERVICE}
    misses = [
        client.post("/v1/profiles/lookup", json=body, headers=headers)
        for body in ({"email": "nobody@example.cn"}, {"phone": "13900000000"}, {"external_id": "x"})
    ]
    bodies = [{k: v for k, v in m.json().items() if k != "request_id"} for m in misses]
    assert all(m.status_code == 404 for m in misses)
    assert bodies[0] == bodies[1] == bodies[2]
    assert "nobody" not in misses[0].text
    with unit_of_work(runtime.sessions) as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "profile.lookup")
        ).all()
    # Misses are audited (enumeration shows up), naming the identifier kind only.
    assert sorted(e.fields[0] for e in entries) == ["email", "external_id", "phone"]
    assert all(e.detail == {"found": False} and e.subject is None for e in entries)
    resp = client.post(
        "/v1/profiles/lookup", json={"email": "a@b.cn", "phone": "1"}, headers=headers
    )
    assert resp.status_code == 422


def test_duplicates_are_409_and_store_nothing(
    client: TestClient, app_headers: dict[str, str], runtime: Runtime
) -> None:
    _create(client, app_headers, ZHANG)
    before = (_count(runtime, Profile), _count(runtime, Identity))
    for body in (
        {"email": "zhang.wei@example.cn", "traits": {"name": "王芳"}},
        {"phone": "+8613800138000"},
        {"external_id": "shop-10086", "email": "other@example.cn"},
    ):
        resp = client.post("/v1/profiles", json=body, headers={**app_headers, **SERVICE})
        assert resp.status_code == 409 and resp.json()["code"] == "conflict", body
        problem = {k: v for k, v in resp.json().items() if k != "request_id"}
        assert "zhang" not in str(problem) and "138" not in str(problem)
    assert (_count(runtime, Profile), _count(runtime, Identity)) == before


def test_invalid_values_are_422_naming_the_field(
    client: TestClient, app_headers: dict[str, str], runtime: Runtime
) -> None:
    cases = [
        ({"phone": "12345"}, "phone"),
        ({"email": "not-an-email"}, "email"),
        ({"external_id": "u1", "traits": {"membership_level": "diamond"}}, "membership_level"),
        ({"external_id": "u1", "traits": {"registered_at": "yesterday"}}, "registered_at"),
        ({"external_id": "u1", "traits": {"shoe_size": 42}}, "shoe_size"),
        ({"external_id": "u1", "traits": {"email": "a@b.cn"}}, "email"),
        ({}, None),
    ]
    for body, field in cases:
        resp = client.post("/v1/profiles", json=body, headers={**app_headers, **SERVICE})
        assert resp.status_code == 422, (body, resp.text)
        problem = resp.json()
        assert problem["code"] == "validation_error"
        if field:
            assert field in problem["detail"] or field in str(problem["errors"])
        assert "not-an-email" not in resp.text and "12345" not in str(problem)
    assert _count(runtime, Profile) == 0 and _count(runtime, Identity) == 0


def test_merge_patch_updates_and_reindexes(client: TestClient, app_headers: dict[str, str]) -> None:
    created = _create(client, app_headers, ZHANG)
    headers = {**app_headers, **SERVICE}
    resp = client.patch(
        f"/v1/profiles/{created['id']}",
        json={"email": "new@example.cn", "traits": {"name": None, "city": "杭州"}},
        headers={**headers, "Content-Type": "application/merge-patch+json"},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["email"] == "new@example.cn" and body["traits"]["city"] == "杭州"
    assert "name" not in body["traits"] and body["phone"] == "+8613800138000"
    old = client.post(
        "/v1/profiles/lookup", json={"email": "zhang.wei@example.cn"}, headers=headers
    )
    new = client.post("/v1/profiles/lookup", json={"email": "NEW@example.cn"}, headers=headers)
    assert old.status_code == 404 and new.json()["id"] == created["id"]


def test_list_is_paginated_and_audited_per_subject(
    client: TestClient, app_headers: dict[str, str], runtime: Runtime
) -> None:
    ids = {
        _create(client, app_headers, {"external_id": f"u{i}", "traits": {"city": "北京"}})["id"]
        for i in range(5)
    }
    headers = {**app_headers, **SERVICE}
    first = client.get("/v1/profiles?limit=3", headers=headers).json()
    second = client.get(f"/v1/profiles?limit=3&cursor={first['next_cursor']}", headers=headers)
    seen = {p["id"] for p in first["items"] + second.json()["items"]}
    assert seen == ids and second.json()["next_cursor"] is None
    assert all(p["traits"]["city"] == "北京" for p in first["items"])
    with unit_of_work(runtime.sessions) as session:
        audited = set(
            session.scalars(select(AuditEntry.subject).where(AuditEntry.action == "profile.read"))
        )
    assert audited == ids


def test_erasure_shreds_the_key(
    client: TestClient,
    app_headers: dict[str, str],
    runtime: Runtime,
    settings,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    created = _create(client, app_headers, ZHANG)
    subject = created["id"]
    headers = {**app_headers, **SERVICE}
    backup = _backup(runtime, settings.database_url, tmp_path)
    assert client.delete(f"/v1/profiles/{subject}", headers=app_headers).status_code == 204
    assert client.get(f"/v1/profiles/{subject}", headers=headers).status_code == 404
    assert (
        client.post(
            "/v1/profiles/lookup", json={"email": ZHANG["email"]}, headers=headers
        ).status_code
        == 404
    )
    assert not runtime.crypto.has_key(subject)
    assert subject in {s for s, _ in runtime.crypto.erasures()}
    # The backup still holds the ciphertext, but the current key store cannot open it.
    sealed = backup[subject]
    with pytest.raises(SubjectKeyMissing):
        runtime.crypto.open(subject, "profile", "name", sealed)
    with unit_of_work(runtime.sessions) as session:
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "profile.erase")
        ).one()
    assert entry.subject == subject and "张伟" not in str(entry.detail)


def _checkpoint(path: Path) -> None:
    """Moves the WAL's pages into the main file so a file copy is a complete backup."""
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _backup(rt: Runtime, url: str, tmp_path: Path) -> dict[str, str]:
    """A copy of the main database taken now; returns each subject's sealed name from it."""
    if url.startswith("sqlite"):
        src = Path(url.removeprefix("sqlite:///"))
        _checkpoint(src)
        copy = tmp_path / "backup.db"
        shutil.copyfile(src, copy)
        engine = make_engine(f"sqlite:///{copy}")
    else:
        engine = rt.engine  # the rows are read before erasure: the same as restoring a dump
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, sealed FROM profile")).all()
    import json

    return {r[0]: (json.loads(r[1]) if isinstance(r[1], str) else r[1])["name"] for r in rows}


def test_swapped_ciphertexts_fail_cleanly(
    client: TestClient, app_headers: dict[str, str], runtime: Runtime
) -> None:
    a = _create(client, app_headers, {"external_id": "a", "traits": {"name": "李娜"}})["id"]
    b = _create(client, app_headers, {"external_id": "b", "traits": {"name": "王强"}})["id"]
    with unit_of_work(runtime.sessions) as session:
        pa, pb = session.get(Profile, a), session.get(Profile, b)
        assert pa and pb
        pa.sealed, pb.sealed = dict(pb.sealed), dict(pa.sealed)
    headers = {**app_headers, **SERVICE}
    resp = client.get(f"/v1/profiles/{a}", headers=headers)
    assert resp.status_code == 409 and resp.json()["code"] == "ciphertext_invalid"
    assert "王强" not in resp.text and "李娜" not in resp.text
    # Moving a ciphertext to another column of the same row fails too.
    with unit_of_work(runtime.sessions) as session:
        ida = session.scalars(select(Identity).where(Identity.subject_id == b)).one()
        pb2 = session.get(Profile, b)
        assert pb2
        pb2.sealed = {"name": ida.sealed_value}
    assert client.get(f"/v1/profiles/{b}", headers=headers).status_code == 409
    with unit_of_work(runtime.sessions) as session:
        n = session.scalar(
            select(func.count()).where(AuditEntry.action == "profile.integrity_error")
        )
    assert n == 2


def test_merge_moves_identities_and_erases_the_source(
    client: TestClient, app_headers: dict[str, str], runtime: Runtime
) -> None:
    target = _create(client, app_headers, {"external_id": "t-1", "traits": {"city": "广州"}})["id"]
    source = _create(
        client, app_headers, {"email": "dup@example.cn", "traits": {"name": "陈静", "city": "深圳"}}
    )["id"]
    resp = client.post(
        f"/v1/profiles/{target}/merge", json={"source_id": source}, headers=app_headers
    )
    assert resp.status_code == 200, resp.text
    headers = {**app_headers, **SERVICE}
    merged = client.post("/v1/profiles/lookup", json={"email": "dup@example.cn"}, headers=headers)
    body = merged.json()
    assert body["id"] == target and body["traits"] == {"name": "陈静", "city": "广州"}
    assert client.get(f"/v1/profiles/{source}", headers=headers).status_code == 404
    assert not runtime.crypto.has_key(source)
    with unit_of_work(runtime.sessions) as session:
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "profile.merge")
        ).one()
    assert entry.detail["source"] == source and entry.detail["filled_fields"] == ["name"]
    assert [m["kind"] for m in entry.detail["moved_identities"]] == ["email"]


CHINESE_NAMES = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄勇", "周杰", "吴霞"]


def test_no_plaintext_in_the_raw_database(
    client: TestClient,
    app_headers: dict[str, str],
    runtime: Runtime,
    settings,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    secrets = []
    for i in range(100):
        name = CHINESE_NAMES[i % 10] + CHINESE_NAMES[(i // 10) % 10][1]
        email, phone, ext = f"user{i:03d}@example.cn", f"139{i:08d}", f"ext-{i:05d}"
        _create(
            client,
            app_headers,
            {"external_id": ext, "email": email, "phone": phone, "traits": {"name": name}},
        )
        secrets += [name, email, phone, ext, f"+86{phone}"]
    url = settings.database_url
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        _checkpoint(path)
        raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    else:
        from tests.pgcluster import find_pg_bin

        pg_bin = find_pg_bin()
        assert pg_bin is not None
        dsn = url.replace("postgresql+psycopg://", "postgresql://")
        raw = subprocess.run(
            [str(pg_bin / "pg_dump"), "--data-only", dsn], capture_output=True, check=True
        ).stdout
        assert b"COPY public.profile" in raw
    for value in secrets:
        assert value.encode() not in raw, "a plaintext value reached the database"
