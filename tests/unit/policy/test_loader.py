"""Loading policy files: the demo policy, its version, and errors that point at file and line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cdp.policy import PolicyInvalid, PolicyIssue, UnknownRole, load_policy

DEMO = Path(__file__).resolve().parents[3] / "policies"

CATEGORIES = """\
categories:
  - id: contact
    description: How to reach the person.
  - id: membership
    description: Loyalty status.
  - id: health
    description: Health data.
"""

FIELDS = """\
fields:
  - name: email
    category: contact
    storage: encrypted+blind_index
    type: string
  - name: level
    category: membership
    storage: plain
    type: enum
    values: [silver, gold]
  - name: allergy
    category: health
    sensitive: true
    storage: encrypted
    type: string
"""

PURPOSES = """\
purposes:
  - id: service
    names: {zh: 服务, en: Service}
    description: Deliver what was bought.
    legal_basis: contract
    essential: true
    categories: [contact, membership]
    retention_days: 365
  - id: care
    names: {zh: 客户关怀, en: Care}
    description: Answer questions.
    legal_basis: consent
    categories: [contact]
    retention_days: 90
    notice: privacy-notice
"""

ROLES = """\
roles:
  - name: app
    scopes: [profiles:*, policies:read]
    purposes: [service, care]
  - name: admin
    scopes: ["*"]
    purposes: ["*"]
"""


SECTIONS = ("processor", "contact", "purposes", "methods", "pi_types", "retention", "rights")


def notice_yaml(
    notice_id: str = "privacy-notice",
    purposes: str = "[care]",
    sections: tuple[str, ...] = SECTIONS,
) -> str:
    """A one-version notice in zh-CN and en with the given sections."""
    texts = ""
    for locale in ("zh-CN", "en"):
        texts += f"      {locale}:\n        title: T\n        sections:\n"
        texts += "".join(f"          {name}: text of {name}\n" for name in sections)
    return (
        f"id: {notice_id}\nnames: {{zh: 告知, en: Notice}}\nversions:\n"
        f"  - version: 1\n    published: 2026-01-01\n    purposes: {purposes}\n"
        f"    texts:\n{texts}"
    )


# The notices every consent purpose above may name: `privacy-notice`, and `n` for the edits below.
NOTICES = {
    "privacy-notice": notice_yaml(),
    "n": notice_yaml("n", sections=(*SECTIONS, "recipients")),
}


def write_policy(
    directory: Path,
    *,
    purposes: str = PURPOSES,
    fields: str = CATEGORIES + FIELDS,
    roles: str = ROLES,
    settings: str | None = None,
    notices: dict[str, str] | None = None,
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "notices").mkdir(exist_ok=True)
    for name, text in (NOTICES if notices is None else notices).items():
        (directory / "notices" / f"{name}.yaml").write_text(text, encoding="utf-8")
    (directory / "purposes.yaml").write_text(purposes, encoding="utf-8")
    (directory / "fields.yaml").write_text(fields, encoding="utf-8")
    (directory / "roles.yaml").write_text(roles, encoding="utf-8")
    if settings is not None:
        (directory / "settings.yaml").write_text(settings, encoding="utf-8")
    return directory


def issues_of(directory: Path) -> list[PolicyIssue]:
    with pytest.raises(PolicyInvalid) as caught:
        load_policy(directory)
    return caught.value.issues


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the n-th line containing needle."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    return hits[occurrence - 1]


def test_demo_policy_loads() -> None:
    policy = load_policy(DEMO)
    assert policy.version.startswith("sha256:")
    assert len(policy.version) == len("sha256:") + 64
    assert {"service_delivery", "marketing", "third_party_sharing", "storage"} <= set(
        policy.purposes
    )
    assert policy.purposes["marketing"].personalisation
    assert policy.purposes["cross_border_transfer"].separate_consent
    assert policy.fields["id_card_number"].sensitive
    assert {"admin", "app", "analyst", "support", "tracker", "subject"} <= set(policy.roles)
    assert "contact" in policy.categories
    assert policy.files == [
        "fields.yaml",
        "notices/cross-border-notice.yaml",
        "notices/location-notice.yaml",
        "notices/partner-sharing-notice.yaml",
        "notices/privacy-notice.yaml",
        "purposes.yaml",
        "retention.yaml",
        "roles.yaml",
        "segments.yaml",
        "settings.yaml",
        "tracking-plan.yaml",
    ]
    assert set(policy.notices) == {
        "privacy-notice",
        "location-notice",
        "partner-sharing-notice",
        "cross-border-notice",
    }
    assert policy.settings.k_anonymity == 5
    assert policy.settings.rights_due_working_days == 15


def test_demo_role_scope_patterns_expand_to_concrete_scopes() -> None:
    policy = load_policy(DEMO)
    app = policy.role("app")
    assert {"profiles:read", "profiles:write", "profiles:delete"} <= app.scopes
    assert not any("*" in scope for scope in app.scopes)
    admin = policy.role("admin")
    assert "audit:export" in admin.scopes
    assert "self" not in admin.scopes  # a staff wildcard never grants customer self-service
    assert admin.purposes == frozenset({"*"})


def test_version_is_stable_and_follows_content(tmp_path: Path) -> None:
    copy = tmp_path / "policies"
    shutil.copytree(DEMO, copy)
    first = load_policy(copy).version
    assert load_policy(copy).version == first
    assert load_policy(DEMO).version == first

    with (copy / "roles.yaml").open("a", encoding="utf-8") as out:
        out.write("# reviewed\n")
    assert load_policy(copy).version != first


def test_settings_default_without_file(tmp_path: Path) -> None:
    policy = load_policy(write_policy(tmp_path))
    assert policy.settings.k_anonymity == 5
    assert policy.settings.rights_due_working_days == 15
    assert policy.settings.token_max_ttl_seconds == 3600
    assert policy.files == [
        "fields.yaml",
        "notices/n.yaml",
        "notices/privacy-notice.yaml",
        "purposes.yaml",
        "roles.yaml",
    ]


def test_settings_from_file(tmp_path: Path) -> None:
    policy = load_policy(write_policy(tmp_path, settings="k_anonymity: 10\n"))
    assert policy.settings.k_anonymity == 10
    assert policy.settings.rights_due_working_days == 15


def test_settings_out_of_range(tmp_path: Path) -> None:
    settings = "k_anonymity: 5\nrights_due_working_days: 45\n"
    [issue] = issues_of(write_policy(tmp_path, settings=settings))
    assert (issue.file, issue.line) == ("settings.yaml", 2)
    assert "rights_due_working_days" in issue.reason


def test_wrong_type_points_at_its_line(tmp_path: Path) -> None:
    purposes = PURPOSES.replace("retention_days: 90", 'retention_days: "abc"')
    [issue] = issues_of(write_policy(tmp_path, purposes=purposes))
    assert issue.file == "purposes.yaml"
    assert issue.line == line_of(purposes, 'retention_days: "abc"')
    assert "purposes[1].retention_days" in issue.reason
    assert "'abc'" in issue.reason


def test_unknown_legal_basis(tmp_path: Path) -> None:
    purposes = PURPOSES.replace("legal_basis: contract", "legal_basis: legitimate_interest")
    [issue] = issues_of(write_policy(tmp_path, purposes=purposes))
    assert issue.line == line_of(purposes, "legitimate_interest")
    assert "legal_basis" in issue.reason


def test_unknown_key(tmp_path: Path) -> None:
    purposes = PURPOSES.replace("    essential: true\n", "    essential: true\n    owner: sales\n")
    [issue] = issues_of(write_policy(tmp_path, purposes=purposes))
    assert issue.line == line_of(purposes, "owner: sales")
    assert issue.reason == "purposes[0].owner: unknown key"


def test_missing_key_points_at_the_item(tmp_path: Path) -> None:
    purposes = PURPOSES.replace("    retention_days: 365\n", "")
    [issue] = issues_of(write_policy(tmp_path, purposes=purposes))
    assert issue.line == line_of(purposes, "id: service")
    assert issue.reason == "purposes[0].retention_days: required key is missing"


def test_unknown_field_category(tmp_path: Path) -> None:
    fields = CATEGORIES + FIELDS.replace("category: membership", "category: loyalty")
    [issue] = issues_of(write_policy(tmp_path, fields=fields))
    assert issue.file == "fields.yaml"
    assert issue.line == line_of(fields, "category: loyalty")
    assert "'loyalty'" in issue.reason


def test_unknown_purpose_category(tmp_path: Path) -> None:
    purposes = PURPOSES.replace("categories: [contact]", "categories: [contact, location]")
    [issue] = issues_of(write_policy(tmp_path, purposes=purposes))
    assert issue.line == line_of(purposes, "categories: [contact, location]")
    assert "'location'" in issue.reason


def test_duplicate_purpose_reports_the_second(tmp_path: Path) -> None:
    purposes = PURPOSES.replace("id: care", "id: service")
    roles = ROLES.replace("[service, care]", "[service]")
    notices = {"privacy-notice": notice_yaml(purposes="[service]")}
    [issue] = issues_of(write_policy(tmp_path, purposes=purposes, roles=roles, notices=notices))
    assert issue.file == "purposes.yaml"
    assert issue.line == line_of(purposes, "id: service", occurrence=2)
    assert "duplicate purpose 'service' (first at line 2)" in issue.reason


def test_duplicate_mapping_key(tmp_path: Path) -> None:
    purposes = PURPOSES.replace("    retention_days: 90\n", "    retention_days: 90\n" * 2)
    [issue] = issues_of(write_policy(tmp_path, purposes=purposes))
    assert issue.line == line_of(purposes, "retention_days: 90", occurrence=2)
    assert "duplicate key 'retention_days'" in issue.reason


def test_yaml_syntax_error_has_its_line(tmp_path: Path) -> None:
    roles = ROLES.replace("purposes: [service, care]", "purposes: [service, care")
    [issue] = issues_of(write_policy(tmp_path, roles=roles))
    assert issue.file == "roles.yaml"
    assert issue.line is not None
    assert line_of(roles, "[service, care") <= issue.line <= line_of(roles, "name: admin")
    assert "YAML syntax error" in issue.reason


def test_missing_pia_for_sensitive_category(tmp_path: Path) -> None:
    purposes = PURPOSES.replace("categories: [contact, membership]", "categories: [health]")
    [issue] = issues_of(write_policy(tmp_path, purposes=purposes))
    assert issue.line == line_of(purposes, "id: service")
    assert "pia" in issue.reason
    assert "health" in issue.reason


def test_missing_pia_for_personalisation(tmp_path: Path) -> None:
    purposes = PURPOSES.replace(
        "    notice: privacy-notice\n", "    notice: n\n    personalisation: true\n"
    )
    [issue] = issues_of(write_policy(tmp_path, purposes=purposes))
    assert "art. 55" in issue.reason
    assert "personalisation" in issue.reason


def test_third_party_consent_needs_separate_consent(tmp_path: Path) -> None:
    purposes = PURPOSES.replace(
        "    notice: privacy-notice\n", "    notice: n\n    third_party: true\n    pia: PIA-1\n"
    )
    [issue] = issues_of(write_policy(tmp_path, purposes=purposes))
    assert "separate_consent" in issue.reason


def test_consent_purpose_needs_notice(tmp_path: Path) -> None:
    purposes = PURPOSES.replace("    notice: privacy-notice\n", "")
    [issue] = issues_of(write_policy(tmp_path, purposes=purposes))
    assert issue.line == line_of(purposes, "legal_basis: consent")
    assert "notice" in issue.reason


def test_essential_purpose_cannot_be_consent_personalisation(tmp_path: Path) -> None:
    purposes = PURPOSES.replace(
        "    notice: privacy-notice\n",
        "    notice: n\n    personalisation: true\n    essential: true\n    pia: PIA-1\n",
    )
    [issue] = issues_of(write_policy(tmp_path, purposes=purposes))
    assert issue.line == line_of(purposes, "essential: true", occurrence=2)
    assert "art. 16" in issue.reason


def test_sensitive_field_must_be_encrypted(tmp_path: Path) -> None:
    fields = CATEGORIES + FIELDS.replace("    storage: encrypted\n", "    storage: plain\n")
    [issue] = issues_of(write_policy(tmp_path, fields=fields))
    assert issue.line == line_of(fields, "storage: plain", occurrence=2)


def test_enum_field_needs_values(tmp_path: Path) -> None:
    fields = CATEGORIES + FIELDS.replace("    values: [silver, gold]\n", "")
    [issue] = issues_of(write_policy(tmp_path, fields=fields))
    assert issue.line == line_of(fields, "name: level")
    assert "values" in issue.reason


def test_role_with_unknown_purpose(tmp_path: Path) -> None:
    roles = ROLES.replace("purposes: [service, care]", "purposes: [service, marketing]")
    [issue] = issues_of(write_policy(tmp_path, roles=roles))
    assert issue.file == "roles.yaml"
    assert issue.line == line_of(roles, "marketing")
    assert "unknown purpose 'marketing'" in issue.reason


def test_role_with_unknown_scope(tmp_path: Path) -> None:
    roles = ROLES.replace("policies:read", "policies:publish")
    [issue] = issues_of(write_policy(tmp_path, roles=roles))
    assert issue.line == line_of(roles, "policies:publish")
    assert "unknown scope 'policies:publish'" in issue.reason


def test_missing_required_file(tmp_path: Path) -> None:
    directory = write_policy(tmp_path)
    (directory / "roles.yaml").unlink()
    [issue] = issues_of(directory)
    assert (issue.file, issue.line) == ("roles.yaml", None)
    assert str(issue).startswith("roles.yaml: required file not found")


def test_every_problem_in_every_file_is_reported(tmp_path: Path) -> None:
    purposes = PURPOSES.replace("retention_days: 90", "retention_days: soon")
    roles = ROLES.replace("policies:read", "policies:publish")
    issues = issues_of(write_policy(tmp_path, purposes=purposes, roles=roles))
    assert [(i.file, i.line) for i in issues] == [
        ("purposes.yaml", line_of(purposes, "retention_days: soon")),
        ("roles.yaml", line_of(roles, "policies:publish")),
    ]


def test_error_message_lists_file_line_reason(tmp_path: Path) -> None:
    purposes = PURPOSES.replace("retention_days: 90", "retention_days: -1")
    with pytest.raises(PolicyInvalid) as caught:
        load_policy(write_policy(tmp_path, purposes=purposes))
    line = line_of(purposes, "retention_days: -1")
    assert str(caught.value).startswith(f"purposes.yaml:{line}: purposes[1].retention_days: ")


def test_unknown_role_is_a_clear_error(tmp_path: Path) -> None:
    policy = load_policy(write_policy(tmp_path))
    with pytest.raises(UnknownRole, match="unknown role 'auditor'"):
        policy.role("auditor")


def test_an_unreadable_file_does_not_cascade(tmp_path: Path) -> None:
    [issue] = issues_of(write_policy(tmp_path, purposes="purposes: [service\n"))
    assert issue.file == "purposes.yaml"  # roles.yaml's references are not reported as unknown


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ("k_anonymity: 5\nminor_age_years: !!python/object:os.system 3\n", "YAML error"),
        ("k_anonymity: 5\nsince: 2024-13-45\n", "invalid value '2024-13-45'"),
        ("base: &b {k_anonymity: 7}\nk: 5\n<<: *b\n", "merge keys"),
        ("k_anonymity: 5\nk_anonymity: 6\n", "duplicate key 'k_anonymity' (first at line 1)"),
    ],
)
def test_yaml_constructs_outside_plain_data_are_refused(
    tmp_path: Path, settings: str, reason: str
) -> None:
    issues = issues_of(write_policy(tmp_path, settings=settings))
    assert any(i.file == "settings.yaml" and reason in i.reason for i in issues), issues
    assert all(i.line is not None and i.line >= 1 for i in issues)


def test_policy_issue_str() -> None:
    assert str(PolicyIssue("purposes.yaml", 12, "bad")) == "purposes.yaml:12: bad"
    assert str(PolicyIssue("roles.yaml", None, "missing")) == "roles.yaml: missing"
