"""Search the audit log and verify the stored chain."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from cdp.api import PageDep, Rfc3339, RuntimeDep, SessionDep, encode_cursor, require
from cdp.audit import service
from cdp.audit.schemas import AuditEntryRead, AuditPage, ChainVerification
from cdp.auth.principal import Principal
from cdp.errors import ValidationFailed, problem_responses

router = APIRouter(prefix="/v1/audit", tags=["audit"])
_Filter = Annotated[str | None, Query(max_length=200)]


@router.get(
    "/entries",
    operation_id="searchAuditEntries",
    summary="Search audit entries in sequence order",
    responses=problem_responses(401, 403, 422, 429),
)
def search_entries(
    session: SessionDep,
    rt: RuntimeDep,
    page: PageDep,
    principal: Annotated[Principal, require("audit:read")],
    since: Annotated[Rfc3339 | None, Query(alias="from")] = None,
    until: Annotated[Rfc3339 | None, Query(alias="to")] = None,
    actor: _Filter = None,
    subject: _Filter = None,
    action: _Filter = None,
    purpose: _Filter = None,
) -> AuditPage:
    for name, value in (("from", since), ("to", until)):
        if value is not None and value.tzinfo is None:
            raise ValidationFailed(
                "times need an offset (RFC 3339)",
                errors=[{"loc": ["query", name], "msg": "offset required", "type": "value_error"}],
            )
    after = int(page.after) if page.after and page.after.isdigit() else 0
    items = service.search(
        session,
        since=since,
        until=until,
        actor=actor,
        subject=subject,
        action=action,
        purpose=purpose,
        after_seq=after,
        limit=page.limit,
    )
    cursor = encode_cursor(rt, str(items[-1].seq)) if len(items) == page.limit else None
    return AuditPage(items=[AuditEntryRead.model_validate(e) for e in items], next_cursor=cursor)


@router.post(
    "/verify",
    operation_id="verifyAuditChain",
    summary="Recompute every link of the stored chain",
    responses=problem_responses(401, 403, 429),
)
def verify(
    session: SessionDep, principal: Annotated[Principal, require("audit:read")]
) -> ChainVerification:
    report = service.verify_chain(session)
    return ChainVerification(
        valid=report.first_bad_seq is None,
        checked=report.checked,
        first_bad_seq=report.first_bad_seq,
        reason=report.reason,
        last_hash=report.last_hash,
    )
