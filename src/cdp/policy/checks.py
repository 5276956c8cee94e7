"""Rules across policy entries and files: references resolve, and PIPL obligations are declared.

PIPL rules enforced here, each reported on the purpose that breaks it:
- art. 55: a purpose needs a `pia` (impact assessment reference) when it asks for separate
  consent, is third_party, cross_border or personalisation, or may touch a category that
  holds a sensitive field.
- art. 23 and 39: a consent-based purpose that is third_party or cross_border needs
  `separate_consent: true`.
- art. 14 and 17: a consent-based purpose names the `notice` its consents bind to.
- art. 16: an `essential` purpose (what the core service runs on) can be neither consent-based
  nor personalisation, since refusing non-essential processing would then cost the service.
- art. 17: every notice a purpose names exists and describes it (see notices.py).
- art. 51: a sensitive field is never stored `plain`.
"""

from __future__ import annotations

from typing import Any

from cdp.policy.model import Category, FieldSpec, PolicyIssue, Purpose, Role, RoleEntry
from cdp.policy.scopes import expand_scope
from cdp.policy.section import Section


def duplicate_ids(section: Section[Any], label: str) -> list[PolicyIssue]:
    """Each repeated id, reported where it is repeated."""
    issues: list[PolicyIssue] = []
    first: dict[str, int] = {}
    for index, item in enumerate(section.raw):
        value = item.get(section.id_key) if isinstance(item, dict) else None
        if not isinstance(value, str):
            continue
        if value in first:
            where = section.line(first[value], section.id_key)
            issues.append(
                section.issue(
                    index,
                    section.id_key,
                    reason=f"duplicate {label} {value!r} (first at line {where})",
                )
            )
        else:
            first[value] = index
    return issues


def check_fields(fields: Section[FieldSpec], categories: Section[Category]) -> list[PolicyIssue]:
    """Every field has a declared category and sensitive fields are encrypted."""
    known = categories.raw_ids()
    issues: list[PolicyIssue] = []
    for index, spec in fields.entries:
        if categories.readable and spec.category not in known:
            issues.append(
                fields.issue(
                    index,
                    "category",
                    reason=f"field {spec.name!r} has unknown category {spec.category!r}"
                    f" (declared: {_listing(known)})",
                )
            )
        if spec.sensitive and spec.storage == "plain":
            issues.append(
                fields.issue(
                    index,
                    "storage",
                    reason=f"sensitive field {spec.name!r} must be stored encrypted (PIPL art. 51)",
                )
            )
    return issues


def check_purposes(
    purposes: Section[Purpose], categories: Section[Category], fields: Section[FieldSpec]
) -> list[PolicyIssue]:
    """Categories resolve, aliases are unambiguous, and the PIPL rules above hold."""
    known = categories.raw_ids()
    sensitive = {spec.category for spec in fields.specs() if spec.sensitive}
    issues: list[PolicyIssue] = []
    for index, spec in purposes.entries:
        for position, category in enumerate(spec.categories):
            if categories.readable and category not in known:
                issues.append(
                    purposes.issue(
                        index,
                        "categories",
                        position,
                        reason=f"purpose {spec.id!r} has unknown category {category!r}"
                        f" (declared: {_listing(known)})",
                    )
                )
        issues.extend(_pipl_rules(purposes, index, spec, sensitive))
    issues.extend(_alias_clashes(purposes))
    return issues


def _pipl_rules(
    purposes: Section[Purpose], index: int, spec: Purpose, sensitive: set[str]
) -> list[PolicyIssue]:
    issues: list[PolicyIssue] = []
    triggers = [
        name
        for name, on in (
            ("separate_consent", spec.separate_consent),
            ("third_party", spec.third_party),
            ("cross_border", spec.cross_border),
            ("personalisation", spec.personalisation),
        )
        if on
    ]
    touched = sorted(sensitive & set(spec.categories))
    if touched:
        triggers.append(f"sensitive categories {', '.join(touched)}")
    if triggers and spec.pia is None:
        issues.append(
            purposes.issue(
                index,
                reason=f"purpose {spec.id!r} needs a `pia` impact-assessment reference"
                f" (PIPL art. 55): {'; '.join(triggers)}",
            )
        )
    consent = spec.legal_basis == "consent"
    if consent and (spec.third_party or spec.cross_border) and not spec.separate_consent:
        kind = "third_party" if spec.third_party else "cross_border"
        issues.append(
            purposes.issue(
                index,
                "separate_consent",
                reason=f"purpose {spec.id!r} is {kind} on a consent basis and needs"
                " `separate_consent: true` (PIPL art. 23, 39)",
            )
        )
    if consent and spec.notice is None:
        issues.append(
            purposes.issue(
                index,
                "legal_basis",
                reason=f"purpose {spec.id!r} is consent-based and must name the `notice`"
                " its consents bind to (PIPL art. 14, 17)",
            )
        )
    if spec.essential and (consent or spec.personalisation):
        what = " and ".join(
            w
            for w, on in (("consent-based", consent), ("personalisation", spec.personalisation))
            if on
        )
        issues.append(
            purposes.issue(
                index,
                "essential",
                reason=f"purpose {spec.id!r} is essential but {what}: the core service would"
                " hinge on a consent the customer may refuse (PIPL art. 16); use a contract"
                " or legal-obligation basis, or mark it `essential: false`",
            )
        )
    return issues


def _alias_clashes(purposes: Section[Purpose]) -> list[PolicyIssue]:
    issues: list[PolicyIssue] = []
    owners: dict[str, str] = {spec.id: spec.id for spec in purposes.specs()}
    for index, spec in purposes.entries:
        for position, alias in enumerate(spec.aliases):
            owner = owners.setdefault(alias, spec.id)
            if owner != spec.id:
                issues.append(
                    purposes.issue(
                        index,
                        "aliases",
                        position,
                        reason=f"alias {alias!r} of purpose {spec.id!r} already names"
                        f" purpose {owner!r}",
                    )
                )
    return issues


def build_roles(
    roles: Section[RoleEntry], purposes: Section[Purpose]
) -> tuple[dict[str, Role], list[PolicyIssue]]:
    """Roles with their scope patterns expanded; unknown scopes and purposes are issues."""
    known_purposes = purposes.raw_ids()
    built: dict[str, Role] = {}
    issues: list[PolicyIssue] = []
    for index, entry in roles.entries:
        scopes: set[str] = set()
        for position, pattern in enumerate(entry.scopes):
            granted = expand_scope(pattern)
            if not granted:
                issues.append(
                    roles.issue(
                        index,
                        "scopes",
                        position,
                        reason=f"role {entry.name!r} has unknown scope {pattern!r}",
                    )
                )
            scopes |= granted
        for position, purpose in enumerate(entry.purposes):
            if purposes.readable and purpose != "*" and purpose not in known_purposes:
                issues.append(
                    roles.issue(
                        index,
                        "purposes",
                        position,
                        reason=f"role {entry.name!r} has unknown purpose {purpose!r}",
                    )
                )
        built.setdefault(
            entry.name,
            Role(entry.name, frozenset(scopes), frozenset(entry.purposes), entry.description),
        )
    return built, issues


def _listing(names: set[str]) -> str:
    return ", ".join(sorted(names)) or "none"
