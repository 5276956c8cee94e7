"""Compliance reports over HTTP (role compliance): JSON, or CSV with `?format=csv`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from cdp.api import RuntimeDep, require
from cdp.audit.router import known_query_only
from cdp.auth.principal import Principal
from cdp.compliance import service
from cdp.compliance.schemas import ProcessingActivities
from cdp.errors import problem_responses

router = APIRouter(prefix="/v1/compliance", tags=["compliance"])

_CSV_EXAMPLE = (
    ",".join(service.CSV_COLUMNS) + "\n"
    "nearby_stores,附近门店推荐,Nearby stores,consent,false,false,true,false,false,"
    "location;location_track,city;precise_location;province,precise_location,30,"
    "location-notice,1,PIA-2024-004,Show the nearest stores and their stock.\n"
)


@router.get(
    "/processing-activities",
    operation_id="getProcessingActivities",
    summary="Record of processing activities: every purpose, its basis, data and safeguards",
    response_model=ProcessingActivities,
    responses={
        200: {
            "description": "The record; `text/csv` with `?format=csv` (one row per purpose).",
            "content": {"text/csv": {"schema": {"type": "string"}, "example": _CSV_EXAMPLE}},
        },
        **problem_responses(401, 403, 422, 429),
    },
)
def processing_activities(
    rt: RuntimeDep,
    principal: Annotated[Principal, require("compliance:read")],
    _known: Annotated[None, known_query_only("format")],
    fmt: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
) -> Any:
    record = service.processing_activities(rt.policy)
    if fmt == "csv":
        return Response(
            service.as_csv(record),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="processing-activities.csv"'},
        )
    return ProcessingActivities.model_validate(record)
