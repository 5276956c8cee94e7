"""The record of processing activities (PIPL art. 7, 54-55), built from the policy."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

from fastapi.testclient import TestClient

from cdp.api import Runtime

Headers = Callable[..., dict[str, str]]


def test_every_purpose_is_recorded_with_its_safeguards(
    client: TestClient, runtime: Runtime, token_for: Headers
) -> None:
    resp = client.get("/v1/compliance/processing-activities", headers=token_for("compliance"))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    policy = runtime.policy
    assert body["policy_version"] == policy.version
    by_id = {a["purpose"]: a for a in body["activities"]}
    assert set(by_id) == set(policy.purposes)
    for purpose_id, activity in by_id.items():
        spec = policy.purposes[purpose_id]
        assert activity["legal_basis"] == spec.legal_basis
        assert activity["retention_days"] == spec.retention_days
        assert activity["fields"] == sorted(policy.fields_for(purpose_id))
        assert set(activity["sensitive_fields"]) <= policy.sensitive_fields
        assert activity["separate_consent"] == spec.needs_separate_consent
        assert activity["pia"] == spec.pia
    nearby = by_id["nearby_stores"]
    assert nearby["sensitive_fields"] and nearby["separate_consent"]
    assert nearby["notice"]["id"] == "location-notice" and nearby["notice"]["version"] >= 1
    assert (
        by_id["third_party_sharing"]["third_party"]
        and by_id["cross_border_transfer"]["cross_border"]
    )
    assert by_id["legal_compliance"]["notice"] is None


def test_csv_has_one_row_per_purpose(
    client: TestClient, runtime: Runtime, token_for: Headers
) -> None:
    resp = client.get(
        "/v1/compliance/processing-activities",
        params={"format": "csv"},
        headers=token_for("compliance"),
    )
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert {r["purpose"] for r in rows} == set(runtime.policy.purposes)
    marketing = next(r for r in rows if r["purpose"] == "marketing")
    assert marketing["name_zh"] == "个性化营销" and marketing["personalisation"] == "true"
    assert marketing["pia"] == "PIA-2024-003"


def test_only_compliance_reads_it(client: TestClient, token_for: Headers) -> None:
    resp = client.get("/v1/compliance/processing-activities", headers=token_for("analyst"))
    assert resp.status_code == 403 and resp.json()["code"] == "insufficient_scope"
