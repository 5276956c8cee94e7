"""Master-key rotation under concurrent use, status, and the `cdp keys` commands."""

from __future__ import annotations

import base64
import json
import random
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from cdp.cli import app as cli
from cdp.crypto import Crypto, LocalMasterKeys
from cdp.crypto import keystore as store
from cdp.crypto.masterkey import add_version, read_key_file, retire_version

Sealed = tuple[str, str, str, str]  # subject, column, plaintext, ciphertext


def _worker(
    crypto: Crypto,
    n: int,
    subjects: list[str],
    sealed: list[Sealed],
    lock: threading.Lock,
    stop: threading.Event,
    errors: list[BaseException],
    ops: list[int],
) -> None:
    rng = random.Random(n)
    i = 0
    try:
        while not stop.is_set():
            i += 1
            roll = rng.random()
            if roll < 0.15:  # a new subject
                sid, column = f"new-{n}-{i}", "name"
                with lock:
                    subjects.append(sid)
            else:
                with lock:
                    sid, column = rng.choice(subjects), rng.choice(("name", "email", "phone"))
            if roll < 0.6:
                text = f"{sid}/{column}/{i}"
                ct = crypto.seal(sid, "profile", column, text)
                with lock:
                    sealed.append((sid, column, text, ct))
            else:
                with lock:
                    sid, column, text, ct = rng.choice(sealed)
                assert crypto.open(sid, "profile", column, ct) == text
            ops[n] += 1
    except BaseException as exc:
        errors.append(exc)


def test_rotation_under_load_loses_nothing(keystore: Engine, key_file: Path) -> None:
    live = Crypto(keystore, LocalMasterKeys(path=key_file))  # a server started before rotation
    subjects = [f"subject-{i:05d}" for i in range(2000)]
    keys = live.keys_for(subjects, create=True)
    sealed: list[Sealed] = [(s, "name", s, keys.seal(s, "profile", "name", s)) for s in subjects]
    index_before = live.blind_index("email", "zhang.wei@example.cn")

    lock, stop = threading.Lock(), threading.Event()
    errors: list[BaseException] = []
    ops = [0] * 4
    threads = [
        threading.Thread(target=_worker, args=(live, n, subjects, sealed, lock, stop, errors, ops))
        for n in range(4)
    ]
    for t in threads:
        t.start()
    time.sleep(0.3)
    # `cdp keys rotate` in another process: a new version, re-wrap everything, retire the old.
    assert add_version(key_file) == "k2"
    operator = Crypto(keystore, LocalMasterKeys(path=key_file))
    ops_before = sum(ops)
    report = operator.rotate(batch=50)
    ops_during = sum(ops) - ops_before
    for version in report.unused_versions:
        retire_version(key_file, version)
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()

    assert errors == []
    assert ops_during > 0, "the workers did not run while the rotation did"
    assert report.target == "k2" and report.failed == 0
    assert report.rewrapped >= 2000 and report.index_keys_rewrapped == 1
    assert report.unused_versions == ["k1"]
    assert list(read_key_file(key_file)[1]) == ["k2"]

    with keystore.connect() as conn:
        per_version: dict[str, int] = dict(
            conn.execute(
                select(store.subject_key.c.kek_id, func.count()).group_by(
                    store.subject_key.c.kek_id
                )
            ).all()
        )
    assert per_version == {"k2": len(set(subjects))}

    # Only the new master key exists now: every value sealed before, during and after opens.
    only_new = LocalMasterKeys(keys={"k2": read_key_file(key_file)[1]["k2"]})
    fresh = Crypto(keystore, only_new)
    batch = fresh.keys_for(s for s, _, _, _ in sealed)
    for sid, column, text, ct in sealed:
        assert batch.open(sid, "profile", column, ct) == text
    assert fresh.blind_index("email", "Zhang.Wei@example.cn") == index_before
    assert len(sealed) > 2000 + sum(ops) // 2


class _StalledProvider(LocalMasterKeys):
    """Wraps under whatever version is current, then stalls until told to go on (once)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path=path)
        self.wrapped, self.go = threading.Event(), threading.Event()

    def wrap(self, data: bytes, *, aad: bytes) -> tuple[str, bytes]:
        result = super().wrap(data, aad=aad)
        if not self.wrapped.is_set():
            self.wrapped.set()
            self.go.wait(10)
        return result


def test_key_wrapped_before_rotation_but_stored_after_it_is_rewrapped(
    keystore: Engine, key_file: Path
) -> None:
    stalled = _StalledProvider(key_file)
    out: list[str] = []
    writer = threading.Thread(
        target=lambda: out.append(Crypto(keystore, stalled).seal("late", "profile", "name", "迟"))
    )
    writer.start()
    assert stalled.wrapped.wait(10)  # the new key is wrapped under k1, not stored yet
    add_version(key_file)
    report = Crypto(keystore, LocalMasterKeys(path=key_file)).rotate()
    assert report.unused_versions == ["k1"]
    retire_version(key_file, "k1")
    stalled.go.set()
    writer.join()
    only_new = LocalMasterKeys(keys={"k2": read_key_file(key_file)[1]["k2"]})
    assert Crypto(keystore, only_new).open("late", "profile", "name", out[0]) == "迟"


def test_rotation_with_env_keys_reports_unused_versions(keystore: Engine) -> None:
    k1, k2 = bytes([1] * 32), bytes([2] * 32)
    before = Crypto(keystore, LocalMasterKeys(keys={"k1": k1}))
    ct = before.keys_for(["a", "b", "c"], create=True).seal("a", "profile", "name", "甲")
    index = before.blind_index("external_id", "E-1")
    after = Crypto(keystore, LocalMasterKeys(keys={"k2": k2, "k1": k1}))
    assert after.status().unused_versions == []
    report = after.rotate(batch=2)
    assert (report.rewrapped, report.unused_versions) == (3, ["k1"])
    assert report.deks_per_version == {"k2": 3}
    assert after.rotate().rewrapped == 0  # idempotent
    only_new = Crypto(keystore, LocalMasterKeys(keys={"k2": k2}))
    assert only_new.open("a", "profile", "name", ct) == "甲"
    assert only_new.blind_index("external_id", "E-1") == index


def test_rotation_keeps_versions_it_cannot_unwrap(keystore: Engine) -> None:
    k1, k2, k3 = (bytes([n] * 32) for n in (1, 2, 3))
    Crypto(keystore, LocalMasterKeys(keys={"k1": k1})).keys_for(["a", "b"], create=True)
    Crypto(keystore, LocalMasterKeys(keys={"k2": k2})).keys_for(["c"], create=True)
    partial = Crypto(keystore, LocalMasterKeys(keys={"k3": k3, "k1": k1}))
    report = partial.rotate()
    assert (report.rewrapped, report.failed) == (2, 1)
    assert report.deks_per_version == {"k2": 1, "k3": 2}
    assert report.unused_versions == ["k1"]


def test_status(crypto: Crypto) -> None:
    status = crypto.status()
    assert (status.current, status.deks_total, status.index_key_version) == ("k1", 0, None)
    crypto.keys_for(["a", "b"], create=True)
    crypto.blind_index("email", "a@b.cn")
    crypto.shred("a", reason="test")
    status = crypto.status()
    assert status.deks_per_version == {"k1": 1} and status.index_key_version == "k1"
    assert status.erasures == 1 and status.versions == ["k1"]
    assert json.loads(json.dumps(status.as_dict()))["current"] == "k1"


def test_rotate_rejects_a_zero_batch(crypto: Crypto) -> None:
    with pytest.raises(ValueError, match="batch"):
        crypto.rotate(batch=0)


@pytest.fixture
def cli_env(
    monkeypatch: pytest.MonkeyPatch, keystore_url: str, key_file: Path, tmp_path: Path
) -> None:
    for name in ("CDP_MASTER_KEY", "CDP_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CDP_KEYSTORE_URL", keystore_url)
    monkeypatch.setenv("CDP_MASTER_KEY_FILE", str(key_file))
    monkeypatch.setenv("CDP_DATA_DIR", str(tmp_path / "state"))


def test_cli_rotate_and_status(cli_env: None, keystore: Engine, key_file: Path) -> None:
    crypto = Crypto(keystore, LocalMasterKeys(path=key_file))
    ct = crypto.keys_for(["a", "b"], create=True).seal("a", "profile", "name", "x")
    runner = CliRunner()
    result = runner.invoke(cli, ["keys", "rotate", "--batch", "1"])
    assert result.exit_code == 0, result.output
    assert "re-wrapped 2 data keys" in result.output and "retired" in result.output
    result = runner.invoke(cli, ["keys", "status", "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["current"] == "k2" and status["versions"] == ["k2"]
    assert status["deks_per_version"] == {"k2": 2}
    assert "current master key:  k2" in runner.invoke(cli, ["keys", "status"]).output
    assert Crypto(keystore, LocalMasterKeys(path=key_file)).open("a", "profile", "name", ct) == "x"


def test_cli_rotate_with_env_keys_prints_unused(
    cli_env: None, keystore: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    k1, k2 = (base64.b64encode(bytes([n] * 32)).decode() for n in (1, 2))
    Crypto(keystore, LocalMasterKeys(keys={"k1": base64.b64decode(k1)})).keys_for(
        ["a"], create=True
    )
    monkeypatch.delenv("CDP_MASTER_KEY_FILE")
    monkeypatch.setenv("CDP_MASTER_KEY", f"k2:{k2},k1:{k1}")
    result = CliRunner().invoke(cli, ["keys", "rotate", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["unused_versions"] == ["k1"] and out["retired"] == [] and out["rewrapped"] == 1


def test_cli_replay_erasures_dry_run(cli_env: None, keystore: Engine, key_file: Path) -> None:
    crypto = Crypto(keystore, LocalMasterKeys(path=key_file))
    crypto.keys_for(["gone"], create=True)
    crypto.shred("gone", reason="test")
    result = CliRunner().invoke(cli, ["rights", "replay-erasures", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "gone" in result.output and "1 erasure(s) would be replayed" in result.output
    later = CliRunner().invoke(
        cli, ["rights", "replay-erasures", "--dry-run", "--since", "2999-01-01"]
    )
    assert "0 erasure(s)" in later.output
