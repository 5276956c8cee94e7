"""The chain and checkpoint rules, standalone so an offline verifier can use them: stdlib only.

Entry: hash = SHA-256(prev_hash || canonical(entry)), prev_hash of the first entry being 64
zeros, where canonical(entry) is, for each field in CHAIN_FIELDS order, the 8-byte big-endian
length of the field's UTF-8 text followed by the text. A field's text is: "" for null, the
string itself, decimal for integers, RFC 3339 UTC with microseconds for times, and compact
sorted-key JSON (no ASCII escaping) for lists and objects.

Checkpoint: an Ed25519 signature over length_prefixed(["cdp-audit-checkpoint/v1", from_seq,
seq, hash, range_digest, at, key_id]) (integers in decimal, `at` as above). It says: at time
`at`, entry `seq` had hash `hash`, and the entries from_seq..seq (the ones since the previous
checkpoint, none when from_seq = seq + 1) had the hashes whose digest is range_digest =
SHA-256 of their raw 32-byte hashes concatenated in sequence order. key_id is the first 16 hex
digits of SHA-256 over the raw 32-byte Ed25519 public key.
"""

from __future__ import annotations

import hashlib
import json
import json.encoder
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
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
CHECKPOINT_CONTEXT = "cdp-audit-checkpoint/v1"
MANIFEST_CONTEXT = "cdp-audit-manifest/v1"
EMPTY_RANGE_DIGEST = hashlib.sha256(b"").hexdigest()

_length = struct.Struct(">Q").pack
_json = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def field_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return str(value)
    if isinstance(value, datetime):
        return format_time(value)
    return _json(value)


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _compact_json() -> Callable[[Any], str]:
    """Compact sorted-key JSON, as json.dumps(sort_keys=True, separators=(",", ":"),
    ensure_ascii=False); the C encoder built once when available (the verifier's hot path)."""
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if c_make_encoder is None:
        return _json

    def refuse(value: Any) -> Any:
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")

    encoder = c_make_encoder(
        None, refuse, json.encoder.encode_basestring, None, ":", ",", True, False, True
    )
    return lambda value: "".join(encoder(value, 0))


_compact = _compact_json()


def _string_list(value: list[Any]) -> str:
    # Field-name lists are the common case: quoting them needs no JSON escaping at all.
    try:
        inner = '","'.join(value)
    except TypeError:  # not only strings
        return _compact(value)
    if inner.isprintable() and '"' not in inner and "\\" not in inner:
        return f'["{inner}"]'
    return _compact(value)


_ZERO = _length(0)
_PREFIXES = [_length(n) for n in range(4096)]


def canonical_values(values: Iterable[Any]) -> bytes:
    """canonical() of the field values given in CHAIN_FIELDS order (the verifier's fast path)."""
    out: list[bytes] = []
    append = out.append
    for value in values:
        kind = type(value)
        if kind is str:
            data = value.encode("utf-8")
        elif value is None:
            append(_ZERO)
            continue
        elif kind is int:
            data = str(value).encode("ascii")
        elif kind is list:
            data = _string_list(value).encode("utf-8") if value else b"[]"
        elif kind is dict:
            data = _compact(value).encode("utf-8") if value else b"{}"
        else:
            data = field_text(value).encode("utf-8")
        size = len(data)
        append(_PREFIXES[size] if size < 4096 else _length(size))
        append(data)
    return b"".join(out)


def canonical(entry: Mapping[str, Any]) -> bytes:
    return canonical_values([entry.get(name) for name in CHAIN_FIELDS])


def entry_hash(prev_hash: str, entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical(entry)).hexdigest()


def length_prefixed(texts: Iterable[str]) -> bytes:
    """Each text as its 8-byte big-endian UTF-8 length and the bytes, concatenated."""
    return canonical_values(texts)


def range_digest(hashes: Iterable[str]) -> str:
    """SHA-256 over the raw 32-byte hashes of consecutive entries, in sequence order."""
    digest = hashlib.sha256()
    for value in hashes:
        digest.update(bytes.fromhex(value))
    return digest.hexdigest()


def checkpoint_message(
    *, from_seq: int, seq: int, last_hash: str, digest: str, at: datetime | str, key_id: str
) -> bytes:
    """The bytes a checkpoint signature covers."""
    when = at if isinstance(at, str) else format_time(at)
    fields: Sequence[str] = (
        CHECKPOINT_CONTEXT,
        str(from_seq),
        str(seq),
        last_hash,
        digest,
        when,
        key_id,
    )
    return length_prefixed(fields)


def manifest_message(manifest: Mapping[str, Any]) -> bytes:
    """The bytes an export manifest's signature covers: the manifest without `signature`."""
    body = {k: v for k, v in manifest.items() if k != "signature"}
    return length_prefixed((MANIFEST_CONTEXT, _json(body)))


def key_id(public_key: bytes) -> str:
    """Names a signing key: the first 16 hex digits of SHA-256 over the raw public key."""
    return hashlib.sha256(public_key).hexdigest()[:16]
