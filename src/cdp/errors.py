"""Domain errors rendered as RFC 9457 problem+json; messages never carry a PI value."""

from __future__ import annotations

from typing import Any, ClassVar


class CdpError(Exception):
    """Base error: the class carries the HTTP status, a stable code and a title."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        audit: dict[str, Any] | None = None,
    ) -> None:
        self.detail = detail or self.title
        self.errors = errors
        self.headers = headers or {}
        # When set, the denial is written to the audit log after the request's rollback.
        self.audit = audit
        super().__init__(self.detail)


class ValidationFailed(CdpError):
    status = 422
    code = "validation_error"
    title = "Request validation failed"


class BadRequest(CdpError):
    status = 400
    code = "bad_request"
    title = "Bad request"


class PurposeMissing(CdpError):
    status = 400
    code = "purpose_required"
    title = "X-Purpose header required"


class UnknownPurpose(CdpError):
    status = 400
    code = "unknown_purpose"
    title = "Unknown purpose"


class Unauthorized(CdpError):
    status = 401
    code = "unauthorized"
    title = "Authentication required"

    def __init__(self, detail: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="cdp"'})
        super().__init__(detail, **kw)


class InvalidToken(Unauthorized):
    code = "invalid_token"
    title = "Invalid or expired token"


class InvalidClient(CdpError):
    status = 401
    code = "invalid_client"
    title = "Client authentication failed"


class Forbidden(CdpError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class InsufficientScope(Forbidden):
    code = "insufficient_scope"
    title = "Token lacks the required scope"


class PurposeNotAllowed(Forbidden):
    code = "purpose_not_allowed"
    title = "Purpose not allowed"


class FieldNotAllowed(Forbidden):
    code = "field_not_allowed"
    title = "Field not allowed for this purpose"


class NotFound(CdpError):
    status = 404
    code = "not_found"
    title = "Not found"


class MethodNotAllowed(CdpError):
    status = 405
    code = "method_not_allowed"
    title = "Method not allowed"


class Conflict(CdpError):
    status = 409
    code = "conflict"
    title = "Conflict"


class PayloadTooLarge(CdpError):
    status = 413
    code = "payload_too_large"
    title = "Request body too large"


class UnsupportedMediaType(CdpError):
    status = 415
    code = "unsupported_media_type"
    title = "Unsupported media type"


class RateLimited(CdpError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"


class ServiceUnavailable(CdpError):
    status = 503
    code = "service_unavailable"
    title = "Service unavailable"


class DatabaseUnavailable(CdpError):
    """The database refused or dropped the connection, or aborted the transaction (deadlock,
    serialization failure): nothing of the request was kept, and a retry may succeed."""

    status = 503
    code = "database_unavailable"
    title = "Database unavailable"


class InternalError(CdpError):
    status = 500
    code = "internal_error"
    title = "Internal server error"


# --- rendering and documentation -------------------------------------------------------------

PROBLEM_TYPE = "urn:cdp:problem:"


def problem_body(
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    request_id: str | None,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": request_id,
    }
    if errors is not None:
        body["errors"] = errors
    return body


_STATUS_TEXT = {
    400: ("Bad request or missing X-Purpose", "purpose_required"),
    401: ("Missing, invalid, expired or revoked token", "invalid_token"),
    403: ("Scope, purpose or field not allowed, or consent missing", "insufficient_scope"),
    404: ("Not found", "not_found"),
    409: ("Conflict with the current state", "conflict"),
    413: ("Request body over 1 MiB", "payload_too_large"),
    415: ("Unsupported media type", "unsupported_media_type"),
    422: ("Request validation failed", "validation_error"),
    429: ("Rate limit exceeded; see Retry-After", "rate_limited"),
    503: (
        "A dependency is unavailable (database or key management); nothing was kept, retry",
        "service_unavailable",
    ),
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the given error statuses, each with an example."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description, code = _STATUS_TEXT[status]
        example = problem_body(
            status=status,
            code=code,
            title=description,
            detail=description,
            request_id="3f1c2a9e4b7d4f0e",
        )
        out[status] = {
            "description": description,
            "content": {
                "application/problem+json": {
                    "schema": {"$ref": "#/components/schemas/Problem"},
                    "example": example,
                }
            },
        }
    return out


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details with a stable machine-readable `code`.",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "request_id": {"type": ["string", "null"]},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}


# --- encryption (crypto/) --------------------------------------------------------------------


class CiphertextInvalid(CdpError):
    """A stored ciphertext was altered, truncated or moved to another row or column."""

    status = 409
    code = "ciphertext_invalid"
    title = "Stored data failed its integrity check"


class SubjectKeyMissing(CdpError):
    """The subject's data key was destroyed (crypto-shredding): the data is gone for good."""

    status = 410
    code = "subject_erased"
    title = "The data subject's personal information was erased"


class MasterKeyUnavailable(CdpError):
    """A master-key version needed to unwrap a data key is not configured (or is wrong)."""

    status = 503
    code = "master_key_unavailable"
    title = "Encryption key unavailable"


class InvalidIdentifier(ValidationFailed):
    """An identifier (e-mail, phone, ...) failed normalisation; names the kind, never the value."""

    def __init__(self, kind: str, *, loc: list[str | int] | None = None) -> None:
        where: list[str | int] = loc if loc is not None else ["body", kind]
        message = f"not a valid {kind.replace('_', ' ')}"
        super().__init__(
            f"invalid {kind}",
            errors=[{"loc": where, "msg": message, "type": "value_error"}],
        )
        self.kind = kind


# --- consent and purpose limitation (consent/, policy.decide) --------------------------------


class ConsentRequired(Forbidden):
    """No current consent for the purpose: none given, withdrawn, refused or to an old notice."""

    code = "consent_required"
    title = "Consent required for this purpose"


class SeparateConsentRequired(Forbidden):
    """Sensitive PI, third-party sharing or cross-border transfer (PIPL art. 23, 29, 39)."""

    code = "separate_consent_required"
    title = "Separate consent required"


class GuardianConsentRequired(Forbidden):
    """The subject is under the minor age; the consent must come from a guardian (art. 31)."""

    code = "guardian_consent_required"
    title = "Guardian consent required"


class ProcessingRestricted(Forbidden):
    """The subject's processing is restricted: storage and legal obligations only (art. 44, 47)."""

    code = "processing_restricted"
    title = "Processing of this subject is restricted"


class PersonalisationOptedOut(Forbidden):
    """The subject refused personalised processing; consent does not override it (art. 24)."""

    code = "personalisation_opted_out"
    title = "The subject opted out of personalised marketing"


# --- tracking (events/) ----------------------------------------------------------------------


class BatchTooLarge(ValidationFailed):
    """More events in one request than the API takes (500)."""

    code = "batch_too_large"
    title = "Too many events in one batch"


class WriteKeyRequired(Unauthorized):
    """A Segment-compatible call without a write key (body, Basic username or X-Write-Key)."""

    code = "unauthorized"
    title = "Write key required"

    def __init__(self, detail: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": 'Basic realm="cdp-tracking"'})
        super().__init__(detail, **kw)


class InvalidWriteKey(WriteKeyRequired):
    """A write key that names no source, or a revoked one."""

    code = "invalid_write_key"
    title = "Invalid write key"


class InvalidMessages(BadRequest):
    """Every message of a Segment-compatible body was unusable (no id, no event name, ...)."""

    code = "invalid_message"
    title = "No usable message in the body"


# --- audit log (audit/) ----------------------------------------------------------------------


class AuditChainBroken(CdpError):
    """The stored audit chain does not verify at `seq`; no checkpoint is signed over it."""

    status = 409
    code = "audit_chain_broken"
    title = "The audit chain does not verify"

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"seq {seq}: {reason}")
        self.seq = seq
        self.reason = reason


# --- feedback, follow-ups, alerts (feedback/, followups/, alerts/) ---------------------------


class InvalidTransition(Conflict):
    """A lifecycle change the current status does not allow (complaint, task or alert)."""

    code = "invalid_transition"
    title = "Status change not allowed from the current status"


# --- rights requests and customer verification (rights/) -------------------------------------


class VerificationFailed(CdpError):
    """A one-time code that is wrong, expired, used up or unknown: one answer for all of them,
    so that nothing tells whether the identifier exists."""

    status = 400
    code = "verification_failed"
    title = "Verification failed"


class DownloadLinkInvalid(Forbidden):
    """A download link that was not issued here or has expired."""

    code = "download_link_invalid"
    title = "Download link invalid or expired"


# --- segments (segments/) --------------------------------------------------------------------


class InvalidCondition(ValidationFailed):
    """A segment condition is invalid; `errors` names each failing JSON path."""

    code = "invalid_condition"
    title = "Invalid segment condition"


class SegmentReadOnly(Conflict):
    """Built-in segments come from policies/segments.yaml and change only there."""

    code = "segment_builtin"
    title = "Built-in segments are read-only"


class SegmentExists(Conflict):
    code = "segment_exists"
    title = "A segment with this key exists"


class SegmentInUse(Conflict):
    """Another segment's condition refers to this one."""

    code = "segment_in_use"
    title = "The segment is referred to by another segment"
