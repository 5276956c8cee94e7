"""The segment condition language (JSON): parsed into a typed tree, every error naming the
JSON path it concerns. Trait conditions may use plain profile fields only (never encrypted).

    {"all": [...]} {"any": [...]} {"not": {...}} {"segment": "vip"}
    {"trait": "city", "op": "in", "value": ["上海", "北京"]}
    {"event": "Order Completed", "op": "gte", "count": 3, "within_days": 90}
    {"event": "*", "op": "first" | "stopped", "within_days": 90}
    {"metric": "revenue", "op": "gte", "value": 100000, "within_days": 365 | "within_months": 12}
    {"metric": "activity_change", "op": "lte", "value": -50, "within_weeks": 4 | "within_days": 30}
    {"metric": "orders", "op": "eq", "value": 0}        {"metric": "open_complaints", ...}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

from cdp.segments.models import MONTH_SLOTS, WEEK_SLOTS

if TYPE_CHECKING:
    from cdp.policy.model import FieldSpec

Path = tuple[str | int, ...]
COMPARE = ("eq", "neq", "gt", "gte", "lt", "lte")
TRAIT_OPS = (*COMPARE, "in", "exists", "between", "before", "after")
EVENT_OPS = ("gte", "gt", "lte", "lt", "eq", "first", "stopped")
METRICS = ("revenue", "orders", "activity_change", "open_complaints")
MAX_DAYS = 3650
MAX_NODES = 200
MAX_DEPTH = 16
# The week window compares n completed weeks with the n before: 2n slots must fit the ring.
MAX_WEEKS = (WEEK_SLOTS - 1) // 2
MAX_MONTHS = MONTH_SLOTS - 1


@dataclass(frozen=True, slots=True)
class Problem:
    """One invalid spot of a condition: where (JSON path), what, and a stable type."""

    loc: Path
    msg: str
    type: str = "invalid_condition"


class ConditionError(Exception):
    """The condition is invalid; `problems` lists every spot found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{_dotted(p.loc)}: {p.msg}" for p in problems))


@dataclass(frozen=True, slots=True)
class All:
    children: tuple[Node, ...]
    path: Path


@dataclass(frozen=True, slots=True)
class AnyOf:
    children: tuple[Node, ...]
    path: Path


@dataclass(frozen=True, slots=True)
class Not:
    child: Node
    path: Path


@dataclass(frozen=True, slots=True)
class Trait:
    field: str
    type: str
    op: str
    value: Any
    path: Path
    raw: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class EventCond:
    event: str  # "*" for any event
    op: str
    count: int
    within_days: int | None
    path: Path
    raw: Mapping[str, Any]


Window = Literal["days", "weeks", "months"]


@dataclass(frozen=True, slots=True)
class Metric:
    metric: str
    op: str
    value: float
    window: Window | None
    n: int | None
    path: Path
    raw: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SegmentRef:
    key: str
    node: Node
    path: Path


Node = All | AnyOf | Not | Trait | EventCond | Metric | SegmentRef
Leaf = Trait | EventCond | Metric
# Looks up another segment's condition by key (None when there is no such segment).
Resolve = Callable[[str], Mapping[str, Any] | None]


def parse(
    raw: Any,
    *,
    fields: Mapping[str, FieldSpec],
    resolve: Resolve | None = None,
    path: Path = ("condition",),
) -> Node:
    """The condition as a tree, or ConditionError listing every problem with its path."""
    parser = _Parser(fields, resolve)
    node = parser.node(raw, path, 0, ())
    if parser.problems:
        raise ConditionError(parser.problems)
    assert node is not None
    return node


def leaves(node: Node) -> list[Leaf]:
    """Every leaf condition, in document order (references expanded)."""
    if isinstance(node, All | AnyOf):
        return [leaf for child in node.children for leaf in leaves(child)]
    if isinstance(node, Not):
        return leaves(node.child)
    if isinstance(node, SegmentRef):
        return leaves(node.node)
    return [node]


def references(node: Node) -> set[str]:
    """Keys of the segments the condition refers to, directly or not."""
    if isinstance(node, All | AnyOf):
        return set().union(*(references(c) for c in node.children)) if node.children else set()
    if isinstance(node, Not):
        return references(node.child)
    if isinstance(node, SegmentRef):
        return {node.key} | references(node.node)
    return set()


def dotted(path: Path) -> str:
    return _dotted(path)


def _dotted(loc: Path) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Parser:
    def __init__(self, fields: Mapping[str, FieldSpec], resolve: Resolve | None) -> None:
        self.fields = fields
        self.resolve = resolve
        self.problems: list[Problem] = []
        self.count = 0

    def fail(self, loc: Path, msg: str, kind: str = "invalid_condition") -> None:
        self.problems.append(Problem(loc, msg, kind))

    def node(self, raw: Any, path: Path, depth: int, stack: tuple[str, ...]) -> Node | None:
        self.count += 1
        if self.count > MAX_NODES:
            if self.count == MAX_NODES + 1:
                self.fail(path, f"a condition may hold at most {MAX_NODES} nodes")
            return None
        if depth > MAX_DEPTH:
            self.fail(path, f"conditions nest at most {MAX_DEPTH} levels deep")
            return None
        if not isinstance(raw, dict):
            self.fail(path, 'expected an object such as {"all": [...]} or {"trait": ...}')
            return None
        kinds = [
            k for k in ("all", "any", "not", "segment", "trait", "event", "metric") if k in raw
        ]
        if len(kinds) != 1:
            what = "none" if not kinds else ", ".join(kinds)
            self.fail(
                path,
                "exactly one of all, any, not, segment, trait, event, metric is expected"
                f" (found {what})",
            )
            return None
        kind = kinds[0]
        if kind in ("all", "any"):
            return self.group(kind, raw, path, depth, stack)
        if kind == "not":
            self.only(raw, path, {"not"})
            child = self.node(raw["not"], (*path, "not"), depth + 1, stack)
            return Not(child, path) if child is not None else None
        if kind == "segment":
            return self.segment(raw, path, depth, stack)
        if kind == "trait":
            return self.trait(raw, path)
        if kind == "event":
            return self.event(raw, path)
        return self.metric(raw, path)

    def only(self, raw: dict[str, Any], path: Path, allowed: set[str]) -> bool:
        extra = sorted(str(k) for k in raw if k not in allowed)
        for key in extra:
            self.fail((*path, key), "unknown key", "extra_forbidden")
        return not extra

    def group(
        self, kind: str, raw: dict[str, Any], path: Path, depth: int, stack: tuple[str, ...]
    ) -> Node | None:
        self.only(raw, path, {kind})
        items = raw[kind]
        if not isinstance(items, list) or not items:
            self.fail((*path, kind), "expected a non-empty list of conditions")
            return None
        children = [
            self.node(item, (*path, kind, i), depth + 1, stack) for i, item in enumerate(items)
        ]
        if any(c is None for c in children):
            return None
        done = tuple(c for c in children if c is not None)
        return All(done, path) if kind == "all" else AnyOf(done, path)

    def segment(
        self, raw: dict[str, Any], path: Path, depth: int, stack: tuple[str, ...]
    ) -> Node | None:
        self.only(raw, path, {"segment"})
        key = raw["segment"]
        loc = (*path, "segment")
        if not isinstance(key, str) or not key:
            self.fail(loc, "expected a segment key")
            return None
        if key in stack:
            self.fail(loc, f"segment {key!r} refers to itself ({' -> '.join((*stack, key))})")
            return None
        found = self.resolve(key) if self.resolve is not None else None
        if found is None:
            self.fail(loc, f"unknown segment {key!r}", "unknown_segment")
            return None
        before = len(self.problems)
        inner = self.node(found, ("segment", key), depth + 1, (*stack, key))
        if inner is None or len(self.problems) > before:
            # The referenced definition is broken (e.g. a field it used was made encrypted).
            del self.problems[before:]
            self.fail(loc, f"segment {key!r} has an invalid condition", "invalid_reference")
            return None
        return SegmentRef(key, inner, path)

    def trait(self, raw: dict[str, Any], path: Path) -> Node | None:
        if not self.only(raw, path, {"trait", "op", "value"}):
            return None
        name, op = raw["trait"], raw.get("op", "eq")
        spec = self.fields.get(name) if isinstance(name, str) else None
        if spec is None:
            self.fail((*path, "trait"), "unknown profile field (see fields.yaml)", "unknown_field")
            return None
        if spec.storage != "plain":
            self.fail(
                (*path, "trait"),
                f"field {name!r} is stored {spec.storage}: encrypted fields cannot be used in"
                " segment conditions",
                "encrypted_field",
            )
            return None
        if op not in TRAIT_OPS:
            self.fail((*path, "op"), f"expected one of {', '.join(TRAIT_OPS)}")
            return None
        value = raw.get("value")
        loc = (*path, "value")
        if op == "exists":
            if "value" in raw and not isinstance(value, bool):
                self.fail(loc, "exists takes no value, or true/false")
                return None
            return Trait(name, spec.type, op, True if value is None else value, path, raw)
        if "value" not in raw:
            self.fail(loc, "required key is missing", "missing")
            return None
        ordered = spec.type in ("number", "date")
        if op in ("gt", "gte", "lt", "lte", "between") and not ordered:
            self.fail((*path, "op"), f"{op} needs a number or date field; {name!r} is {spec.type}")
            return None
        if op in ("before", "after") and spec.type != "date":
            self.fail((*path, "op"), f"{op} needs a date field; {name!r} is {spec.type}")
            return None
        if op == "in":
            if not isinstance(value, list) or not value or len(value) > 500:
                self.fail(loc, "in expects a list of 1 to 500 values")
                return None
            checked = [self.scalar(spec, v, (*loc, i)) for i, v in enumerate(value)]
            if any(c is None for c in checked):
                return None
            return Trait(name, spec.type, op, checked, path, raw)
        if op == "between":
            if not isinstance(value, list) or len(value) != 2:
                self.fail(loc, "between expects [low, high]")
                return None
            low, high = (self.scalar(spec, v, (*loc, i)) for i, v in enumerate(value))
            if low is None or high is None:
                return None
            if high < low:
                self.fail(loc, "between expects low <= high")
                return None
            return Trait(name, spec.type, op, [low, high], path, raw)
        checked_value = self.scalar(spec, value, loc)
        if checked_value is None:
            return None
        return Trait(name, spec.type, op, checked_value, path, raw)

    def scalar(self, spec: FieldSpec, value: Any, loc: Path) -> Any:
        if spec.type == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.fail(loc, "expected a number")
                return None
            return float(value)
        if spec.type == "boolean":
            if not isinstance(value, bool):
                self.fail(loc, "expected true or false")
                return None
            return value
        if spec.type == "date":
            try:
                return date.fromisoformat(value).isoformat()
            except (TypeError, ValueError):
                self.fail(loc, "expected a date (YYYY-MM-DD)")
                return None
        if not isinstance(value, str) or not value or len(value) > 500:
            self.fail(loc, "expected a non-empty string")
            return None
        if spec.type == "enum" and value not in (spec.values or []):
            self.fail(loc, f"expected one of {', '.join(spec.values or [])}")
            return None
        return value

    def window(
        self, raw: dict[str, Any], path: Path, allowed: tuple[Window, ...]
    ) -> tuple[Window | None, int | None, bool]:
        given = [w for w in ("days", "weeks", "months") if f"within_{w}" in raw]
        if len(given) > 1:
            self.fail(path, "give at most one of within_days, within_weeks, within_months")
            return None, None, False
        if not given:
            return None, None, True
        unit: Window = given[0]  # type: ignore[assignment]
        key = f"within_{unit}"
        if unit not in allowed:
            ok = ", ".join(f"within_{a}" for a in allowed) or "no window"
            self.fail((*path, key), f"this condition takes {ok}")
            return None, None, False
        limit = {"days": MAX_DAYS, "weeks": MAX_WEEKS, "months": MAX_MONTHS}[unit]
        n = raw[key]
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= limit:
            self.fail((*path, key), f"expected a whole number from 1 to {limit}")
            return None, None, False
        return unit, n, True

    def event(self, raw: dict[str, Any], path: Path) -> Node | None:
        if not self.only(raw, path, {"event", "op", "count", "within_days"}):
            return None
        name, op = raw["event"], raw.get("op", "gte")
        if not isinstance(name, str) or not 1 <= len(name) <= 200:
            self.fail((*path, "event"), 'expected an event name, or "*" for any event')
            return None
        if op not in EVENT_OPS:
            self.fail((*path, "op"), f"expected one of {', '.join(EVENT_OPS)}")
            return None
        _, days, ok = self.window(raw, path, ("days",))
        if not ok:
            return None
        if op in ("first", "stopped"):
            if "count" in raw:
                self.fail((*path, "count"), f"{op} takes no count")
                return None
            if days is None:
                self.fail((*path, "within_days"), f"{op} needs within_days", "missing")
                return None
            return EventCond(name, op, 0, days, path, raw)
        count = raw.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 10**9:
            self.fail((*path, "count"), "expected a whole number from 0")
            return None
        return EventCond(name, op, count, days, path, raw)

    def metric(self, raw: dict[str, Any], path: Path) -> Node | None:
        keys = {"metric", "op", "value", "within_days", "within_weeks", "within_months"}
        if not self.only(raw, path, keys):
            return None
        name, op, value = raw["metric"], raw.get("op"), raw.get("value")
        if name not in METRICS:
            self.fail((*path, "metric"), f"expected one of {', '.join(METRICS)}")
            return None
        if op not in ("eq", "gt", "gte", "lt", "lte"):
            self.fail((*path, "op"), "expected one of eq, gt, gte, lt, lte")
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail((*path, "value"), "expected a number")
            return None
        windows: dict[str, tuple[Window, ...]] = {
            "revenue": ("days", "months"),
            "orders": ("months",),
            "activity_change": ("days", "weeks"),
            "open_complaints": (),
        }
        allowed = windows[name]
        unit, n, ok = self.window(raw, path, allowed)
        if not ok:
            return None
        if name == "activity_change" and unit is None:
            self.fail((*path, "within_days"), "activity_change needs within_days or within_weeks")
            return None
        return Metric(name, op, float(value), unit, n, path, raw)
