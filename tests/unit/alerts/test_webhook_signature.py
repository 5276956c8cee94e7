"""The webhook signature: HMAC-SHA256 over `<timestamp>.<body>`, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac

from cdp.alerts.webhooks import signature, verify


def test_signature_is_hmac_sha256_of_timestamp_and_body() -> None:
    body = b'{"alert": {"kind": "complaint_spike"}}'
    expected = hmac.new(b"whsec_k", b"1764000000." + body, hashlib.sha256).hexdigest()
    assert signature("whsec_k", 1764000000, body) == "sha256=" + expected


def test_verify_refuses_altered_body_timestamp_or_secret() -> None:
    body = b'{"a": 1}'
    header = signature("whsec_k", 1764000000, body)
    assert verify("whsec_k", "1764000000", body, header)
    assert not verify("whsec_k", "1764000000", b'{"a": 2}', header)
    assert not verify("whsec_k", "1764000001", body, header)
    assert not verify("whsec_other", "1764000000", body, header)
    assert not verify("whsec_k", "not-a-number", body, header)
