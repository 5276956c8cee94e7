"""Blind indexes: HMAC-SHA256 known answers (RFC 4231) and the normal form of every kind."""

from __future__ import annotations

import pytest

from cdp.crypto.blind_index import IDENTIFIER_KINDS, blind_index, index_of, mac, normalise
from cdp.errors import InvalidIdentifier, ValidationFailed

# RFC 4231 section 4, test cases 1-4, HMAC-SHA-256.
RFC4231 = [
    pytest.param(
        bytes([0x0B] * 20),
        b"Hi There",
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        id="tc1",
    ),
    pytest.param(
        b"Jefe",
        b"what do ya want for nothing?",
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        id="tc2",
    ),
    pytest.param(
        bytes([0xAA] * 20),
        bytes([0xDD] * 50),
        "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
        id="tc3",
    ),
    pytest.param(
        bytes(range(1, 26)),
        bytes([0xCD] * 50),
        "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
        id="tc4",
    ),
]


@pytest.mark.parametrize(("key", "data", "expected"), RFC4231)
def test_hmac_sha256_known_answers(key: bytes, data: bytes, expected: str) -> None:
    assert mac(key, data).hex() == expected


def test_index_is_hmac_over_kind_nul_value() -> None:
    key = bytes(range(32))
    assert index_of(key, "email", "a@b.cn") == mac(key, b"email\x00a@b.cn").hex()
    assert len(blind_index(key, "email", "A@B.cn")) == 64


def test_kinds_are_separated_and_keys_matter() -> None:
    key = bytes(32)
    assert blind_index(key, "external_id", "42") != blind_index(key, "device_id", "42")
    assert blind_index(key, "external_id", "42") != blind_index(
        bytes([1] * 32), "external_id", "42"
    )


def _fullwidth(text: str) -> str:
    return text.translate({c: c + 0xFEE0 for c in range(ord("!"), ord("~") + 1)})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("13800138000", "+8613800138000"),
        ("+86 138 0013 8000", "+8613800138000"),
        ("0086-138-0013-8000", "+8613800138000"),
        ("+86-138-0013-8000", "+8613800138000"),
        ("(+86)", None),
        ("8613800138000", "+8613800138000"),
        ("  138.0013.8000 ", "+8613800138000"),
        (_fullwidth("13800138000"), "+8613800138000"),  # as a Chinese IME may type them
        (_fullwidth("+86 13800138000"), "+8613800138000"),
        ("+1 415 555 2671", "+14155552671"),
        ("+1 (415) 555-2671", "+14155552671"),
        ("001 415 555 2671", "+14155552671"),
        ("+44 20 7946 0958", "+442079460958"),
        ("+852 6123 4567", "+85261234567"),
        ("+49 30 1234567", "+49301234567"),
    ],
)
def test_phone_normal_form(raw: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(InvalidIdentifier):
            normalise("phone", raw)
    else:
        assert normalise("phone", raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "+",
        "1380013800",  # 10 digits: not a Chinese mobile
        "138001380001",  # 12 digits
        "23800138000",  # Chinese numbers must be mobiles starting with 1
        "010-12345678",  # a landline with trunk prefix
        "+86 0138 0013 8000",
        "+8613800138000x",
        "138-0013-800O",  # letter O for zero
        "call 13800138000",
        "+1 415 555 CALL",
        "+1234567",  # 7 digits in all
        "+1234567890123456",  # 16 digits
        "+0 123 456 789",
        "13800138000+",
        "++8613800138000",
        "1" * 2000,
    ],
)
def test_phone_rejects(raw: str) -> None:
    with pytest.raises(InvalidIdentifier):
        normalise("phone", raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Zhang.San@Example.COM ", "zhang.san@example.com"),
        ("a+tag@mail.example.cn", "a+tag@mail.example.cn"),
        ("USER@QQ.COM", "user@qq.com"),
        ("first_last-1@sub-domain.example.com.cn", "first_last-1@sub-domain.example.com.cn"),
        # Internationalised addresses are accepted; every spelling of the domain indexes alike.
        ("张三@例子.中国", "张三@例子.中国"),
        ("张三@xn--fsqu00a.xn--fiqs8s", "张三@例子.中国"),
        ("张三@例子。中国", "张三@例子.中国"),
        ("User@XN--FSQU00A.XN--FIQS8S", "user@例子.中国"),
    ],
)
def test_email_normal_form(raw: str, expected: str) -> None:
    assert normalise("email", raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "plainaddress",
        "@example.com",
        "user@",
        "user@@example.com",
        "a@b@example.com",
        "user@localhost",
        "user@example..com",
        "user@-example.com",
        "user@example-.com",
        "user@.example.com",
        "user@example.com.",
        "user name@example.com",
        '"quoted"@example.com',
        "user@exa mple.com",
        ".user@example.com",
        "user.@example.com",
        "us..er@example.com",
        "user<x>@example.com",
        "user@exam_ple.com",
        "user\n@example.com",
        "x" * 65 + "@example.com",
        "user@" + "a" * 64 + ".com",
        "user@" + ".".join(["abcdefghij"] * 24) + ".com",  # over 254 characters
    ],
)
def test_email_rejects(raw: str) -> None:
    with pytest.raises(InvalidIdentifier):
        normalise("email", raw)


@pytest.mark.parametrize("kind", ["external_id", "wechat_openid", "wechat_unionid", "device_id"])
def test_opaque_ids_are_trimmed_and_case_sensitive(kind: str) -> None:
    assert normalise(kind, "  oUpF8uMuAJO_M2pxb1Q9zNjWeS6o \t") == "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
    assert normalise(kind, "ABC") != normalise(kind, "abc")
    assert normalise(kind, "x" * 200) == "x" * 200
    for bad in ("", "   ", "x" * 201, "a\x00b", "a\nb"):
        with pytest.raises(InvalidIdentifier):
            normalise(kind, bad)


def test_id_card_number() -> None:
    assert normalise("id_card_number", " 11010519491231002x ") == "11010519491231002X"
    for bad in ("11010519491231002Y", "110105194912310021", "1101051949123100", "abc"):
        with pytest.raises(InvalidIdentifier):
            normalise("id_card_number", bad)


def test_error_names_the_kind_never_the_value() -> None:
    with pytest.raises(InvalidIdentifier) as info:
        normalise("phone", "13800138000 secret")
    err = info.value
    assert isinstance(err, ValidationFailed) and err.status == 422
    assert err.errors == [
        {"loc": ["body", "phone"], "msg": "not a valid phone", "type": "value_error"}
    ]
    assert "13800138000" not in str(err) and "secret" not in repr(err.errors)
    assert err.__cause__ is None and err.__suppress_context__


def test_unknown_kind_is_a_programming_error() -> None:
    assert "email" in IDENTIFIER_KINDS
    with pytest.raises(ValueError, match="unknown identifier kind"):
        normalise("emial", "a@b.cn")


def test_non_string_input_is_invalid() -> None:
    with pytest.raises(InvalidIdentifier):
        normalise("email", 42)  # type: ignore[arg-type]


def test_error_location_can_be_given() -> None:
    from cdp.errors import InvalidIdentifier as Invalid

    err = Invalid("email", loc=["body", "identities", 2, "value"])
    assert err.errors is not None and err.errors[0]["loc"] == ["body", "identities", 2, "value"]
