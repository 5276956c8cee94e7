"""The audit signing key (Ed25519): from CDP_AUDIT_SIGNING_KEY_FILE, or a development key file."""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from cdp.audit.chain import key_id

log = logging.getLogger("cdp.audit")

ALGORITHM = "Ed25519"
DEV_KEY_FILE = "audit-signing-key.pem"


class SigningKeyError(ValueError):
    """The configured signing key file is missing, unreadable or not an Ed25519 private key."""


@dataclass(frozen=True, slots=True)
class Signer:
    """Signs checkpoints and export manifests; the key id names the public key that verifies."""

    private_key: Ed25519PrivateKey
    key_id: str
    public_raw: bytes

    @classmethod
    def of(cls, private_key: Ed25519PrivateKey) -> Signer:
        raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return cls(private_key, key_id(raw), raw)

    def sign(self, message: bytes) -> str:
        return self.private_key.sign(message).hex()

    @property
    def public_pem(self) -> str:
        return public_pem(self.public_raw)


def public_pem(raw: bytes) -> str:
    key = Ed25519PublicKey.from_public_bytes(raw)
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def verify_signature(public_raw: bytes, signature_hex: str, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _create_dev_key(key_file: Path) -> None:
    """Writes a new key aside, then links it into place: a process or thread starting at the
    same moment reads either no file or a whole one, and only the first one's key is kept."""
    key_file.parent.mkdir(parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    draft = key_file.with_name(f".{key_file.name}.{os.getpid()}.{secrets.token_hex(4)}")
    draft.write_bytes(pem)
    draft.chmod(0o600)
    try:
        os.link(draft, key_file)
    except FileExistsError:
        return  # another process made it first: use that one
    finally:
        draft.unlink()
    log.warning(
        "DEVELOPMENT audit signing key created at %s: set CDP_AUDIT_SIGNING_KEY_FILE "
        "in production and publish its public key to your auditors",
        key_file.name,
    )


def load_signer(key_file: Path | None, data_dir: Path) -> Signer:
    """The configured key, or a development key created once in data_dir with a loud warning."""
    if key_file is None:
        key_file = data_dir / DEV_KEY_FILE
        if not key_file.exists():
            _create_dev_key(key_file)
    try:
        key = load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SigningKeyError(f"audit signing key {key_file.name}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"audit signing key {key_file.name} is not an Ed25519 private key")
    return Signer.of(key)


def cached_signer(cache: dict[str, Any], key_file: Path | None, data_dir: Path) -> Signer:
    """The process's signer, loaded once into `cache` (a Runtime's extras)."""
    signer = cache.get("audit_signer")
    if not isinstance(signer, Signer):
        signer = load_signer(key_file, data_dir)
        cache["audit_signer"] = signer
    return signer
