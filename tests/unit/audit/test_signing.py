"""The audit signing key: a configured Ed25519 PEM, or one development key however many
processes start at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from cdp.audit.chain import key_id
from cdp.audit.signing import DEV_KEY_FILE, SigningKeyError, load_signer


def test_one_development_key_when_many_start_at_once(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        signers = list(pool.map(lambda _: load_signer(None, tmp_path), range(16)))
    assert len({s.key_id for s in signers}) == 1
    assert [p.name for p in tmp_path.iterdir()] == [DEV_KEY_FILE]
    assert (tmp_path / DEV_KEY_FILE).stat().st_mode & 0o077 == 0


def test_configured_key_and_its_id(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "audit.pem"
    path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    signer = load_signer(path, tmp_path / "unused")
    assert signer.key_id == key_id(signer.public_raw) and len(signer.key_id) == 16
    assert not (tmp_path / "unused").exists()


def test_a_key_that_is_not_ed25519_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ec.pem"
    ec = generate_private_key(SECP256R1())
    path.write_bytes(ec.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    with pytest.raises(SigningKeyError, match="not an Ed25519"):
        load_signer(path, tmp_path)
    with pytest.raises(SigningKeyError):
        load_signer(tmp_path / "missing.pem", tmp_path)
