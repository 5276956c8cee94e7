"""Profile create/read through the service layer against plain SQL on the same kind of
database, and blind-index lookup latency over a million profiles on PostgreSQL (`make bench`).

The service path does everything a request does apart from HTTP: policy decision, a data key
per subject, AES-GCM per field, blind indexes, the audit entry. The plain-SQL baseline writes
the same rows, every one the service writes, with values computed before the clock starts:
the profile row with its ciphertexts, three identity rows with blind indexes and
ciphertexts, the wrapped data key in a key store database of its own, and the audit entry;
a read selects the profile row with the subject's status row (what a decision reads), its
identity rows and wrapped key, and inserts the read's audit entry (every read of PI writes
one). Both run in the same transaction sizes on fresh databases of the same schema. (Before
2026-11 the baseline inserted the profile and identity rows only, in plaintext, without
blind indexes, key-store rows or audit entries, which overstated the ratios.)

Each line gives the wall-clock ratio and the CPU-time ratio: on SQLite everything, the
database engine too, runs in this process, so CPU time is the figure a loaded machine
disturbs least.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import statistics
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from sqlalchemy import Engine, text

from cdp.api import Runtime
from cdp.app import build_runtime, start
from cdp.audit.service import RequestContext
from cdp.auth.principal import Principal
from cdp.config import Settings
from cdp.crypto import Crypto, upgrade_keystore
from cdp.crypto.keystore import fetch_subject_keys
from cdp.db import UTCDateTime, make_engine, unit_of_work, upgrade
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

    def new_subjects(self, n: int) -> tuple[list[str], PlaintextCrypto]:
        return [str(uuid.uuid4()) for _ in range(n)], self

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

    def identifier(self, kind: str, value: str) -> tuple[str, str]:
        normalised = self.normalise(kind, value)
        return normalised, normalised[:64]


class Spent(NamedTuple):
    """Wall-clock and CPU seconds of one phase. On SQLite all the work (the database engine
    too) runs in this process, so CPU time is the figure least disturbed by a loaded machine."""

    wall: float
    cpu: float


class _Clock:
    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def spent(self) -> Spent:
        return Spent(time.perf_counter() - self.wall, time.process_time() - self.cpu)


def _line(name: str, service: Spent, base: Spent, baseline: str) -> str:
    return (
        f"bench: {name} {N / service.wall:.0f} profiles/s ratio={service.wall / base.wall:.2f} "
        f"baseline={baseline} ({N / base.wall:.0f}/s); "
        f"cpu ratio={service.cpu / base.cpu:.2f} ({service.cpu / N * 1e6:.0f} vs "
        f"{base.cpu / N * 1e6:.0f} us/profile)"
    )


def _service_create(rt: Runtime, crypto: Any = None) -> tuple[Spent, list[str]]:
    crypto = crypto or rt.crypto
    ids: list[str] = []
    started = _Clock()
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
    return started.spent(), ids


def _service_read(rt: Runtime, ids: list[str], crypto: Any = None) -> Spent:
    crypto = crypto or rt.crypto
    started = _Clock()
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
    return started.spent()


@dataclass
class _PlainRows:
    """Every row the service writes for N profiles, computed before the clock starts: the
    profile row with its ciphertexts, three identity rows with blind indexes and ciphertexts,
    the wrapped data key (key store) and the audit entry of the create and of the read."""

    ids: list[str]
    profiles: list[dict[str, object]]
    identities: list[list[dict[str, object]]]
    keys: list[dict[str, object]]
    create_audit: list[dict[str, object]]
    read_audit: list[dict[str, object]]


def _audit_rows(
    ids: list[str], action: str, fields: list[str], stamp: object, version: str, seq: int
) -> list[dict[str, object]]:
    rows, prev = [], "0" * 64
    for subject in ids:
        seq += 1
        digest = hashlib.sha256(f"{prev}|{seq}|{action}|{subject}".encode()).hexdigest()
        rows.append(
            {
                "seq": seq,
                "at": stamp,
                "actor": APP.actor,
                "organisation": None,
                "action": action,
                "subject": subject,
                "purpose": PURPOSE,
                "fields": json.dumps(fields),
                "decision": "allow",
                "code": None,
                "request_id": "bench",
                "policy_version": version,
                "detail": "{}",
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    return rows


def _plain_rows(rt: Runtime, scratch: Path, first: int) -> _PlainRows:
    """Real ciphertexts, blind indexes and wrapped keys (from a scratch key store)."""
    crypto = Crypto(make_engine(_fresh_keystore(scratch)), rt.crypto.provider)
    ids = [str(uuid.uuid4()) for _ in range(N)]
    keys = crypto.keys_for(ids, create=True)
    wrapped = {
        sid: (ver, kek, blob) for sid, ver, kek, blob in fetch_subject_keys(crypto.keystore, ids)
    }
    stamp = _stamp(rt.engine)
    profiles, identities, key_rows = [], [], []
    for n, sid in enumerate(ids):
        v = _values(first + n)
        profiles.append(
            {
                "id": sid,
                "c": stamp,
                "u": stamp,
                "p": json.dumps({"city": v["city"]}),
                "s": json.dumps({"name": keys.seal(sid, "profile", "name", str(v["name"]))}),
            }
        )
        rows = []
        for kind in ("external_id", "email", "phone"):
            normalised = crypto.normalise(kind, str(v[kind]))
            rows.append(
                {
                    "s": sid,
                    "k": kind,
                    "b": crypto.blind_index(kind, str(v[kind])),
                    "v": keys.seal(sid, "identity", kind, normalised),
                    "c": stamp,
                }
            )
        identities.append(rows)
        ver, kek, blob = wrapped[sid]
        key_rows.append({"s": sid, "ver": ver, "kek": kek, "w": blob, "c": stamp})
    crypto.keystore.dispose()
    fields = sorted(["city", "email", "external_id", "name", "phone"])
    version = rt.policy.version
    return _PlainRows(
        ids,
        profiles,
        identities,
        key_rows,
        _audit_rows(ids, "profile.create", fields, stamp, version, 0),
        _audit_rows(ids, "profile.read", fields, stamp, version, N),
    )


def _stamp(engine: Engine) -> object:
    bind = UTCDateTime().dialect_impl(engine.dialect).bind_processor(engine.dialect)
    now = datetime.now(UTC)
    return bind(now) if bind is not None else now


def _fresh_keystore(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder / 'keys.db'}"
    upgrade_keystore(url)
    return url


_INSERT_PROFILE = (
    "INSERT INTO profile (id, created_at, updated_at, plain, sealed) VALUES (:id, :c, :u, :p, :s)"
)
_INSERT_IDENTITY = (
    "INSERT INTO identity (subject_id, kind, blind_index, sealed_value, created_at) "
    "VALUES (:s, :k, :b, :v, :c)"
)
_INSERT_KEY = (
    "INSERT INTO subject_key (subject_id, key_version, kek_id, wrapped, created_at) "
    "VALUES (:s, :ver, :kek, :w, :c)"
)
_INSERT_AUDIT = (
    "INSERT INTO audit_entry (seq, at, actor, organisation, action, subject, purpose, fields, "
    "decision, code, request_id, policy_version, detail, prev_hash, hash) VALUES (:seq, :at, "
    ":actor, :organisation, :action, :subject, :purpose, :fields, :decision, :code, "
    ":request_id, :policy_version, :detail, :prev_hash, :hash)"
)


def _plain_sql(
    rt: Runtime, folder: Path, *, batched: bool = False, first: int = 0
) -> tuple[Spent, Spent]:
    """The same rows in plain SQL, into a fresh database and key store of the same kind and
    schema (same tables, indexes, constraints and triggers), in the same transaction sizes.

    Create: the wrapped data keys into the key store, then the profile, identity and audit
    rows into the main database. Read, by id: the profile row with the subject's status row
    (what a decision reads), its identity rows, its wrapped key, and the audit entry of the
    read (every read of PI writes one). batched: one executemany per table per transaction
    and one IN query per table, the counterpart of the service's batch paths."""
    rows = _plain_rows(rt, folder / "scratch", first)
    main = make_engine(_fresh_sqlite(folder / "main"))
    keystore = make_engine(_fresh_keystore(folder / "keys"))
    insert_profile, insert_identity = text(_INSERT_PROFILE), text(_INSERT_IDENTITY)
    insert_key, insert_audit = text(_INSERT_KEY), text(_INSERT_AUDIT)
    started = _Clock()
    for lo in range(0, N, BATCH):
        hi = lo + BATCH
        with keystore.begin() as conn:
            if batched:
                conn.execute(insert_key, rows.keys[lo:hi])
            else:
                for key in rows.keys[lo:hi]:
                    conn.execute(insert_key, key)
        with main.begin() as conn:
            if batched:
                conn.execute(insert_profile, rows.profiles[lo:hi])
                conn.execute(insert_identity, [r for rs in rows.identities[lo:hi] for r in rs])
                conn.execute(insert_audit, rows.create_audit[lo:hi])
                continue
            for n in range(lo, hi):
                conn.execute(insert_profile, rows.profiles[n])
                for identity in rows.identities[n]:
                    conn.execute(insert_identity, identity)
                conn.execute(insert_audit, rows.create_audit[n])
    write = started.spent()
    by_id = text(
        "SELECT * FROM profile LEFT JOIN subject_status ON subject_status.subject_id = profile.id "
        "WHERE profile.id = :id"
    )
    identities_of = text("SELECT * FROM identity WHERE subject_id = :id ORDER BY id")
    key_of = text("SELECT * FROM subject_key WHERE subject_id = :id")
    started = _Clock()
    for lo in range(0, N, BATCH):
        chunk = rows.ids[lo : lo + BATCH]
        with keystore.connect() as kconn, main.begin() as conn:
            if batched:
                marks = ", ".join(f":i{n}" for n in range(len(chunk)))
                params = {f"i{n}": subject for n, subject in enumerate(chunk)}
                conn.execute(text(f"SELECT * FROM profile WHERE id IN ({marks})"), params).all()
                conn.execute(
                    text(f"SELECT * FROM subject_status WHERE subject_id IN ({marks})"), params
                ).all()
                conn.execute(
                    text(f"SELECT * FROM identity WHERE subject_id IN ({marks}) ORDER BY id"),
                    params,
                ).all()
                kconn.execute(
                    text(f"SELECT * FROM subject_key WHERE subject_id IN ({marks})"), params
                ).all()
                conn.execute(insert_audit, rows.read_audit[lo : lo + BATCH])
                continue
            for n, subject in enumerate(chunk):
                conn.execute(by_id, {"id": subject}).one()
                conn.execute(identities_of, {"id": subject}).all()
                kconn.execute(key_of, {"id": subject}).one()
                conn.execute(insert_audit, rows.read_audit[lo + n])
    read = started.spent()
    main.dispose()
    keystore.dispose()
    return write, read


def _service_batches(rt: Runtime) -> tuple[Spent, Spent]:
    """The service's batch paths (POST /v1/profiles/batch, /batch-get) in transactions of 100."""
    ids: list[str] = []
    started = _Clock()
    for first in range(0, N, BATCH):
        with unit_of_work(rt.sessions) as session:
            _ctx(session, rt)
            views = service.create_many(
                session,
                crypto=rt.crypto,
                policy=rt.policy,
                principal=APP,
                purpose=PURPOSE,
                items=[_values(i) for i in range(first, first + BATCH)],
            )
            ids += [v.id for v in views]
    create = started.spent()
    started = _Clock()
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
    return create, started.spent()


def test_create_and_read_10k_profiles_sqlite(sqlite_rt: Runtime, tmp_path: Path) -> None:
    create_s, ids = _service_create(sqlite_rt)
    read_s = _service_read(sqlite_rt, ids)
    base_write, base_read = _plain_sql(sqlite_rt, tmp_path / "base")
    # The same service path with encryption taken out, on a second database of the same kind.
    plain_rt = _runtime(tmp_path / "plain", _fresh_sqlite(tmp_path / "plain"))
    plain = PlaintextCrypto(plain_rt.crypto)
    plain_create_s, plain_ids = _service_create(plain_rt, plain)
    plain_read_s = _service_read(plain_rt, plain_ids, plain)
    plain_rt.engine.dispose()
    # Batches on a fresh database too, as the plain-SQL baselines get: the same starting size.
    batch_rt = _runtime(tmp_path / "batch", _fresh_sqlite(tmp_path / "batch"))
    batch_create_s, batch_read_s = _service_batches(batch_rt)
    batch_rt.engine.dispose()
    batch_write, batch_select = _plain_sql(sqlite_rt, tmp_path / "base_b", batched=True)
    same = "same service path without encryption"
    print()
    print(_line("profile_create_encryption", create_s, plain_create_s, same))
    print(_line("profile_read_encryption", read_s, plain_read_s, same))
    print(_line("profile_create_10k", create_s, base_write, "plain SQL insert of the same rows"))
    print(_line("profile_read_10k", read_s, base_read, "plain SQL select of the same rows"))
    print(
        _line(
            "profile_create_batch_10k",
            batch_create_s,
            batch_write,
            "plain SQL executemany of the same rows",
        )
    )
    print(
        _line(
            "profile_read_batch_10k",
            batch_read_s,
            batch_select,
            "plain SQL IN-list select of the same rows",
        )
    )


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
