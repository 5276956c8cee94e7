"""The tracking plan is validated with the rest of the policy: errors name file and line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cdp.events.plan import EMPTY_PLAN, PropertySpec
from cdp.policy import PolicyInvalid, load_policy

DEMO = Path(__file__).resolve().parents[3] / "policies"
PLAN = "tracking-plan.yaml"


def _with_plan(tmp_path: Path, text: str | None) -> Path:
    folder = tmp_path / "policies"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(DEMO, folder)
    if text is None:
        (folder / PLAN).unlink()
    else:
        (folder / PLAN).write_text(text, encoding="utf-8")
    return folder


def _issues(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(PolicyInvalid) as caught:
        load_policy(_with_plan(tmp_path, text))
    return [str(issue) for issue in caught.value.issues]


def test_the_demo_plan_loads_and_is_part_of_the_version(tmp_path: Path) -> None:
    policy = load_policy(DEMO)
    assert policy.tracking_plan is not None and PLAN in policy.files
    names = {e.name for e in policy.tracking_plan.events}
    assert {
        "Order Completed",
        "Product Viewed",
        "Signed In",
        "Page Viewed",
        "Service Contacted",
        "Coupon Redeemed",
        "Subscription Cancelled",
    } <= names
    order = policy.tracking_plan.event("track", "Order Completed")
    assert order is not None and order.revenue and "shipping_city" in order.pi_properties
    page = policy.tracking_plan.event("page", None)
    assert page is not None and page.name == "Page Viewed"
    changed = (DEMO / PLAN).read_text(encoding="utf-8") + "\n# a comment\n"
    assert load_policy(_with_plan(tmp_path, changed)).version != policy.version


def test_without_a_plan_every_event_is_unplanned(tmp_path: Path) -> None:
    policy = load_policy(_with_plan(tmp_path, None))
    assert policy.tracking_plan is None
    assert EMPTY_PLAN.event("track", "Signed In") is None


BAD = """\
purpose: analytics
unplanned_events: keep
events:
  - name: Signed In
    category: health
  - name: Signed In
    retention_days: 9999
  - name: Paid
    revenue: true
    properties:
      note: {type: string, pi: true}
      when: {type: datetime}
      amount: {type: number, values: [1]}
  - name: Seen
    category: contact
  - name: Home
    type: page
  - name: Landing
    type: page
"""


def test_errors_point_at_file_and_line(tmp_path: Path) -> None:
    issues = _issues(tmp_path, BAD)
    assert any(i.startswith(f"{PLAN}:2: unplanned_events") for i in issues), issues
    issues = _issues(tmp_path, BAD.replace("unplanned_events: keep", "unplanned_events: drop"))
    assert any(i.startswith(f"{PLAN}:11: ") and "needs a `category`" in i for i in issues)
    assert any(i.startswith(f"{PLAN}:12: ") for i in issues), issues  # datetime is no type
    assert any(i.startswith(f"{PLAN}:13: ") and "values" in i for i in issues), issues


def test_cross_references_are_checked(tmp_path: Path) -> None:
    text = BAD.replace("unplanned_events: keep", "unplanned_events: drop")
    text = text.replace("      note: {type: string, pi: true}\n", "")
    text = text.replace("      when: {type: datetime}\n", "")
    text = text.replace("      amount: {type: number, values: [1]}\n", "      x: {type: number}\n")
    issues = _issues(tmp_path, text)
    expected = {
        5: "outside purpose 'analytics'",  # health is sensitive, not analytics'
        6: "duplicate event 'Signed In'",
        7: "exceeds purpose 'analytics'",
        9: "needs a non-PI `revenue` property",
        13: "outside purpose 'analytics'",  # contact
        17: "only one entry of type 'page'",
    }
    for line, words in expected.items():
        assert any(i.startswith(f"{PLAN}:{line}: ") and words in i for i in issues), (line, issues)
    issues = _issues(tmp_path, "purpose: lottery\nevents: []\n")
    assert issues == [f"{PLAN}:1: purpose 'lottery' is not in purposes.yaml"]


@pytest.mark.parametrize(
    ("kind", "good", "bad"),
    [
        ("string", ["a", ""], [1, True, None.__class__]),
        ("number", [1, 1.5, -0.0], [True, "1", [1]]),
        ("integer", [1, 2.0], [1.5, False, "1"]),
        ("boolean", [True, False], [0, "true"]),
        ("object", [{}, {"a": 1}], [[], "x"]),
        ("array", [[], [1]], [{}, "x"]),
    ],
)
def test_property_types(kind: str, good: list[object], bad: list[object]) -> None:
    spec = PropertySpec.model_validate({"type": kind})
    assert all(spec.accepts(v) for v in good)
    assert not any(spec.accepts(v) for v in bad)
