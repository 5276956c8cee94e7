"""The audit log over HTTP: search, export, checkpoints and keys, verification; and the
schedule that signs checkpoints while the API runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Query
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from cdp.api import (
    PageDep,
    Rfc3339,
    Runtime,
    RuntimeDep,
    SessionDep,
    encode_cursor,
    known_query_only,
    require,
)
from cdp.audit import checkpoints, service
from cdp.audit.export import MEDIA_TYPES, ExportFilter, start_export, stream
from cdp.audit.schemas import (
    AuditEntryRead,
    AuditKeyList,
    AuditKeyRead,
    AuditPage,
    ChainVerification,
    CheckpointPage,
    CheckpointRead,
)
from cdp.audit.signing import Signer, cached_signer
from cdp.auth.principal import Principal
from cdp.errors import AuditChainBroken, ValidationFailed, problem_responses

log = logging.getLogger("cdp.audit")


def signer_for(rt: Runtime) -> Signer:
    return cached_signer(rt.extras, rt.settings.audit_signing_key_file, rt.settings.data_dir)


def schedule_for(rt: Runtime) -> checkpoints.Schedule:
    return checkpoints.Schedule(
        every_entries=rt.settings.audit_checkpoint_every,
        every=timedelta(minutes=rt.settings.audit_checkpoint_minutes),
    )


async def _sign_when_due(rt: Runtime, signer: Signer) -> None:
    schedule = schedule_for(rt)
    while True:
        await asyncio.sleep(rt.settings.audit_checkpoint_tick_seconds)
        try:
            await run_in_threadpool(
                checkpoints.run_due, rt.sessions, signer=signer, schedule=schedule
            )
        except AuditChainBroken as exc:
            log.error("audit chain broken, no checkpoint signed: %s", exc.detail)
        except Exception:  # the schedule must outlive a passing database outage
            log.exception("could not sign audit checkpoints")


@asynccontextmanager
async def checkpoint_schedule(app: FastAPI) -> AsyncIterator[None]:
    """Every tick, sign the checkpoints that are due (N entries or M minutes since the last).

    A background task rather than a hook in append: appends stay as they were (no key, no
    extra query), and a period without entries gets its checkpoint too. With several workers
    each runs the schedule; a lock and a re-check under it keep them from signing twice.
    """
    rt: Runtime = app.state.runtime
    signer = signer_for(rt)  # a bad key file stops start-up, not the first checkpoint
    task = asyncio.create_task(_sign_when_due(rt, signer))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


router = APIRouter(prefix="/v1/audit", tags=["audit"], lifespan=checkpoint_schedule)
_Filter = Annotated[str | None, Query(max_length=200)]


_FILTERS = ("from", "to", "actor", "subject", "action", "purpose")


def _with_offsets(since: datetime | None, until: datetime | None) -> None:
    for name, value in (("from", since), ("to", until)):
        if value is not None and value.tzinfo is None:
            raise ValidationFailed(
                "times need an offset (RFC 3339)",
                errors=[{"loc": ["query", name], "msg": "offset required", "type": "value_error"}],
            )


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
    _known: Annotated[None, known_query_only(*_FILTERS, "limit", "cursor")],
    since: Annotated[Rfc3339 | None, Query(alias="from")] = None,
    until: Annotated[Rfc3339 | None, Query(alias="to")] = None,
    actor: _Filter = None,
    subject: _Filter = None,
    action: _Filter = None,
    purpose: _Filter = None,
) -> AuditPage:
    _with_offsets(since, until)
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


_JSONL_EXAMPLE = (
    '{"seq":1,"at":"2026-11-25T08:00:00.123456Z","actor":"system","organisation":null,'
    '"action":"policy.load","subject":null,"purpose":null,"fields":[],"decision":"allow",'
    '"code":null,"request_id":null,"policy_version":"sha256:9c1d…","detail":{},'
    '"prev_hash":"0000…","hash":"5e0b…"}\n'
    '{"seq":2,"hash":"a71f…","skipped":true}\n'
    '{"manifest":{"format":"cdp-audit-export/1","encoding":"jsonl","entries":1,"skipped":1,'
    '"checkpoints":[],"unsigned_tail":{"from_seq":1,"seq":2},"body_sha256":"…",'
    '"key_id":"56475aa75463474c","signature":"…"}}\n'
)
_CSV_EXAMPLE = (
    "kind,seq,at,actor,organisation,action,subject,purpose,fields,decision,code,request_id,"
    "policy_version,detail,prev_hash,hash\n"
    "entry,1,2026-11-25T08:00:00.123456Z,system,,policy.load,,,[],allow,,,sha256:9c1d…,{},"
    "0000…,5e0b…\n"
    '# manifest: {"format":"cdp-audit-export/1","encoding":"csv","entries":1,"…":"…"}\n'
)
_EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The entries in sequence order, ending with the signed manifest line.",
        "content": {
            "application/x-ndjson": {"schema": {"type": "string"}, "example": _JSONL_EXAMPLE},
            "text/csv": {"schema": {"type": "string"}, "example": _CSV_EXAMPLE},
        },
    },
    **problem_responses(401, 403, 422, 429),
}


@router.get(
    "/export",
    operation_id="exportAuditLog",
    summary="Export the audit log (JSONL or CSV) with a signed manifest for offline proof",
    description=(
        "Streams the entries in sequence order. With filters, each checkpoint range holding "
        "a matching entry is exported whole: matches in full, the rest as seq and hash only, "
        "so every exported entry is proven against its signed checkpoint. Verify offline with "
        "`cdp audit verify FILE --public-key KEYS`."
    ),
    response_class=StreamingResponse,
    responses=_EXPORT_RESPONSES,
)
def export_log(
    session: SessionDep,
    rt: RuntimeDep,
    principal: Annotated[Principal, require("audit:export")],
    _known: Annotated[None, known_query_only(*_FILTERS, "format")],
    fmt: Annotated[Literal["jsonl", "csv"], Query(alias="format")] = "jsonl",
    since: Annotated[Rfc3339 | None, Query(alias="from")] = None,
    until: Annotated[Rfc3339 | None, Query(alias="to")] = None,
    actor: _Filter = None,
    subject: _Filter = None,
    action: _Filter = None,
    purpose: _Filter = None,
) -> StreamingResponse:
    _with_offsets(since, until)
    wanted = ExportFilter(since, until, actor, subject, action, purpose)
    plan = start_export(session, actor=principal.actor, fmt=fmt, export_filter=wanted)
    # The rows are read after this handler's transaction commits, each batch in its own.
    body = stream(rt.sessions, plan, signer_for(rt), batch=rt.settings.audit_export_batch)
    return StreamingResponse(
        body,
        media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{plan.filename}"'},
    )


@router.get(
    "/checkpoints",
    operation_id="listAuditCheckpoints",
    summary="Signed checkpoints of the chain, oldest first",
    responses=problem_responses(401, 403, 422, 429),
)
def list_checkpoints(
    session: SessionDep,
    rt: RuntimeDep,
    page: PageDep,
    principal: Annotated[Principal, require("audit:read")],
    _known: Annotated[None, known_query_only("limit", "cursor")],
) -> CheckpointPage:
    after = int(page.after) if page.after and page.after.isdigit() else 0
    items = checkpoints.list_checkpoints(session, after_id=after, limit=page.limit)
    cursor = encode_cursor(rt, str(items[-1].id)) if len(items) == page.limit else None
    return CheckpointPage(
        items=[CheckpointRead.model_validate(c) for c in items], next_cursor=cursor
    )


@router.get(
    "/keys",
    operation_id="listAuditKeys",
    summary="Public keys that verify checkpoints and export manifests",
    responses=problem_responses(401, 403, 429),
)
def list_keys(
    session: SessionDep, rt: RuntimeDep, principal: Annotated[Principal, require("audit:read")]
) -> AuditKeyList:
    keys = checkpoints.published_keys(session, signer_for(rt))
    items = [AuditKeyRead.model_validate(key, from_attributes=True) for key in keys]
    return AuditKeyList(items=items)


@router.post(
    "/verify",
    operation_id="verifyAuditChain",
    summary="Recompute every link of the stored chain and check every stored checkpoint",
    description=(
        "Checkpoint signatures are checked with this server's signing key and the keys in its "
        "key table. For proof that does not trust this database, export the log and verify "
        "it offline with public keys obtained separately (`cdp audit public-key`)."
    ),
    responses=problem_responses(401, 403, 429),
)
def verify(
    session: SessionDep, rt: RuntimeDep, principal: Annotated[Principal, require("audit:read")]
) -> ChainVerification:
    keys = checkpoints.public_keys(session, signer_for(rt))
    report = service.verify_chain(session, keys=keys)
    return ChainVerification(
        valid=report.first_bad_seq is None,
        checked=report.checked,
        first_bad_seq=report.first_bad_seq,
        reason=report.reason,
        last_hash=report.last_hash,
        checkpoints_checked=report.checkpoints,
    )
