"""OAuth2 client-credentials tokens, API clients and tracking sources."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import APIRouter, Form, Request, status

from cdp.api import PageDep, RuntimeDep, SessionDep, next_cursor, require
from cdp.auth import service
from cdp.auth.principal import Principal
from cdp.auth.schemas import (
    ClientCreate,
    ClientCreated,
    ClientPage,
    ClientRead,
    Jwks,
    SourceCreate,
    SourceCreated,
    SourcePage,
    SourceRead,
    TokenResponse,
)
from cdp.errors import BadRequest, InvalidClient, RateLimited, problem_responses

router = APIRouter(prefix="/v1")
_ADMIN_ERRORS = problem_responses(401, 403, 422, 429)


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidClient("malformed Basic credentials") from exc
    return user, password


@router.post(
    "/oauth/token",
    tags=["auth"],
    operation_id="issueToken",
    summary="Issue an access token (OAuth2 client credentials)",
    responses=problem_responses(400, 401, 422, 429),
)
def issue_token(
    request: Request,
    session: SessionDep,
    rt: RuntimeDep,
    grant_type: Annotated[
        str,
        # Documented as the one grant we serve; another value is a 400 (RFC 6749 section 5.2).
        Form(
            max_length=40,
            examples=["client_credentials"],
            json_schema_extra={"enum": ["client_credentials"]},
        ),
    ],
    client_id: Annotated[str | None, Form(max_length=64)] = None,
    client_secret: Annotated[str | None, Form(max_length=200)] = None,
    scope: Annotated[str | None, Form(max_length=2000, examples=["profiles:read"])] = None,
) -> TokenResponse:
    if grant_type != "client_credentials":
        raise BadRequest("only grant_type=client_credentials is supported")
    basic = _basic_credentials(request)
    cid, secret = basic if basic else (client_id, client_secret)
    if not cid or not secret:
        raise InvalidClient("client_id and client_secret are required")
    ip = request.client.host if request.client else "unknown"
    wait = rt.limiter.hit(f"token:{ip}")
    if wait is not None:
        raise RateLimited("too many token requests", headers={"Retry-After": str(wait)})
    issued = service.issue_token(
        session,
        policy=rt.policy,
        tokens=rt.tokens,
        client_id=cid,
        client_secret=secret,
        scope=scope,
        ttl_seconds=rt.settings.token_ttl_seconds,
    )
    return TokenResponse(
        access_token=issued.access_token,
        expires_in=issued.expires_in,
        scope=issued.scope,
        purposes=issued.purposes,
    )


@router.get("/oauth/jwks", tags=["auth"], operation_id="getJwks", summary="Public signing keys")
def jwks(rt: RuntimeDep) -> Jwks:
    return Jwks.model_validate(rt.tokens.jwks())


@router.post(
    "/clients",
    tags=["clients"],
    operation_id="createClient",
    summary="Register an API client (its secret is shown once)",
    status_code=status.HTTP_201_CREATED,
    responses=_ADMIN_ERRORS,
)
def create_client(
    body: ClientCreate,
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("clients:admin")],
) -> ClientCreated:
    client, secret = service.create_client(
        session,
        policy=rt.policy,
        actor=principal.actor,
        name=body.name,
        role=body.role,
        purposes=body.purposes,
        organisation=body.organisation,
        entrusted=body.entrusted,
        scrypt_n=rt.settings.secret_scrypt_n,
    )
    read = ClientRead.model_validate(client)
    return ClientCreated(**read.model_dump(), client_secret=secret)


@router.get(
    "/clients",
    tags=["clients"],
    operation_id="listClients",
    summary="List API clients",
    responses=_ADMIN_ERRORS,
)
def list_clients(
    session: SessionDep,
    rt: RuntimeDep,
    page: PageDep,
    principal: Annotated[Principal, require("clients:admin")],
) -> ClientPage:
    items = service.list_clients(session, after=page.after, limit=page.limit)
    return ClientPage(
        items=[ClientRead.model_validate(c) for c in items],
        next_cursor=next_cursor(rt, items, page),
    )


@router.delete(
    "/clients/{client_id}",
    tags=["clients"],
    operation_id="revokeClient",
    summary="Revoke an API client; its tokens stop working at once",
    responses=problem_responses(401, 403, 404, 422, 429),
)
def revoke_client(
    client_id: str,
    session: SessionDep,
    principal: Annotated[Principal, require("clients:admin")],
) -> ClientRead:
    return ClientRead.model_validate(
        service.revoke_client(session, actor=principal.actor, client_id=client_id)
    )


@router.post(
    "/sources",
    tags=["sources"],
    operation_id="createSource",
    summary="Create a tracking source (its write key is shown once)",
    status_code=status.HTTP_201_CREATED,
    responses=_ADMIN_ERRORS,
)
def create_source(
    body: SourceCreate,
    session: SessionDep,
    principal: Annotated[Principal, require("sources:admin")],
) -> SourceCreated:
    source, key = service.create_source(session, actor=principal.actor, name=body.name)
    return SourceCreated(**SourceRead.model_validate(source).model_dump(), write_key=key)


@router.get(
    "/sources",
    tags=["sources"],
    operation_id="listSources",
    summary="List tracking sources",
    responses=_ADMIN_ERRORS,
)
def list_sources(
    session: SessionDep,
    rt: RuntimeDep,
    page: PageDep,
    principal: Annotated[Principal, require("sources:admin")],
) -> SourcePage:
    items = service.list_sources(session, after=page.after, limit=page.limit)
    return SourcePage(
        items=[SourceRead.model_validate(s) for s in items],
        next_cursor=next_cursor(rt, items, page),
    )


@router.delete(
    "/sources/{source_id}",
    tags=["sources"],
    operation_id="revokeSource",
    summary="Revoke a tracking source's write key",
    responses=problem_responses(401, 403, 404, 422, 429),
)
def revoke_source(
    source_id: str,
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("sources:admin")],
) -> SourceRead:
    source = service.revoke_source(session, actor=principal.actor, source_id=source_id)
    # Other workers let go of the key within cdp.auth.writekeys.TTL_SECONDS.
    rt.write_keys.forget(source_id)
    return SourceRead.model_validate(source)
