"""HTTP plumbing every router shares: runtime, unit of work, caller, purpose, pagination."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AwareDatetime, BeforeValidator
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cdp.audit import service as audit
from cdp.audit.service import RequestContext
from cdp.auth import service as auth
from cdp.auth.principal import Principal
from cdp.auth.ratelimit import RateLimiter
from cdp.auth.tokens import TokenService
from cdp.auth.writekeys import WriteKeys
from cdp.config import Settings
from cdp.crypto import Crypto
from cdp.db import unit_of_work
from cdp.errors import CdpError, InsufficientScope, RateLimited, Unauthorized, ValidationFailed
from cdp.policy import Policy

log = logging.getLogger("cdp.api")


@dataclass
class Runtime:
    """Process-wide state built once by create_app."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    keystore: Engine
    policy: Policy
    tokens: TokenService
    limiter: RateLimiter
    cursor_key: bytes
    crypto: Crypto
    write_keys: WriteKeys = field(default_factory=WriteKeys)
    extras: dict[str, Any] = field(default_factory=dict)


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def _runtime_dependency(request: Request) -> Runtime:
    # async: FastAPI would run a plain function dependency in the thread pool, a thread hop
    # on every request for an attribute read.
    return runtime(request)


RuntimeDep = Annotated[Runtime, Depends(_runtime_dependency)]


def request_id(request: Request) -> str | None:
    rid = request.scope.get("state", {}).get("request_id")
    return str(rid) if rid else None


def _audit_failure(rt: Runtime, request: Request, exc: CdpError) -> None:
    """Denials are audited in their own transaction, since the request's one rolls back."""
    wanted = exc.audit is not None or exc.status == 403 or exc.code == "invalid_token"
    if not wanted:
        return
    spec = exc.audit or {}
    principal: Principal | None = request.scope.get("state", {}).get("principal")
    purpose = spec.get("purpose") or request.headers.get("x-purpose")
    try:
        with unit_of_work(rt.sessions) as session:
            session.info["ctx"] = RequestContext(rt.policy.version, request_id(request))
            audit.append(
                session,
                actor=principal.actor if principal else spec.get("actor", "anonymous"),
                organisation=principal.organisation if principal else None,
                action=spec.get("action", "access.denied"),
                subject=spec.get("subject"),
                purpose=purpose if purpose in rt.policy.purposes else None,
                fields=spec.get("fields", ()),
                decision=spec.get("decision", "deny"),
                code=exc.code,
                detail=spec.get("detail", {"route": request.scope.get("path", "")[:200]}),
            )
    except Exception:  # auditing a denial must not turn it into a 500
        log.exception("could not audit a denial")


def get_session(request: Request) -> Iterator[Session]:
    """The request's one transaction, committed after the handler returns."""
    rt = runtime(request)
    session = rt.sessions()
    session.info["ctx"] = RequestContext(rt.policy.version, request_id(request))
    try:
        yield session
        session.commit()
    except CdpError as exc:
        session.rollback()
        session.close()
        _audit_failure(rt, request, exc)
        raise
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session, scope="function")]

_bearer = HTTPBearer(auto_error=False)


def current_principal(
    request: Request,
    session: SessionDep,
    rt: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("a bearer token is required")
    claims = rt.tokens.verify(credentials.credentials)
    principal = auth.principal_from_claims(session, policy=rt.policy, claims=claims)
    return _admit(request, session, rt, principal)


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def _admit(request: Request, session: Session, rt: Runtime, principal: Principal) -> Principal:
    request.scope.setdefault("state", {})["principal"] = principal
    session.info["ctx"] = RequestContext(
        rt.policy.version, request_id(request), principal.organisation
    )
    retry_after = rt.limiter.hit(principal.actor)
    if retry_after is not None:
        raise RateLimited(
            "rate limit exceeded for this caller", headers={"Retry-After": str(retry_after)}
        )
    return principal


def current_subject(
    request: Request,
    session: SessionDep,
    rt: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The customer (data subject) of a customer token; any other token is 403 (scope self)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("a bearer token is required")
    claims = rt.tokens.verify(credentials.credentials)
    return _admit(request, session, rt, auth.subject_from_claims(session, claims=claims))


SubjectDep = Annotated[Principal, Depends(current_subject)]


def current_caller(
    request: Request,
    session: SessionDep,
    rt: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """An API client or a customer: for what any valid token may read (e.g. notices)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("a bearer token is required")
    claims = rt.tokens.verify(credentials.credentials)
    if claims.get("role") == auth.SUBJECT_ROLE:
        principal = auth.subject_from_claims(session, claims=claims)
    else:
        principal = auth.principal_from_claims(session, policy=rt.policy, claims=claims)
    return _admit(request, session, rt, principal)


CallerDep = Annotated[Principal, Depends(current_caller)]


def require(scope: str) -> Any:
    """A dependency granting the caller only when its token carries `scope`."""

    def check(principal: PrincipalDep) -> Principal:
        if not principal.has_scope(scope):
            raise InsufficientScope(f"this operation needs scope {scope}")
        return principal

    return Depends(check)


def purpose_header(
    x_purpose: Annotated[
        str | None,
        Header(
            description="Purpose of processing (an id from /v1/policies/purposes).",
            examples=["service_delivery"],
            max_length=64,
        ),
    ] = None,
) -> str | None:
    return x_purpose


PurposeDep = Annotated[str | None, Depends(purpose_header)]

# --- times in query strings: RFC 3339 only ---

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})?")


def _rfc3339(value: Any) -> Any:
    # Pydantic's lax mode also reads "0.5" or "1700000000" as Unix times; the contract is RFC 3339.
    if isinstance(value, str) and not _RFC3339.fullmatch(value):
        raise ValueError("expected an RFC 3339 date-time, e.g. 2026-11-25T08:00:00+08:00")
    return value


Rfc3339 = Annotated[datetime, BeforeValidator(_rfc3339)]


# --- cursor pagination: opaque, signed, so a cursor the server did not issue is refused ---


def encode_cursor(rt: Runtime, value: str) -> str:
    raw = json.dumps({"a": value}, separators=(",", ":")).encode()
    mac = hmac.new(rt.cursor_key, raw, hashlib.sha256).digest()[:12]
    return base64.urlsafe_b64encode(mac + raw).decode().rstrip("=")


def decode_cursor(rt: Runtime, cursor: str) -> str:
    try:
        blob = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        mac, raw = blob[:12], blob[12:]
        good = hmac.compare_digest(mac, hmac.new(rt.cursor_key, raw, hashlib.sha256).digest()[:12])
        if not good:
            raise ValueError
        value = json.loads(raw)["a"]
        if not isinstance(value, str):
            raise ValueError
        return value
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValidationFailed(
            "cursor was not issued by this server",
            errors=[{"loc": ["query", "cursor"], "msg": "invalid cursor", "type": "value_error"}],
        ) from exc


K = TypeVar("K", str, int)


@dataclass(frozen=True, slots=True)
class Page:
    """Page size and position; the cursor is checked when read, inside the handler, so a caller
    without a valid token or scope gets its 401/403, not a 422 about the cursor."""

    limit: int
    cursor: str | None
    rt: Runtime = field(repr=False, compare=False)

    @property
    def after(self) -> str | None:
        return decode_cursor(self.rt, self.cursor) if self.cursor else None


def page_params(
    rt: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=500, description="Page size, 1-500.")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=512, description="next_cursor of the previous page.")
    ] = None,
) -> Page:
    return Page(limit=limit, cursor=cursor, rt=rt)


PageDep = Annotated[Page, Depends(page_params)]


def encode_time_cursor(rt: Runtime, last: tuple[datetime, str | int] | None) -> str | None:
    """The cursor of a list ordered by (time, id): the last item's pair, or None at the end."""
    return encode_cursor(rt, f"{last[0].isoformat()}|{last[1]}") if last else None


def time_cursor_after(value: str | None, key: Callable[[str], K]) -> tuple[datetime, K] | None:
    """The (time, id) pair in a page's decoded cursor (Page.after); a signed cursor of another
    list's shape is a 422, like any cursor the endpoint did not issue."""
    if value is None:
        return None
    at, _, ident = value.rpartition("|")
    try:
        return datetime.fromisoformat(at), key(ident)
    except ValueError as exc:
        raise ValidationFailed("cursor was not issued by this endpoint") from exc


def next_cursor(rt: Runtime, items: list[Any], page: Page, key: str = "id") -> str | None:
    if len(items) < page.limit:
        return None
    return encode_cursor(rt, str(getattr(items[-1], key)))


def known_query_only(*names: str) -> Any:
    """Refuses query parameters the operation does not take (422): a misspelt filter
    (`ownr=`) must not silently widen a list or a report to everything."""

    def check(request: Request) -> None:
        unknown = sorted(set(request.query_params) - set(names))
        if unknown:
            raise ValidationFailed(
                "unknown query parameter",
                errors=[
                    {"loc": ["query", name[:64]], "msg": "not a parameter", "type": "extra"}
                    for name in unknown[:10]
                ],
            )

    return Depends(check)


# An RFC 3339 time with its offset: a naive time cannot be placed on the UTC axis (422).
Rfc3339Aware = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
