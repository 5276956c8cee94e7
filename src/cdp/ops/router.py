"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict

from cdp.api import RuntimeDep
from cdp.db import ping
from cdp.errors import ServiceUnavailable, problem_responses

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})
    status: str


class Readiness(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"status": "ready", "database": "ok", "keystore": "ok", "policy": "sha256:…"}
            ]
        }
    )
    status: str
    database: str
    keystore: str
    policy: str


@router.get("/healthz", operation_id="healthz", summary="Liveness")
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    operation_id="readyz",
    summary="Readiness: database and key store reachable",
    responses=problem_responses(503),
)
def readyz(rt: RuntimeDep) -> Readiness:
    try:
        ping(rt.engine)
    except Exception as exc:
        raise ServiceUnavailable("database unreachable") from exc
    try:
        rt.crypto.ping()
    except Exception as exc:
        raise ServiceUnavailable("keystore unreachable") from exc
    return Readiness(status="ready", database="ok", keystore="ok", policy=rt.policy.version)


@router.get(
    "/metrics",
    operation_id="metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"example": "cdp_http_requests_total{...} 1\n"}}}},
)
def metrics(request: Request) -> PlainTextResponse:
    text = request.app.state.metrics.render()
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")
