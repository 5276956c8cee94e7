"""The tracking plan (policies/tracking-plan.yaml): which events exist, their properties and
types, which properties are personal information (sealed with the subject's key), and what
happens to anything unplanned (PIPL art. 4, 73: nothing is stored unclassified).

Imports nothing from cdp.policy, which loads this module while it is itself being imported.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

FILE = "tracking-plan.yaml"
PropertyType = Literal["string", "number", "integer", "boolean", "object", "array"]
EventType = Literal["track", "page", "screen"]
# Calls that carry identities, not behaviour: never checked against the plan's events.
IDENTITY_TYPES = frozenset({"identify", "alias", "group"})
MESSAGE_TYPES = frozenset({"track", "page", "screen"}) | IDENTITY_TYPES
# The plan's name for the event a page or screen call becomes when the plan has no entry.
DEFAULT_NAMES = {"page": "Page Viewed", "screen": "Screen Viewed"}
REVENUE = "revenue"
# Identity calls are about linking identifiers; a purpose sees them with this category.
IDENTITY_CATEGORY = "identifier"
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
# Property names end up in the associated data of their ciphertext, where "|" separates.
Key = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^|]+$")]
Loc = tuple[str | int, ...]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PropertySpec(_Spec):
    """One planned property: its JSON type, and whether it is PI (then it needs a category)."""

    type: PropertyType
    required: bool = False
    pi: bool = False
    category: str | None = None
    values: list[str] | None = None
    description: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> PropertySpec:
        if self.pi and not self.category:
            raise ValueError("a pi property needs a `category` (from fields.yaml categories)")
        if self.values is not None and (self.type != "string" or not self.values):
            raise ValueError("`values` is a non-empty list, only on a string property")
        return self

    def accepts(self, value: Any) -> bool:
        """The value has the planned JSON type (and is one of `values`, when listed)."""
        if value is None:
            return True
        ok = _TYPE_CHECKS[self.type](value)
        return ok and (self.values is None or value in self.values)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _integer(value: Any) -> bool:
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, int) and not isinstance(value, bool)


_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "number": _number,
    "integer": _integer,
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}


class EventSpec(_Spec):
    """A planned event: a track event by name, or what page/screen calls become."""

    name: Name
    type: EventType = "track"
    category: str = "behaviour"
    description: str = ""
    # How long events of this name are kept; default: the tracking purpose's retention.
    retention_days: int | None = Field(default=None, gt=0)
    # The event's `revenue` property (CNY) is summed into the daily rollups.
    revenue: bool = False
    properties: dict[Key, PropertySpec] = {}

    @cached_property
    def pi_properties(self) -> frozenset[str]:
        return frozenset(k for k, p in self.properties.items() if p.pi)

    @cached_property
    def required(self) -> frozenset[str]:
        return frozenset(k for k, p in self.properties.items() if p.required)

    def category_of(self, prop: str) -> str:
        spec = self.properties.get(prop)
        return spec.category if spec is not None and spec.category else self.category


class TrackingPlan(_Spec):
    """The whole plan; `purpose` is the purpose whose legal basis collection rests on."""

    purpose: str = "analytics"
    unplanned_events: Literal["drop", "reject"] = "drop"
    unplanned_properties: Literal["drop", "reject"] = "drop"
    events: list[EventSpec] = []

    @cached_property
    def _index(self) -> dict[tuple[str, str], EventSpec]:
        out: dict[tuple[str, str], EventSpec] = {}
        for spec in self.events:
            out.setdefault((spec.type, spec.name), spec)
            if spec.type != "track":
                # A page or screen call matches its type's entry whatever the page is called.
                out.setdefault((spec.type, ""), spec)
        return out

    def event(self, kind: str, name: str | None) -> EventSpec | None:
        """The plan entry for a message: track events by name, page/screen calls by type."""
        if kind == "track":
            return self._index.get(("track", name or "")) if name else None
        return self._index.get((kind, ""))

    def retention_days(self, name: str, default: int) -> int:
        spec = next((e for e in self.events if e.name == name), None)
        return spec.retention_days if spec and spec.retention_days else default


EMPTY_PLAN = TrackingPlan()


@dataclass(frozen=True, slots=True)
class PurposeView:
    """What the plan checks need from a purpose (kept free of cdp.policy imports)."""

    id: str
    categories: Collection[str]
    retention_days: int


def check_plan(
    plan: TrackingPlan,
    *,
    purposes: Mapping[str, PurposeView],
    categories: Collection[str],
) -> list[tuple[Loc, str]]:
    """Cross-references: the purpose exists, categories are known and within the purpose
    (collection is limited to it, PIPL art. 6), names are unique, retention fits the purpose."""
    issues: list[tuple[Loc, str]] = []
    purpose = purposes.get(plan.purpose)
    if purpose is None:
        issues.append((("purpose",), f"purpose {plan.purpose!r} is not in purposes.yaml"))
    seen: dict[tuple[str, str], int] = {}
    typed: dict[str, int] = {}
    for i, spec in enumerate(plan.events):
        key = (spec.type, spec.name)
        if key in seen:
            issues.append(((("events", i, "name")), f"duplicate event {spec.name!r}"))
        seen.setdefault(key, i)
        if spec.type != "track":
            if spec.type in typed:
                issues.append(
                    (("events", i, "type"), f"only one entry of type {spec.type!r} is allowed")
                )
            typed.setdefault(spec.type, i)
        issues += _check_categories(spec, i, purpose, categories)
        if purpose is not None and (spec.retention_days or 0) > purpose.retention_days:
            issues.append(
                (
                    ("events", i, "retention_days"),
                    f"retention_days {spec.retention_days} exceeds purpose {purpose.id!r}'s"
                    f" {purpose.retention_days} (PIPL art. 19)",
                )
            )
        if spec.revenue:
            prop = spec.properties.get(REVENUE)
            if prop is None or prop.type not in ("number", "integer") or prop.pi:
                issues.append(
                    (
                        ("events", i, "revenue"),
                        "a revenue event needs a non-PI `revenue` property of type number",
                    )
                )
    return issues


def _check_categories(
    spec: EventSpec, i: int, purpose: PurposeView | None, categories: Collection[str]
) -> list[tuple[Loc, str]]:
    issues: list[tuple[Loc, str]] = []
    wanted: list[tuple[Loc, str]] = [(("events", i, "category"), spec.category)]
    for prop, pspec in spec.properties.items():
        if pspec.category:
            wanted.append((("events", i, "properties", prop, "category"), pspec.category))
    for loc, category in wanted:
        if category not in categories:
            issues.append((loc, f"unknown category {category!r} (fields.yaml categories)"))
        elif purpose is not None and category not in purpose.categories:
            issues.append(
                (
                    loc,
                    f"category {category!r} is outside purpose {purpose.id!r}: events may only"
                    " collect what the purpose allows (PIPL art. 6)",
                )
            )
    return issues
