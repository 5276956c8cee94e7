"""Privacy notices in policies/notices/: the art. 17 sections, versions, and their references."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tests.unit.policy.test_loader import (
    PURPOSES,
    SECTIONS,
    line_of,
    notice_yaml,
    write_policy,
)
from typer.testing import CliRunner

from cdp.cli import app
from cdp.policy import PolicyInvalid, PolicyIssue, load_policy, text_sha256

DEMO = Path(__file__).resolve().parents[3] / "policies"


def issues_of(directory: Path) -> list[PolicyIssue]:
    with pytest.raises(PolicyInvalid) as caught:
        load_policy(directory)
    return caught.value.issues


def test_demo_notices_have_every_section_in_both_languages() -> None:
    policy = load_policy(DEMO)
    for notice in policy.notices.values():
        for version in notice.versions:
            assert set(version.texts) == {"zh-CN", "en"}
            for text in version.texts.values():
                assert all(getattr(text.sections, name) for name in SECTIONS)
    # Every consent purpose binds to a notice whose latest version describes it.
    for spec in policy.purposes.values():
        if spec.legal_basis == "consent":
            assert spec.notice is not None
            assert spec.id in policy.notices[spec.notice].latest.purposes


def test_art17_notice_missing_retention_fails_with_file_and_line(tmp_path: Path) -> None:
    without = tuple(s for s in SECTIONS if s != "retention")
    text = notice_yaml(sections=without)
    issues = issues_of(
        write_policy(tmp_path, notices={"privacy-notice": text, "n": notice_yaml("n")})
    )
    assert [i.file for i in issues] == ["notices/privacy-notice.yaml"] * 2
    assert {i.line for i in issues} == {
        line_of(text, "sections:", 1),
        line_of(text, "sections:", 2),
    }
    assert all("retention: required key is missing (PIPL art. 17)" in i.reason for i in issues)


def test_art17_policies_check_command_fails_on_a_notice_gap(tmp_path: Path) -> None:
    without = tuple(s for s in SECTIONS if s != "rights")
    folder = write_policy(tmp_path, notices={"privacy-notice": notice_yaml(sections=without)})
    result = CliRunner().invoke(app, ["policies", "check", str(folder)])
    assert result.exit_code == 1
    assert "notices/privacy-notice.yaml:" in result.output and "rights" in result.output
    ok = CliRunner().invoke(app, ["policies", "check", str(DEMO)])
    assert ok.exit_code == 0 and "4 notices" in ok.output


def test_both_languages_are_required(tmp_path: Path) -> None:
    text = notice_yaml().replace("      en:", "      fr:")
    [issue] = issues_of(write_policy(tmp_path, notices={"privacy-notice": text}))
    assert issue.file == "notices/privacy-notice.yaml" and "en text" in issue.reason


def test_purpose_naming_a_missing_notice_fails(tmp_path: Path) -> None:
    purposes = PURPOSES.replace("notice: privacy-notice", "notice: cookie-notice")
    [issue] = issues_of(write_policy(tmp_path, purposes=purposes, notices={}))
    assert (issue.file, issue.line) == ("purposes.yaml", line_of(purposes, "cookie-notice"))
    assert "'cookie-notice'" in issue.reason


def test_notice_id_is_its_file_name(tmp_path: Path) -> None:
    [issue] = issues_of(
        write_policy(tmp_path, notices={"privacy-notice": notice_yaml(), "other": notice_yaml()})
    )
    assert issue.file == "notices/other.yaml" and issue.line == 1 and "file name" in issue.reason


def test_versions_only_go_up(tmp_path: Path) -> None:
    text = notice_yaml()
    again = text[text.index("  - version: 1") :]
    twice = text + again
    [issue] = issues_of(write_policy(tmp_path, notices={"privacy-notice": twice}))
    assert issue.line == line_of(twice, "- version: 1", 2)
    assert "must be greater than 1" in issue.reason


def test_notice_must_describe_the_purposes_bound_to_it(tmp_path: Path) -> None:
    text = notice_yaml(purposes="[service]")
    [issue] = issues_of(write_policy(tmp_path, notices={"privacy-notice": text}))
    assert issue.line == line_of(text, "purposes: [service]")
    assert "'care'" in issue.reason and "art. 17" in issue.reason


def test_notice_listing_an_unknown_purpose_fails(tmp_path: Path) -> None:
    text = notice_yaml(purposes="[care, lottery]")
    [issue] = issues_of(write_policy(tmp_path, notices={"privacy-notice": text}))
    assert "unknown purpose 'lottery'" in issue.reason


def test_art23_sharing_notice_names_its_recipients(tmp_path: Path) -> None:
    purposes = PURPOSES.replace(
        "    notice: privacy-notice\n",
        "    notice: privacy-notice\n    third_party: true\n    separate_consent: true\n"
        "    pia: PIA-1\n",
    )
    issues = issues_of(write_policy(tmp_path, purposes=purposes))
    assert [i.file for i in issues] == ["notices/privacy-notice.yaml"] * 2
    assert all("recipients" in i.reason and "art. 23" in i.reason for i in issues)


def test_reconsent_may_name_only_listed_purposes(tmp_path: Path) -> None:
    text = notice_yaml().replace(
        "    purposes: [care]", "    reconsent: [service]\n    purposes: [care]"
    )
    [issue] = issues_of(write_policy(tmp_path, notices={"privacy-notice": text}))
    assert "reconsent names purposes not listed: service" in issue.reason


def test_art16_essential_purpose_cannot_rest_on_consent(tmp_path: Path) -> None:
    # A core service gated on a consent the customer may refuse.
    purposes = PURPOSES.replace(
        "    legal_basis: consent\n", "    legal_basis: consent\n    essential: true\n"
    )
    [issue] = issues_of(write_policy(tmp_path, purposes=purposes))
    assert issue.line == line_of(purposes, "essential: true", 2)
    assert "art. 16" in issue.reason and "consent-based" in issue.reason


def test_policy_version_covers_notice_files(tmp_path: Path) -> None:
    copy = tmp_path / "policies"
    shutil.copytree(DEMO, copy)
    first = load_policy(copy).version
    with (copy / "notices" / "location-notice.yaml").open("a", encoding="utf-8") as out:
        out.write("# reviewed by legal\n")
    assert load_policy(copy).version != first


def test_text_hash_follows_the_text_shown() -> None:
    notice = load_policy(DEMO).notices["privacy-notice"]
    v1, v2 = notice.versions
    hashes = {text_sha256(notice.id, v, locale) for v in (v1, v2) for locale in ("zh-CN", "en")}
    assert len(hashes) == 4 and all(len(h) == 64 for h in hashes)
    assert text_sha256(notice.id, v1, "en") == text_sha256(notice.id, v1, "en")
