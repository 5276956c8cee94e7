"""Salted scrypt hashes for client secrets, compared in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_secret(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_secret(secret: str, *, n: int = 2**14, r: int = 8, p: int = 1) -> str:
    """`scrypt$n$r$p$salt$hash`: the cost travels with the hash so it can be raised later."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=2**27, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_secret(secret: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        computed = hashlib.scrypt(
            secret.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), maxmem=2**27, dklen=32
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed, _unb64(digest))


# A well-formed hash of a random secret, verified on unknown client ids so that a miss
# costs as much time as a wrong secret (no client enumeration by timing).
def decoy_hash(n: int) -> str:
    return hash_secret(secrets.token_urlsafe(16), n=n)


def fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
