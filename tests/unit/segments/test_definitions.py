"""policies/segments.yaml is validated with the rest of the policy: errors name file and line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cdp.policy import PolicyInvalid, load_policy

DEMO = Path(__file__).resolve().parents[3] / "policies"
FILE = "segments.yaml"


def _with(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "policies"
    shutil.copytree(DEMO, folder)
    (folder / FILE).write_text(text, encoding="utf-8")
    return folder


def _issues(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(PolicyInvalid) as caught:
        load_policy(_with(tmp_path, text))
    return [str(issue) for issue in caught.value.issues]


def test_the_builtins_load_with_editable_thresholds(tmp_path: Path) -> None:
    policy = load_policy(DEMO)
    assert list(policy.segments) == ["vip", "new", "potential", "active", "silent", "churn_risk"]
    assert policy.segments["vip"].condition["value"] == 100000
    text = (DEMO / FILE).read_text(encoding="utf-8").replace("value: 100000", "value: 50000")
    edited = load_policy(_with(tmp_path, text))
    assert edited.segments["vip"].condition["value"] == 50000
    assert edited.version != policy.version


def test_errors_point_at_file_and_line(tmp_path: Path) -> None:
    text = """segments:
  - key: vip
    names: {zh: 重要客户, en: VIP}
    condition: {metric: revenue, op: gt, value: 100000, within_months: 12}
  - key: phones
    names: {zh: 有手机, en: Has phone}
    condition:
      all:
        - {trait: phone, op: exists}
        - {segment: nope}
  - key: vip
    names: {zh: 重复, en: Duplicate}
    condition: {segment: vip}
  - key: Bad-Key
    names: {en: Only English}
    condition: {event: "*", within_days: 0}
"""
    issues = _issues(tmp_path, text)
    assert any(i.startswith("segments.yaml:9: ") and "encrypted" in i for i in issues), issues
    assert any(i.startswith("segments.yaml:10: ") and "unknown segment 'nope'" in i for i in issues)
    assert any(i.startswith("segments.yaml:11: ") and "duplicate segment key" in i for i in issues)
    assert any(i.startswith("segments.yaml:14: ") and "key" in i for i in issues), issues
    assert any(i.startswith("segments.yaml:15: ") and "zh" in i for i in issues), issues
