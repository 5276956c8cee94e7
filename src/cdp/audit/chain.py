"""The chain rule, standalone so an offline verifier can use it: stdlib only.

hash = SHA-256(prev_hash || canonical(entry)), where canonical(entry) is, for each field in
CHAIN_FIELDS order, the 8-byte big-endian length of the field's UTF-8 text followed by the text.
A field's text is: "" for null, the string itself, decimal for integers, RFC 3339 UTC with
microseconds for times, and compact sorted-key JSON for lists and objects.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64
CHAIN_FIELDS = (
    "seq",
    "at",
    "actor",
    "organisation",
    "action",
    "subject",
    "purpose",
    "fields",
    "decision",
    "code",
    "request_id",
    "policy_version",
    "detail",
)


def field_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return str(value)
    if isinstance(value, datetime):
        return format_time(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(entry: Mapping[str, Any]) -> bytes:
    out = bytearray()
    for name in CHAIN_FIELDS:
        data = field_text(entry.get(name)).encode("utf-8")
        out += len(data).to_bytes(8, "big")
        out += data
    return bytes(out)


def entry_hash(prev_hash: str, entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical(entry)).hexdigest()
