"""Compliance reports over HTTP (role compliance): JSON, or CSV with `?format=csv`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from cdp.api import Rfc3339, RuntimeDep, SessionDep, known_query_only, require
from cdp.auth.principal import Principal
from cdp.compliance import consent_stats, incidents, rights_sla, service, subjects
from cdp.compliance.csvout import csv_response
from cdp.compliance.report_schemas import (
    ConsentStatsRead,
    CrossBorderRead,
    IncidentExportRead,
    RightsSlaRead,
    SubjectCountsRead,
)
from cdp.compliance.schemas import ProcessingActivities
from cdp.errors import ValidationFailed, problem_responses

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


_Format = Annotated[Literal["json", "csv"], Query(alias="format")]


def _csv_doc(description: str, columns: tuple[str, ...], row: str) -> dict[int | str, Any]:
    example = ",".join(columns) + "\n" + row + "\n"
    return {
        200: {
            "description": description,
            "content": {"text/csv": {"schema": {"type": "string"}, "example": example}},
        },
        **problem_responses(401, 403, 422, 429),
    }


@router.get(
    "/consent-stats",
    operation_id="getConsentStats",
    summary="Consent rates per purpose and notice version (splits under k suppressed)",
    description=(
        "Each subject counts once per purpose, by its latest consent record: granted, withdrawn "
        "or refused, on the notice version it was given on. A split over fewer than k subjects "
        "(settings.yaml k_anonymity) is suppressed. `?format=csv`: one row per purpose and "
        "version, then one per purpose (notice_version `all`); suppressed cells are empty."
    ),
    response_model=ConsentStatsRead,
    responses=_csv_doc(
        "The rates; `text/csv` with `?format=csv`.",
        consent_stats.CSV_COLUMNS,
        "marketing,privacy-notice,2,true,1204,812,290,102,0.6744",
    ),
)
def get_consent_stats(
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("compliance:read")],
    _known: Annotated[None, known_query_only("format")],
    fmt: _Format = "json",
) -> Any:
    stats = consent_stats.consent_stats(session, policy=rt.policy)
    if fmt == "csv":
        return csv_response(
            "consent-stats", consent_stats.CSV_COLUMNS, consent_stats.csv_rows(stats)
        )
    return ConsentStatsRead.model_validate(stats)


@router.get(
    "/rights-sla",
    operation_id="getRightsSla",
    summary="Rights requests answered on time, late, and open by due date",
    description=(
        "Requests received in [from, to) per type: closed (completed or rejected) by the due "
        "date or after it, and open ones as overdue, due today, due within the warning working "
        "days (settings.yaml) or later, in China Standard Time."
    ),
    response_model=RightsSlaRead,
    responses=_csv_doc(
        "The SLA counts; `text/csv` with `?format=csv` (one row per type, then `all`).",
        rights_sla.CSV_COLUMNS,
        "access,41,35,1,2,3,5,0,1,2,2",
    ),
)
def get_rights_sla(
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("compliance:read")],
    _known: Annotated[None, known_query_only("format", "from", "to")],
    fmt: _Format = "json",
    since: Annotated[Rfc3339 | None, Query(alias="from")] = None,
    until: Annotated[Rfc3339 | None, Query(alias="to")] = None,
) -> Any:
    _window(since, until)
    report = rights_sla.rights_sla(session, policy=rt.policy, since=since, until=until)
    if fmt == "csv":
        return csv_response("rights-sla", rights_sla.CSV_COLUMNS, rights_sla.csv_rows(report))
    return RightsSlaRead.model_validate(
        {
            **{k: getattr(report, k) for k in ("generated_at", "since", "until")},
            "warning_working_days": report.warning_working_days,
            "types": [_sla(row) for row in report.types],
            "total": _sla(report.total),
        }
    )


def _sla(row: rights_sla.SlaRow) -> dict[str, Any]:
    return {
        "type": row.type,
        "received": row.received,
        "on_time": row.on_time,
        "late": row.late,
        "rejected": row.rejected,
        "extended": row.extended,
        "open_total": row.open_total,
        "open": row.open,
    }


@router.get(
    "/cross-border/years",
    operation_id="getCrossBorderYears",
    summary="Cross-border counters for every year against PIPL art. 40 thresholds",
    description=(
        "Every calendar year (China Standard Time) with transfers, and the current one, newest "
        "first; GET /v1/compliance/cross-border gives one year."
    ),
    response_model=CrossBorderRead,
    responses=_csv_doc(
        "Every year with transfers and the current one; `text/csv` with `?format=csv`.",
        subjects.CROSS_BORDER_CSV_COLUMNS,
        "2026,81234,310,100000,10000,true,81234 of 100000 people (art. 40 threshold)",
    ),
)
def get_cross_border(
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("compliance:read")],
    _known: Annotated[None, known_query_only("format")],
    fmt: _Format = "json",
) -> Any:
    report = subjects.cross_border(session, policy=rt.policy)
    if fmt == "csv":
        return csv_response(
            "cross-border",
            subjects.CROSS_BORDER_CSV_COLUMNS,
            subjects.cross_border_csv_rows(report),
        )
    return CrossBorderRead.model_validate(report)


@router.get(
    "/subjects",
    operation_id="getSubjectCounts",
    summary="Subjects held, with sensitive PI and minors, against PIPL thresholds",
    description=(
        "Sensitive: a sensitive field stored, a consent granted to a purpose that may touch a "
        "sensitive category, or a minor (PIPL art. 28, 31). Thresholds (settings.yaml): a PI "
        "protection officer (art. 52), a compliance audit, the art. 40 cross-border numbers."
    ),
    response_model=SubjectCountsRead,
    responses=_csv_doc(
        "The counts and thresholds; `text/csv` with `?format=csv` (counts first).",
        subjects.SUBJECT_CSV_COLUMNS,
        "pi_protection_officer,PIPL art. 52,total,1000000,812345,0.8123,false,true",
    ),
)
def get_subject_counts(
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("compliance:read")],
    _known: Annotated[None, known_query_only("format")],
    fmt: _Format = "json",
) -> Any:
    report = subjects.subject_counts(session, policy=rt.policy)
    if fmt == "csv":
        return csv_response(
            "subjects", subjects.SUBJECT_CSV_COLUMNS, subjects.subject_csv_rows(report)
        )
    return SubjectCountsRead.model_validate(report)


@router.get(
    "/incidents",
    operation_id="exportIncident",
    summary="Subjects and fields one client touched in a time window (PIPL art. 57)",
    description=(
        "From the audit log: every entry of the client in [from, to), grouped by subject, with "
        "the fields released, actions and purposes, so the people affected can be notified. "
        "The export is itself audited."
    ),
    response_model=IncidentExportRead,
    responses={
        **_csv_doc(
            "The subjects; `text/csv` with `?format=csv` (one row per subject).",
            incidents.CSV_COLUMNS,
            "0b6e3f0e-6a8e-4a8c-9d5e-2f1c3b4a5d6e,email;phone,profile.read,customer_care,3,0,"
            "2026-11-20T02:11:09+00:00,2026-11-20T02:13:40+00:00",
        ),
        **problem_responses(401, 403, 404, 422, 429),
    },
)
def export_incident(
    session: SessionDep,
    principal: Annotated[Principal, require("compliance:read")],
    _known: Annotated[None, known_query_only("format", "client_id", "from", "to")],
    client_id: Annotated[str, Query(min_length=1, max_length=40, description="The API client.")],
    fmt: _Format = "json",
    since: Annotated[Rfc3339 | None, Query(alias="from")] = None,
    until: Annotated[Rfc3339 | None, Query(alias="to")] = None,
) -> Any:
    _window(since, until)
    report = incidents.incident_export(
        session, actor=principal.actor, client_id=client_id, since=since, until=until
    )
    if fmt == "csv":
        return csv_response("incident", incidents.CSV_COLUMNS, incidents.csv_rows(report))
    return IncidentExportRead.model_validate(
        {
            "generated_at": report.generated_at,
            "client_id": report.client_id,
            "since": report.since,
            "until": report.until,
            "entries": report.entries,
            "subjects": [t.as_dict() for t in report.subjects],
            "fields": report.fields,
            "unattributed": report.unattributed,
        }
    )


def _window(since: datetime | None, until: datetime | None) -> None:
    """Times carry an offset, and the window is not empty."""
    for name, value in (("from", since), ("to", until)):
        if value is not None and value.tzinfo is None:
            raise ValidationFailed(
                "times need an offset (RFC 3339)",
                errors=[{"loc": ["query", name], "msg": "offset required", "type": "value_error"}],
            )
    if since is not None and until is not None and until <= since:
        raise ValidationFailed(
            "`to` must be after `from`",
            errors=[{"loc": ["query", "to"], "msg": "not after from", "type": "value_error"}],
        )
