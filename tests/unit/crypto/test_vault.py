"""The Vault transit master-key provider, against a real-HTTP test double of Vault transit."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update
from tests.unit.crypto.vault_double import TransitDouble
from typer.testing import CliRunner

from cdp.cli import app as cli
from cdp.config import Settings
from cdp.crypto import (
    Crypto,
    KmsUnavailable,
    MasterKeyConfigError,
    VaultTransitKeys,
    master_key_provider,
)
from cdp.crypto import keystore as store
from cdp.errors import MasterKeyUnavailable, SubjectKeyMissing

TOKEN = "hvs.TEST-double-token-4f9c2a"


@pytest.fixture
def vault() -> Iterator[TransitDouble]:
    with TransitDouble(token=TOKEN) as double:
        yield double


def _provider(vault: TransitDouble, **kw: object) -> VaultTransitKeys:
    options: dict[str, object] = {"token": TOKEN, "backoff": 0.01, **kw}
    return VaultTransitKeys(addr=vault.addr, key="cdp", **options)  # type: ignore[arg-type]


@pytest.fixture
def vcrypto(keystore: Engine, vault: TransitDouble) -> Crypto:
    return Crypto(keystore, _provider(vault))


def _wrapped(keystore: Engine) -> dict[str, tuple[str, bytes]]:
    with keystore.connect() as conn:
        rows = conn.execute(
            select(
                store.subject_key.c.subject_id,
                store.subject_key.c.kek_id,
                store.subject_key.c.wrapped,
            )
        ).all()
    return {sid: (kek, bytes(blob)) for sid, kek, blob in rows}


def test_round_trip_keeps_only_vault_ciphertext_in_the_key_store(
    vcrypto: Crypto, keystore: Engine, vault: TransitDouble
) -> None:
    ct = vcrypto.seal("s-1", "profile", "name", "王芳")
    assert vcrypto.open("s-1", "profile", "name", ct) == "王芳"
    kek, blob = _wrapped(keystore)["s-1"]
    assert kek == "v1" and blob.startswith(b"vault:v1:")
    # A fresh process (new provider, nothing cached) reads it through Vault again.
    assert Crypto(keystore, _provider(vault)).open("s-1", "profile", "name", ct) == "王芳"
    assert vcrypto.status().deks_per_version == {"v1": 1}


def test_batches_wrap_and_unwrap_in_one_request_each(
    vcrypto: Crypto, keystore: Engine, vault: TransitDouble
) -> None:
    ids = [vcrypto.new_subject_id() for _ in range(40)]  # one batch of new keys
    assert [n for _, _, n in vault.calls("encrypt")] == [64]
    sealed = {s: vcrypto.seal(s, "profile", "name", s) for s in ids}
    vault.requests.clear()
    keys = Crypto(keystore, _provider(vault)).keys_for(ids)
    assert all(keys.open(s, "profile", "name", sealed[s]) == s for s in ids)
    assert [n for _, _, n in vault.calls("decrypt")] == [40]


def test_a_wrapped_key_only_unwraps_as_its_own_subjects(vcrypto: Crypto, keystore: Engine) -> None:
    vcrypto.keys_for(["a", "b"], create=True)
    ct = vcrypto.seal("a", "profile", "name", "x")
    blob_b = _wrapped(keystore)["b"][1]
    with keystore.begin() as conn:
        conn.execute(
            update(store.subject_key)
            .where(store.subject_key.c.subject_id == "a")
            .values(wrapped=blob_b)
        )
    with pytest.raises(MasterKeyUnavailable):
        vcrypto.open("a", "profile", "name", ct)


def test_retries_5xx_with_backoff_then_succeeds(vcrypto: Crypto, vault: TransitDouble) -> None:
    vault.fail_next(2, status=503)
    vcrypto.seal("s", "profile", "name", "x")
    assert len(vault.requests) >= 3


def test_vault_down_is_kms_unavailable_without_the_token(
    vcrypto: Crypto, vault: TransitDouble, caplog: pytest.LogCaptureFixture
) -> None:
    ct = vcrypto.seal("s", "profile", "name", "x")
    vault.stop()
    caplog.set_level(logging.DEBUG)
    with pytest.raises(KmsUnavailable) as err:
        vcrypto.open("s", "profile", "name", ct)
    assert err.value.status == 503 and err.value.code == "kms_unavailable"
    assert "did not answer" in err.value.detail and TOKEN not in err.value.detail
    assert "failed after 4 attempt(s)" in caplog.text and TOKEN not in caplog.text
    vault.fail_next(10, status=500)
    vault.start()  # back, but answering 500 every time: still unavailable after the retries
    with pytest.raises(KmsUnavailable, match="HTTP 500"):
        vcrypto.open("s", "profile", "name", ct)


def test_wrong_token_is_a_clear_error_naming_no_token(
    keystore: Engine, vault: TransitDouble, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "hvs.WRONG-token-8d1e"
    crypto = Crypto(keystore, _provider(vault, token=wrong))
    with pytest.raises(KmsUnavailable, match=r"refused this server's credentials \(HTTP 403\)"):
        crypto.seal("s", "profile", "name", "x")
    assert "CDP_VAULT_TOKEN" in caplog.text
    assert wrong not in caplog.text and TOKEN not in caplog.text
    assert len(vault.requests) == 1  # a refusal is not retried


def test_namespace_header_and_token_file(vault: TransitDouble, tmp_path: Path) -> None:
    vault.namespace = "team-a"
    with pytest.raises(KmsUnavailable):
        _ = _provider(vault).current_id
    token_file = tmp_path / "token"
    token_file.write_text("stale-token\n")
    provider = _provider(vault, token=None, token_file=token_file, namespace="team-a")
    with pytest.raises(KmsUnavailable):
        _ = provider.current_id
    token_file.write_text(TOKEN + "\n")  # a Vault Agent renewed the sink
    assert provider.current_id == "v1"


def test_a_token_that_may_not_read_the_key_learns_the_version_by_encrypting(
    vault: TransitDouble,
) -> None:
    vault.read_key_allowed = False
    vault.rotate()
    provider = _provider(vault)
    assert provider.current_id == "v2" and provider.versions() == ["v2"]


def test_rotation_rewraps_inside_vault(
    vcrypto: Crypto, keystore: Engine, vault: TransitDouble
) -> None:
    sealed = {s: vcrypto.seal(s, "profile", "name", s) for s in ("a", "b", "c")}
    vcrypto.blind_index("email", "a@example.cn")
    provider = vcrypto.provider
    assert isinstance(provider, VaultTransitKeys)
    assert provider.rotate_master() == "v2"
    vault.requests.clear()
    report = vcrypto.rotate(batch=2)
    assert report.target == "v2" and report.rewrapped == 3 and report.failed == 0
    assert report.deks_per_version == {"v2": 3} and report.unused_versions == ["v1"]
    assert [n for _, _, n in vault.calls("rewrap")] == [2, 1]
    assert not [r for r in vault.calls("decrypt") if r[2] > 1]  # data keys never came out
    vault.keys["cdp"].min_decryption_version = 2  # the operator retires v1 in Vault
    fresh = Crypto(keystore, _provider(vault))
    assert all(fresh.open(s, "profile", "name", ct) == s for s, ct in sealed.items())
    assert fresh.blind_index("email", "a@example.cn") == vcrypto.blind_index(
        "email", "a@example.cn"
    )


def test_erasure_still_shreds(vcrypto: Crypto, keystore: Engine, vault: TransitDouble) -> None:
    ct = vcrypto.seal("gone", "profile", "name", "x")
    vcrypto.shred("gone", reason="test erasure")
    assert "gone" not in _wrapped(keystore) and not vcrypto.has_key("gone")
    with pytest.raises(SubjectKeyMissing):
        Crypto(keystore, _provider(vault)).open("gone", "profile", "name", ct)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "CDP_VAULT_ADDR"),
        ({"vault_addr": "http://vault:8200"}, "CDP_VAULT_TOKEN or CDP_VAULT_TOKEN_FILE"),
        ({"vault_addr": "vault:8200", "vault_token": "t"}, "http(s) URL"),
        ({"vault_addr": "http://v", "vault_token": "t", "master_key": "x"}, "unset CDP_MASTER_KEY"),
        ({"vault_addr": "http://v", "vault_token": "t", "vault_transit_key": "a/b"}, "TRANSIT_KEY"),
    ],
)
def test_settings_errors(env: dict[str, str], message: str, tmp_path: Path) -> None:
    settings = Settings(kms_provider="vault", data_dir=tmp_path, **env)  # type: ignore[arg-type]
    with pytest.raises(MasterKeyConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        master_key_provider(settings)


def test_settings_do_not_show_the_token(tmp_path: Path) -> None:
    settings = Settings(kms_provider="vault", vault_addr="http://v", vault_token=TOKEN)
    assert TOKEN not in repr(settings) and TOKEN not in repr(master_key_provider(settings))


@pytest.fixture
def vault_env(
    monkeypatch: pytest.MonkeyPatch, keystore_url: str, tmp_path: Path, vault: TransitDouble
) -> None:
    for name in ("CDP_MASTER_KEY", "CDP_MASTER_KEY_FILE", "CDP_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CDP_KEYSTORE_URL", keystore_url)
    monkeypatch.setenv("CDP_DATA_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("CDP_KMS_PROVIDER", "vault")
    monkeypatch.setenv("CDP_VAULT_ADDR", vault.addr)
    monkeypatch.setenv("CDP_VAULT_TOKEN", TOKEN)


def test_cli_rotate_and_status_with_vault(
    vault_env: None, vcrypto: Crypto, keystore: Engine, vault: TransitDouble
) -> None:
    cts = {s: vcrypto.seal(s, "profile", "name", s) for s in ("a", "b")}
    runner = CliRunner()
    result = runner.invoke(cli, ["keys", "rotate", "--batch", "1"])
    assert result.exit_code == 0, result.output
    assert "Vault transit key cdp rotated: v2 is current" in result.output
    assert "re-wrapped 2 data keys" in result.output
    assert "vault write transit/keys/cdp/config min_decryption_version=2" in result.output
    status = json.loads(runner.invoke(cli, ["keys", "status", "--json"]).output)
    assert status["current"] == "v2" and status["deks_per_version"] == {"v2": 2}
    assert status["versions"] == ["v2", "v1"] and status["unused_versions"] == ["v1"]
    vault.rotate()  # rotated by the Vault operator; cdp only moves the keys along
    result = runner.invoke(cli, ["keys", "rotate", "--rewrap-only", "--json"])
    assert json.loads(result.output)["deks_per_version"] == {"v3": 2}
    assert all(vcrypto.open(s, "profile", "name", ct) == s for s, ct in cts.items())
    assert TOKEN not in result.output


def test_cli_with_vault_down_fails_cleanly(vault_env: None, vault: TransitDouble) -> None:
    vault.stop()
    result = CliRunner().invoke(cli, ["keys", "status"])
    assert result.exit_code != 0 and "did not answer" in result.output
    assert TOKEN not in result.output and "Traceback" not in result.output
