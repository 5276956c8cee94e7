"""Explanation of processing (PIPL arts. 24, 48): the purposes from policy, the subject's
consents, its segments with why, and the automated decisions that use its data."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from cdp.consent import service as consent
from cdp.policy import Policy
from cdp.rights.bundle import processing
from cdp.segments import service as segments_service


def explain(session: Session, *, policy: Policy, subject_id: str) -> dict[str, Any]:
    state = consent.load_states(session, [subject_id])[subject_id]
    purposes = []
    for item in processing(session, policy):
        denial = consent.effective(policy, item["purpose"], subject_id, state)
        grant = state.consents.get(item["purpose"])
        purposes.append(
            {
                **item,
                "uses_your_data_now": denial is None,
                "why_not": denial,
                "your_consent": grant.state if grant else None,
            }
        )
    segments = segments_service.subject_segments(session, policy=policy, subject_id=subject_id)
    member_of = [s for s in segments if s.get("member")]
    automated = [
        {
            "purpose": p["purpose"],
            "description": p["description"],
            "applies_to_you": p["uses_your_data_now"],
            "segments_used": [s["key"] for s in member_of],
            "opted_out": state.personalisation_opt_out,
            "how_to_refuse": "PUT /v1/self/consents with personalisation_opt_out=true"
            " (PIPL art. 24), or withdraw the purpose's consent",
        }
        for p in purposes
        if p["personalisation"]
    ]
    return {
        "subject_id": subject_id,
        "policy_version": policy.version,
        "restricted": state.restricted,
        "purposes": purposes,
        "segments": segments,
        "automated_decisions": automated,
    }
