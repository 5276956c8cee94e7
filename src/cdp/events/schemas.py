"""Tracking schemas: the native batch, results, events read back, violation counters, and the
documented shape of the Segment-compatible bodies (which are parsed by events.segment)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from cdp.api import Rfc3339


def _text_time(value: Any) -> Any:
    # Lax mode would read a number as a Unix time; the contract is an RFC 3339 string.
    if not isinstance(value, str | datetime):
        raise ValueError("expected an RFC 3339 date-time string")
    return value


Timestamp = Annotated[Rfc3339, BeforeValidator(_text_time)]
MessageType = Literal["track", "page", "screen", "identify", "alias", "group"]

_EVENT_EXAMPLE: dict[str, Any] = {
    "message_id": "ord-20261125-0001",
    "external_id": "shop-10086",
    "type": "track",
    "name": "Order Completed",
    "timestamp": "2026-11-25T20:15:03.125+08:00",
    "properties": {"order_id": "SO-88231", "revenue": 299.0, "currency": "CNY"},
    "context": {"library": {"name": "shop-backend", "version": "4.2.0"}},
}


class EventIn(BaseModel):
    """One native event: who (profile id, external id or anonymous id), what and when."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EVENT_EXAMPLE]})

    message_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="De-duplicates retries (per caller); omitted: the server assigns one.",
    )
    profile_id: UUID | None = None
    external_id: str | None = Field(default=None, min_length=1, max_length=200)
    anonymous_id: str | None = Field(default=None, min_length=1, max_length=200)
    previous_id: str | None = Field(
        default=None, min_length=1, max_length=200, description="alias: the anonymous id"
    )
    type: MessageType = "track"
    name: str | None = Field(
        default=None, min_length=1, max_length=200, description="Event name (track)."
    )
    timestamp: Timestamp | None = Field(default=None, description="Default: when received.")
    properties: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(
        default_factory=dict,
        description="May carry consent.categoryPreferences for an anonymous visitor.",
    )

    @model_validator(mode="after")
    def _who_and_what(self) -> EventIn:
        if self.type == "alias":
            if not (self.previous_id and (self.external_id or self.profile_id)):
                raise ValueError("an alias needs previous_id and external_id or profile_id")
        elif not (self.profile_id or self.external_id or self.anonymous_id):
            raise ValueError("one of profile_id, external_id or anonymous_id is required")
        if self.type == "track" and not self.name:
            raise ValueError("a track event needs a name")
        return self


class EventBatch(BaseModel):
    """Up to 500 events; more is 422 batch_too_large and nothing is stored."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"events": [_EVENT_EXAMPLE]}]}
    )

    events: list[EventIn] = Field(min_length=1, json_schema_extra={"maxItems": 500})


class Dropped(BaseModel):
    index: int = Field(description="Position of the message in the request.")
    reason: str = Field(
        description="invalid_type, missing_id, missing_event, unplanned_event, "
        "missing_property, type_mismatch, unknown_subject, consent_required, "
        "processing_restricted, ..."
    )


_RESULT_EXAMPLE: dict[str, Any] = {
    "accepted": 98,
    "duplicates": 1,
    "dropped": [{"index": 7, "reason": "consent_required"}],
}


class BatchResult(BaseModel):
    """Counts of what became of the batch; dropped messages are counted per source too."""

    model_config = ConfigDict(json_schema_extra={"examples": [_RESULT_EXAMPLE]})

    accepted: int
    duplicates: int
    dropped: list[Dropped]


class SegmentResult(BatchResult):
    """The Segment answer (`success`), with the same counts as the native endpoint."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"success": True, **_RESULT_EXAMPLE}]}
    )

    success: bool = True


_EVENT_READ_EXAMPLE: dict[str, Any] = {
    "id": "4b0f6c2e9d7a4e21a3c1f0b2d9e8a7c6",
    "message_id": "ord-20261125-0001",
    "source_id": "src_3f9a1c2b4d5e6f70",
    "type": "track",
    "name": "Order Completed",
    "timestamp": "2026-11-25T12:15:03.125000Z",
    "received_at": "2026-11-25T12:15:03.410000Z",
    "properties": {"order_id": "SO-88231", "revenue": 299.0},
    "context": {"library": {"name": "analytics-python", "version": "2.4.0"}},
}


class EventRead(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_EVENT_READ_EXAMPLE]})

    id: str
    message_id: str
    source_id: str
    type: str
    name: str | None
    timestamp: datetime
    received_at: datetime
    properties: dict[str, Any]
    context: dict[str, Any]


class EventPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_EVENT_READ_EXAMPLE], "next_cursor": None}]}
    )

    items: list[EventRead]
    next_cursor: str | None


_VIOLATION_EXAMPLE: dict[str, Any] = {
    "kind": "unplanned_property",
    "name": "Order Completed.gift_note",
    "count": 12,
    "first_seen": "2026-11-20T02:00:00Z",
    "last_seen": "2026-11-25T12:15:03Z",
}


class ViolationRead(BaseModel):
    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [_VIOLATION_EXAMPLE]}
    )

    kind: str
    name: str = Field(description="Event name, `.property` for property kinds; may be empty.")
    count: int
    first_seen: datetime
    last_seen: datetime


class ViolationPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [_VIOLATION_EXAMPLE], "next_cursor": None}]}
    )

    items: list[ViolationRead]
    next_cursor: str | None


# --- the Segment HTTP Tracking API, as documented (parsing is liberal: events.segment) --------

_ID = {"type": ["string", "number", "null"]}
_TEXT = {"type": ["string", "null"]}
_MAP = {"type": ["object", "null"]}
SEGMENT_MESSAGE: dict[str, Any] = {
    "type": "object",
    "description": "A Segment message; unknown fields are ignored.",
    "properties": {
        "type": _TEXT,
        "userId": _ID,
        "anonymousId": _ID,
        "messageId": _ID,
        "event": _TEXT,
        "name": _TEXT,
        "properties": {"type": ["object", "array", "null"]},
        "traits": _MAP,
        "context": _MAP,
        "integrations": _MAP,
        "timestamp": _TEXT,
        "sentAt": _TEXT,
        "previousId": _ID,
        "groupId": _ID,
        "channel": _TEXT,
        "writeKey": _TEXT,
    },
    "additionalProperties": True,
}
SEGMENT_BATCH: dict[str, Any] = {
    "type": "object",
    "required": ["batch"],
    "properties": {
        "batch": {"type": "array", "maxItems": 500, "items": SEGMENT_MESSAGE},
        "context": _MAP,
        "integrations": _MAP,
        "timestamp": _TEXT,
        "sentAt": _TEXT,
        "writeKey": _TEXT,
    },
    "additionalProperties": True,
}
SEGMENT_EXAMPLES: dict[str, dict[str, Any]] = {
    "track": {
        "userId": "shop-10086",
        "anonymousId": "5a2f6c1e-8a51-4d7e-9c1b-2f6b7d9e0a13",
        "event": "Product Viewed",
        "properties": {"product_id": "SKU-2231", "price": 129.0},
        "context": {"consent": {"categoryPreferences": {"Analytics": True}}},
        "messageId": "9f1c2a7e-1d2b-4c3d-8e9f-0a1b2c3d4e5f",
        "timestamp": "2026-11-25T12:15:03.125Z",
    },
    "identify": {
        "userId": "shop-10086",
        "anonymousId": "5a2f6c1e-8a51-4d7e-9c1b-2f6b7d9e0a13",
        "traits": {"membership_level": "gold"},
    },
    "page": {
        "anonymousId": "5a2f6c1e-8a51-4d7e-9c1b-2f6b7d9e0a13",
        "name": "Home",
        "properties": {"path": "/", "title": "首页"},
        "context": {"consent": {"categoryPreferences": {"Analytics": True}}},
    },
    "screen": {"userId": "shop-10086", "name": "Cart", "properties": {}},
    "alias": {"previousId": "5a2f6c1e-8a51-4d7e-9c1b-2f6b7d9e0a13", "userId": "shop-10086"},
    "group": {"userId": "shop-10086", "groupId": "store-hz-01", "traits": {}},
}
SEGMENT_EXAMPLES["batch"] = {
    "batch": [
        {"type": "identify", **SEGMENT_EXAMPLES["identify"]},
        {"type": "track", **SEGMENT_EXAMPLES["track"]},
    ],
    "sentAt": "2026-11-25T12:15:04.002Z",
    "writeKey": "wk_…",
}
