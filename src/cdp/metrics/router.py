"""Metrics over HTTP (customer metrics; aggregates only, never a subject)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from cdp.api import RuntimeDep, SessionDep, require
from cdp.auth.principal import Principal
from cdp.errors import problem_responses
from cdp.metrics import customers as service
from cdp.metrics.schemas import CustomerMetrics, CustomerPeriod
from cdp.segments.schemas import SegmentKey

router = APIRouter(prefix="/v1/metrics", tags=["metrics"])


@router.get(
    "/customers",
    operation_id="getCustomerMetrics",
    summary="CLV, churn rate, repeat-visit rate, active, silent and new customers by period",
    responses=problem_responses(401, 403, 404, 422, 429),
)
def get_customer_metrics(
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("metrics:read")],
    start: Annotated[
        date | None, Query(alias="from", description="First day (UTC); default 5 months back.")
    ] = None,
    end: Annotated[
        date | None, Query(alias="to", description="Last day (UTC); default today.")
    ] = None,
    interval: Annotated[service.Interval, Query(description="month or week.")] = "month",
    segment: Annotated[SegmentKey | None, Query(description="Only this segment's members.")] = None,
) -> CustomerMetrics:
    found = service.customers(
        session, policy=rt.policy, start=start, end=end, interval=interval, segment=segment
    )
    return CustomerMetrics(
        interval=interval,
        segment=segment,
        k=rt.policy.settings.k_anonymity,
        periods=[CustomerPeriod(start=p.start, end=p.end, **p.cells) for p in found],
    )
