"""A TEST DOUBLE of HashiCorp Vault's transit secrets engine, served over real HTTP.

There is no Vault binary on the test machines, so this in-process server implements the
documented transit endpoints the Vault provider uses, closely enough for httpx, retries and
error handling to be exercised for real: encrypt, decrypt and rewrap (single and
``batch_input``), read key, rotate key, key config (min_decryption_version). Keys are
versioned; ciphertext is ``vault:vN:`` + base64(nonce || AES-256-GCM ciphertext), so it is real
encryption. Auth is ``X-Vault-Token``, namespaces ``X-Vault-Namespace``, errors
``{"errors": [...]}`` with Vault's status codes (403 permission denied, 400 bad input, 503
sealed). It is not Vault and is never used outside tests.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_PATH = re.compile(
    r"/v1/(?P<mount>[A-Za-z0-9_./-]+?)/(?P<op>encrypt|decrypt|rewrap|keys)/(?P<rest>.+)"
)
_CT = re.compile(r"vault:v([0-9]+):(.+)")


class _ItemError(Exception):
    pass


@dataclass
class _Key:
    versions: dict[int, bytes] = field(default_factory=dict)
    created: dict[int, int] = field(default_factory=dict)
    min_decryption_version: int = 1

    @property
    def latest(self) -> int:
        return max(self.versions)

    def rotate(self) -> None:
        n = max(self.versions, default=0) + 1
        self.versions[n] = os.urandom(32)
        self.created[n] = int(time.time())


class TransitDouble:
    """The test double: ``with TransitDouble(token=...) as vault: vault.addr``."""

    def __init__(
        self,
        *,
        token: str,
        namespace: str | None = None,
        mount: str = "transit",
        keys: tuple[str, ...] = ("cdp",),
        read_key_allowed: bool = True,
    ) -> None:
        self.token = token
        self.namespace = namespace
        self.mount = mount
        self.read_key_allowed = read_key_allowed
        self.keys: dict[str, _Key] = {}
        for name in keys:
            self.keys[name] = _Key()
            self.keys[name].rotate()
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str, int]] = []  # (method, path, batch size)
        self._faults: list[int] = []  # statuses answered to the next requests
        self._server: ThreadingHTTPServer | None = None
        self._conns: set[socket.socket] = set()
        self._thread: threading.Thread | None = None
        self.port = 0

    # --- control ------------------------------------------------------------------------------

    @property
    def addr(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TransitDouble:
        handler = type("Handler", (_Handler,), {"double": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Vault down: the port stops accepting connections (start() serves it again)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self.lock:
            for conn in list(self._conns):  # kept-alive connections drop too
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self._conns.clear()

    def __enter__(self) -> TransitDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_next(self, n: int, status: int = 503) -> None:
        """The next n requests get this status (503: sealed, 500: internal error)."""
        with self.lock:
            self._faults += [status] * n

    def rotate(self, name: str = "cdp") -> None:
        with self.lock:
            self.keys[name].rotate()

    def calls(self, op: str) -> list[tuple[str, str, int]]:
        return [r for r in self.requests if f"/{op}/" in r[1]]

    # --- transit ------------------------------------------------------------------------------

    def _seal(self, key: _Key, plaintext_b64: str, version: int | None) -> dict[str, Any]:
        try:
            plaintext = base64.b64decode(plaintext_b64, validate=True)
        except (binascii.Error, ValueError):
            raise _ItemError("failed to base64-decode plaintext") from None
        version = version or key.latest
        if version not in key.versions:
            raise _ItemError("invalid key version")
        nonce = os.urandom(12)
        body = nonce + AESGCM(key.versions[version]).encrypt(nonce, plaintext, None)
        ct = f"vault:v{version}:{base64.b64encode(body).decode()}"
        return {"ciphertext": ct, "key_version": version}

    def _open(self, key: _Key, ciphertext: str) -> bytes:
        match = _CT.fullmatch(ciphertext or "")
        if match is None:
            raise _ItemError("invalid ciphertext: no prefix")
        version = int(match.group(1))
        if version < key.min_decryption_version:
            raise _ItemError("ciphertext or signature version is disallowed by policy (too old)")
        if version not in key.versions:
            raise _ItemError("invalid key version")
        try:
            body = base64.b64decode(match.group(2), validate=True)
            return AESGCM(key.versions[version]).decrypt(body[:12], body[12:], None)
        except (binascii.Error, ValueError, InvalidTag):
            raise _ItemError("cipher: message authentication failed") from None

    def _item(self, op: str, key: _Key, item: dict[str, Any]) -> dict[str, Any]:
        version = item.get("key_version")
        if op == "encrypt":
            return self._seal(key, str(item.get("plaintext", "")), version)
        plaintext = self._open(key, str(item.get("ciphertext", "")))
        if op == "decrypt":
            return {"plaintext": base64.b64encode(plaintext).decode()}
        return self._seal(key, base64.b64encode(plaintext).decode(), version)

    def handle(self, method: str, path: str, headers: Any, body: dict[str, Any]) -> tuple[int, Any]:
        with self.lock:
            batch = body.get("batch_input")
            self.requests.append((method, path, len(batch) if isinstance(batch, list) else 1))
            if self._faults:
                status = self._faults.pop(0)
                return status, {"errors": ["Vault is sealed" if status == 503 else "internal"]}
            if headers.get("X-Vault-Token") != self.token:
                return 403, {"errors": ["permission denied"]}
            if (headers.get("X-Vault-Namespace") or None) != self.namespace:
                return 403, {"errors": ["permission denied"]}
            match = _PATH.fullmatch(path)
            if match is None or match["mount"] != self.mount:
                return 404, {"errors": [f"no handler for route {path!r}"]}
            op, rest = match["op"], match["rest"]
            if op == "keys":
                return self._keys(method, rest, body)
            key = self.keys.get(rest)
            if method != "POST":
                return 405, {"errors": ["unsupported operation"]}
            if key is None:
                return 400, {"errors": ["encryption key not found"]}
            if isinstance(batch, list):
                results, failed = [], False
                for item in batch:
                    try:
                        results.append(self._item(op, key, item))
                    except _ItemError as exc:
                        results.append({"error": str(exc)})
                        failed = True
                # Vault answers 400 when any item failed, still listing every item's result.
                return (400 if failed else 200), {"data": {"batch_results": results}}
            try:
                return 200, {"data": self._item(op, key, body)}
            except _ItemError as exc:
                return 400, {"errors": [str(exc)]}

    def _keys(self, method: str, rest: str, body: dict[str, Any]) -> tuple[int, Any]:
        name, _, action = rest.partition("/")
        key = self.keys.get(name)
        if key is None:
            return 404, {"errors": []}
        if method == "GET" and not action:
            if not self.read_key_allowed:
                return 403, {"errors": ["permission denied"]}
            return 200, {"data": self._key_doc(name, key)}
        if method == "POST" and action == "rotate":
            key.rotate()
            return 200, {"data": self._key_doc(name, key)}
        if method == "POST" and action == "config":
            if "min_decryption_version" in body:
                key.min_decryption_version = int(body["min_decryption_version"])
            return 200, {"data": self._key_doc(name, key)}
        return 405, {"errors": ["unsupported operation"]}

    @staticmethod
    def _key_doc(name: str, key: _Key) -> dict[str, Any]:
        return {
            "name": name,
            "type": "aes256-gcm96",
            "keys": {str(v): t for v, t in key.created.items() if v >= key.min_decryption_version},
            "latest_version": key.latest,
            "min_decryption_version": key.min_decryption_version,
            "min_encryption_version": 0,
            "supports_encryption": True,
            "supports_decryption": True,
            "derived": False,
        }


class _Handler(BaseHTTPRequestHandler):
    double: TransitDouble
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.double.lock:
            self.double._conns.add(self.connection)

    def finish(self) -> None:
        with self.double.lock:
            self.double._conns.discard(self.connection)
        super().finish()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            status, doc = 400, {"errors": ["failed to parse JSON input"]}
        else:
            status, doc = self.double.handle(self.command, self.path, self.headers, body)
        out = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = _serve
    do_POST = _serve
    do_PUT = _serve
