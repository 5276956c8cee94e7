"""Each operator and each built-in segment against hand-computed members of the fixed dataset
(tests/unit/segments/dataset.py), on SQLite and PostgreSQL alike."""

from __future__ import annotations

from typing import Any

import pytest
from tests.unit.segments import dataset

from cdp.api import Runtime
from cdp.audit.service import RequestContext
from cdp.db import unit_of_work
from cdp.errors import InvalidCondition
from cdp.segments import compiler, service


@pytest.fixture
def data(runtime: Runtime) -> dict[str, str]:
    with unit_of_work(runtime.sessions) as session:
        session.info["ctx"] = RequestContext(runtime.policy.version)
        return dataset.build(session)


def members(runtime: Runtime, data: dict[str, str], condition: dict[str, Any]) -> set[str]:
    names = {v: k for k, v in data.items()}
    with unit_of_work(runtime.sessions) as session:
        node = service.parse(
            runtime.policy, condition, service.definitions(session, policy=runtime.policy)
        )
        found = session.scalars(compiler.members_query(node, compiler.clock())[0])
        return {names[i] for i in found}


def builtin(runtime: Runtime, data: dict[str, str], key: str) -> set[str]:
    return members(runtime, data, {"segment": key})


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("vip", {"p1"}),
        ("new", {"p1", "p3", "p6"}),
        ("potential", {"p3", "p6"}),
        ("active", {"p1", "p2", "p3", "p6"}),
        ("silent", {"p4", "p5", "p7"}),
        ("churn_risk", {"p6", "p7"}),
    ],
)
def test_builtin_segments(
    runtime: Runtime, data: dict[str, str], key: str, expected: set[str]
) -> None:
    assert builtin(runtime, data, key) == expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"trait": "city", "op": "eq", "value": "上海"}, {"p1", "p4"}),
        ({"trait": "city", "op": "neq", "value": "上海"}, {"p2", "p3"}),
        ({"trait": "city", "op": "in", "value": ["上海", "北京"]}, {"p1", "p2", "p4"}),
        ({"trait": "city", "op": "exists"}, {"p1", "p2", "p3", "p4"}),
        ({"trait": "city", "op": "exists", "value": False}, {"p5", "p6", "p7"}),
        ({"trait": "membership_level", "op": "eq", "value": "gold"}, {"p1"}),
        ({"trait": "registered_at", "op": "before", "value": "2025-01-01"}, {"p1"}),
        ({"trait": "registered_at", "op": "after", "value": "2025-01-01"}, {"p2", "p3"}),
        ({"trait": "registered_at", "op": "gte", "value": "2025-06-01"}, {"p2", "p3"}),
        ({"trait": "registered_at", "op": "lt", "value": "2025-06-01"}, {"p1"}),
        (
            {"trait": "registered_at", "op": "between", "value": ["2025-01-01", "2025-12-31"]},
            {"p2"},
        ),
        ({"not": {"trait": "city", "op": "eq", "value": "上海"}}, {"p2", "p3", "p5", "p6", "p7"}),
        (
            {"all": [{"trait": "city", "op": "eq", "value": "上海"}, {"segment": "active"}]},
            {"p1"},
        ),
        (
            {
                "any": [
                    {"trait": "membership_level", "op": "eq", "value": "silver"},
                    {"segment": "vip"},
                ]
            },
            {"p1", "p2"},
        ),
        ({"event": "Order Completed", "op": "gte", "count": 2, "within_days": 30}, {"p1"}),
        (
            {"event": "Order Completed", "op": "lte", "count": 1, "within_days": 30},
            {"p2", "p3", "p4", "p5", "p6", "p7"},
        ),
        ({"event": "Order Completed", "op": "eq", "count": 1, "within_days": 30}, {"p2"}),
        ({"event": "Order Completed", "within_days": 30}, {"p1", "p2"}),
        ({"event": "Page Viewed", "op": "gt", "count": 5}, {"p6"}),
        ({"event": "*", "op": "gte", "count": 3, "within_days": 30}, {"p3"}),
        ({"not": {"event": "*", "within_days": 60}}, {"p4", "p5", "p7"}),
        ({"event": "*", "op": "eq", "count": 0, "within_days": 60}, {"p4", "p5", "p7"}),
        ({"event": "*", "op": "gte", "count": 2}, {"p1", "p2", "p3", "p6"}),
        ({"event": "Order Completed", "op": "first", "within_days": 30}, {"p1"}),
        ({"event": "*", "op": "first", "within_days": 30}, {"p1", "p3"}),
        ({"event": "Page Viewed", "op": "stopped", "within_days": 30}, {"p4"}),
        ({"event": "*", "op": "stopped", "within_days": 100}, {"p4"}),
        ({"metric": "revenue", "op": "gte", "value": 100000, "within_days": 30}, {"p1"}),
        ({"metric": "revenue", "op": "gte", "value": 100000, "within_days": 365}, {"p1"}),
        ({"metric": "revenue", "op": "gte", "value": 100000}, {"p1", "p2"}),
        ({"metric": "revenue", "op": "gt", "value": 50000, "within_months": 12}, {"p1", "p2"}),
        (
            {"metric": "revenue", "op": "lt", "value": 1, "within_days": 30},
            {"p3", "p4", "p5", "p6", "p7"},
        ),
        ({"metric": "orders", "op": "eq", "value": 0}, {"p3", "p4", "p5", "p6", "p7"}),
        ({"metric": "orders", "op": "gte", "value": 2}, {"p1", "p2"}),
        ({"metric": "activity_change", "op": "lte", "value": -50, "within_days": 30}, {"p6"}),
        ({"metric": "activity_change", "op": "lte", "value": -50, "within_weeks": 4}, {"p6"}),
        ({"metric": "open_complaints", "op": "gte", "value": 1}, {"p7"}),
        (
            {"metric": "open_complaints", "op": "eq", "value": 0},
            {"p1", "p2", "p3", "p4", "p5", "p6"},
        ),
    ],
)
def test_operators(
    runtime: Runtime, data: dict[str, str], condition: dict[str, Any], expected: set[str]
) -> None:
    assert members(runtime, data, condition) == expected


@pytest.mark.parametrize(
    ("condition", "loc", "kind"),
    [
        (
            {"trait": "email", "op": "eq", "value": "x"},
            ["body", "condition", "trait"],
            "encrypted_field",
        ),
        (
            {
                "all": [
                    {"trait": "city", "op": "eq", "value": "a"},
                    {"trait": "birth_date", "op": "exists"},
                ]
            },
            ["body", "condition", "all", 1, "trait"],
            "encrypted_field",
        ),
        (
            {"trait": "nope", "op": "eq", "value": 1},
            ["body", "condition", "trait"],
            "unknown_field",
        ),
        (
            {"trait": "city", "op": "gt", "value": "a"},
            ["body", "condition", "op"],
            "invalid_condition",
        ),
        (
            {"any": [{"event": "*", "within_days": 0}]},
            ["body", "condition", "any", 0, "within_days"],
            "invalid_condition",
        ),
        (
            {"metric": "orders", "op": "eq", "value": 1, "within_days": 3},
            ["body", "condition", "within_days"],
            "invalid_condition",
        ),
        ({"segment": "nope"}, ["body", "condition", "segment"], "unknown_segment"),
        ({"all": []}, ["body", "condition", "all"], "invalid_condition"),
        ({"all": [{"trait": "city"}], "any": []}, ["body", "condition"], "invalid_condition"),
        (
            {"trait": "city", "op": "eq", "value": "a", "x": 1},
            ["body", "condition", "x"],
            "extra_forbidden",
        ),
        (
            {"trait": "membership_level", "op": "eq", "value": "diamond"},
            ["body", "condition", "value"],
            "invalid_condition",
        ),
    ],
)
def test_invalid_conditions_point_at_the_path(
    runtime: Runtime, condition: dict[str, Any], loc: list[Any], kind: str
) -> None:
    with unit_of_work(runtime.sessions) as session, pytest.raises(InvalidCondition) as caught:
        service.parse(
            runtime.policy, condition, service.definitions(session, policy=runtime.policy)
        )
    assert {"loc": loc, "type": kind} in [
        {"loc": e["loc"], "type": e["type"]} for e in caught.value.errors or []
    ]
