"""Customer metrics over HTTP."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cdp.metrics.kanon import Cell

_CELL: Any = {"value": 0.42, "subjects": 1200, "suppressed": False}
_SUPPRESSED: Any = {"value": None, "subjects": None, "suppressed": True, "reason": "k_anonymity"}


class CustomerPeriod(BaseModel):
    start: date
    end: date
    customers: Cell
    active: Cell
    new: Cell
    silent: Cell
    churn_rate: Cell = Field(
        description="Share of the previous period's active customers not active in this one."
    )
    repeat_visit_rate: Cell = Field(
        description="回访率: share of active customers active on two or more days."
    )
    clv_historic: Cell = Field(description="Revenue to date (CNY) per customer who ever bought.")
    average_order_value: Cell
    purchase_frequency: Cell = Field(description="Orders per buying customer per year.")
    expected_lifespan_years: Cell
    clv_predicted: Cell = Field(
        description="Average order value x purchase frequency x expected lifespan."
    )


class CustomerMetrics(BaseModel):
    """Customer metrics by period; any cell over fewer than k subjects is suppressed."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "interval": "month",
                    "segment": None,
                    "k": 5,
                    "periods": [
                        {
                            "start": "2026-11-01",
                            "end": "2026-11-25",
                            "customers": _CELL,
                            "active": _CELL,
                            "new": _SUPPRESSED,
                            "silent": _CELL,
                            "churn_rate": _CELL,
                            "repeat_visit_rate": _CELL,
                            "clv_historic": _CELL,
                            "average_order_value": _CELL,
                            "purchase_frequency": _CELL,
                            "expected_lifespan_years": _CELL,
                            "clv_predicted": _CELL,
                        }
                    ],
                }
            ]
        }
    )

    interval: str
    segment: str | None
    k: int
    periods: list[CustomerPeriod]
