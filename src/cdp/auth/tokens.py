"""The one hardened wrapper around python-jose; nothing else in cdp imports jose.

It closes python-jose's known gaps: the algorithm is pinned per key and never taken from the
token (no `alg: none`, no HS256-with-a-public-key confusion), aud/iss/exp/iat/sub/jti are
required, an iat in the future or a lifetime over policy is refused, `kid` selects the key,
and tokens over 8 KiB are refused before any parsing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cdp.errors import InvalidToken

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from jose import jwk, jwt
    from jose.exceptions import JOSEError

MAX_TOKEN_BYTES = 8 * 1024
REQUIRED_CLAIMS = ("iss", "aud", "sub", "exp", "iat", "jti")
LEEWAY_SECONDS = 30


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One key and the single algorithm it may be used with."""

    kid: str
    alg: str
    sign_with: Any
    verify_with: Any
    public_jwk: dict[str, Any] | None = None


def hmac_key(secret: str) -> SigningKey:
    kid = "hs-" + hashlib.sha256(secret.encode()).hexdigest()[:16]
    return SigningKey(kid=kid, alg="HS256", sign_with=secret, verify_with=secret)


def private_key_file(path: Path) -> SigningKey:
    """An RSA (RS256) or P-256 (ES256) private key in PEM; its public half goes to the JWKS."""
    pem = path.read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    if isinstance(key, rsa.RSAPrivateKey):
        alg = "RS256"
    elif isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1":
        alg = "ES256"
    else:
        raise ValueError("JWT private key must be RSA or EC P-256")
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    kid = alg.lower() + "-" + hashlib.sha256(public_pem).hexdigest()[:16]
    public = jwk.construct(public_pem.decode(), alg).to_dict()
    public.update({"kid": kid, "use": "sig", "alg": alg})
    return SigningKey(
        kid=kid, alg=alg, sign_with=pem.decode(), verify_with=public_pem.decode(), public_jwk=public
    )


def _b64json(segment: str) -> dict[str, Any]:
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value


class TokenService:
    """Issues and verifies JWTs with a fixed set of keys, issuer, audience and lifetime cap."""

    def __init__(
        self,
        keys: list[SigningKey],
        *,
        issuer: str,
        audience: str,
        max_ttl_seconds: int,
    ) -> None:
        if not keys:
            raise ValueError("at least one signing key")
        self._keys = {k.kid: k for k in keys}
        self._active = keys[0]
        self.issuer = issuer
        self.audience = audience
        self.max_ttl_seconds = max_ttl_seconds

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.public_jwk for k in self._keys.values() if k.public_jwk]}

    def issue(
        self, *, subject: str, ttl_seconds: int, claims: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        if ttl_seconds <= 0 or ttl_seconds > self.max_ttl_seconds:
            raise ValueError("token lifetime outside policy")
        now = int(time.time())
        body = {
            **claims,
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": now + ttl_seconds,
            "jti": secrets.token_urlsafe(16),
        }
        key = self._active
        token = jwt.encode(body, key.sign_with, algorithm=key.alg, headers={"kid": key.kid})
        return str(token), body

    def verify(self, token: str) -> dict[str, Any]:
        """Claims of a valid token, or InvalidToken with a reason that holds no token content."""
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken("token too large")
        parts = token.split(".")
        if len(parts) != 3:
            raise InvalidToken("malformed token")
        try:
            header = _b64json(parts[0])
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidToken("malformed token header") from exc
        key = self._keys.get(str(header.get("kid", "")))
        if key is None:
            raise InvalidToken("unknown signing key")
        if header.get("alg") != key.alg:
            raise InvalidToken("algorithm not accepted for this key")
        options: dict[str, bool | int] = {f"require_{c}": True for c in REQUIRED_CLAIMS}
        options.update({"leeway": LEEWAY_SECONDS, "verify_at_hash": False})
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.verify_with,
                algorithms=[key.alg],
                audience=self.audience,
                issuer=self.issuer,
                options=options,
            )
        except JOSEError as exc:
            raise InvalidToken(_reason(exc)) from None
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidToken("malformed token") from exc
        self._check_times(claims)
        for name in ("sub", "jti"):
            if not isinstance(claims.get(name), str) or not claims[name]:
                raise InvalidToken(f"claim {name} must be a non-empty string")
        return claims

    def _check_times(self, claims: dict[str, Any]) -> None:
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int):
            raise InvalidToken("iat and exp must be integers")
        if iat > time.time() + LEEWAY_SECONDS:
            raise InvalidToken("token issued in the future")
        if exp - iat > self.max_ttl_seconds:
            raise InvalidToken("token lifetime longer than policy allows")


def _reason(exc: JOSEError) -> str:
    # python-jose's claim messages name the claim, never its value.
    name = type(exc).__name__
    if name == "ExpiredSignatureError":
        return "token expired"
    if name == "JWTClaimsError":
        return str(exc)[:120]
    return "token signature or format invalid"
