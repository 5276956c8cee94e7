"""Built-in segments (policies/segments.yaml): read and validated with the policy, each problem
reported with its path so the loader can name file and line."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError, field_validator

from cdp.segments import language as lang

if TYPE_CHECKING:
    from cdp.policy.model import FieldSpec

FILE = "segments.yaml"
Key = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
Loc = tuple[str | int, ...]


class SegmentSpec(BaseModel):
    """A built-in segment: its key, names, description and condition."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: Key
    names: dict[str, str]
    description: str = ""
    condition: dict[str, Any]

    @field_validator("names")
    @classmethod
    def _names_in_both_languages(cls, names: dict[str, str]) -> dict[str, str]:
        missing = [x for x in ("zh", "en") if not names.get(x, "").strip()]
        if missing:
            raise ValueError(f"names needs a non-empty {' and '.join(missing)} entry")
        return names


def load(
    data: Any, fields: Mapping[str, FieldSpec]
) -> tuple[dict[str, SegmentSpec], list[tuple[Loc, str]]]:
    """The built-ins of segments.yaml, and every (path, reason) problem found in it."""
    if not isinstance(data, dict) or set(data) != {"segments"}:
        return {}, [((), "expected a mapping with one key: segments")]
    raw = data["segments"]
    if not isinstance(raw, list) or not raw:
        return {}, [(("segments",), "'segments' must be a non-empty list")]
    problems: list[tuple[Loc, str]] = []
    specs: dict[str, SegmentSpec] = {}
    where: dict[str, int] = {}
    for index, item in enumerate(raw):
        try:
            spec = SegmentSpec.model_validate(item)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                loc: Loc = ("segments", index, *error["loc"])
                problems.append((loc, f"{lang.dotted(loc)}: {error['msg']}"))
            continue
        if spec.key in specs:
            problems.append((("segments", index, "key"), f"duplicate segment key {spec.key!r}"))
            continue
        specs[spec.key] = spec
        where[spec.key] = index
    for key, spec in specs.items():
        index = where[key]

        def resolve(other: str) -> Mapping[str, Any] | None:
            found = specs.get(other)
            return found.condition if found is not None else None

        try:
            lang.parse(
                spec.condition,
                fields=fields,
                resolve=resolve,
                path=("segments", index, "condition"),
            )
        except lang.ConditionError as exc:
            for problem in exc.problems:
                problems.append((problem.loc, f"{lang.dotted(problem.loc)}: {problem.msg}"))
    return specs, problems
