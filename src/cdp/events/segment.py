"""The Segment HTTP Tracking API wire format, read as the real SDKs send it (API.md, Tracking).

Liberal in what it accepts: `type` missing (the path or the item's fields imply it) or
capitalised, numeric ids, null or "" ids, a missing messageId, `properties` null or [] (PHP's
empty map), RFC 3339 times with Z or an offset and 0-9 fractional digits, batch-level context,
timestamp, sentAt and writeKey applied to every item, integrations of any shape (ignored).

What makes a message unusable, per Segment's own rules, is reported for that message only:
neither userId nor anonymousId, a track without an event name, an unknown type, properties
that are not a map. A body that is not a JSON object (or a batch without a list) is a 400.
"""

from __future__ import annotations

import json
import re
import uuid
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cdp.errors import BadRequest, BatchTooLarge, PayloadTooLarge
from cdp.events.plan import MESSAGE_TYPES
from cdp.events.service import MAX_BATCH, Message

# The one-letter paths analytics.js posts to, and the full names.
SHORT_PATHS = {
    "b": "batch",
    "t": "track",
    "i": "identify",
    "p": "page",
    "s": "screen",
    "a": "alias",
    "g": "group",
}
_TIME = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:?\d{2})?"
)
MAX_ID = 200
MAX_NAME = 200


@dataclass(frozen=True, slots=True)
class Body:
    """A parsed request body: its messages (valid or not) and the write key it carried."""

    messages: list[Message]
    write_key: str | None


def gunzip(raw: bytes, *, limit: int) -> bytes:
    """A gzip body (members concatenated allowed), refused once it inflates past the limit
    that applies to every body, so a small bomb cannot take the memory of a worker."""
    out = bytearray()
    data = raw
    try:
        while data:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out += inflater.decompress(data, limit + 1 - len(out))
            if len(out) > limit or inflater.unconsumed_tail:
                raise PayloadTooLarge(f"the decompressed body exceeds {limit} bytes")
            if not inflater.eof:
                raise BadRequest("the gzip body is truncated")
            data = inflater.unused_data
    except zlib.error:
        raise BadRequest("the body is not valid gzip") from None
    return bytes(out)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse(raw: bytes, *, kind: str, received_at: datetime) -> Body:
    """Messages of a body posted to /v1/<kind> (batch or a message type)."""
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body is not JSON") from None
    if b"\\u" in raw and _has_lone_surrogate(data):
        raise BadRequest("the body holds an unpaired UTF-16 surrogate escape: not Unicode text")
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    if kind == "batch":
        items = data.get("batch")
        if not isinstance(items, list):
            raise BadRequest("a batch body needs a `batch` list")
        if len(items) > MAX_BATCH:
            raise BatchTooLarge(f"at most {MAX_BATCH} messages per batch, got {len(items)}")
        shared = data
    else:
        items, shared = [data], {}
    write_key = _text(data.get("writeKey"))
    messages = []
    for index, item in enumerate(items):
        if write_key is None and isinstance(item, dict):
            write_key = _text(item.get("writeKey"))
        implied = None if kind == "batch" else kind
        messages.append(message(item, index=index, implied=implied, shared=shared, now=received_at))
    return Body(messages, write_key)


def _has_lone_surrogate(data: Any) -> bool:
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def message(
    item: Any, *, index: int, implied: str | None, shared: dict[str, Any], now: datetime
) -> Message:
    """One Segment message, normalised; `error` is set when it cannot be used."""
    if not isinstance(item, dict):
        return Message.invalid(index, "not_an_object")
    kind = implied or _type(item)
    context = _merged(shared.get("context"), item.get("context"))
    msg = Message(
        index=index,
        type=kind or "",
        message_id=_id(item.get("messageId")),
        user_id=_id(item.get("userId")),
        anonymous_id=_id(item.get("anonymousId")),
        previous_id=_id(item.get("previousId")),
        name=None,
        properties={},
        context=context,
        timestamp=_timestamp(item, shared, now),
    )
    if kind not in MESSAGE_TYPES:
        msg.error = "invalid_type"
        return msg
    if kind == "alias":
        if msg.user_id is None or msg.previous_id is None:
            msg.error = "missing_id"
        return msg
    if msg.user_id is None and msg.anonymous_id is None:
        msg.error = "missing_id"
        return msg
    if kind in ("identify", "group"):
        # Traits (in `traits` or context.traits) are not stored: they are not in the plan.
        return msg
    properties = item.get("properties")
    if properties is None or properties == []:
        properties = {}
    if not isinstance(properties, dict):
        msg.error = "invalid_properties"
        return msg
    msg.properties = dict(properties)
    if kind == "track":
        event = item.get("event")
        if not isinstance(event, str) or not event.strip() or len(event) > MAX_NAME:
            msg.error = "missing_event"
            return msg
        msg.name = event.strip()
    else:
        # A page or screen call's own name and category are properties of Page/Screen Viewed.
        for key in ("name", "category"):
            value = item.get(key)
            if isinstance(value, str) and value and key not in msg.properties:
                msg.properties[key] = value
    return msg


def _type(item: dict[str, Any]) -> str | None:
    value = item.get("type")
    if isinstance(value, str) and value.strip():
        return value.strip().lower()
    # No type: the fields say what the message is.
    if "event" in item:
        return "track"
    if "previousId" in item:
        return "alias"
    if "groupId" in item:
        return "group"
    if "traits" in item:
        return "identify"
    return None


def _id(value: Any) -> str | None:
    """userId / anonymousId / messageId: a string or a number; null, "" and blanks are none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _merged(outer: Any, inner: Any) -> dict[str, Any]:
    merged = dict(outer) if isinstance(outer, dict) else {}
    if isinstance(inner, dict):
        merged.update(inner)
    return merged


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time with Z or an offset and 0-9 fractional digits; naive means UTC."""
    if not isinstance(value, str):
        return None
    found = _TIME.fullmatch(value.strip())
    if found is None:
        return None
    day, clock, fraction, offset = found.groups()
    micro = (fraction or "").ljust(6, "0")[:6]
    zone = "+00:00" if offset in (None, "Z", "z") else offset
    try:
        parsed = datetime.fromisoformat(f"{day}T{clock}.{micro}{zone}")
    except ValueError:
        return None
    return parsed.astimezone(UTC)


def _timestamp(item: dict[str, Any], shared: dict[str, Any], now: datetime) -> datetime:
    """When it happened, corrected for the sender's clock skew as Segment does:
    received_at - (sentAt - timestamp) when both are given; received_at when none is."""
    stamp = (
        parse_time(item.get("timestamp"))
        or parse_time(item.get("originalTimestamp"))
        or parse_time(shared.get("timestamp"))
    )
    if stamp is None:
        return now
    sent = parse_time(item.get("sentAt")) or parse_time(shared.get("sentAt"))
    if sent is None:
        return stamp
    corrected = now - (sent - stamp)
    # A sentAt before the timestamp is nonsense from a broken clock: keep the timestamp.
    return corrected if sent >= stamp else stamp


def new_message_id() -> str:
    """An id for a message sent without one (it cannot be de-duplicated)."""
    return f"cdp-{uuid.uuid4().hex}"
