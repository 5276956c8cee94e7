"""Profile create/read through the service layer against plain SQL on the same database,
and blind-index lookup latency over a million profiles on PostgreSQL (`make bench`).

The service path does everything a request does apart from HTTP: policy decision, a data key
per subject, AES-GCM per field, blind indexes, the audit entry. The baseline writes and reads
the same rows (one profile row, three identity rows, plaintext) with plain SQL, in the same
transaction sizes, on the same kind of database.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import statistics
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from cdp.api import Runtime
from cdp.app import build_runtime, start
from cdp.audit.service import RequestContext
from cdp.auth.principal import Principal
from cdp.config import Settings
from cdp.db import unit_of_work, upgrade
from cdp.profiles import service
from tests.pgcluster import PgCluster

N = 10_000
BATCH = 100
PURPOSE = "service_delivery"
APP = Principal(
    kind="client",
    id="cli_bench",
    role="app",
    scopes=frozenset({"profiles:read", "profiles:write"}),
    purposes=frozenset({PURPOSE}),
)


def _values(i: int) -> dict[str, object]:
    return {
        "external_id": f"shop-{i:07d}",
        "email": f"zhang.wei.{i}@example.cn",
        "phone": f"+86139{i:08d}",
        "name": f"张伟{i}",
        "city": "上海",
    }


def _runtime(tmp_path: Path, database_url: str) -> Runtime:
    settings = Settings(
        database_url=database_url,
        keystore_url=f"sqlite:///{tmp_path / 'keys.db'}",
        data_dir=tmp_path,
        jwt_secret="bench-" + "z" * 40,
        master_key="k1:" + __import__("base64").b64encode(os.urandom(32)).decode(),
        log_level="WARNING",
    )
    rt = build_runtime(settings)
    start(rt)
    return rt


@pytest.fixture
def sqlite_rt(tmp_path: Path, sqlite_template: Path) -> Iterator[Runtime]:
    shutil.copyfile(sqlite_template, tmp_path / "cdp.db")
    rt = _runtime(tmp_path, f"sqlite:///{tmp_path / 'cdp.db'}")
    yield rt
    rt.engine.dispose()


def _fresh_sqlite(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder / 'cdp.db'}"
    upgrade(url)
    return url


def _ctx(session: object, rt: Runtime) -> None:
    session.info["ctx"] = RequestContext(rt.policy.version, "bench")  # type: ignore[attr-defined]


class PlaintextCrypto:
    """The Crypto interface with encryption taken out: values pass through unchanged and a
    blind index is the normalised value itself. Measures what encryption adds to a path."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def new_subject_id(self) -> str:
        return str(uuid.uuid4())

    def keys_for(self, subject_ids: object, *, create: bool = False) -> PlaintextCrypto:
        return self

    def seal(self, subject_id: str, table: str, column: str, plaintext: str) -> str:
        return plaintext

    def open(self, subject_id: str, table: str, column: str, ciphertext: str) -> str:
        return ciphertext

    def normalise(self, kind: str, value: str) -> str:
        return str(self.real.normalise(kind, value))

    def blind_index(self, kind: str, value: str) -> str:
        return self.normalise(kind, value)[:64]


def _service_create(rt: Runtime, crypto: Any = None) -> tuple[float, list[str]]:
    crypto = crypto or rt.crypto
    ids: list[str] = []
    started = time.perf_counter()
    for first in range(0, N, BATCH):
        with unit_of_work(rt.sessions) as session:
            _ctx(session, rt)
            for i in range(first, first + BATCH):
                view = service.create(
                    session,
                    crypto=crypto,
                    policy=rt.policy,
                    principal=APP,
                    purpose=PURPOSE,
                    values=_values(i),
                )
                ids.append(view.id)
    return time.perf_counter() - started, ids


def _service_read(rt: Runtime, ids: list[str], crypto: Any = None) -> float:
    crypto = crypto or rt.crypto
    started = time.perf_counter()
    for first in range(0, N, BATCH):
        with unit_of_work(rt.sessions) as session:
            _ctx(session, rt)
            for subject in ids[first : first + BATCH]:
                service.read(
                    session,
                    crypto=crypto,
                    policy=rt.policy,
                    principal=APP,
                    purpose=PURPOSE,
                    subject_id=subject,
                )
    return time.perf_counter() - started


def _plain_sql(rt: Runtime, *, batched: bool = False) -> tuple[float, float]:
    """The same rows, plaintext, into shadow tables of the same shape; then read back by id.

    batched: one executemany per table per transaction and one IN query per table per
    transaction, the plain-SQL counterpart of the service's batch paths."""
    suffix = "_b" if batched else ""
    profile_t, identity_t = f"plain_profile{suffix}", f"plain_identity{suffix}"
    with rt.engine.begin() as conn:
        conn.execute(
            text(
                f"CREATE TABLE {profile_t} (id VARCHAR(36) PRIMARY KEY, "
                "created_at VARCHAR(40), updated_at VARCHAR(40), plain TEXT, sealed TEXT)"
            )
        )
        conn.execute(
            text(
                f"CREATE TABLE {identity_t} (id INTEGER PRIMARY KEY, subject_id "
                "VARCHAR(36), kind VARCHAR(40), value VARCHAR(320), created_at VARCHAR(40), "
                "UNIQUE (kind, value))"
            )
        )
        conn.execute(text(f"CREATE INDEX ix_{identity_t}_subject ON {identity_t} (subject_id)"))
    ids = [str(uuid.uuid4()) for _ in range(N)]
    now = "2026-11-25T00:00:00+00:00"
    insert_profile = text(f"INSERT INTO {profile_t} VALUES (:id, :c, :u, :p, :s)")
    insert_identity = text(f"INSERT INTO {identity_t} VALUES (:n, :s, :k, :v, :c)")
    started = time.perf_counter()
    n_identity = 0
    for first in range(0, N, BATCH):
        profiles, identities = [], []
        for i in range(first, first + BATCH):
            v = _values(i)
            profiles.append(
                {
                    "id": ids[i],
                    "c": now,
                    "u": now,
                    "p": json.dumps({"city": v["city"]}),
                    "s": json.dumps({"name": v["name"]}),
                }
            )
            for kind in ("external_id", "email", "phone"):
                n_identity += 1
                identities.append({"n": n_identity, "s": ids[i], "k": kind, "v": v[kind], "c": now})
        with rt.engine.begin() as conn:
            if batched:
                conn.execute(insert_profile, profiles)
                conn.execute(insert_identity, identities)
                continue
            for row in profiles:
                conn.execute(insert_profile, row)
            for row in identities:
                conn.execute(insert_identity, row)
    write = time.perf_counter() - started
    started = time.perf_counter()
    for first in range(0, N, BATCH):
        chunk = ids[first : first + BATCH]
        with rt.engine.begin() as conn:
            if batched:
                marks = ", ".join(f":i{n}" for n in range(len(chunk)))
                params = {f"i{n}": subject for n, subject in enumerate(chunk)}
                conn.execute(text(f"SELECT * FROM {profile_t} WHERE id IN ({marks})"), params).all()
                conn.execute(
                    text(f"SELECT * FROM {identity_t} WHERE subject_id IN ({marks})"), params
                ).all()
                continue
            for subject in chunk:
                conn.execute(
                    text(f"SELECT * FROM {profile_t} WHERE id = :id"), {"id": subject}
                ).one()
                conn.execute(
                    text(f"SELECT * FROM {identity_t} WHERE subject_id = :id"), {"id": subject}
                ).all()
    return write, time.perf_counter() - started


def _service_batches(rt: Runtime) -> tuple[float, float]:
    """The service's batch paths (POST /v1/profiles/batch, /batch-get) in transactions of 100."""
    ids: list[str] = []
    started = time.perf_counter()
    for first in range(0, N, BATCH):
        with unit_of_work(rt.sessions) as session:
            _ctx(session, rt)
            views = service.create_many(
                session,
                crypto=rt.crypto,
                policy=rt.policy,
                principal=APP,
                purpose=PURPOSE,
                items=[_values(N + i) for i in range(first, first + BATCH)],
            )
            ids += [v.id for v in views]
    create = time.perf_counter() - started
    started = time.perf_counter()
    for first in range(0, N, BATCH):
        with unit_of_work(rt.sessions) as session:
            _ctx(session, rt)
            read, withheld = service.read_many(
                session,
                crypto=rt.crypto,
                policy=rt.policy,
                principal=APP,
                purpose=PURPOSE,
                subject_ids=ids[first : first + BATCH],
            )
            assert len(read) == BATCH and not withheld
    return create, time.perf_counter() - started


def test_create_and_read_10k_profiles_sqlite(sqlite_rt: Runtime, tmp_path: Path) -> None:
    create_s, ids = _service_create(sqlite_rt)
    read_s = _service_read(sqlite_rt, ids)
    base_write, base_read = _plain_sql(sqlite_rt)
    # The same service path with encryption taken out, on a second database of the same kind.
    plain_rt = _runtime(tmp_path / "plain", _fresh_sqlite(tmp_path / "plain"))
    plain = PlaintextCrypto(plain_rt.crypto)
    plain_create_s, plain_ids = _service_create(plain_rt, plain)
    plain_read_s = _service_read(plain_rt, plain_ids, plain)
    plain_rt.engine.dispose()
    batch_create_s, batch_read_s = _service_batches(sqlite_rt)
    batch_write, batch_select = _plain_sql(sqlite_rt, batched=True)
    print(
        f"\nservice create {N / create_s:.0f}/s (without encryption {N / plain_create_s:.0f}/s), "
        f"plain SQL insert {N / base_write:.0f}/s"
    )
    print(
        f"service read {N / read_s:.0f}/s (without encryption {N / plain_read_s:.0f}/s), "
        f"plain SQL select {N / base_read:.0f}/s"
    )
    print(
        f"bench: profile_create_encryption {N / create_s:.0f} profiles/s "
        f"ratio={create_s / plain_create_s:.2f} baseline=same service path without encryption"
    )
    print(
        f"bench: profile_read_encryption {N / read_s:.0f} profiles/s "
        f"ratio={read_s / plain_read_s:.2f} baseline=same service path without encryption"
    )
    print(
        f"bench: profile_create_10k {N / create_s:.0f} profiles/s "
        f"ratio={create_s / base_write:.2f} "
        f"baseline=plain SQL insert of the same rows ({N / base_write:.0f}/s)"
    )
    print(
        f"bench: profile_read_10k {N / read_s:.0f} profiles/s ratio={read_s / base_read:.2f} "
        f"baseline=plain SQL select of the same rows ({N / base_read:.0f}/s)"
    )
    print(
        f"bench: profile_create_batch_10k {N / batch_create_s:.0f} profiles/s "
        f"ratio={batch_create_s / batch_write:.2f} "
        f"baseline=plain SQL executemany of the same rows ({N / batch_write:.0f}/s)"
    )
    print(
        f"bench: profile_read_batch_10k {N / batch_read_s:.0f} profiles/s "
        f"ratio={batch_read_s / batch_select:.2f} "
        f"baseline=plain SQL IN-list select of the same rows ({N / batch_select:.0f}/s)"
    )


@pytest.mark.slow
def test_lookup_p99_on_a_million_profiles_postgresql(tmp_path: Path) -> None:
    """1,000 profiles made through the service, 999,000 filler rows by COPY, then lookups."""
    total = int(os.environ.get("CDP_BENCH_PROFILES", "1000000"))
    with PgCluster() as cluster:
        url = cluster.create_database("bench_lookup")
        upgrade(url)
        rt = _runtime(tmp_path, url)
        real = 1000
        with unit_of_work(rt.sessions) as session:
            _ctx(session, rt)
            for i in range(real):
                service.create(
                    session,
                    crypto=rt.crypto,
                    policy=rt.policy,
                    principal=APP,
                    purpose=PURPOSE,
                    values=_values(i),
                )
        _fill(rt, total - real)
        samples, base = [], []
        with unit_of_work(rt.sessions) as session:
            _ctx(session, rt)
            for i in range(0, real, 2):
                email = f"zhang.wei.{i}@example.cn"
                t = time.perf_counter()
                service.lookup(
                    session,
                    crypto=rt.crypto,
                    policy=rt.policy,
                    principal=APP,
                    purpose=PURPOSE,
                    kind="email",
                    value=email,
                )
                samples.append(time.perf_counter() - t)
                index = rt.crypto.blind_index("email", email)
                t = time.perf_counter()
                session.execute(
                    text(
                        "SELECT subject_id FROM identity WHERE kind = 'email' AND blind_index = :b"
                    ),
                    {"b": index},
                ).one()
                base.append(time.perf_counter() - t)
        rt.engine.dispose()
    p99 = statistics.quantiles(samples, n=100)[98] * 1000
    p99_base = statistics.quantiles(base, n=100)[98] * 1000
    print(f"\nlookup over {total} profiles: p50 {statistics.median(samples) * 1000:.2f} ms")
    print(
        f"bench: profile_lookup_p99_1m {p99:.2f} ms ratio={p99 / p99_base:.2f} "
        f"baseline=bare indexed SELECT by blind index ({p99_base:.2f} ms p99)"
    )
    assert p99 < 5


def _fill(rt: Runtime, n: int) -> None:
    """Filler profiles with random blind indexes, loaded with COPY (they only need to exist)."""
    raw = rt.engine.raw_connection()
    try:
        cur = raw.cursor()
        with cur.copy("COPY profile (id, created_at, updated_at, plain, sealed) FROM STDIN") as cp:
            ids = []
            for _ in range(n):
                pid = str(uuid.uuid4())
                ids.append(pid)
                cp.write_row((pid, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", "{}", "{}"))
        with cur.copy(
            "COPY identity (subject_id, kind, blind_index, sealed_value, created_at) FROM STDIN"
        ) as cp:
            for pid in ids:
                cp.write_row((pid, "email", secrets.token_hex(32), "v1.x", "2026-01-01T00:00:00Z"))
        raw.commit()
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
