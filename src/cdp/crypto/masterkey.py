"""Master keys (KEKs): the provider interface and the local provider (environment or key file).

A KMS or Vault transit provider implements MasterKeyProvider and replaces LocalMasterKeys; the
rest of crypto/ only ever calls wrap and unwrap, so no master key needs to live in the process.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, cast, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cdp.config import Settings
from cdp.errors import MasterKeyUnavailable

log = logging.getLogger("cdp.crypto")

DEV_KEY_FILE = "master-key.json"
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_NONCE = 12


class MasterKeyConfigError(ValueError):
    """CDP_MASTER_KEY or the key file is malformed; the message never contains key material."""


@runtime_checkable
class MasterKeyProvider(Protocol):
    """Wraps and unwraps data keys under versioned master keys."""

    @property
    def current_id(self) -> str:
        """The version new wraps use."""
        ...

    def wrap(self, data: bytes, *, aad: bytes) -> tuple[str, bytes]:
        """Encrypts data under the current version: (version id, blob)."""
        ...

    def unwrap(self, key_id: str, blob: bytes, *, aad: bytes) -> bytes:
        """Decrypts a blob; MasterKeyUnavailable when the version is unknown or the blob bad."""
        ...

    def versions(self) -> list[str]:
        """Every configured version, current first."""
        ...


@runtime_checkable
class BatchMasterKeyProvider(Protocol):
    """The batch methods of a provider where one call per batch is much cheaper than one per
    key (a remote KMS). Kept apart from MasterKeyProvider so that isinstance never reads
    current_id (a network call for a remote provider)."""

    def wrap_many(self, items: Sequence[tuple[bytes, bytes]]) -> list[tuple[str, bytes]]:
        """wrap for each (data, aad), in order."""
        ...

    def unwrap_many(
        self, items: Sequence[tuple[str, bytes, bytes]]
    ) -> list[bytes | MasterKeyUnavailable]:
        """unwrap for each (key id, blob, aad): the data, or the error of that item alone."""
        ...

    def rewrap_many(
        self, items: Sequence[tuple[str, bytes, bytes]]
    ) -> list[tuple[str, bytes] | MasterKeyUnavailable]:
        """Each (key id, blob, aad) wrapped again under the current version, or its error."""
        ...


def wrap_many(
    provider: MasterKeyProvider, items: Sequence[tuple[bytes, bytes]]
) -> list[tuple[str, bytes]]:
    """wrap for each (data, aad): one request with a batch provider, one call each otherwise."""
    if not items:
        return []
    batch = getattr(provider, "wrap_many", None)  # not isinstance: a Protocol check is slow
    if batch is not None:
        return cast(list[tuple[str, bytes]], batch(items))
    return [provider.wrap(data, aad=aad) for data, aad in items]


def _decode_key(text: str, where: str) -> bytes:
    text = text.strip().replace("-", "+").replace("_", "/")  # base64url accepted too
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MasterKeyConfigError(f"{where}: a master key is not valid base64") from exc
    if len(raw) != 32:
        raise MasterKeyConfigError(f"{where}: a master key must be 32 bytes (base64-encoded)")
    return raw


def _check_id(key_id: str, where: str) -> str:
    if not _KEY_ID.fullmatch(key_id):
        raise MasterKeyConfigError(f"{where}: key id must be 1-32 of A-Z a-z 0-9 _ -")
    return key_id


def parse_env(value: str) -> tuple[str, dict[str, bytes]]:
    """``<b64>`` (id k1) or ``id:b64,id:b64`` (first is current) -> (current, keys)."""
    value = value.strip()
    if not value:
        raise MasterKeyConfigError("CDP_MASTER_KEY is empty")
    if ":" not in value:
        return "k1", {"k1": _decode_key(value, "CDP_MASTER_KEY")}
    keys: dict[str, bytes] = {}
    for item in value.split(","):
        key_id, sep, material = item.strip().partition(":")
        if not sep:
            raise MasterKeyConfigError("CDP_MASTER_KEY: expected id:base64 entries")
        key_id = _check_id(key_id.strip(), "CDP_MASTER_KEY")
        if key_id in keys:
            raise MasterKeyConfigError(f"CDP_MASTER_KEY: key id {key_id} appears twice")
        keys[key_id] = _decode_key(material, "CDP_MASTER_KEY")
    return next(iter(keys)), keys


def read_key_file(path: Path) -> tuple[str, dict[str, bytes]]:
    """Reads ``{"current": id, "keys": {id: b64}}``; refuses a file others can read or write."""
    mode = path.stat().st_mode
    if mode & 0o077:
        raise MasterKeyConfigError(f"{path}: master key file must be private (chmod 600)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        current, entries = doc["current"], doc["keys"]
    except (ValueError, KeyError, TypeError) as exc:
        raise MasterKeyConfigError(f"{path}: expected {{'current': id, 'keys': {{...}}}}") from exc
    if not isinstance(entries, dict) or not isinstance(current, str) or current not in entries:
        raise MasterKeyConfigError(f"{path}: 'current' must name one of 'keys'")
    keys = {
        _check_id(str(k), str(path)): _decode_key(str(v), str(path)) for k, v in entries.items()
    }
    return current, {current: keys[current], **keys}


def _key_doc(current: str, keys: dict[str, bytes]) -> str:
    entries = {k: base64.b64encode(v).decode() for k, v in keys.items()}
    return json.dumps({"current": current, "keys": entries}, indent=2) + "\n"


def _write_private(path: Path, text: str, *, exclusive: bool = False) -> bool:
    """Writes a 0600 file atomically; with exclusive, only when none exists (False if one did)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".master-key-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        if not exclusive:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails when another process created the file first
            except FileExistsError:
                return False
        # A new version must be on disk before any data key is wrapped under it.
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return True
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def add_version(path: Path) -> str:
    """Adds a new random master-key version to a key file and makes it current; returns its id."""
    _, keys = read_key_file(path)
    numbers = [int(k[1:]) for k in keys if re.fullmatch(r"k[0-9]+", k)]
    new_id = f"k{max(numbers, default=0) + 1}"
    while new_id in keys:
        new_id += "x"
    keys[new_id] = secrets.token_bytes(32)
    _write_private(path, _key_doc(new_id, keys))
    return new_id


def retire_version(path: Path, key_id: str) -> None:
    """Removes a (no longer used) version from a key file; the current one cannot be retired."""
    current, keys = read_key_file(path)
    if key_id == current:
        raise MasterKeyConfigError(f"{key_id} is the current master key and cannot be retired")
    if keys.pop(key_id, None) is not None:
        _write_private(path, _key_doc(current, keys))


def create_dev_key_file(path: Path) -> None:
    """Creates a development key file once (safe when several processes start together)."""
    if path.exists():
        return
    created = _write_private(path, _key_doc("k1", {"k1": secrets.token_bytes(32)}), exclusive=True)
    if created:
        log.warning(
            "DEVELOPMENT MASTER KEY created at %s: anyone holding this file can decrypt every "
            "profile; set CDP_MASTER_KEY or CDP_MASTER_KEY_FILE in production",
            path,
        )


class LocalMasterKeys:
    """Master keys held in the process: from CDP_MASTER_KEY, or a key file re-read on change.

    A file-backed provider loads lazily (nothing happens at construction) and looks at the file
    again before each wrap and when asked for a version it does not know, so running servers
    follow `cdp keys rotate`. Versions later retired from the file stay usable in memory.
    """

    def __init__(
        self,
        *,
        keys: dict[str, bytes] | None = None,
        current: str | None = None,
        path: Path | None = None,
        create: bool = False,
    ) -> None:
        if (keys is None) == (path is None):
            raise ValueError("give either keys or a key file path")
        self.path = path
        self._create = create
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        # (current id, configured versions), replaced as one so readers never see a mix.
        self._state: tuple[str, dict[str, AESGCM]] = ("", {})
        self._known: dict[str, AESGCM] = {}
        if keys is not None:
            current = current or next(iter(keys))
            if current not in keys:
                raise MasterKeyConfigError("the current master key id is not among the keys")
            self._install(current, keys)

    def _install(self, current: str, keys: dict[str, bytes]) -> None:
        configured = {key_id: AESGCM(material) for key_id, material in keys.items()}
        self._known = {**self._known, **configured}
        self._state = (current, configured)

    def _refresh(self) -> None:
        if self.path is None:
            return
        with self._lock:
            if self._create and self._stamp is None:
                create_dev_key_file(self.path)
            st = self.path.stat()
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                self._install(*read_key_file(self.path))
                self._stamp = stamp

    @property
    def current_id(self) -> str:
        self._refresh()
        return self._state[0]

    def versions(self) -> list[str]:
        self._refresh()
        current, configured = self._state
        return [current, *(k for k in configured if k != current)]

    def wrap(self, data: bytes, *, aad: bytes) -> tuple[str, bytes]:
        self._refresh()
        key_id, configured = self._state
        nonce = os.urandom(_NONCE)
        return key_id, nonce + configured[key_id].encrypt(nonce, data, aad)

    def unwrap(self, key_id: str, blob: bytes, *, aad: bytes) -> bytes:
        aead = self._known.get(key_id)
        if aead is None:
            self._refresh()
            aead = self._known.get(key_id)
        if aead is None:
            raise MasterKeyUnavailable(f"master key version {key_id[:32]} is not configured")
        try:
            return aead.decrypt(blob[:_NONCE], blob[_NONCE:], aad)
        except InvalidTag as exc:
            raise MasterKeyUnavailable(
                f"a data key could not be unwrapped with master key version {key_id[:32]}"
            ) from exc


def master_key_provider(settings: Settings) -> MasterKeyProvider:
    """The provider the settings describe; a development key file when none is configured."""
    if settings.kms_provider == "vault":
        return _vault_provider(settings)
    if settings.master_key and settings.master_key_file:
        raise MasterKeyConfigError("set CDP_MASTER_KEY or CDP_MASTER_KEY_FILE, not both")
    if settings.master_key:
        current, keys = parse_env(settings.master_key)
        return LocalMasterKeys(keys=keys, current=current)
    if settings.master_key_file:
        return LocalMasterKeys(path=settings.master_key_file)
    return LocalMasterKeys(path=settings.data_dir / DEV_KEY_FILE, create=True)


def _vault_provider(settings: Settings) -> MasterKeyProvider:
    from cdp.crypto.vault import VaultTransitKeys

    if settings.master_key or settings.master_key_file:
        raise MasterKeyConfigError(
            "CDP_KMS_PROVIDER=vault: unset CDP_MASTER_KEY and CDP_MASTER_KEY_FILE"
        )
    if not settings.vault_addr:
        raise MasterKeyConfigError("CDP_KMS_PROVIDER=vault needs CDP_VAULT_ADDR")
    if (settings.vault_token is None) == (settings.vault_token_file is None):
        raise MasterKeyConfigError(
            "CDP_KMS_PROVIDER=vault needs CDP_VAULT_TOKEN or CDP_VAULT_TOKEN_FILE (one of them)"
        )
    try:
        return VaultTransitKeys(
            addr=settings.vault_addr,
            key=settings.vault_transit_key,
            mount=settings.vault_transit_mount,
            token=settings.vault_token.get_secret_value() if settings.vault_token else None,
            token_file=settings.vault_token_file,
            namespace=settings.vault_namespace,
            timeout=settings.vault_timeout_seconds,
            retries=settings.vault_retries,
            verify=str(settings.vault_ca_cert) if settings.vault_ca_cert else True,
        )
    except ValueError as exc:
        raise MasterKeyConfigError(str(exc)) from exc
