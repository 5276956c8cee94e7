"""Retention runs over HTTP (scope retention:run)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, status

from cdp.api import PageDep, RuntimeDep, SessionDep, encode_cursor, require
from cdp.auth.principal import Principal
from cdp.errors import problem_responses
from cdp.retention import service
from cdp.retention.schemas import (
    RetentionRunCreate,
    RetentionRunPage,
    RetentionRunRead,
    RetentionRunSummary,
)

router = APIRouter(prefix="/v1/retention", tags=["retention"])


@router.post(
    "/runs",
    operation_id="runRetention",
    summary="Delete or anonymise what has outlived its purpose (or, dry, count it)",
    description=(
        "Per purpose and data class from retention.yaml and the tracking plan (PIPL art. 19): "
        "expired events, their rollups and de-duplication keys, feedback text, interaction "
        "notes, stale anonymous visitors and expired verification codes. Legal holds keep "
        "what a law requires; audit entries are reported, never deleted. A dry run's counts "
        "are exactly what a real run at the same moment removes."
    ),
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 422, 429),
)
def run_retention(
    body: RetentionRunCreate,
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("retention:run")],
) -> RetentionRunRead:
    record = service.run(
        session, crypto=rt.crypto, policy=rt.policy, actor=principal.actor, dry_run=body.dry_run
    )
    return RetentionRunRead.model_validate(service.as_read(record))


@router.get(
    "/runs/{run_id}",
    operation_id="getRetentionRun",
    summary="A retention run's report",
    responses=problem_responses(401, 403, 404, 422, 429),
)
def get_run(
    run_id: UUID,
    session: SessionDep,
    principal: Annotated[Principal, require("retention:run")],
) -> RetentionRunRead:
    return RetentionRunRead.model_validate(service.as_read(service.get_run(session, str(run_id))))


@router.get(
    "/runs",
    operation_id="listRetentionRuns",
    summary="Retention runs, newest first",
    responses=problem_responses(401, 403, 422, 429),
)
def list_runs(
    session: SessionDep,
    rt: RuntimeDep,
    page: PageDep,
    principal: Annotated[Principal, require("retention:run")],
) -> RetentionRunPage:
    runs, last = service.list_runs(session, after=page.after, limit=page.limit)
    items = [
        RetentionRunSummary(
            id=r.id,
            dry_run=r.dry_run,
            actor=r.actor,
            started_at=r.started_at,
            finished_at=r.finished_at,
            totals=r.report.get("totals", {}),
        )
        for r in runs
    ]
    cursor = encode_cursor(rt, last) if last is not None else None
    return RetentionRunPage(items=items, next_cursor=cursor)
