"""API clients, tracking sources and client-credentials tokens."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from cdp import audit
from cdp.auth.models import Client, Source
from cdp.auth.principal import Principal
from cdp.auth.secrets import decoy_hash, fingerprint, hash_secret, new_secret, verify_secret
from cdp.auth.tokens import TokenService
from cdp.db import utcnow
from cdp.errors import InsufficientScope, InvalidClient, InvalidToken, NotFound, ValidationFailed
from cdp.policy import Policy
from cdp.profiles.models import Profile

SUBJECT_ROLE = "subject"
SUBJECT_SCOPE = "self"

_Revocable = TypeVar("_Revocable", Client, Source)
_decoys: dict[int, str] = {}


def _decoy(n: int) -> str:
    if n not in _decoys:
        _decoys[n] = decoy_hash(n)
    return _decoys[n]


def _role_purposes(policy: Policy, role: str) -> frozenset[str]:
    purposes = policy.roles[role].purposes
    return frozenset(policy.purposes) if "*" in purposes else frozenset(purposes)


def create_client(
    session: Session,
    *,
    policy: Policy,
    actor: str,
    name: str,
    role: str,
    purposes: list[str] | None = None,
    organisation: str | None = None,
    entrusted: bool = False,
    scrypt_n: int = 2**14,
) -> tuple[Client, str]:
    """Register a client; the secret is returned once and only its salted hash is kept."""
    if role not in policy.roles or role == "subject":
        raise ValidationFailed(
            f"unknown role {role!r}",
            errors=[{"loc": ["body", "role"], "msg": "role not in roles.yaml", "type": "enum"}],
        )
    allowed = _role_purposes(policy, role)
    wanted = sorted(set(purposes)) if purposes else sorted(allowed)
    outside = [p for p in wanted if p not in allowed]
    if outside:
        raise ValidationFailed(
            f"purposes not allowed for role {role}: {', '.join(outside)}",
            errors=[{"loc": ["body", "purposes"], "msg": "not allowed for role", "type": "value"}],
        )
    secret = new_secret("cs")
    client = Client(
        id="cli_" + secrets.token_hex(8),
        name=name,
        role=role,
        purposes=wanted,
        organisation=organisation,
        entrusted=entrusted,
        secret_hash=hash_secret(secret, n=scrypt_n),
        created_at=utcnow(),
    )
    session.add(client)
    session.flush()
    audit.service.append(
        session,
        actor=actor,
        action="client.create",
        detail={"client_id": client.id, "role": role, "purposes": wanted},
    )
    return client, secret


def list_clients(session: Session, *, after: str | None = None, limit: int = 50) -> list[Client]:
    stmt = select(Client).order_by(Client.id).limit(limit)
    if after:
        stmt = stmt.where(Client.id > after)
    return list(session.scalars(stmt))


def _revoke(
    session: Session, model: type[_Revocable], *, actor: str, kind: str, key: str
) -> _Revocable:
    """Mark a client or source revoked once, auditing the first revocation only."""
    row = session.get(model, key)
    if row is None:
        raise NotFound(f"no such {kind}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
        audit.service.append(
            session, actor=actor, action=f"{kind}.revoke", detail={f"{kind}_id": key}
        )
    return row


def revoke_client(session: Session, *, actor: str, client_id: str) -> Client:
    return _revoke(session, Client, actor=actor, kind="client", key=client_id)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str
    purposes: list[str]


def issue_token(
    session: Session,
    *,
    policy: Policy,
    tokens: TokenService,
    client_id: str,
    client_secret: str,
    scope: str | None,
    ttl_seconds: int,
) -> IssuedToken:
    """Client-credentials grant; a failure says the same thing for a wrong id or secret."""
    client = session.get(Client, client_id) if len(client_id) <= 40 else None
    stored = client.secret_hash if client else _decoy(2**14)
    ok = verify_secret(client_secret, stored)
    if client is None or not ok or client.revoked_at is not None:
        raise InvalidClient(
            "client authentication failed",
            audit={"action": "token.denied", "detail": {"reason": "invalid_client"}},
        )
    role = policy.roles.get(client.role)
    if role is None:
        raise InvalidClient("client role no longer exists in policy")
    granted = set(role.scopes)
    if scope:
        asked = set(scope.split())
        unknown = asked - granted
        if unknown:
            raise InvalidClient(
                "scope not granted to this client",
                audit={"action": "token.denied", "detail": {"reason": "invalid_scope"}},
            )
        granted = asked
    purposes = sorted(set(client.purposes) & _role_purposes(policy, client.role))
    ttl = min(ttl_seconds, policy.settings.token_max_ttl_seconds)
    token, claims = tokens.issue(
        subject=client.id,
        ttl_seconds=ttl,
        claims={"scope": " ".join(sorted(granted)), "role": client.role, "purposes": purposes},
    )
    audit.service.append(
        session,
        actor=f"client:{client.id}",
        organisation=client.organisation,
        action="token.issue",
        detail={"jti": claims["jti"], "scope": claims["scope"], "expires": claims["exp"]},
    )
    return IssuedToken(token, ttl, claims["scope"], purposes)


def principal_from_claims(session: Session, *, policy: Policy, claims: dict[str, Any]) -> Principal:
    """The caller behind a verified token; a revoked client is refused at once (no cache)."""
    role_name = claims.get("role")
    if role_name == "subject":
        raise InvalidToken("customer tokens are not accepted here")
    client = session.get(Client, claims["sub"])
    if client is None or client.revoked_at is not None:
        raise InvalidToken("client revoked or unknown")
    role = policy.roles.get(client.role)
    scope = claims.get("scope", "")
    if role is None or not isinstance(scope, str):
        raise InvalidToken("token claims invalid")
    token_purposes = claims.get("purposes", [])
    if not isinstance(token_purposes, list):
        raise InvalidToken("token claims invalid")
    purposes = set(token_purposes) & set(client.purposes) & _role_purposes(policy, client.role)
    return Principal(
        kind="client",
        id=client.id,
        role=client.role,
        scopes=frozenset(scope.split()) & frozenset(role.scopes),
        purposes=frozenset(purposes),
        organisation=client.organisation,
        token_id=str(claims.get("jti")),
    )


def issue_subject_token(
    session: Session,
    *,
    policy: Policy,
    tokens: TokenService,
    principal: Principal,
    subject_id: str,
    ttl_seconds: int,
) -> IssuedToken:
    """A short-lived customer token for a subject the calling app has verified."""
    if len(subject_id) > 36 or session.get(Profile, subject_id) is None:
        raise NotFound("no such profile")
    ttl = min(ttl_seconds, policy.settings.token_max_ttl_seconds)
    token, claims = tokens.issue(
        subject=subject_id,
        ttl_seconds=ttl,
        claims={"role": SUBJECT_ROLE, "scope": SUBJECT_SCOPE, "purposes": []},
    )
    audit.service.append(
        session,
        actor=principal.actor,
        action="subject_token.issue",
        subject=subject_id,
        detail={"jti": claims["jti"], "expires": claims["exp"]},
    )
    return IssuedToken(token, ttl, SUBJECT_SCOPE, [])


def subject_from_claims(session: Session, *, claims: dict[str, Any]) -> Principal:
    """The customer behind a verified customer token; an erased subject's token stops at once."""
    scope = claims.get("scope")
    if claims.get("role") != SUBJECT_ROLE:
        raise InsufficientScope(
            f"this operation needs scope {SUBJECT_SCOPE}: a customer token"
            " (POST /v1/profiles/{id}/subject-token), not an API client's"
        )
    if not isinstance(scope, str) or SUBJECT_SCOPE not in scope.split():
        raise InvalidToken("token claims invalid")
    subject_id = str(claims["sub"])
    if len(subject_id) > 36 or session.get(Profile, subject_id) is None:
        raise InvalidToken("the subject of this token no longer exists")
    return Principal(
        kind="subject",
        id=subject_id,
        role=SUBJECT_ROLE,
        scopes=frozenset({SUBJECT_SCOPE}),
        purposes=frozenset(),
        token_id=str(claims.get("jti")),
    )


def create_source(session: Session, *, actor: str, name: str) -> tuple[Source, str]:
    """A tracking source and its write key, returned once and kept as a SHA-256."""
    key = new_secret("wk")
    source = Source(
        id="src_" + secrets.token_hex(8),
        name=name,
        write_key_hash=fingerprint(key),
        write_key_prefix=key[:7],
        created_at=utcnow(),
    )
    session.add(source)
    session.flush()
    audit.service.append(
        session, actor=actor, action="source.create", detail={"source_id": source.id}
    )
    return source, key


def list_sources(session: Session, *, after: str | None = None, limit: int = 50) -> list[Source]:
    stmt = select(Source).order_by(Source.id).limit(limit)
    if after:
        stmt = stmt.where(Source.id > after)
    return list(session.scalars(stmt))


def revoke_source(session: Session, *, actor: str, source_id: str) -> Source:
    return _revoke(session, Source, actor=actor, kind="source", key=source_id)


MAX_WRITE_KEY = 200


def source_for_write_key(session: Session, write_key: str) -> Source | None:
    if not write_key or len(write_key) > MAX_WRITE_KEY:
        return None
    source = session.scalar(select(Source).where(Source.write_key_hash == fingerprint(write_key)))
    return source if source is not None and source.revoked_at is None else None
