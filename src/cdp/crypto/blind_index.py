"""Blind indexes: HMAC-SHA256 over a normalised identifier, so equality lookups need no plaintext.

Normal forms (one identifier, one index value, however it was typed):
- ``email``: trimmed, NFC, lower-cased; one ``@``, a non-empty local part without spaces,
  quotes or brackets, a domain of at least two labels, at most 254 characters. Internationalised
  addresses (RFC 6531, e.g. ``张三@例子.中国``) are accepted: Chinese mailbox providers issue them.
  The domain is kept in its Unicode form; an ``xn--`` (punycode) domain is decoded to it and the
  ideographic full stop ``。`` counts as a dot, so every spelling of one domain indexes alike.
- ``phone``: E.164 (``+8613800138000``). Full-width digits are accepted (NFKC); spaces, ``-``,
  ``.`` and brackets are ignored; letters are refused. A number without ``+`` or ``00`` is
  Chinese (``+86``); ``86`` followed by a mobile number is taken as already carrying the code.
  A ``+86`` number must be a mobile: 11 digits starting with 1. Others: 8-15 digits in all.
- ``id_card_number``: the 18-character resident identity card number, ``x`` upper-cased, with
  its GB 11643 check digit verified.
- ``external_id``, ``wechat_openid``, ``wechat_unionid``, ``device_id``, ``anonymous_id``:
  trimmed, non-empty, at most 200 characters, no control characters, case-sensitive.

An unusable value raises InvalidIdentifier naming the kind, never the value.
"""

from __future__ import annotations

import hmac
import re
import unicodedata
from collections.abc import Callable

from cdp.errors import InvalidIdentifier

MAX_EMAIL = 254
MAX_OPAQUE = 200
# Inputs longer than this are refused before any normalisation work is spent on them.
MAX_INPUT = 1000

_LOCAL_FORBIDDEN = re.compile(r'[\s"(),:;<>@\[\\\]\x00-\x1f\x7f]')
_ASCII_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_PHONE_BODY = re.compile(r"[0-9 ()\-.]+")
_NON_DIGIT = re.compile(r"[^0-9]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ID_CARD = re.compile(r"[0-9]{17}[0-9X]")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


class _Invalid(Exception):
    pass


def _domain(domain: str) -> str:
    domain = domain.translate(_DOTS).lower()
    if domain.isascii() and "xn--" not in domain:
        labels = domain.split(".")
        if len(labels) < 2 or not all(_ASCII_LABEL.fullmatch(label) for label in labels):
            raise _Invalid
        return domain
    try:
        ascii_form = domain.encode("idna")
        unicode_form = ascii_form.decode("idna")
    except UnicodeError as exc:
        raise _Invalid from exc
    labels = ascii_form.decode("ascii").split(".")
    if len(labels) < 2 or not all(_ASCII_LABEL.fullmatch(label) for label in labels):
        raise _Invalid
    return unicode_form.lower()


def _email(value: str) -> str:
    text = unicodedata.normalize("NFC", value).strip()
    if text.count("@") != 1:
        raise _Invalid
    local, domain = text.split("@")
    if not local or len(local) > 64 or _LOCAL_FORBIDDEN.search(local):
        raise _Invalid
    if local.startswith(".") or local.endswith(".") or ".." in local:
        raise _Invalid
    normalised = f"{local.lower()}@{_domain(domain)}"
    if len(normalised) > MAX_EMAIL:
        raise _Invalid
    return normalised


def _phone(value: str) -> str:
    text = unicodedata.normalize("NFKC", value).strip()
    international = text.startswith("+")
    body = text[1:] if international else text
    if not _PHONE_BODY.fullmatch(body):
        raise _Invalid
    digits = _NON_DIGIT.sub("", body)
    if not international and digits.startswith("00"):
        international, digits = True, digits[2:]
    if not international:
        already_coded = len(digits) == 13 and digits.startswith("861")
        digits = digits if already_coded else "86" + digits
    if digits.startswith("86"):
        national = digits[2:]
        if len(national) != 11 or national[0] != "1":
            raise _Invalid
    elif not 8 <= len(digits) <= 15 or digits[0] == "0":
        raise _Invalid
    return "+" + digits


def _id_card(value: str) -> str:
    text = unicodedata.normalize("NFKC", value).strip().upper()
    if not _ID_CARD.fullmatch(text):
        raise _Invalid
    total = sum(int(digit) * weight for digit, weight in zip(text, _ID_WEIGHTS, strict=False))
    if _ID_CHECK[total % 11] != text[17]:
        raise _Invalid
    return text


def _opaque(value: str) -> str:
    text = value.strip()
    if not text or len(text) > MAX_OPAQUE or _CONTROL.search(text):
        raise _Invalid
    return text


NORMALISERS: dict[str, Callable[[str], str]] = {
    "email": _email,
    "phone": _phone,
    "id_card_number": _id_card,
    "external_id": _opaque,
    "wechat_openid": _opaque,
    "wechat_unionid": _opaque,
    "device_id": _opaque,
    "anonymous_id": _opaque,
}
IDENTIFIER_KINDS = frozenset(NORMALISERS)


def normalise(kind: str, value: str) -> str:
    """The normal form of an identifier; InvalidIdentifier(kind) when it is not one."""
    try:
        rule = NORMALISERS[kind]
    except KeyError:
        raise ValueError(f"unknown identifier kind {kind!r}") from None
    if not isinstance(value, str) or len(value) > MAX_INPUT:
        raise InvalidIdentifier(kind)
    try:
        return rule(value)
    except _Invalid:
        raise InvalidIdentifier(kind) from None


def mac(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 (the primitive under every blind index; known-answer tested)."""
    return hmac.digest(key, message, "sha256")


def index_of(key: bytes, kind: str, normalised: str) -> str:
    """The blind index of an already normalised value: hex HMAC over ``kind NUL value``."""
    return mac(key, kind.encode() + b"\x00" + normalised.encode("utf-8")).hex()


def blind_index(key: bytes, kind: str, value: str) -> str:
    """Normalises, then indexes; InvalidIdentifier on a bad value."""
    return index_of(key, kind, normalise(kind, value))
