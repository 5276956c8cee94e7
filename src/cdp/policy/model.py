"""The loaded policy: purposes, fields, roles and settings, as every decision sees them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, time
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from cdp.errors import UnknownPurpose

if TYPE_CHECKING:
    from cdp.events.plan import TrackingPlan
    from cdp.policy.notices import Notice
    from cdp.retention.policy import RetentionPolicy
    from cdp.segments.definitions import SegmentSpec

# Ids travel in headers, tokens and audit entries: keep them short, lower-case and unambiguous.
Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
Reference = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]

# PIPL art. 13: the lawful bases for processing personal information.
LegalBasis = Literal[
    "consent",
    "contract",
    "legal_obligation",
    "public_health",
    "news_reporting",
    "already_public",
    "other_law",
]
Storage = Literal["encrypted", "encrypted+blind_index", "plain"]
FieldType = Literal["string", "date", "number", "boolean", "enum"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Category(_Spec):
    """A class of personal information that purposes are allowed to touch."""

    id: Identifier
    description: str


class FieldSpec(_Spec):
    """A profile field: its category, sensitivity (PIPL art. 28) and how it is stored."""

    name: Identifier
    category: Identifier
    sensitive: bool = False
    storage: Storage
    type: FieldType
    values: list[str] | None = None
    # Several values per profile (device ids): each its own identity row and blind index.
    multiple: bool = False
    description: str = ""

    @model_validator(mode="after")
    def _enum_values(self) -> FieldSpec:
        if self.multiple and (self.storage != "encrypted+blind_index" or self.type != "string"):
            raise ValueError(
                "`multiple` is only allowed on a string field stored with a blind index"
            )
        if self.type == "enum" and not self.values:
            raise ValueError("an enum field needs a non-empty `values` list")
        if self.type != "enum" and self.values is not None:
            raise ValueError("`values` is only allowed on an enum field")
        return self


class Purpose(_Spec):
    """Why personal information is processed, on which legal basis, and what it may touch."""

    id: Identifier
    names: dict[str, str]
    description: str
    legal_basis: LegalBasis
    separate_consent: bool = False
    personalisation: bool = False
    third_party: bool = False
    cross_border: bool = False
    essential: bool = False
    categories: list[Identifier]
    retention_days: int = Field(gt=0)
    notice: Reference | None = None
    pia: Reference | None = None
    # Other names clients use for this purpose, e.g. a consent manager's category keys.
    aliases: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = []

    @property
    def needs_separate_consent(self) -> bool:
        """Consent must be given separately (PIPL art. 23, 29, 39)."""
        return self.separate_consent or self.third_party or self.cross_border

    @field_validator("names")
    @classmethod
    def _names_in_both_languages(cls, names: dict[str, str]) -> dict[str, str]:
        missing = [lang for lang in ("zh", "en") if not names.get(lang, "").strip()]
        if missing:
            raise ValueError(f"names needs a non-empty {' and '.join(missing)} entry")
        return names


class RoleEntry(_Spec):
    """A role as written in roles.yaml; scopes may use `*` or `domain:*` patterns."""

    name: Identifier
    description: str = ""
    scopes: list[str]
    purposes: list[str]


@dataclass(frozen=True, slots=True)
class Role:
    """A role with its concrete scopes; purposes may hold "*" for every purpose."""

    name: str
    scopes: frozenset[str]
    purposes: frozenset[str]
    description: str = ""

    def allows_purpose(self, purpose: str) -> bool:
        return "*" in self.purposes or purpose in self.purposes


class QuietHours(_Spec):
    """A daily window in which no customer contact is scheduled (follow-ups move past it)."""

    start: time
    end: time
    timezone: str = "Asia/Shanghai"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name[:64]!r}") from None
        return name

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("quiet hours need different start and end times")
        return self


class PolicySettings(_Spec):
    """Numbers the law leaves to the processor; the defaults apply without settings.yaml."""

    # Aggregates over fewer subjects than this are suppressed.
    k_anonymity: int = Field(default=5, ge=2)
    # GB/T 35273-2020 8.7 allows at most 30 days; we count working days.
    rights_due_working_days: int = Field(default=15, ge=1, le=30)
    rights_warning_working_days: int = Field(default=3, ge=0, le=30)
    token_max_ttl_seconds: int = Field(default=3600, ge=60, le=86400)
    # PIPL art. 28 and 31: under this age a person's PI is sensitive and needs a guardian's consent.
    minor_age_years: int = Field(default=14, ge=1, le=18)
    # PIPL art. 40 thresholds that oblige a security assessment for cross-border transfers.
    cross_border_people_per_year: int = Field(default=100_000, ge=1)
    cross_border_sensitive_people_per_year: int = Field(default=10_000, ge=1)
    # rights domain: public holidays and make-up working days (调休) for rights due dates.
    holidays: list[date] = Field(default_factory=list)
    workdays: list[date] = Field(default_factory=list)
    # followups domain: no contact is scheduled in this window; a due time inside it moves to
    # its end (local time of `timezone`). None: contact at any hour.
    quiet_hours: QuietHours | None = None
    # compliance domain: subject counts that oblige a PI protection officer (PIPL art. 52;
    # 个人信息保护负责人, from 1,000,000 people) and a compliance audit every two years
    # (个人信息保护合规审计管理办法 art. 5, over 10,000,000 people).
    pi_officer_people: int = Field(default=1_000_000, ge=1)
    compliance_audit_people: int = Field(default=10_000_000, ge=1)

    @model_validator(mode="after")
    def _calendar(self) -> PolicySettings:
        both = sorted(set(self.holidays) & set(self.workdays))
        if both:
            raise ValueError(f"{both[0].isoformat()} is listed as a holiday and as a workday")
        return self


@dataclass(frozen=True, slots=True)
class PolicyIssue:
    """One problem in a policy file; line is 1-based, None when it concerns the whole file."""

    file: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.reason}"


class PolicyInvalid(Exception):
    """The policy files cannot be used; every problem found is listed, one per line."""

    def __init__(self, issues: list[PolicyIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues))


class UnknownRole(LookupError):
    """A role name that roles.yaml does not define."""


# eq=False keeps identity hashing, so a loaded policy can key a cache.
@dataclass(frozen=True, eq=False)
class Policy:
    """Everything loaded from the policy directory, with its content hash as version."""

    version: str
    purposes: dict[str, Purpose]
    fields: dict[str, FieldSpec]
    roles: dict[str, Role]
    categories: frozenset[str]
    settings: PolicySettings = field(default_factory=PolicySettings)
    files: list[str] = field(default_factory=list)
    category_specs: dict[str, Category] = field(default_factory=dict)
    notices: dict[str, Notice] = field(default_factory=dict)
    # tracking-plan.yaml; None without one (then every event is unplanned).
    tracking_plan: TrackingPlan | None = None
    # retention.yaml (retention domain); None without one (then purposes' retention_days apply).
    retention: RetentionPolicy | None = None
    # segments.yaml (segments domain): built-in segments by key.
    segments: dict[str, SegmentSpec] = field(default_factory=dict)

    def consent_floor(self, purpose_id: str) -> int:
        """Oldest version of the purpose's notice whose consents still count (PIPL art. 14)."""
        return self._consent_floors.get(purpose_id, 1)

    @cached_property
    def _consent_floors(self) -> dict[str, int]:
        floors = {}
        for spec in self.purposes.values():
            notice = self.notices.get(spec.notice) if spec.notice else None
            if notice is not None:
                floors[spec.id] = notice.reconsent_floor(spec.id)
        return floors

    @cached_property
    def sensitive_fields(self) -> frozenset[str]:
        """Fields that PIPL art. 28 counts as sensitive personal information."""
        return frozenset(name for name, spec in self.fields.items() if spec.sensitive)

    def role(self, name: str) -> Role:
        """The named role; UnknownRole (not a bare KeyError) when roles.yaml lacks it."""
        try:
            return self.roles[name]
        except KeyError:
            known = ", ".join(sorted(self.roles))
            raise UnknownRole(f"unknown role {name!r}; roles.yaml defines: {known}") from None

    def purpose(self, purpose_id: str) -> Purpose:
        """The purpose with this id; UnknownPurpose (HTTP 400) otherwise."""
        spec = self.purposes.get(purpose_id)
        if spec is None:
            raise UnknownPurpose(f"unknown purpose {purpose_id[:64]!r}")
        return spec

    def find_purpose(self, key: str) -> Purpose | None:
        """The purpose named by its id or one of its aliases."""
        if key in self.purposes:
            return self.purposes[key]
        return next((p for p in self.purposes.values() if key in p.aliases), None)

    def fields_for(self, purpose_id: str) -> frozenset[str]:
        """Names of the fields whose category the purpose may touch."""
        found = self._fields_by_purpose.get(purpose_id)
        if found is None:
            self.purpose(purpose_id)  # UnknownPurpose
            return frozenset()
        return found

    @cached_property
    def _fields_by_purpose(self) -> dict[str, frozenset[str]]:
        # Every decision asks; the policy never changes once loaded.
        return {
            pid: frozenset(n for n, f in self.fields.items() if f.category in set(p.categories))
            for pid, p in self.purposes.items()
        }

    @property
    def sensitive_categories(self) -> frozenset[str]:
        """Categories holding at least one sensitive field."""
        return frozenset(spec.category for spec in self.fields.values() if spec.sensitive)
