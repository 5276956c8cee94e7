"""The Crypto facade on both key stores: round trips, misplaced data, batches, shredding."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from cdp.crypto import Crypto, LocalMasterKeys
from cdp.crypto import keystore as store
from cdp.errors import CiphertextInvalid, InvalidIdentifier, SubjectKeyMissing


def test_round_trip_chinese_and_empty(crypto: Crypto) -> None:
    for text in ("张伟", "", "王小明 <wang@example.cn> 🎉", "x" * 10_000):
        assert (
            crypto.open("s1", "profile", "name", crypto.seal("s1", "profile", "name", text)) == text
        )


def test_one_key_per_subject_created_on_first_use(crypto: Crypto, keystore: Engine) -> None:
    assert not crypto.has_key("s1")
    crypto.seal("s1", "profile", "name", "a")
    crypto.seal("s1", "profile", "email", "b")
    assert crypto.has_key("s1") and not crypto.has_key("s2")
    with keystore.connect() as conn:
        rows = conn.execute(select(store.subject_key)).all()
    assert [(r.subject_id, r.key_version, r.kek_id) for r in rows] == [("s1", 1, "k1")]


def test_key_store_holds_no_plaintext_key(crypto: Crypto, keystore: Engine) -> None:
    ct = crypto.seal("s1", "profile", "name", "李雷")
    keys = crypto.keys_for(["s1"])
    keys.open("s1", "profile", "name", ct)
    dek = keys._open["s1"][1]  # the unwrapped key object; its bytes must not be stored
    with keystore.connect() as conn:
        wrapped = conn.execute(select(store.subject_key.c.wrapped)).scalar_one()
    assert len(wrapped) == 12 + 32 + 16 and dek is not None


@pytest.mark.parametrize(
    ("subject", "table", "column"),
    [("s2", "profile", "name"), ("s1", "profile", "email"), ("s1", "identity", "name")],
)
def test_moved_ciphertext_fails(crypto: Crypto, subject: str, table: str, column: str) -> None:
    crypto.seal("s2", "profile", "name", "other")  # s2 has a key of its own
    ct = crypto.seal("s1", "profile", "name", "韩梅梅")
    with pytest.raises(CiphertextInvalid) as info:
        crypto.open(subject, table, column, ct)
    assert info.value.status == 409 and info.value.code == "ciphertext_invalid"
    assert "韩梅梅" not in info.value.detail


def test_swapped_columns_fail(crypto: Crypto) -> None:
    keys = crypto.keys_for(["s1"], create=True)
    name, email = keys.seal("s1", "p", "name", "n"), keys.seal("s1", "p", "email", "e")
    with pytest.raises(CiphertextInvalid):
        keys.open("s1", "p", "name", email)
    with pytest.raises(CiphertextInvalid):
        keys.open("s1", "p", "email", name)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: s[:-4],
        lambda s: s[:20],
        lambda s: s.replace("v1.1.", "v1.2.", 1),
        lambda s: s.replace("v1.1.", "v1.01.", 1),
        lambda s: s[:-2] + ("AA" if s[-2:] != "AA" else "BB"),
        lambda s: "garbage",
        lambda s: "v1.1..",
    ],
)
def test_garbled_ciphertext_fails(crypto: Crypto, mangle: object) -> None:
    ct = crypto.seal("s1", "profile", "phone", "+8613800138000")
    with pytest.raises(CiphertextInvalid):
        crypto.open("s1", "profile", "phone", mangle(ct))  # type: ignore[operator]


def test_keys_for_reads_once_for_many(crypto: Crypto, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [f"s{i}" for i in range(1200)]
    sealed = crypto.keys_for(ids, create=True)
    cts = {sid: sealed.seal(sid, "profile", "name", sid) for sid in ids}
    calls: list[int] = []
    real = store.fetch_subject_keys

    def counted(engine: Engine, subject_ids: list[str]) -> list[store.KeyRow]:
        calls.append(len(subject_ids))
        return real(engine, subject_ids)

    monkeypatch.setattr(store, "fetch_subject_keys", counted)
    keys = crypto.keys_for(ids + ids[:10])
    assert all(keys.open(sid, "profile", "name", ct) == sid for sid, ct in cts.items())
    assert calls == [1200]


def test_keys_for_missing_subjects(crypto: Crypto) -> None:
    ct = crypto.seal("s1", "profile", "name", "x")
    keys = crypto.keys_for(["s1", "nobody"])
    assert "s1" in keys and "nobody" not in keys
    with pytest.raises(SubjectKeyMissing):
        keys.open("nobody", "profile", "name", ct)
    with pytest.raises(SubjectKeyMissing):  # no resurrection of a subject through a batch
        keys.seal("nobody", "profile", "name", "x")
    assert not crypto.has_key("nobody")
    crypto.seal("late", "profile", "name", "x")
    assert keys.seal("late", "profile", "name", "y")  # outside the batch: fetched on use
    with pytest.raises(SubjectKeyMissing):
        crypto.keys_for([]).open("ghost", "profile", "name", ct)


def test_concurrent_first_use_agrees_on_one_key(crypto: Crypto) -> None:
    results: list[tuple[str, str]] = []
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        barrier.wait()
        for i in range(30):
            sid = f"new{i}"
            results.append((sid, crypto.seal(sid, "profile", "name", f"{sid}-{n}")))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 240
    for sid, ct in results:
        assert crypto.open(sid, "profile", "name", ct).startswith(sid)


def test_shred(crypto: Crypto) -> None:
    before = datetime.now(UTC)
    ct = crypto.seal("s1", "profile", "name", "张伟")
    keys = crypto.keys_for(["s1"])
    crypto.shred("s1", reason="rights_request:r-17")
    assert not crypto.has_key("s1")
    with pytest.raises(SubjectKeyMissing) as info:
        crypto.open("s1", "profile", "name", ct)
    assert info.value.status == 410 and info.value.code == "subject_erased"
    with pytest.raises(SubjectKeyMissing):  # a batch loaded after the shred
        crypto.keys_for(["s1"]).open("s1", "profile", "name", ct)
    assert keys._wrapped  # a batch loaded before holds only the wrapped key, nothing cached
    [(subject, erased_at)] = crypto.erasures()
    assert subject == "s1" and erased_at >= before and erased_at.tzinfo is not None
    assert crypto.erasures(after=erased_at) == []
    assert crypto.erasures(after=before - timedelta(seconds=1)) == [("s1", erased_at)]


def test_shred_reason_is_checked(crypto: Crypto) -> None:
    with pytest.raises(ValueError, match="reason"):
        crypto.shred("s1", reason="")
    with pytest.raises(ValueError, match="reason"):
        crypto.shred("s1", reason="x" * 201)


def test_new_key_after_erasure_gets_the_next_version(crypto: Crypto) -> None:
    old = crypto.seal("s1", "profile", "name", "old")
    crypto.shred("s1", reason="test")
    new = crypto.seal("s1", "profile", "name", "new")
    assert new.startswith("v1.2.")
    assert crypto.open("s1", "profile", "name", new) == "new"
    with pytest.raises(SubjectKeyMissing):  # sealed under the shredded key, not tampering
        crypto.open("s1", "profile", "name", old)
    with pytest.raises(CiphertextInvalid):  # a version that never existed is tampering
        crypto.open("s1", "profile", "name", new.replace("v1.2.", "v1.3.", 1))


def test_replay_erasure_shreds_only_keys_from_before(crypto: Crypto, keystore: Engine) -> None:
    crypto.seal("restored", "profile", "name", "x")
    crypto.seal("recreated", "profile", "name", "x")
    with keystore.connect() as conn:
        created = dict(
            conn.execute(
                select(store.subject_key.c.subject_id, store.subject_key.c.created_at)
            ).all()
        )
    assert crypto.replay_erasure("restored", created["restored"] + timedelta(seconds=1))
    assert not crypto.has_key("restored")
    assert not crypto.replay_erasure("recreated", created["recreated"] - timedelta(seconds=1))
    assert crypto.has_key("recreated")
    assert crypto.erasures() == []  # replay writes no new ledger rows


def test_blind_index_is_stable_and_keyed(
    crypto: Crypto, keystore: Engine, provider: LocalMasterKeys
) -> None:
    a = crypto.blind_index("phone", "138 0013 8000")
    assert a == crypto.blind_index("phone", "+86-138-0013-8000")
    assert a == Crypto(keystore, provider).blind_index("phone", "0086 13800138000")
    assert a != crypto.blind_index("phone", "+86 139 0013 8000")
    assert crypto.normalise("email", " A@B.CN ") == "a@b.cn"
    with pytest.raises(InvalidIdentifier):
        crypto.blind_index("email", "not-an-email")
    with keystore.connect() as conn:
        assert conn.execute(select(store.index_key.c.version)).scalars().all() == [1]


def test_index_key_created_once_under_concurrency(
    keystore: Engine, provider: LocalMasterKeys
) -> None:
    out: list[str] = []
    barrier = threading.Barrier(6)

    def worker() -> None:
        barrier.wait()
        out.append(Crypto(keystore, provider).blind_index("external_id", "42"))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(out)) == 1


def test_unknown_master_key_version_is_a_503_not_garbage(crypto: Crypto, keystore: Engine) -> None:
    ct = crypto.seal("s1", "profile", "name", "x")
    other = Crypto(keystore, LocalMasterKeys(keys={"k1": bytes(32)}))
    with pytest.raises(Exception) as info:
        other.open("s1", "profile", "name", ct)
    assert getattr(info.value, "status", None) == 503


def test_ping(crypto: Crypto) -> None:
    crypto.ping()


def test_new_subject_ids_come_with_keys(crypto: Crypto, monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[int] = []
    real = store.insert_subject_keys

    def counted(engine: Engine, keys: dict[str, tuple[str, bytes]], **kw: Any) -> dict[str, int]:
        writes.append(len(keys))
        return real(engine, keys, **kw)

    monkeypatch.setattr(store, "insert_subject_keys", counted)
    ids: list[str] = []
    threads = [
        threading.Thread(target=lambda: ids.extend(crypto.new_subject_id() for _ in range(40)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 160 and all(len(i) == 36 for i in ids)
    assert writes == [64, 64, 64]  # three key-store writes for 160 subjects
    keys = crypto.keys_for(ids)  # no create needed: every id already has its key
    assert all(keys.open(i, "p", "n", keys.seal(i, "p", "n", i)) == i for i in ids)


def test_pooled_connections_stay_transactional_after_key_reads(
    crypto: Crypto, keystore: Engine
) -> None:
    # Key reads run in autocommit on the driver; the pool's other users must still get
    # transactions that roll back.
    for i in range(12):
        crypto.open("s1", "p", "n", crypto.seal("s1", "p", "n", str(i)))
    for _ in range(12):
        with keystore.connect() as conn:
            conn.execute(
                store.erasure.insert().values(
                    subject_id="x", erased_at=datetime.now(UTC), reason="r"
                )
            )
            conn.rollback()
    assert crypto.erasures() == []


def test_losing_a_creation_race_uses_the_stored_key(crypto: Crypto) -> None:
    ct = crypto.seal("s1", "profile", "name", "first")
    [(_, version, kek_id, blob)] = store.fetch_subject_keys(crypto.keystore, ["s1"])
    again = crypto._create_keys(["s1"])  # as if our read had missed the other writer's insert
    assert again == {"s1": (version, kek_id, blob)}
    assert crypto.open("s1", "profile", "name", ct) == "first"
