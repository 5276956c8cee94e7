"""Reading Segment bodies: liberal in what is accepted, exact about what is not."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta

import pytest

from cdp.errors import BadRequest, BatchTooLarge, PayloadTooLarge
from cdp.events import segment

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _one(body: dict[str, object], kind: str = "track") -> segment.Message:
    [msg] = segment.parse(json.dumps(body).encode(), kind=kind, received_at=NOW).messages
    return msg


def test_type_implied_by_path_or_fields() -> None:
    assert _one({"anonymousId": "a", "event": "E"}).type == "track"
    batch = {
        "batch": [
            {"anonymousId": "a", "event": "E"},
            {"previousId": "a", "userId": "u"},
            {"userId": "u", "groupId": "g"},
            {"userId": "u", "traits": {}},
            {"userId": "u", "type": " PAGE "},
            {"userId": "u"},
        ]
    }
    parsed = segment.parse(json.dumps(batch).encode(), kind="batch", received_at=NOW)
    types = [m.type or m.error for m in parsed.messages]
    assert types == ["track", "alias", "group", "identify", "page", "invalid_type"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(10086, "10086"), (1.0, "1"), ("  u1 ", "u1"), ("", None), (None, None), (True, None)],
)
def test_ids(value: object, expected: str | None) -> None:
    msg = _one({"userId": value, "anonymousId": "a", "event": "E"})
    assert msg.user_id == expected


def test_write_key_from_the_body_or_an_item() -> None:
    raw = json.dumps({"batch": [{"writeKey": "wk_item", "anonymousId": "a", "event": "E"}]})
    assert segment.parse(raw.encode(), kind="batch", received_at=NOW).write_key == "wk_item"
    raw = json.dumps({"batch": [], "writeKey": "wk_top"})
    assert segment.parse(raw.encode(), kind="batch", received_at=NOW).write_key == "wk_top"


@pytest.mark.parametrize(
    "text",
    ["2026-11-25T08:00:00Z", "2026-11-25T16:00:00+08:00", "2026-11-25T16:00:00+0800"],
)
def test_time_forms(text: str) -> None:
    assert segment.parse_time(text) == datetime(2026, 11, 25, 8, tzinfo=UTC)


@pytest.mark.parametrize("text", ["2026-11-25", "yesterday", "2026-13-45T00:00:00Z", "1700000000"])
def test_unreadable_times_fall_back_to_receipt(text: str) -> None:
    assert _one({"anonymousId": "a", "event": "E", "timestamp": text}).timestamp == NOW


def test_skew_correction_and_broken_clocks() -> None:
    sent = (NOW - timedelta(days=365)).isoformat()
    stamp = (NOW - timedelta(days=365, seconds=5)).isoformat()
    msg = _one({"anonymousId": "a", "event": "E", "timestamp": stamp, "sentAt": sent})
    assert msg.timestamp == NOW - timedelta(seconds=5)
    later = _one({"anonymousId": "a", "event": "E", "timestamp": sent, "sentAt": stamp})
    assert later.timestamp == datetime.fromisoformat(sent)


def test_page_name_and_category_become_properties() -> None:
    msg = _one({"anonymousId": "a", "name": "Home", "category": "Docs"}, kind="page")
    assert msg.properties == {"name": "Home", "category": "Docs"}
    msg = _one({"anonymousId": "a", "name": "Home", "properties": {"name": "X"}}, kind="page")
    assert msg.properties == {"name": "X"}


def test_unusable_bodies() -> None:
    for raw in (b"", b"{", b"[]", b"null", b'{"a": Infinity}'):
        with pytest.raises(BadRequest):
            segment.parse(raw, kind="track", received_at=NOW)
    with pytest.raises(BadRequest):
        segment.parse(b'{"batch": 1}', kind="batch", received_at=NOW)
    many = json.dumps({"batch": [{}] * 501}).encode()
    with pytest.raises(BatchTooLarge):
        segment.parse(many, kind="batch", received_at=NOW)


def test_gunzip_limits() -> None:
    data = b"x" * 1000
    assert segment.gunzip(gzip.compress(data), limit=1000) == data
    assert segment.gunzip(gzip.compress(data) + gzip.compress(data), limit=2000) == data * 2
    with pytest.raises(PayloadTooLarge):
        segment.gunzip(gzip.compress(data), limit=999)
    with pytest.raises(PayloadTooLarge):
        segment.gunzip(gzip.compress(data) * 2, limit=1500)
    with pytest.raises(BadRequest):
        segment.gunzip(gzip.compress(data)[:-10], limit=2000)
