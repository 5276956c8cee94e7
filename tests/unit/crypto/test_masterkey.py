"""Master keys: CDP_MASTER_KEY forms, the key file, the development key file, versions."""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from pathlib import Path

import pytest

from cdp.config import Settings
from cdp.crypto import LocalMasterKeys, MasterKeyConfigError, MasterKeyProvider, master_key_provider
from cdp.crypto.masterkey import add_version, create_dev_key_file, parse_env, retire_version
from cdp.errors import MasterKeyUnavailable

K1, K2 = bytes([1] * 32), bytes([2] * 32)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_env_single_key_is_k1() -> None:
    assert parse_env(b64(K1)) == ("k1", {"k1": K1})
    assert parse_env(base64.urlsafe_b64encode(K1).decode().rstrip("=")) == ("k1", {"k1": K1})


def test_env_versioned_keys_first_is_current() -> None:
    current, keys = parse_env(f"k2:{b64(K2)}, k1:{b64(K1)}")
    assert current == "k2" and keys == {"k2": K2, "k1": K1}
    provider = LocalMasterKeys(keys=keys, current=current)
    assert provider.versions() == ["k2", "k1"]


@pytest.mark.parametrize(
    "value",
    ["", "not-base64!!", b64(bytes(16)), f"k1:{b64(K1)},k1:{b64(K2)}", "bad id:" + b64(K1), "k1"],
)
def test_env_rejects_malformed_values_without_echoing_them(value: str) -> None:
    with pytest.raises(MasterKeyConfigError) as info:
        parse_env(value)
    assert b64(K1) not in str(info.value) and b64(K2) not in str(info.value)


def test_wrap_unwrap_and_associated_data() -> None:
    provider = LocalMasterKeys(keys={"k1": K1})
    assert isinstance(provider, MasterKeyProvider)
    key_id, blob = provider.wrap(b"secret", aad=b"a")
    assert key_id == "k1" and b"secret" not in blob
    assert provider.unwrap("k1", blob, aad=b"a") == b"secret"
    with pytest.raises(MasterKeyUnavailable):
        provider.unwrap("k1", blob, aad=b"b")
    with pytest.raises(MasterKeyUnavailable) as info:
        provider.unwrap("k9", blob, aad=b"a")
    assert info.value.status == 503


def test_key_file_must_be_private(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"current": "k1", "keys": {"k1": b64(K1)}}))
    path.chmod(0o644)
    with pytest.raises(MasterKeyConfigError, match="chmod 600"):
        LocalMasterKeys(path=path).wrap(b"x", aad=b"")
    path.chmod(0o600)
    assert LocalMasterKeys(path=path).current_id == "k1"


@pytest.mark.parametrize(
    "doc",
    [
        {"keys": {"k1": "AAAA"}},
        {"current": "k2", "keys": {"k1": b64(K1)}},
        {"current": "k1", "keys": {"k1": "AAAA"}},
        {"current": "k1", "keys": []},
    ],
)
def test_key_file_rejects_bad_documents(tmp_path: Path, doc: object) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(doc))
    path.chmod(0o600)
    with pytest.raises(MasterKeyConfigError):
        LocalMasterKeys(path=path).versions()


def test_dev_key_file_is_created_lazily_with_a_loud_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(data_dir=tmp_path / "state", master_key=None, master_key_file=None)
    provider = master_key_provider(settings)
    path = tmp_path / "state" / "master-key.json"
    assert not path.exists()  # building the provider has no side effect (openapi export)
    with caplog.at_level(logging.WARNING, logger="cdp.crypto"):
        assert provider.current_id == "k1"
    assert path.stat().st_mode & 0o777 == 0o600
    assert any("DEVELOPMENT MASTER KEY" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cdp.crypto"):
        master_key_provider(settings).versions()
    assert not caplog.records  # warned once, when created


def test_dev_key_file_creation_race_leaves_one_key(tmp_path: Path) -> None:
    path = tmp_path / "master-key.json"
    threads = [threading.Thread(target=create_dev_key_file, args=(path,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert list(json.loads(path.read_text())["keys"]) == ["k1"]
    assert [p.name for p in tmp_path.iterdir()] == ["master-key.json"]


def test_settings_choose_the_provider(tmp_path: Path) -> None:
    from_env = master_key_provider(Settings(master_key=b64(K1), data_dir=tmp_path))
    assert from_env.path is None and from_env.current_id == "k1"
    path = tmp_path / "k.json"
    create_dev_key_file(path)
    from_file = master_key_provider(Settings(master_key_file=path, data_dir=tmp_path))
    assert from_file.path == path
    with pytest.raises(MasterKeyConfigError, match="not both"):
        master_key_provider(Settings(master_key=b64(K1), master_key_file=path))


def test_add_and_retire_versions(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    create_dev_key_file(path)
    provider = LocalMasterKeys(path=path)
    old_id, old_blob = provider.wrap(b"dek", aad=b"x")
    assert add_version(path) == "k2"
    assert os.stat(path).st_mode & 0o777 == 0o600
    # A running process follows the file: new wraps use k2, k1 still unwraps.
    assert provider.wrap(b"dek", aad=b"x")[0] == "k2"
    assert provider.versions() == ["k2", "k1"]
    with pytest.raises(MasterKeyConfigError, match="current"):
        retire_version(path, "k2")
    retire_version(path, "k1")
    assert provider.versions() == ["k2"]
    # Retired from the file, yet still in this process's memory for in-flight work.
    assert provider.unwrap(old_id, old_blob, aad=b"x") == b"dek"
    with pytest.raises(MasterKeyUnavailable):
        LocalMasterKeys(path=path).unwrap(old_id, old_blob, aad=b"x")
    assert add_version(path) == "k3"


def test_a_process_started_earlier_learns_new_versions(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    create_dev_key_file(path)
    early = LocalMasterKeys(path=path)
    assert early.current_id == "k1"
    add_version(path)
    later = LocalMasterKeys(path=path)
    key_id, blob = later.wrap(b"dek", aad=b"y")
    assert key_id == "k2"
    assert early.unwrap(key_id, blob, aad=b"y") == b"dek"
