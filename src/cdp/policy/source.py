"""YAML read with the line of every key and list item, so a policy error can point at it."""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

Loc = tuple[str | int, ...]

_MERGE_TAG = "tag:yaml.org,2002:merge"
_PLAIN_TAGS = frozenset({"tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"})


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong in the YAML itself; line is 1-based."""

    line: int | None
    reason: str


@dataclass(slots=True)
class LocatedYaml:
    """A parsed document and a map from each path (keys and list indexes) to its 1-based line."""

    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """Line of the deepest recorded path that prefixes loc (the item holding a missing key)."""
        path = tuple(loc)
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]


def parse_yaml(text: str) -> tuple[LocatedYaml | None, list[Problem]]:
    """Compose one YAML document (safe tags only); None when it cannot be read at all.

    Parsing is the slow part of loading a policy and every worker (and every test's app) reads
    the same files: a text parsed before is served from a cache, as a copy the caller may change.
    """
    return copy.deepcopy(_parse_cached(text))


@functools.lru_cache(maxsize=128)
def _parse_cached(text: str) -> tuple[LocatedYaml | None, list[Problem]]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        return None, [_marked("YAML syntax error", exc)]
    except yaml.YAMLError as exc:
        return None, [Problem(None, f"YAML error: {exc}")]
    if root is None:
        # Empty or comments only; whether that is acceptable is the caller's call.
        return LocatedYaml(None), []
    builder = _Builder()
    doc = LocatedYaml(None)
    doc.lines[()] = root.start_mark.line + 1
    try:
        doc.data = builder.convert(root, (), doc.lines)
    except yaml.MarkedYAMLError as exc:
        # A scalar the safe constructor refuses, e.g. a `!!python/object` tag.
        return None, [_marked("YAML error", exc)]
    return doc, builder.problems


def _marked(prefix: str, exc: yaml.MarkedYAMLError) -> Problem:
    """One line naming the problem; PyYAML's own text repeats the source over several lines."""
    mark = exc.problem_mark or exc.context_mark
    reason = "; ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
    return Problem(mark.line + 1 if mark else None, f"{prefix}: {reason}")


class _Builder:
    """Turns composed nodes into plain Python values, noting lines and duplicate keys."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self._constructor = yaml.SafeLoader("")
        self._active: set[int] = set()

    def convert(self, node: Node, path: Loc, lines: dict[Loc, int]) -> Any:
        if isinstance(node, ScalarNode):
            return self._scalar(node)
        if id(node) in self._active:
            self.problems.append(Problem(node.start_mark.line + 1, "recursive YAML alias"))
            return None
        if node.tag not in _PLAIN_TAGS:
            self.problems.append(Problem(node.start_mark.line + 1, f"unsupported tag {node.tag}"))
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return self._sequence(node, path, lines)
            if isinstance(node, MappingNode):
                return self._mapping(node, path, lines)
            return None
        finally:
            self._active.discard(id(node))

    def _scalar(self, node: ScalarNode) -> Any:
        try:
            return self._constructor.construct_object(node, deep=True)
        except (ValueError, OverflowError):
            # A value that looks like a date or number but is not one, e.g. 2024-13-45.
            line = node.start_mark.line + 1
            self.problems.append(Problem(line, f"invalid value {node.value[:60]!r}"))
            return node.value

    def _sequence(self, node: SequenceNode, path: Loc, lines: dict[Loc, int]) -> list[Any]:
        items: list[Any] = []
        for index, child in enumerate(node.value):
            lines.setdefault((*path, index), child.start_mark.line + 1)
            items.append(self.convert(child, (*path, index), lines))
        return items

    def _mapping(self, node: MappingNode, path: Loc, lines: dict[Loc, int]) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE_TAG:
                self.problems.append(Problem(line, "merge keys (<<) are not supported"))
                continue
            if not isinstance(key_node, ScalarNode):
                self.problems.append(Problem(line, "a mapping key must be a plain value"))
                continue
            key = self._scalar(key_node)
            if key in first_line:
                self.problems.append(
                    Problem(line, f"duplicate key {key!r} (first at line {first_line[key]})")
                )
                continue
            first_line[key] = line
            # The key's line, not the value's: a nested block starts on the line after its key.
            lines.setdefault((*path, key), line)
            result[key] = self.convert(value_node, (*path, key), lines)
        return result
