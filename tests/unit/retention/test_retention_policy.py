"""policies/retention.yaml is validated with the rest of the policy: errors name file and line,
and the file is part of the policy version."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cdp.cli import app as cli
from cdp.policy import PolicyInvalid, load_policy
from cdp.retention.policy import AUDIT_MIN_DAYS

DEMO = Path(__file__).resolve().parents[3] / "policies"
FILE = "retention.yaml"


def _folder(tmp_path: Path, text: str | None) -> Path:
    folder = tmp_path / "policies"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(DEMO, folder)
    if text is None:
        (folder / FILE).unlink()
    else:
        (folder / FILE).write_text(text, encoding="utf-8")
    return folder


def _issues(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(PolicyInvalid) as caught:
        load_policy(_folder(tmp_path, text))
    return [str(issue) for issue in caught.value.issues]


def test_the_demo_file_loads_and_is_part_of_the_version(tmp_path: Path) -> None:
    policy = load_policy(DEMO)
    spec = policy.retention
    assert spec is not None and FILE in policy.files
    assert spec.audit.keep_days >= AUDIT_MIN_DAYS and spec.audit.network_log_days >= 180
    assert spec.event_days("analytics", "behaviour") == 180
    hold = spec.legal_holds[0]
    assert hold.id == "accounting_vouchers" and hold.events == ["Order Completed"]
    assert hold.keep_years == 30 and "会计档案管理办法" in hold.law
    changed = (DEMO / FILE).read_text(encoding="utf-8") + "\n# a comment\n"
    assert load_policy(_folder(tmp_path, changed)).version != policy.version


def test_without_the_file_purposes_retention_applies(tmp_path: Path) -> None:
    policy = load_policy(_folder(tmp_path, None))
    assert policy.retention is None and FILE not in policy.files


def test_schema_errors_name_the_line(tmp_path: Path) -> None:
    text = (
        "audit:\n"
        "  keep_days: 365\n"  # line 2: under three years
        "events:\n"
        "  - {purpose: analytics, category: behaviour, days: 0}\n"  # line 4
        "legal_holds:\n"
        "  - id: Bad Id\n"  # line 6
        "    reason: r\n"
        "    law: l\n"
        "    events: [Order Completed]\n"
        "    keep_years: 30\n"
        "surprise: 1\n"  # line 11
    )
    issues = _issues(tmp_path, text)
    assert any(i.startswith("retention.yaml:2: audit.keep_days") for i in issues), issues
    assert any(i.startswith("retention.yaml:4: events[0].days") for i in issues), issues
    assert any(i.startswith("retention.yaml:6: legal_holds[0].id") for i in issues), issues
    assert any(i.startswith("retention.yaml:11: surprise: unknown key") for i in issues), issues


def test_cross_references_and_art_19(tmp_path: Path) -> None:
    text = (
        "events:\n"
        "  - {purpose: analytics, category: behaviour, days: 400}\n"  # 2: > 365
        "  - {purpose: marketing, category: behaviour, days: 30}\n"  # 3: not tracking's
        "  - {purpose: analytics, category: health, days: 30}\n"  # 4: outside purpose
        "  - {purpose: analytics, category: nope, days: 30}\n"  # 5: unknown
        "  - {purpose: analytics, category: behaviour, days: 30}\n"  # 6: duplicate
        "records:\n"
        "  feedback_text: {purpose: nobody, days: 10}\n"  # 8
        "  interaction_notes: {purpose: customer_care, days: 9999}\n"  # 9
        "legal_holds:\n"
        "  - {id: a, reason: r, law: l, events: [Order Completed], keep_years: 30}\n"
        "  - {id: a, reason: r, law: l, events: [Not Planned], keep_years: 30}\n"  # 12
    )
    issues = _issues(tmp_path, text)
    expected = [
        "retention.yaml:2: days 400 exceeds purpose 'analytics'",
        "retention.yaml:3: events are collected for purpose 'analytics'",
        "retention.yaml:4: category 'health' is outside purpose 'analytics'",
        "retention.yaml:5: unknown category 'nope'",
        "retention.yaml:6: duplicate rule",
        "retention.yaml:8: unknown purpose 'nobody'",
        "retention.yaml:9: days 9999 exceeds purpose 'customer_care'",
        "retention.yaml:12: duplicate legal hold 'a'",
        "retention.yaml:12: event 'Not Planned' is not in tracking-plan.yaml",
    ]
    for prefix in expected:
        assert any(i.startswith(prefix) for i in issues), (prefix, issues)


def test_policies_check_reports_the_file(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "audit: {network_log_days: 30}\n")
    result = CliRunner().invoke(cli, ["policies", "check", str(folder)])
    assert result.exit_code != 0
    assert "retention.yaml:1: audit.network_log_days" in result.output
