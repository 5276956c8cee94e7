"""Checking trait values against their field's type in fields.yaml."""

from __future__ import annotations

from datetime import date
from typing import Any

from cdp.errors import ValidationFailed
from cdp.policy import FieldSpec

MAX_TEXT = 500
MAX_VALUES = 20


def _invalid(name: str, message: str) -> ValidationFailed:
    # The message names the field and the rule, never the value.
    return ValidationFailed(
        f"field {name}: {message}",
        errors=[{"loc": ["body", name], "msg": message, "type": "value_error"}],
    )


def check_value(spec: FieldSpec, value: Any) -> Any:
    """The value in its stored form, or ValidationFailed naming the field."""
    name = spec.name
    if spec.multiple:
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_VALUES:
            raise _invalid(name, f"must be a list of 1 to {MAX_VALUES} values")
        if any(not isinstance(v, str) or not v.strip() or len(v) > MAX_TEXT for v in value):
            raise _invalid(name, f"each value must be a non-empty string of at most {MAX_TEXT}")
        return list(dict.fromkeys(value))
    if spec.type == "string":
        if not isinstance(value, str) or not value.strip():
            raise _invalid(name, "must be a non-empty string")
        if len(value) > MAX_TEXT:
            raise _invalid(name, f"must be at most {MAX_TEXT} characters")
        return value
    if spec.type == "enum":
        if value not in (spec.values or []):
            raise _invalid(name, f"must be one of {', '.join(spec.values or [])}")
        return value
    if spec.type == "boolean":
        if not isinstance(value, bool):
            raise _invalid(name, "must be true or false")
        return value
    if spec.type == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _invalid(name, "must be a number")
        return value
    if not isinstance(value, str):
        raise _invalid(name, "must be a date (YYYY-MM-DD)")
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise _invalid(name, "must be a date (YYYY-MM-DD)") from None


def encode(value: Any) -> str:
    """Text form of a value for sealing; decode() reverses it using the field type."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def decode(spec: FieldSpec, text: str) -> Any:
    if spec.type == "boolean":
        return text == "true"
    if spec.type == "number":
        number = float(text)
        return int(number) if number.is_integer() and "." not in text else number
    return text
