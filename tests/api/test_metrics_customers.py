"""Customer metrics over HTTP on the fixed dataset (tests/unit/segments/dataset.py), built
three times over so that groups reach k = 5: counts, churn, repeat visits, CLV, and the
k-anonymity suppression of small groups."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from tests.unit.segments import dataset

from cdp.api import Runtime
from cdp.audit.service import RequestContext
from cdp.db import unit_of_work

Headers = Callable[..., dict[str, str]]
SUPPRESSED = {"value": None, "subjects": None, "suppressed": True, "reason": "k_anonymity"}


def _build(runtime: Runtime, times: int) -> None:
    for _ in range(times):
        with unit_of_work(runtime.sessions) as session:
            session.info["ctx"] = RequestContext(runtime.policy.version)
            dataset.build(session)


@pytest.fixture
def analyst(token_for: Headers) -> dict[str, str]:
    return token_for("analyst")


def test_a_split_revealing_four_customers_is_suppressed(
    client: TestClient, runtime: Runtime, analyst: dict[str, str]
) -> None:
    _build(runtime, 1)
    today = datetime.now(UTC).date()
    params = {"from": (today - timedelta(days=29)).isoformat(), "to": today.isoformat()}
    whole = client.get("/v1/metrics/customers", params=params, headers=analyst)
    assert whole.status_code == 200, whole.text
    assert whole.json()["k"] == 5
    assert whole.json()["periods"][-1]["customers"]["value"] == 7
    # The 4 active customers: every cell of that split would reveal a group of 4.
    split = client.get(
        "/v1/metrics/customers", params={**params, "segment": "active"}, headers=analyst
    )
    assert split.status_code == 200, split.text
    for period in split.json()["periods"]:
        assert period["customers"] == SUPPRESSED
        assert all(
            cell["suppressed"] for name, cell in period.items() if name not in ("start", "end")
        )


def test_counts_churn_repeat_visits_and_lifetime_value(
    client: TestClient, runtime: Runtime, analyst: dict[str, str]
) -> None:
    _build(runtime, 3)  # 21 customers: each group of the dataset three times
    today = datetime.now(UTC).date()
    last_30 = {"from": (today - timedelta(days=29)).isoformat(), "to": today.isoformat()}
    resp = client.get("/v1/metrics/customers", params=last_30, headers=analyst)
    assert resp.status_code == 200, resp.text
    period = resp.json()["periods"][-1]
    assert period["end"] == today.isoformat()
    start = period["start"]
    values = {k: v["value"] for k, v in period.items() if k not in ("start", "end")}
    assert values["customers"] == 21
    # p4, p5, p7 of each build saw nothing in 90 days.
    assert values["silent"] == 9
    # Lifetime revenue per customer who ever bought: p1 and p2 spent 110,000 each.
    assert values["clv_historic"] == 110000
    assert period["clv_historic"]["subjects"] == 6
    # Hand-computed from the dataset's activity days, over the period the server cut.
    a, b = date.fromisoformat(start), today
    monday = today - timedelta(days=today.weekday())
    days = {
        "p1": [today, today - timedelta(days=1)],
        "p2": [today - timedelta(days=5), today - timedelta(days=400)],
        "p3": [today - timedelta(days=10)],
        "p4": [today - timedelta(days=200)],
        "p6": [monday - timedelta(days=40), monday - timedelta(days=10)],
    }
    length = (b - a).days + 1
    prev_a, prev_b = a - timedelta(days=length), a - timedelta(days=1)
    active = {n for n, ds in days.items() if any(a <= d <= b for d in ds)}
    before = {n for n, ds in days.items() if any(prev_a <= d <= prev_b for d in ds)}
    new = {n for n, ds in days.items() if a <= min(ds) <= b}
    repeat = {n for n, ds in days.items() if len({d for d in ds if a <= d <= b}) >= 2}

    def shown(n: int, value: object) -> object:
        return value if n >= 5 else None

    assert values["active"] == shown(3 * len(active), 3 * len(active))
    assert values["new"] == shown(3 * len(new), 3 * len(new))
    rate = round(len(repeat) / len(active), 4) if active else None
    assert values["repeat_visit_rate"] == shown(3 * len(active), rate)
    churn = round(len(before - active) / len(before), 4) if before else None
    assert values["churn_rate"] == shown(3 * len(before), churn)
    # A segment's metrics: the 3 VIPs are too few to show.
    vip = client.get("/v1/metrics/customers", params={**last_30, "segment": "vip"}, headers=analyst)
    assert vip.json()["periods"][-1]["customers"] == SUPPRESSED
    bad = client.get(
        "/v1/metrics/customers", params={"from": "2026-02-01", "to": "2026-01-01"}, headers=analyst
    )
    assert bad.status_code == 422 and bad.json()["code"] == "validation_error"
    unknown = client.get("/v1/metrics/customers", params={"segment": "nope"}, headers=analyst)
    assert unknown.status_code == 404
