"""AES-256-GCM through our wrapper: published known answers, the v1 text form, tampering."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cdp.crypto.aead import (
    decrypt,
    encrypt,
    field_aad,
    open_text,
    parse,
    seal_text,
)
from cdp.errors import CiphertextInvalid

K15 = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308"
P15 = (
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255"
)
C15 = (
    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
    "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad"
)

# McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 13-16 (256-bit keys);
# the same vectors are in NIST's GCM validation suite.
GCM_VECTORS = [
    pytest.param("00" * 32, "00" * 12, "", "", "", "530f8afbc74536b9a963b4f1c4cb738b", id="tc13"),
    pytest.param(
        "00" * 32,
        "00" * 12,
        "00" * 16,
        "",
        "cea7403d4d606b6e074ec5d3baf39d18",
        "d0d1c8a799996bf0265b98b5d48ab919",
        id="tc14",
    ),
    pytest.param(
        K15, "cafebabefacedbaddecaf888", P15, "", C15, "b094dac5d93471bdec1a502270e3cc6c", id="tc15"
    ),
    pytest.param(
        K15,
        "cafebabefacedbaddecaf888",
        P15[:-8],
        "feedfacedeadbeeffeedfacedeadbeefabaddad2",
        C15[:-8],
        "76fc6ece0f4e1768cddf8853bb2d551b",
        id="tc16",
    ),
]


@pytest.mark.parametrize(("key", "iv", "pt", "aad", "ct", "tag"), GCM_VECTORS)
def test_gcm_known_answers(key: str, iv: str, pt: str, aad: str, ct: str, tag: str) -> None:
    k, n, a = bytes.fromhex(key), bytes.fromhex(iv), bytes.fromhex(aad) or None
    out = encrypt(k, n, bytes.fromhex(pt), a)
    assert out.hex() == ct + tag
    assert decrypt(k, n, out, a) == bytes.fromhex(pt)


def test_gcm_rejects_a_flipped_tag_bit() -> None:
    key, nonce = bytes(32), bytes(12)
    out = bytearray(encrypt(key, nonce, b"x", None))
    out[-1] ^= 1
    with pytest.raises(CiphertextInvalid):
        decrypt(key, nonce, bytes(out), None)


def test_wrapper_refuses_short_keys() -> None:
    with pytest.raises(ValueError, match="32-byte"):
        encrypt(bytes(16), bytes(12), b"", None)


def test_text_form_round_trip_and_shape() -> None:
    aead = AESGCM(os.urandom(32))
    aad = field_aad("profile", "name", "s1")
    ct = seal_text(aead, 7, "张三 Zhang San", aad)
    prefix, version, nonce, _ = ct.split(".")
    assert (prefix, version) == ("v1", "7")
    assert "=" not in ct and "张" not in ct
    assert len(nonce) == 16  # 96-bit nonce in unpadded base64url
    assert parse(ct)[0] == 7
    assert open_text(aead, ct, aad) == "张三 Zhang San"


def test_nonces_are_fresh() -> None:
    aead = AESGCM(os.urandom(32))
    aad = field_aad("t", "c", "s")
    sealed = {seal_text(aead, 1, "same", aad) for _ in range(1000)}
    assert len({s.split(".")[2] for s in sealed}) == 1000


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda s: s[:-1], id="truncated"),
        pytest.param(lambda s: s[: s.rindex(".") + 10], id="truncated-to-less-than-tag"),
        pytest.param(lambda s: s.replace("v1.", "v2.", 1), id="unknown-format"),
        pytest.param(lambda s: "v1.1." + s.split(".", 2)[2][3:], id="short-nonce"),
        pytest.param(lambda s: s[:-3] + ("AAA" if s[-3:] != "AAA" else "BBB"), id="flipped"),
        pytest.param(lambda s: s + "$$", id="garbage-appended"),
        pytest.param(lambda s: "", id="empty"),
        pytest.param(lambda s: "v1.x.abc.def", id="non-numeric-version"),
        pytest.param(lambda s: "not a ciphertext at all", id="plain-text"),
        pytest.param(lambda s: s.replace(".", "", 1), id="missing-separator"),
    ],
)
def test_mangled_ciphertext_is_invalid_never_garbage(mangle: object) -> None:
    aead = AESGCM(os.urandom(32))
    aad = field_aad("profile", "email", "s1")
    ct = seal_text(aead, 1, "someone@example.com", aad)
    bad = mangle(ct)  # type: ignore[operator]
    with pytest.raises(CiphertextInvalid) as info:
        open_text(aead, bad, aad)
    assert info.value.status == 409 and "someone" not in str(info.value)


def test_associated_data_binds_table_column_and_subject() -> None:
    aead = AESGCM(os.urandom(32))
    ct = seal_text(aead, 1, "x", field_aad("profile", "name", "s1"))
    for aad in (
        field_aad("profile", "email", "s1"),
        field_aad("profile", "name", "s2"),
        field_aad("identity", "name", "s1"),
    ):
        with pytest.raises(CiphertextInvalid):
            open_text(aead, ct, aad)


def test_associated_data_is_unambiguous() -> None:
    with pytest.raises(ValueError, match=r"\|"):
        field_aad("profile|name", "x", "s1")
    with pytest.raises(ValueError, match=r"\|"):
        field_aad("profile", "name|x", "s1")
