"""Field encryption rates against bare primitives measured in the same run (`make bench`).

- seal+open through a keys_for batch vs bare AESGCM with one ready key per subject, same data;
- one-off seal/open (each reads the subject's key from the key store) vs the same bare AESGCM;
- blind index (normalise + HMAC) vs a bare hmac.digest over the same bytes;
- creating a subject's data key (one key-store transaction) vs a plain INSERT of a same-sized
  row in its own transaction on the same kind of SQLite database; and the same through
  new_subject_id(), which makes keys 64 per transaction.
A ratio is our rate divided by the baseline's (1.0 = no overhead).
"""

from __future__ import annotations

import hmac
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine

from cdp.crypto import Crypto, LocalMasterKeys, upgrade_keystore
from cdp.db import make_engine

N = 10_000
NAMES = [f"张伟{i:05d}" for i in range(N)]
EMAILS = [f"zhang.wei.{i}@example.cn" for i in range(N)]


@pytest.fixture
def keystore(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    upgrade_keystore(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def crypto(keystore: Engine) -> Crypto:
    return Crypto(keystore, LocalMasterKeys(keys={"k1": os.urandom(32)}))


def _best_of(fn: object, rounds: int = 3) -> float:
    """Seconds of the fastest of a few rounds (less noise from a shared machine)."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return best


def _bare_aesgcm() -> float:
    keys = [AESGCM(os.urandom(32)) for _ in range(N)]

    def run() -> None:
        for i in range(N):
            aad = f"profile|name|s{i}".encode()
            nonce = os.urandom(12)
            ct = keys[i].encrypt(nonce, NAMES[i].encode(), aad)
            keys[i].decrypt(nonce, ct, aad)

    return N / _best_of(run)


def test_seal_open_batch(crypto: Crypto) -> None:
    ids = [f"s{i}" for i in range(N)]
    crypto.keys_for(ids, create=True)

    def run() -> None:
        keys = crypto.keys_for(ids)  # one key-store query, keys unwrapped on first use
        for i, sid in enumerate(ids):
            keys.open(sid, "profile", "name", keys.seal(sid, "profile", "name", NAMES[i]))

    rate, base = N / _best_of(run), _bare_aesgcm()
    print(
        f"\nbench: crypto_seal_open_batch {rate:.0f} pairs/s ratio={rate / base:.3f} "
        f"baseline=bare AESGCM encrypt+decrypt, one ready key per subject ({base:.0f}/s)"
    )


def test_seal_open_one_off(crypto: Crypto) -> None:
    ids = [f"s{i}" for i in range(N)]
    crypto.keys_for(ids, create=True)
    sealed = [crypto.seal(sid, "profile", "name", NAMES[i]) for i, sid in enumerate(ids)]

    def run() -> None:
        for i, sid in enumerate(ids):
            crypto.open(sid, "profile", "name", sealed[i])

    rate, base = N / _best_of(run), _bare_aesgcm()
    print(
        f"\nbench: crypto_open_one_off {rate:.0f} opens/s ratio={rate / base:.3f} "
        f"baseline=bare AESGCM encrypt+decrypt ({base:.0f}/s); each open reads the key store"
    )


def test_blind_index(crypto: Crypto) -> None:
    crypto.blind_index("email", EMAILS[0])
    key = os.urandom(32)

    def ours() -> None:
        for email in EMAILS:
            crypto.blind_index("email", email)

    def bare() -> None:
        for email in EMAILS:
            hmac.digest(key, b"email\x00" + email.encode(), "sha256").hex()

    rate, base = N / _best_of(ours), N / _best_of(bare)
    print(
        f"\nbench: crypto_blind_index {rate:.0f} indexes/s ratio={rate / base:.3f} "
        f"baseline=bare hmac.digest sha256 ({base:.0f}/s); ours normalises and validates first"
    )


def test_data_key_creation(crypto: Crypto, tmp_path: Path) -> None:
    n = 2_000

    def ours() -> None:
        tag = os.urandom(4).hex()
        for i in range(n):
            crypto.seal(f"new-{tag}-{i}", "profile", "name", NAMES[i])

    plain = sqlite3.connect(tmp_path / "plain.db", isolation_level=None)
    plain.execute("PRAGMA journal_mode=WAL")
    plain.execute("PRAGMA synchronous=NORMAL")
    plain.execute("CREATE TABLE row (id TEXT PRIMARY KEY, a INTEGER, b TEXT, c BLOB, d TEXT)")

    def bare() -> None:
        tag = os.urandom(4).hex()
        for i in range(n):
            plain.execute("BEGIN IMMEDIATE")
            plain.execute(
                "INSERT INTO row VALUES (?, 1, 'k1', ?, '2026-01-01 00:00:00.000000')",
                (f"new-{tag}-{i}", os.urandom(60)),
            )
            plain.execute("COMMIT")

    def pooled() -> None:
        for i in range(n):
            sid = crypto.new_subject_id()
            crypto.keys_for([sid]).seal(sid, "profile", "name", NAMES[i])

    rate, base, pooled_rate = n / _best_of(ours), n / _best_of(bare), n / _best_of(pooled)
    plain.close()
    print(
        f"\ncrypto_first_seal via new_subject_id(): {pooled_rate:.0f} subjects/s "
        f"ratio={pooled_rate / base:.3f} (keys made 64 per key-store transaction)"
    )
    print(
        f"bench: crypto_first_seal {rate:.0f} subjects/s ratio={rate / base:.3f} "
        f"baseline=plain SQLite INSERT of a same-sized row, one transaction each ({base:.0f}/s)"
    )
