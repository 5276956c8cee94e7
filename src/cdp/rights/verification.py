"""Customer verification by a one-time code sent to the profile's e-mail address or phone.

Known and unknown identifiers take the same path (blind index, a code hashed and stored, an
audit entry) and get the same answer; only the sending, after the response, differs. Codes
live 10 minutes, allow 5 attempts, and are kept as an HMAC under a key outside the database.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from cdp.audit import service as audit
from cdp.audit.service import RequestContext
from cdp.auth import service as auth
from cdp.auth.ratelimit import RateLimiter
from cdp.auth.tokens import TokenService
from cdp.crypto import Crypto
from cdp.db import unit_of_work, utcnow
from cdp.errors import RateLimited, VerificationFailed
from cdp.notifier import Channel, Message
from cdp.policy import Policy
from cdp.profiles.models import Identity, Profile
from cdp.rights.models import VerificationCode

CODE_TTL = timedelta(minutes=10)
MAX_ATTEMPTS = 5
CHANNELS: dict[str, Channel] = {"email": "email", "phone": "sms"}
_WINDOW = timedelta(hours=1)


def code_key(secret: bytes) -> bytes:
    """The HMAC key for codes, derived from a server secret (never stored in the database)."""
    return hmac.new(secret, b"cdp-verification-code", hashlib.sha256).digest()


def _digest(key: bytes, verification_id: str, code: str) -> str:
    return hmac.new(key, f"{verification_id}|{code}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Started:
    verification_id: str
    channel: Channel
    expires_in: int
    # Sent after the response, and only when the identifier belongs to a profile.
    message: Message | None


def start(
    session: Session,
    *,
    crypto: Crypto,
    key: bytes,
    limiter: RateLimiter,
    client_ip: str,
    kind: str,
    value: str,
    per_hour: int,
) -> Started:
    """Store a code for the identifier and say where it would go; the same for unknown ones."""
    wait = limiter.hit(f"ip:{client_ip}")
    if wait is not None:
        raise RateLimited(
            "too many verification requests from this address", headers={"Retry-After": str(wait)}
        )
    index = crypto.blind_index(kind, value)  # InvalidIdentifier (422) names the kind only
    now = utcnow()
    recent = session.execute(
        select(func.count(), func.min(VerificationCode.created_at)).where(
            VerificationCode.identifier_index == index,
            VerificationCode.created_at > now - _WINDOW,
        )
    ).one()
    if recent[0] >= per_hour:
        retry = max(1, math.ceil((recent[1] + _WINDOW - now).total_seconds()))
        raise RateLimited(
            "too many codes for this identifier; try again later",
            headers={"Retry-After": str(retry)},
        )
    subject_id = session.scalar(
        select(Identity.subject_id).where(Identity.kind == kind, Identity.blind_index == index)
    )
    code = f"{secrets.randbelow(10**6):06d}"
    verification_id = str(uuid.uuid4())
    row = VerificationCode(
        id=verification_id,
        kind=kind,
        identifier_index=index,
        subject_id=subject_id,
        code_hash=_digest(key, verification_id, code),
        attempts=0,
        created_at=now,
        expires_at=now + CODE_TTL,
    )
    session.add(row)
    session.flush()
    audit.append(
        session,
        actor="anonymous",
        action="verification.start",
        subject=None,
        detail={"verification_id": row.id, "kind": kind},
    )
    channel = CHANNELS[kind]
    message = None
    if subject_id is not None:
        message = Message(
            channel=channel,
            to=crypto.normalise(kind, value),
            subject="验证码 Verification code",
            body=(
                f"您的验证码是 {code}，10 分钟内有效。如非本人操作，请忽略。\n"  # noqa: RUF001
                f"Your verification code is {code}. It expires in 10 minutes."
            ),
            at=now,
        )
    return Started(row.id, channel, int(CODE_TTL.total_seconds()), message)


def _spend_attempt(
    sessions: sessionmaker[Session], policy: Policy, verification_id: str, now: datetime
) -> tuple[str, str | None] | None:
    """Counts one attempt in a transaction of its own (a failed check must not roll it back);
    the stored hash and subject, or None when the code is used up, expired or unknown."""
    with unit_of_work(sessions) as own:
        own.info["ctx"] = RequestContext(policy.version)
        spent = own.execute(
            update(VerificationCode)
            .where(
                VerificationCode.id == verification_id,
                VerificationCode.consumed_at.is_(None),
                VerificationCode.attempts < MAX_ATTEMPTS,
                VerificationCode.expires_at > now,
            )
            .values(attempts=VerificationCode.attempts + 1)
        )
        if not getattr(spent, "rowcount", 0):
            return None
        row = own.execute(
            select(VerificationCode.code_hash, VerificationCode.subject_id).where(
                VerificationCode.id == verification_id
            )
        ).one()
        return str(row[0]), row[1]


def confirm(
    session: Session,
    *,
    sessions: sessionmaker[Session],
    policy: Policy,
    tokens: TokenService,
    key: bytes,
    limiter: RateLimiter,
    client_ip: str,
    verification_id: str,
    code: str,
    ttl_seconds: int,
) -> tuple[auth.IssuedToken, str]:
    """A customer token for the code's subject, or VerificationFailed (the same for every
    reason: wrong, expired, used up, attempts exhausted, or an identifier nobody has)."""
    wait = limiter.hit(f"ip:{client_ip}")
    if wait is not None:
        raise RateLimited("too many attempts from this address", headers={"Retry-After": str(wait)})
    now = utcnow()
    found = (
        _spend_attempt(sessions, policy, verification_id, now)
        if len(verification_id) <= 36
        else None
    )
    expected = found[0] if found else _digest(key, verification_id, "-")
    good = hmac.compare_digest(expected, _digest(key, verification_id, code))
    subject_id = found[1] if found else None
    failed = VerificationFailed(
        "the code is wrong, expired or used up; request a new one",
        audit={
            "action": "verification.failed",
            "actor": "anonymous",
            "detail": {"verification_id": verification_id[:36]},
        },
    )
    if not good or subject_id is None:
        raise failed
    used = session.execute(
        update(VerificationCode)
        .where(VerificationCode.id == verification_id, VerificationCode.consumed_at.is_(None))
        .values(consumed_at=now)
    )
    if not getattr(used, "rowcount", 0) or session.get(Profile, subject_id) is None:
        raise failed
    ttl = min(ttl_seconds, policy.settings.token_max_ttl_seconds)
    token, claims = tokens.issue(
        subject=subject_id,
        ttl_seconds=ttl,
        claims={"role": auth.SUBJECT_ROLE, "scope": auth.SUBJECT_SCOPE, "purposes": []},
    )
    audit.append(
        session,
        actor=f"subject:{subject_id}",
        action="subject_token.issue",
        subject=subject_id,
        detail={"jti": claims["jti"], "expires": claims["exp"], "via": "verification"},
    )
    return auth.IssuedToken(token, ttl, auth.SUBJECT_SCOPE, []), subject_id
