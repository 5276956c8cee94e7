"""AES-256-GCM for fields: self-describing text ciphertext bound to its table, column and subject.

A field ciphertext reads ``v1.<key version>.<nonce>.<ciphertext+tag>`` (nonce and ciphertext in
unpadded base64url). DESIGN.md sketches ``v1.<kek id>.<nonce>.<ct>``; fields are encrypted with
the subject's own data key (DEK), not with the master key (KEK), so the second part is the DEK's
version. The KEK only wraps DEKs in the key store: rotating it re-wraps one row per subject and
never touches field ciphertext. The DEK version tells a ciphertext sealed under a key that was
since shredded (a subject erased, then given a new key) from one that was tampered with.

The associated data ``table|column|subject_id`` makes a ciphertext copied to another row or
column fail authentication instead of decrypting under the wrong owner.
"""

from __future__ import annotations

import binascii
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cdp.errors import CiphertextInvalid

FORMAT = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
# v1.<DEK version>.<16 base64url chars: 12-byte nonce>.<at least 22: 16-byte tag and more>
_CIPHERTEXT = re.compile(r"v1\.([1-9][0-9]{0,8})\.([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{22,})")
_TO_URL = bytes.maketrans(b"+/", b"-_")
_FROM_URL = bytes.maketrans(b"-_", b"+/")


def encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes | None) -> bytes:
    """AES-256-GCM with an explicit nonce (known-answer tests only): ciphertext || tag."""
    if len(key) != KEY_BYTES:
        raise ValueError("AES-256-GCM needs a 32-byte key")
    return AESGCM(key).encrypt(nonce, plaintext, aad)


def decrypt(key: bytes, nonce: bytes, data: bytes, aad: bytes | None) -> bytes:
    """Inverse of encrypt; raises CiphertextInvalid when the tag does not verify."""
    if len(key) != KEY_BYTES:
        raise ValueError("AES-256-GCM needs a 32-byte key")
    try:
        return AESGCM(key).decrypt(nonce, data, aad)
    except InvalidTag as exc:
        raise CiphertextInvalid("the ciphertext failed authentication") from exc


def field_aad(table: str, column: str, subject_id: str) -> bytes:
    """Associated data binding a field ciphertext to its place; table and column hold no '|'."""
    if "|" in table or "|" in column:
        raise ValueError("table and column names must not contain '|'")
    return f"{table}|{column}|{subject_id}".encode()


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).rstrip(b"=").translate(_TO_URL).decode()


def _unb64(text: str) -> bytes:
    return binascii.a2b_base64((text + "=" * (-len(text) % 4)).encode().translate(_FROM_URL))


def seal_text(aead: AESGCM, key_version: int, plaintext: str, aad: bytes) -> str:
    """Encrypts text under a DEK with a fresh random 96-bit nonce; returns the v1 text form."""
    nonce = os.urandom(NONCE_BYTES)
    body = aead.encrypt(nonce, plaintext.encode("utf-8"), aad)
    return f"{FORMAT}.{key_version}.{_b64(nonce)}.{_b64(body)}"


def parse(ciphertext: str) -> tuple[int, str, str]:
    """Splits a v1 ciphertext into (DEK version, nonce, body); CiphertextInvalid if malformed."""
    match = _CIPHERTEXT.fullmatch(ciphertext) if isinstance(ciphertext, str) else None
    if match is None:
        raise CiphertextInvalid("the stored value is not a recognised ciphertext")
    version, nonce, body = match.groups()
    return int(version), nonce, body


def open_parsed(aead: AESGCM, nonce_text: str, body_text: str, aad: bytes) -> str:
    """Decrypts parsed parts; anything altered, truncated or moved -> CiphertextInvalid."""
    try:
        nonce, body = _unb64(nonce_text), _unb64(body_text)
        return aead.decrypt(nonce, body, aad).decode("utf-8")
    except (binascii.Error, ValueError, InvalidTag) as exc:
        raise CiphertextInvalid("the ciphertext failed authentication") from exc


def open_text(aead: AESGCM, ciphertext: str, aad: bytes) -> str:
    """Decrypts a v1 text ciphertext whatever DEK version it names."""
    _, nonce_text, body_text = parse(ciphertext)
    return open_parsed(aead, nonce_text, body_text, aad)
