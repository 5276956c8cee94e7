"""Read and validate the policy directory; every problem is reported with file, line and reason."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from cdp.events import plan
from cdp.policy import checks, notices
from cdp.policy.model import (
    Category,
    FieldSpec,
    Policy,
    PolicyInvalid,
    PolicyIssue,
    PolicySettings,
    Purpose,
    RoleEntry,
)
from cdp.policy.notices import NOTICES_DIR, Notice
from cdp.policy.section import Section
from cdp.policy.source import Loc, LocatedYaml, parse_yaml
from cdp.retention import policy as retention
from cdp.segments import definitions as segment_definitions

M = TypeVar("M", bound=BaseModel)

REQUIRED_FILES = ("purposes.yaml", "fields.yaml", "roles.yaml")
OPTIONAL_FILES = ("settings.yaml", plan.FILE, retention.FILE, segment_definitions.FILE)
# The list sections each file holds.
SECTIONS: dict[str, tuple[str, ...]] = {
    "purposes.yaml": ("purposes",),
    "fields.yaml": ("categories", "fields"),
    "roles.yaml": ("roles",),
}


def load_policy(directory: Path) -> Policy:
    """The validated policy in directory; PolicyInvalid lists every problem in every file."""
    issues: list[PolicyIssue] = []
    contents: dict[str, bytes] = {}
    docs: dict[str, LocatedYaml] = {}
    for name in REQUIRED_FILES + OPTIONAL_FILES:
        path = directory / name
        if not path.is_file():
            if name in REQUIRED_FILES:
                issues.append(PolicyIssue(name, None, f"required file not found in {directory}"))
            continue
        contents[name] = path.read_bytes()
        doc = _parse(name, contents[name], issues)
        if doc is not None:
            docs[name] = doc

    for name, keys in SECTIONS.items():
        if name in docs:
            _check_top_level(name, docs[name], keys, issues)
    categories = _section(docs, "fields.yaml", "categories", "id", Category, issues)
    fields = _section(docs, "fields.yaml", "fields", "name", FieldSpec, issues)
    purposes = _section(docs, "purposes.yaml", "purposes", "id", Purpose, issues)
    role_entries = _section(docs, "roles.yaml", "roles", "name", RoleEntry, issues)
    settings = _settings(docs.get("settings.yaml"), issues)

    issues += checks.duplicate_ids(categories, "category")
    issues += checks.duplicate_ids(fields, "field")
    issues += checks.duplicate_ids(purposes, "purpose")
    issues += checks.duplicate_ids(role_entries, "role")
    issues += checks.check_fields(fields, categories)
    issues += checks.check_purposes(purposes, categories, fields)
    roles, role_issues = checks.build_roles(role_entries, purposes)
    issues += role_issues
    loaded, present = _notices(directory, contents, issues)
    if purposes.readable:
        issues += notices.check_references(
            loaded, present, purposes.entries, purposes.line, purposes.raw_ids()
        )

    tracking_plan = _tracking_plan(docs.get(plan.FILE), purposes, categories, issues)
    segments = _segments(docs.get(segment_definitions.FILE), fields, issues)
    retention_policy = _retention(
        docs.get(retention.FILE), purposes, categories, tracking_plan, plan.FILE in docs, issues
    )

    if issues:
        order = {name: rank for rank, name in enumerate(REQUIRED_FILES + OPTIONAL_FILES)}
        issues.sort(key=lambda i: (order.get(i.file, len(order)), i.file, i.line or 0))
        raise PolicyInvalid(issues)
    return Policy(
        version=content_version(contents),
        purposes={spec.id: spec for spec in purposes.specs()},
        fields={spec.name: spec for spec in fields.specs()},
        roles=roles,
        categories=frozenset(spec.id for spec in categories.specs()),
        settings=settings,
        files=sorted(contents),
        category_specs={spec.id: spec for spec in categories.specs()},
        notices={notice_id: notice for notice_id, (_, _, notice) in sorted(loaded.items())},
        tracking_plan=tracking_plan,
        retention=retention_policy,
        segments=segments,
    )


def _notices(
    directory: Path, contents: dict[str, bytes], issues: list[PolicyIssue]
) -> tuple[dict[str, tuple[str, LocatedYaml, Notice]], set[str]]:
    """Each valid notices/*.yaml file keyed by notice id (named as notices/<file>), and the
    ids of every notice file present."""
    folder = directory / NOTICES_DIR
    loaded: dict[str, tuple[str, LocatedYaml, Notice]] = {}
    paths = sorted(folder.glob("*.yaml")) if folder.is_dir() else []
    present = {path.stem for path in paths}
    for path in paths:
        name = f"{NOTICES_DIR}/{path.name}"
        contents[name] = path.read_bytes()
        doc = _parse(name, contents[name], issues)
        if doc is None:
            continue
        if not isinstance(doc.data, dict):
            issues.append(
                PolicyIssue(name, doc.line_of(()), "expected a mapping: id, names, versions")
            )
            continue
        try:
            notice = Notice.model_validate(doc.data)
        except ValidationError as exc:
            for issue in _validation_issues(name, doc, (), exc):
                art17 = ".sections." in issue.reason and "required key is missing" in issue.reason
                issues.append(
                    PolicyIssue(issue.file, issue.line, issue.reason + " (PIPL art. 17)")
                    if art17
                    else issue
                )
            continue
        issues.extend(notices.check_notice(name, doc, notice, path.stem))
        loaded.setdefault(notice.id, (name, doc, notice))
    return loaded, present


def content_version(contents: dict[str, bytes]) -> str:
    """sha256 over sorted (relative name, bytes) pairs, each part length-prefixed."""
    digest = hashlib.sha256()
    for name in sorted(contents):
        # Length prefixes keep ("a", "bc") and ("ab", "c") from hashing alike.
        for part in (name.encode(), contents[name]):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    return f"sha256:{digest.hexdigest()}"


def _parse(name: str, raw: bytes, issues: list[PolicyIssue]) -> LocatedYaml | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        issues.append(PolicyIssue(name, line, "file is not valid UTF-8"))
        return None
    doc, problems = parse_yaml(text)
    issues.extend(PolicyIssue(name, p.line, p.reason) for p in problems)
    return doc


def _check_top_level(
    name: str, doc: LocatedYaml, keys: tuple[str, ...], issues: list[PolicyIssue]
) -> None:
    expected = ", ".join(keys)
    if doc.data is None:
        issues.append(PolicyIssue(name, None, f"file is empty; expected keys: {expected}"))
        return
    if not isinstance(doc.data, dict):
        issues.append(PolicyIssue(name, doc.line_of(()), f"expected a mapping with: {expected}"))
        return
    for key in doc.data:
        if key not in keys:
            reason = f"unknown key {key!r} (expected: {expected})"
            issues.append(PolicyIssue(name, doc.line_of((key,)), reason))
    for key in keys:
        if key not in doc.data:
            issues.append(PolicyIssue(name, doc.line_of(()), f"missing key {key!r}"))
        elif not isinstance(doc.data[key], list) or not doc.data[key]:
            reason = f"{key!r} must be a non-empty list"
            issues.append(PolicyIssue(name, doc.line_of((key,)), reason))


def _section(
    docs: dict[str, LocatedYaml],
    name: str,
    key: str,
    id_key: str,
    model: type[M],
    issues: list[PolicyIssue],
) -> Section[M]:
    doc = docs.get(name)
    section: Section[M] = Section(name, key, id_key, doc)
    raw = doc.data.get(key) if doc is not None and isinstance(doc.data, dict) else None
    if doc is None or not isinstance(raw, list):
        return section
    section.raw, section.readable = raw, bool(raw)
    for index, item in enumerate(raw):
        try:
            section.entries.append((index, model.model_validate(item)))
        except ValidationError as exc:
            issues.extend(_validation_issues(name, doc, (key, index), exc))
    return section


def _settings(doc: LocatedYaml | None, issues: list[PolicyIssue]) -> PolicySettings:
    if doc is None or doc.data is None:
        return PolicySettings()
    try:
        return PolicySettings.model_validate(doc.data)
    except ValidationError as exc:
        issues.extend(_validation_issues("settings.yaml", doc, (), exc))
        return PolicySettings()


def _validation_issues(
    name: str, doc: LocatedYaml, prefix: Loc, exc: ValidationError
) -> list[PolicyIssue]:
    issues = []
    for error in exc.errors(include_url=False):
        loc: Loc = (*prefix, *error["loc"])
        issues.append(PolicyIssue(name, doc.line_of(loc), _reason(loc, error)))
    return issues


def _reason(loc: Loc, error: Any) -> str:
    kind, where = error["type"], _dotted(loc)
    if kind == "extra_forbidden":
        return f"{where}: unknown key"
    if kind == "missing":
        return f"{where}: required key is missing"
    if kind == "value_error":
        return f"{where}: {error['ctx']['error']}"
    value = error.get("input")
    # Scalars from the policy file itself (never PI) make the message easy to act on.
    if isinstance(value, str | int | float | bool) or value is None:
        return f"{where}: {error['msg']} (got {_short(value)})"
    return f"{where}: {error['msg']}"


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(file)"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _tracking_plan(
    doc: LocatedYaml | None,
    purposes: Section[Purpose],
    categories: Section[Category],
    issues: list[PolicyIssue],
) -> plan.TrackingPlan | None:
    """tracking-plan.yaml validated, and checked against purposes and categories."""
    if doc is None:
        return None
    if not isinstance(doc.data, dict):
        issues.append(PolicyIssue(plan.FILE, doc.line_of(()), "expected a mapping with: events"))
        return None
    try:
        tracking = plan.TrackingPlan.model_validate(doc.data)
    except ValidationError as exc:
        issues.extend(_validation_issues(plan.FILE, doc, (), exc))
        return None
    if purposes.readable and categories.readable:
        views = {
            p.id: plan.PurposeView(p.id, p.categories, p.retention_days) for p in purposes.specs()
        }
        known = {c.id for c in categories.specs()}
        for loc, reason in plan.check_plan(tracking, purposes=views, categories=known):
            issues.append(PolicyIssue(plan.FILE, doc.line_of(loc), reason))
    return tracking


def _retention(
    doc: LocatedYaml | None,
    purposes: Section[Purpose],
    categories: Section[Category],
    tracking_plan: plan.TrackingPlan | None,
    has_plan: bool,
    issues: list[PolicyIssue],
) -> retention.RetentionPolicy | None:
    """retention.yaml validated, and checked against purposes, categories and the plan."""
    if doc is None:
        return None
    if doc.data is None:
        return retention.EMPTY
    if not isinstance(doc.data, dict):
        reason = "expected a mapping with: audit, events, records, legal_holds"
        issues.append(PolicyIssue(retention.FILE, doc.line_of(()), reason))
        return retention.EMPTY
    try:
        spec = retention.RetentionPolicy.model_validate(doc.data)
    except ValidationError as exc:
        issues.extend(_validation_issues(retention.FILE, doc, (), exc))
        return retention.EMPTY
    # Checked against the plan only when the plan itself is sound: no cascade of errors.
    plan_sound = not any(i.file == plan.FILE for i in issues) and (tracking_plan or not has_plan)
    if purposes.readable and categories.readable and plan_sound:
        views = {
            p.id: retention.PurposeView(p.id, p.categories, p.retention_days)
            for p in purposes.specs()
        }
        found = retention.check_retention(
            spec,
            purposes=views,
            categories={c.id for c in categories.specs()},
            tracking_purpose=tracking_plan.purpose if tracking_plan else None,
            event_names={e.name for e in tracking_plan.events} if tracking_plan else None,
        )
        for loc, reason in found:
            issues.append(PolicyIssue(retention.FILE, doc.line_of(loc), reason))
    return spec


def _segments(
    doc: LocatedYaml | None, fields: Section[FieldSpec], issues: list[PolicyIssue]
) -> dict[str, segment_definitions.SegmentSpec]:
    """segments.yaml (built-in segments), each condition checked against fields.yaml."""
    if doc is None:
        return {}
    known = {spec.name: spec for spec in fields.specs()}
    specs, problems = segment_definitions.load(doc.data, known)
    for loc, reason in problems:
        issues.append(PolicyIssue(segment_definitions.FILE, doc.line_of(loc), reason))
    return specs
