"""create_app(settings): the FastAPI application with every domain router mounted."""

from __future__ import annotations

import copy
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from cdp import __version__
from cdp.alerts.router import router as alerts_router
from cdp.api import Runtime, request_id
from cdp.audit import service as audit
from cdp.audit.router import router as audit_router
from cdp.audit.service import RequestContext
from cdp.auth.ratelimit import RateLimiter
from cdp.auth.router import router as auth_router
from cdp.auth.tokens import SigningKey, TokenService, hmac_key, private_key_file
from cdp.compliance.router import router as compliance_reports_router
from cdp.config import Settings, get_settings
from cdp.consent.router import compliance_router, self_router
from cdp.consent.router import router as consent_router
from cdp.crypto import Crypto, keystore_is_current, master_key_provider, upgrade_keystore
from cdp.db import make_engine, make_sessionmaker, schema_is_current, unit_of_work, upgrade
from cdp.errors import (
    PROBLEM_SCHEMA,
    BadRequest,
    CdpError,
    DatabaseUnavailable,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ValidationFailed,
    problem_body,
    problem_responses,
)
from cdp.events import partitions as event_partitions
from cdp.events.router import router as events_router
from cdp.events.router import segment_router
from cdp.feedback.router import metrics_router as feedback_metrics_router
from cdp.feedback.router import router as feedback_router
from cdp.followups.router import metrics_router as followups_metrics_router
from cdp.followups.router import router as followups_router
from cdp.metrics.router import router as metrics_router
from cdp.ops import logs
from cdp.ops.metrics import Metrics
from cdp.ops.middleware import EdgeMiddleware
from cdp.ops.router import router as ops_router
from cdp.policy import load_policy
from cdp.policy.router import notices_router
from cdp.policy.router import router as policy_router
from cdp.profiles.router import router as profiles_router
from cdp.retention.router import router as retention_router
from cdp.rights.router import downloads_router as rights_downloads_router
from cdp.rights.router import router as rights_router
from cdp.rights.router import self_router as rights_self_router
from cdp.segments.router import router as segments_router
from cdp.segments.router import self_router as segments_self_router

log = logging.getLogger("cdp.app")

# Starlette matches routes in order: the tracking paths, by far the busiest, come first.
ROUTERS = (
    ops_router,
    segment_router,
    events_router,
    auth_router,
    policy_router,
    notices_router,
    profiles_router,
    consent_router,
    self_router,
    compliance_router,
    compliance_reports_router,
    audit_router,
    retention_router,
    feedback_router,
    followups_router,
    alerts_router,
    feedback_metrics_router,
    followups_metrics_router,
    rights_router,
    rights_self_router,
    segments_router,
    segments_self_router,
    metrics_router,
    rights_downloads_router,
)


def _dev_secret(path: Path, what: str) -> str:
    """A local secret for development, created once, with a warning nobody can miss."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    path.write_text(value)
    path.chmod(0o600)
    log.warning("DEVELOPMENT %s created at %s: set it explicitly in production", what, path.name)
    return value


def _token_service(settings: Settings) -> tuple[TokenService, bytes]:
    if settings.jwt_private_key_file:
        key: SigningKey = private_key_file(settings.jwt_private_key_file)
        material = settings.jwt_private_key_file.read_bytes()
    else:
        secret = settings.jwt_secret or _dev_secret(
            settings.data_dir / "jwt-secret", "JWT signing secret (CDP_JWT_SECRET)"
        )
        key, material = hmac_key(secret), secret.encode()
    service = TokenService(
        [key],
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        max_ttl_seconds=max(settings.token_ttl_seconds, settings.subject_token_ttl_seconds),
    )
    return service, hashlib.sha256(b"cdp-cursor|" + material).digest()


def build_runtime(settings: Settings) -> Runtime:
    """Everything the app needs, built once; an invalid policy stops here (file, line, reason)."""
    policy = load_policy(settings.policy_dir)
    engine = make_engine(settings.resolved_database_url())
    keystore = make_engine(settings.resolved_keystore_url())
    tokens, cursor_key = _token_service(settings)
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        keystore=keystore,
        policy=policy,
        tokens=tokens,
        limiter=RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst),
        cursor_key=cursor_key,
        crypto=Crypto(keystore, master_key_provider(settings)),
    )


def start(rt: Runtime) -> None:
    """Start-up work: migrate an embedded database, refuse a stale schema, audit the policy."""
    if not schema_is_current(rt.engine):
        if rt.settings.is_embedded and rt.settings.auto_migrate:
            upgrade(rt.settings.resolved_database_url())
        else:
            raise RuntimeError("database schema is not at head: run `cdp db upgrade`")
    if not keystore_is_current(rt.keystore):
        if rt.settings.resolved_keystore_url().startswith("sqlite") and rt.settings.auto_migrate:
            upgrade_keystore(rt.settings.resolved_keystore_url())
        else:
            raise RuntimeError("key store schema is not at head: run `cdp db upgrade`")
    event_partitions.ensure(rt.engine)  # PostgreSQL: this month's and the next ones
    # Loads the master key now, so a bad key setting stops start-up, not the first request.
    rt.crypto.ping()
    with unit_of_work(rt.sessions) as session:
        session.info["ctx"] = RequestContext(rt.policy.version)
        audit.append(
            session,
            actor="system",
            action="policy.load",
            detail={"version": rt.policy.version, "files": list(rt.policy.files)},
        )


def _problem(request: Request, exc: CdpError) -> JSONResponse:
    body = problem_body(
        status=exc.status,
        code=exc.code,
        title=exc.title,
        detail=exc.detail,
        request_id=request_id(request),
        errors=exc.errors,
    )
    return JSONResponse(
        body, status_code=exc.status, headers=exc.headers, media_type="application/problem+json"
    )


def _safe_errors(errors: Any) -> list[dict[str, Any]]:
    # Pydantic puts the offending input in each error; that may be PI, so only loc/msg/type leave.
    return [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type"))}
        for e in errors
    ]


_BODY_UNPARSABLE = "There was an error parsing the body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CdpError)
    async def on_cdp_error(request: Request, exc: CdpError) -> JSONResponse:
        return _problem(request, exc)

    @app.exception_handler(OperationalError)
    async def on_database_down(request: Request, exc: OperationalError) -> JSONResponse:
        # The driver's message can quote SQL parameters: it goes nowhere, the type to the log.
        log.warning("database unavailable: %s", type(exc.orig).__name__)
        unavailable = DatabaseUnavailable(
            "the database did not complete the request; retry", headers={"Retry-After": "1"}
        )
        return _problem(request, unavailable)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = ValidationFailed(
            "the request does not match the schema", errors=_safe_errors(exc.errors())
        )
        return _problem(request, err)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        mapped: CdpError
        if exc.status_code == 404:
            mapped = NotFound("no such resource")
        elif exc.status_code == 405:
            mapped = MethodNotAllowed("method not allowed on this resource")
        elif exc.status_code == 400 and exc.detail == _BODY_UNPARSABLE:
            # FastAPI's answer to a body it cannot decode (e.g. not UTF-8): malformed like bad JSON.
            mapped = ValidationFailed(
                "the request body could not be parsed",
                errors=[{"loc": ["body"], "msg": "not UTF-8 JSON", "type": "json_invalid"}],
            )
        elif exc.status_code == 413:
            limit = request.app.state.runtime.settings.max_body_bytes
            mapped = PayloadTooLarge(f"the request body exceeds {limit} bytes")
        else:
            mapped = BadRequest(str(exc.detail)[:200] if exc.status_code < 500 else None)
        response = _problem(request, mapped)
        response.status_code = mapped.status
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names only the first route matching the path; Allow must list them all.
            allowed = _allowed_methods(request.app, request.scope["path"])
            if allowed:
                response.headers["Allow"] = ", ".join(allowed)
        return response


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    methods: set[str] = set()
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and context.path:
            regex, _, _ = compile_path(context.path)
            if regex.match(path):
                methods |= route.methods or set()
    return sorted(methods)


_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_VALIDATION_EXAMPLE = {
    **problem_body(
        status=422,
        code="validation_error",
        title="Request validation failed",
        detail="the request does not match the schema",
        request_id="3f1c2a9e4b7d4f0e",
    ),
    "errors": [{"loc": ["body", "name"], "msg": "Field required", "type": "missing"}],
}


def _error_response(status: int) -> dict[str, Any]:
    """The documented problem+json response for a status every operation of a kind can return."""
    if status == 422:
        return {
            "description": "Request validation failed (per-field `errors`)",
            "content": {
                "application/problem+json": {"schema": _PROBLEM_REF, "example": _VALIDATION_EXAMPLE}
            },
        }
    if status == 500:
        return {
            "description": "Unexpected error (never carries internal details)",
            "content": {"application/problem+json": {"schema": _PROBLEM_REF}},
        }
    return problem_responses(status)[status]


def _complete_operation(op: dict[str, Any]) -> None:
    """Documents the errors the shared plumbing returns, so no router can forget them."""
    responses: dict[str, Any] = op.setdefault("responses", {})
    implied: list[int] = []
    if op.get("security"):  # the bearer dependency: missing/bad token, scope, rate limit
        implied += [401, 403, 429]
        # Every authenticated operation reads the database; most open data keys (KMS).
        implied.append(503)
    if op.get("parameters") or op.get("requestBody"):
        implied.append(422)
    if op.get("requestBody"):
        implied.append(413)  # EdgeMiddleware caps every body
    for status in implied:
        responses.setdefault(str(status), _error_response(status))
    # FastAPI's own 422 body is replaced by our problem+json everywhere.
    if "422" in responses:
        responses["422"] = _error_response(422)
    responses.setdefault("500", _error_response(500))
    for code, response in responses.items():
        if code[0] in "45":
            # Every error leaves through the one problem+json handler, whatever a router declared.
            declared = response.get("content", {}).get("application/problem+json", {})
            media = {"schema": _PROBLEM_REF}
            if "example" in declared:
                media["example"] = declared["example"]
            response["content"] = {"application/problem+json": media}
    op["responses"] = dict(sorted(responses.items()))


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    # A copy: the post-processing below must not edit the routers' shared `responses` dicts.
    schema = copy.deepcopy(
        get_openapi(
            title="cdp",
            version=__version__,
            summary="Privacy-compliant customer data platform (PIPL)",
            description=(
                "Profiles with field-level encryption, consent and purpose limitation, "
                "a hash-chained audit log, tracking, segments and rights requests. Errors are "
                "RFC 9457 problem+json with a stable `code`."
            ),
            routes=app.routes,
            tags=app.openapi_tags,
        )
    )
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    for path_item in schema.get("paths", {}).values():
        for op in path_item.values():
            _complete_operation(op)
            for param in op.get("parameters", []):
                # Optional in code so that a missing purpose is our 400, not a generic 422.
                if param.get("in") == "header" and param.get("name", "").lower() == "x-purpose":
                    param["required"] = True
    # Stable order whatever the import order of routers, so `openapi export --check` is reliable.
    schema["paths"] = dict(sorted(schema.get("paths", {}).items()))
    components["schemas"] = dict(sorted(schemas.items()))
    app.openapi_schema = copy.deepcopy(schema)  # detached from the module-level constants
    return app.openapi_schema


TAGS = [
    {"name": "auth", "description": "OAuth2 client-credentials tokens and signing keys."},
    {"name": "clients", "description": "API clients (admin)."},
    {"name": "sources", "description": "Tracking sources and their write keys (admin)."},
    {
        "name": "policies",
        "description": "The loaded policy: purposes, fields, roles, notices, version.",
    },
    {
        "name": "profiles",
        "description": "Customer profiles: encrypted fields, blind-index lookup, erasure.",
    },
    {
        "name": "consents",
        "description": "Consent records bound to notice versions: record, read, import.",
    },
    {
        "name": "self-service",
        "description": "The customer's own consents, rights requests and data, with a customer"
        " token (scope self); verification by a one-time code issues that token.",
    },
    {"name": "compliance", "description": "Numbers for the PI protection officer."},
    {
        "name": "retention",
        "description": "Retention runs: delete or anonymise what has outlived its purpose.",
    },
    {
        "name": "audit",
        "description": "The hash-chained audit log: search, signed checkpoints, export with a "
        "signed manifest for offline verification.",
    },
    {
        "name": "tracking",
        "description": "Events: the native batch and the Segment-compatible HTTP API (write"
        " keys), planned, de-duplicated and consent-gated; a subject's events; violations.",
    },
    {
        "name": "feedback",
        "description": "Surveys (CSAT, NPS, custom questions), complaints with a lifecycle and"
        " suggestions; free text encrypted, read only under a purpose covering feedback.",
    },
    {
        "name": "rights",
        "description": "Data-subject rights requests (PIPL arts. 44-50): submit for a customer"
        " or a deceased customer's relative, the compliance queue with due dates, completion"
        " (access bundle, correction, restriction, withdrawal, explanation, erasure), downloads.",
    },
    {
        "name": "followups",
        "description": "Follow-up plans (segment, list or segment trigger), the task queue they"
        " generate for consenting subjects outside quiet hours, and recorded interactions.",
    },
    {
        "name": "segments",
        "description": "Customer segments: JSON conditions over profiles and rollups, built-ins"
        " from policy, purpose-filtered members, explanations, snapshots with enter/leave history.",
    },
    {
        "name": "metrics",
        "description": "Customer metrics (CLV, churn, repeat visits, active/silent/new) by"
        " period and segment; cells over fewer than k subjects are suppressed.",
    },
    {
        "name": "alerts",
        "description": "Activity drops, complaint spikes, rights requests near their due date,"
        " the cross-border threshold; de-duplicated alerts and signed webhook delivery.",
    },
    {"name": "operations", "description": "Health, readiness and metrics."},
]


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    """The application; start-up work runs in the lifespan so `openapi export` needs no DB."""
    settings = settings or get_settings()
    logs.configure(settings.log_level, json_output=settings.log_json)
    rt = runtime or build_runtime(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        start(rt)
        yield
        rt.engine.dispose()
        rt.keystore.dispose()

    app = FastAPI(
        title="cdp",
        version=__version__,
        lifespan=lifespan,
        openapi_tags=TAGS,
        generate_unique_id_function=lambda route: route.name,
    )
    metrics = Metrics()
    app.state.runtime = rt
    app.state.metrics = metrics
    install_error_handlers(app)
    for router in ROUTERS:
        # The routers' own route objects: walking the app's effective routes instead would
        # build every route's dependency analysis at once (FastAPI >= 0.137 does it lazily).
        for route in router.routes:
            if isinstance(route, APIRoute) and route.operation_id is None:
                route.operation_id = route.name
        app.include_router(router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    app.add_middleware(EdgeMiddleware, max_body_bytes=settings.max_body_bytes, metrics=metrics)
    return app
