"""HashiCorp Vault transit as the master-key provider: Vault wraps and unwraps the data keys.

A data key goes to ``POST /v1/<mount>/encrypt/<key>`` and comes back as ``vault:vN:<base64>``,
which the key store keeps as the wrapped blob; ``vN`` is the master-key version, so
``cdp keys status`` counts data keys per Vault key version without asking Vault. ``cdp keys
rotate`` asks Vault for a new version (``keys/<key>/rotate``) and moves every data key to it
with ``rewrap``, so the data keys never leave Vault in plaintext during a rotation.

Vault's ``associated_data`` is not used because ``rewrap`` cannot carry it; the plaintext sent
to Vault starts with a digest of the associated data instead (checked on unwrap, and
authenticated by GCM inside Vault), so a wrapped key still only unwraps as its own subject's.
The token is sent only in ``X-Vault-Token``; it never appears in a log line or an error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import random
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from cdp.errors import CdpError, MasterKeyUnavailable

log = logging.getLogger("cdp.crypto")

_CIPHERTEXT = re.compile(r"vault:v([0-9]{1,9}):[A-Za-z0-9+/=]+")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_MOUNT = re.compile(r"[A-Za-z0-9_.-]{1,128}(/[A-Za-z0-9_.-]{1,128}){0,7}")
_BINDING = 16  # bytes of SHA-256(associated data) in front of each wrapped data key
BATCH = 500  # items per batch_input request
KEY_INFO_SECONDS = 30.0  # how long the key's version list is trusted before reading it again
_PROBE = base64.b64encode(b"cdp version probe").decode()


class KmsUnavailable(CdpError):
    """The key management service (Vault) did not answer, or refused this server's token."""

    status = 503
    code = "kms_unavailable"
    title = "Key management service unavailable"


def kek_id(version: int) -> str:
    return f"v{version}"


def version_of(ciphertext: str) -> int:
    """The Vault key version a ``vault:vN:...`` ciphertext names (ValueError if malformed)."""
    match = _CIPHERTEXT.fullmatch(ciphertext)
    if match is None:
        raise ValueError("not a Vault transit ciphertext")
    return int(match.group(1))


def _binding(aad: bytes) -> bytes:
    return hashlib.sha256(aad).digest()[:_BINDING]


class VaultTransitKeys:
    """MasterKeyProvider over Vault's transit engine (one named key, versioned by Vault).

    Besides wrap/unwrap it offers wrap_many, unwrap_many and rewrap_many (one ``batch_input``
    request per BATCH items), which Crypto and the rotation use when a provider has them.
    """

    def __init__(
        self,
        *,
        addr: str,
        key: str,
        token: str | None = None,
        token_file: Path | None = None,
        namespace: str | None = None,
        mount: str = "transit",
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.1,
        verify: bool | str = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        parts = urlsplit(addr)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("CDP_VAULT_ADDR must be an http(s) URL such as https://vault:8200")
        if (token is None) == (token_file is None):
            raise ValueError("set CDP_VAULT_TOKEN or CDP_VAULT_TOKEN_FILE (one of them)")
        if not _NAME.fullmatch(key):
            raise ValueError("CDP_VAULT_TRANSIT_KEY must be 1-128 of A-Z a-z 0-9 _ . -")
        mount = mount.strip("/")
        if not _MOUNT.fullmatch(mount):
            raise ValueError("CDP_VAULT_TRANSIT_MOUNT must be a path of A-Z a-z 0-9 _ . -")
        self.addr = addr.rstrip("/")
        self.key = key
        self.mount = mount
        self.namespace = namespace.strip("/") if namespace else None
        self.retries = retries
        self.backoff = backoff
        self._token = token
        self._token_file = token_file
        self._token_stamp: tuple[int, int, int] | None = None
        self._lock = threading.Lock()
        # (latest version, versions still decryptable, when read) from keys/<key>.
        self._info: tuple[int, list[int], float] | None = None
        self._seen = 0  # the newest version any answer named
        self._client = httpx.Client(
            base_url=self.addr,
            timeout=httpx.Timeout(timeout),
            verify=verify,
            transport=transport,
            headers={"X-Vault-Request": "true"},
        )

    def __repr__(self) -> str:  # never the token
        return f"VaultTransitKeys(addr={self.addr!r}, mount={self.mount!r}, key={self.key!r})"

    def close(self) -> None:
        self._client.close()

    # --- HTTP ---------------------------------------------------------------------------------

    def _current_token(self) -> str:
        if self._token_file is None:
            assert self._token is not None
            return self._token
        with self._lock:
            try:
                st = self._token_file.stat()
                stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
                if stamp != self._token_stamp:  # a Vault Agent sink renews the token in place
                    self._token = self._token_file.read_text(encoding="utf-8").strip()
                    self._token_stamp = stamp
            except OSError as exc:
                raise KmsUnavailable("the Vault token file cannot be read") from exc
        if not self._token:
            raise KmsUnavailable("the Vault token file is empty")
        return self._token

    def _headers(self) -> dict[str, str]:
        headers = {"X-Vault-Token": self._current_token()}
        if self.namespace:
            headers["X-Vault-Namespace"] = self.namespace
        return headers

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        denied_ok: bool = False,
        retry: bool = True,
    ) -> tuple[int, dict[str, Any]]:
        """One Vault request with retries on no answer, 5xx and 429; (status, JSON body).

        KmsUnavailable when Vault never answered usefully or refused the token (401/403,
        unless denied_ok: then the caller has another way). retry=False for a request that
        must not be repeated blindly (rotating the key).
        """
        url = f"/v1/{self.mount}/{path}"
        failure = ""
        attempts = self.retries + 1 if retry else 1
        for attempt in range(attempts):
            if attempt:
                pause = min(self.backoff * 2 ** (attempt - 1), 2.0)
                time.sleep(pause * random.uniform(0.5, 1.0))
            try:
                response = self._client.request(method, url, json=body, headers=self._headers())
            except httpx.TransportError as exc:
                failure = f"no answer: {type(exc).__name__}"
                continue
            if response.status_code >= 500 or response.status_code == 429:
                failure = f"HTTP {response.status_code}"
                continue
            if response.status_code in (401, 403) and not denied_ok:
                log.error(
                    "Vault at %s refused the token (HTTP %d) for %s %s: check CDP_VAULT_TOKEN "
                    "or CDP_VAULT_TOKEN_FILE, CDP_VAULT_NAMESPACE and the token's policy",
                    self.addr,
                    response.status_code,
                    method,
                    url,
                )
                raise KmsUnavailable(
                    f"the key management service refused this server's credentials "
                    f"(HTTP {response.status_code})"
                )
            return response.status_code, self._json(response)
        log.warning(
            "Vault at %s: %s %s failed after %d attempt(s): %s",
            self.addr,
            method,
            url,
            attempts,
            failure,
        )
        raise KmsUnavailable(f"the key management service did not answer ({failure})")

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        if response.status_code == 204 or not response.content:
            return {}
        try:
            doc = response.json()
        except ValueError:
            return {}
        return doc if isinstance(doc, dict) else {}

    def _errors(self, doc: dict[str, Any]) -> str:
        """Vault's error messages, shortened, with the token blanked should Vault echo it."""
        text = "; ".join(str(e) for e in doc.get("errors") or []) or "no reason given"
        if self._token:
            text = text.replace(self._token, "[token]")
        return text[:200]

    def _data(self, status: int, doc: dict[str, Any], what: str) -> dict[str, Any]:
        data = doc.get("data")
        if status == 200 and isinstance(data, dict):
            return data
        if status == 404 or "not found" in self._errors(doc):
            raise KmsUnavailable(f"transit key {self.key!r} not found on mount {self.mount!r}")
        raise KmsUnavailable(f"Vault refused to {what} (HTTP {status}: {self._errors(doc)})")

    def _batch(self, op: str, inputs: list[dict[str, str]]) -> list[dict[str, Any]]:
        """batch_input in chunks; each result is Vault's item (with ``error`` when it failed)."""
        results: list[dict[str, Any]] = []
        for start in range(0, len(inputs), BATCH):
            chunk = inputs[start : start + BATCH]
            status, doc = self._call("POST", f"{op}/{self.key}", {"batch_input": chunk})
            # Vault answers 400 when any item failed, with the per-item errors in batch_results.
            items = (doc.get("data") or {}).get("batch_results")
            if status not in (200, 400) or not isinstance(items, list) or len(items) != len(chunk):
                self._data(status, doc, op)
                raise KmsUnavailable(f"Vault's {op} answer did not match the request")
            results.extend(item if isinstance(item, dict) else {} for item in items)
        return results

    # --- versions -----------------------------------------------------------------------------

    def _saw(self, version: int) -> None:
        if version > self._seen:
            self._seen = version

    def _key_info(self, *, fresh: bool = False) -> tuple[int, list[int]]:
        info = self._info
        if info is not None and not fresh and time.monotonic() - info[2] < KEY_INFO_SECONDS:
            return info[0], info[1]
        status, doc = self._call("GET", f"keys/{self.key}", denied_ok=True)
        if status in (401, 403):
            # A token allowed to encrypt but not to read the key: learn the version by probing
            # (a token refused here too is refused with the usual error).
            status, doc = self._call("POST", f"encrypt/{self.key}", {"plaintext": _PROBE})
            latest = int(self._wrapped(self._data(status, doc, "encrypt")["ciphertext"])[0][1:])
            versions = [latest]
        else:
            data = self._data(status, doc, "read the key")
            latest = int(data.get("latest_version") or 0)
            floor = int(data.get("min_decryption_version") or 1)
            known = sorted(
                (int(v) for v in data.get("keys") or {} if int(v) >= floor), reverse=True
            )
            versions = known or [latest]
        self._saw(latest)
        self._info = (latest, versions, time.monotonic())
        return latest, versions

    @property
    def current_id(self) -> str:
        latest, _ = self._key_info()
        return kek_id(max(latest, self._seen))

    def versions(self) -> list[str]:
        latest, known = self._key_info(fresh=True)
        current = max(latest, self._seen)
        return [kek_id(current), *(kek_id(v) for v in known if v != current)]

    def rotate_master(self) -> str:
        """Asks Vault for a new key version (needs ``update`` on keys/<key>/rotate)."""
        status, doc = self._call("POST", f"keys/{self.key}/rotate", retry=False)
        if status not in (200, 204):
            self._data(status, doc, "rotate the key")
        latest, _ = self._key_info(fresh=True)
        return kek_id(max(latest, self._seen))

    # --- wrapping -----------------------------------------------------------------------------

    def _wrapped(self, ciphertext: object) -> tuple[str, bytes]:
        text = str(ciphertext)
        try:
            version = version_of(text)
        except ValueError as exc:
            raise KmsUnavailable("Vault returned a malformed ciphertext") from exc
        self._saw(version)
        return kek_id(version), text.encode("ascii")

    def wrap(self, data: bytes, *, aad: bytes) -> tuple[str, bytes]:
        plaintext = base64.b64encode(_binding(aad) + data).decode()
        status, doc = self._call("POST", f"encrypt/{self.key}", {"plaintext": plaintext})
        return self._wrapped(self._data(status, doc, "encrypt")["ciphertext"])

    def wrap_many(self, items: Sequence[tuple[bytes, bytes]]) -> list[tuple[str, bytes]]:
        inputs = [{"plaintext": base64.b64encode(_binding(aad) + d).decode()} for d, aad in items]
        out = []
        for item in self._batch("encrypt", inputs):
            if "error" in item or "ciphertext" not in item:
                raise KmsUnavailable(f"Vault refused to encrypt: {self._errors(item)}")
            out.append(self._wrapped(item["ciphertext"]))
        return out

    @staticmethod
    def _ciphertext(key_id: str, blob: bytes) -> str:
        try:
            text = blob.decode("ascii")
            version = version_of(text)
        except (UnicodeDecodeError, ValueError) as exc:
            raise MasterKeyUnavailable(
                f"a data key wrapped under {key_id[:32]} is not a Vault transit ciphertext"
            ) from exc
        if kek_id(version) != key_id:
            raise MasterKeyUnavailable("a wrapped data key does not match its recorded version")
        return text

    @staticmethod
    def _opened(key_id: str, plaintext: object, aad: bytes) -> bytes:
        try:
            raw = base64.b64decode(str(plaintext), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MasterKeyUnavailable("Vault returned a malformed plaintext") from exc
        if not hmac.compare_digest(raw[:_BINDING], _binding(aad)):
            raise MasterKeyUnavailable(
                f"a data key unwrapped with master key version {key_id[:32]} belongs elsewhere"
            )
        return raw[_BINDING:]

    def _refused(self, key_id: str, doc: dict[str, Any]) -> MasterKeyUnavailable:
        return MasterKeyUnavailable(
            f"Vault could not unwrap a data key under {key_id[:32]}: {self._errors(doc)}"
        )

    def unwrap(self, key_id: str, blob: bytes, *, aad: bytes) -> bytes:
        ciphertext = self._ciphertext(key_id, blob)
        status, doc = self._call("POST", f"decrypt/{self.key}", {"ciphertext": ciphertext})
        if status == 400 and "not found" not in self._errors(doc):
            raise self._refused(key_id, doc)  # bad or too old ciphertext: this key only
        return self._opened(key_id, self._data(status, doc, "decrypt")["plaintext"], aad)

    def unwrap_many(
        self, items: Sequence[tuple[str, bytes, bytes]]
    ) -> list[bytes | MasterKeyUnavailable]:
        """Each data key, or the MasterKeyUnavailable that one key alone raised."""
        out: list[bytes | MasterKeyUnavailable | None] = [None] * len(items)
        inputs, where = [], []
        for n, (key_id, blob, _) in enumerate(items):
            try:
                inputs.append({"ciphertext": self._ciphertext(key_id, blob)})
                where.append(n)
            except MasterKeyUnavailable as exc:
                out[n] = exc
        for n, item in zip(where, self._batch("decrypt", inputs), strict=True):
            key_id, _, aad = items[n]
            if "error" in item or "plaintext" not in item:
                out[n] = self._refused(key_id, item)
                continue
            try:
                out[n] = self._opened(key_id, item["plaintext"], aad)
            except MasterKeyUnavailable as exc:
                out[n] = exc
        return [r if r is not None else MasterKeyUnavailable() for r in out]

    def rewrap_many(
        self, items: Sequence[tuple[str, bytes, bytes]]
    ) -> list[tuple[str, bytes] | MasterKeyUnavailable]:
        """Each key re-encrypted by Vault under its latest version, never leaving Vault."""
        out: list[tuple[str, bytes] | MasterKeyUnavailable | None] = [None] * len(items)
        inputs, where = [], []
        for n, (key_id, blob, _) in enumerate(items):
            try:
                inputs.append({"ciphertext": self._ciphertext(key_id, blob)})
                where.append(n)
            except MasterKeyUnavailable as exc:
                out[n] = exc
        for n, item in zip(where, self._batch("rewrap", inputs), strict=True):
            if "error" in item or "ciphertext" not in item:
                out[n] = self._refused(items[n][0], item)
            else:
                out[n] = self._wrapped(item["ciphertext"])
        return [r if r is not None else MasterKeyUnavailable() for r in out]
