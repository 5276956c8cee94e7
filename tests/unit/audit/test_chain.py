"""The audit chain: serialised appends, verification, tamper detection, on both databases."""

from __future__ import annotations

import threading

from sqlalchemy import func, select, text

from cdp.api import Runtime
from cdp.audit import service
from cdp.audit.chain import GENESIS_HASH, entry_hash
from cdp.audit.models import AuditEntry
from cdp.audit.service import RequestContext
from cdp.db import unit_of_work


def _append(rt: Runtime, n: int, actor: str) -> None:
    for i in range(n):
        with unit_of_work(rt.sessions) as session:
            session.info["ctx"] = RequestContext(rt.policy.version, f"r{i}")
            service.append(session, actor=actor, action="test.append", fields=["email"])


def test_concurrent_appends_form_one_unbroken_chain(runtime: Runtime) -> None:
    threads = [
        threading.Thread(target=_append, args=(runtime, 500, f"client:t{i}")) for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with unit_of_work(runtime.sessions) as session:
        session.info["ctx"] = RequestContext(runtime.policy.version)
        count = session.scalar(select(func.count()).select_from(AuditEntry))
        report = service.verify_chain(session)
    assert count == 4000
    assert report.first_bad_seq is None and report.checked == 4000


def test_rollback_leaves_no_entry(runtime: Runtime) -> None:
    try:
        with unit_of_work(runtime.sessions) as session:
            session.info["ctx"] = RequestContext(runtime.policy.version)
            service.append(session, actor="x", action="test.rolled_back")
            raise RuntimeError("the change failed")
    except RuntimeError:
        pass
    with unit_of_work(runtime.sessions) as session:
        assert (
            session.scalar(select(func.count()).where(AuditEntry.action == "test.rolled_back")) == 0
        )


def test_tampering_is_found_at_its_sequence(runtime: Runtime) -> None:
    _append(runtime, 5, "client:a")
    with unit_of_work(runtime.sessions) as session:
        session.execute(text("UPDATE audit_entry SET actor = 'client:b' WHERE seq = 3"))
    with unit_of_work(runtime.sessions) as session:
        report = service.verify_chain(session)
    assert report.first_bad_seq == 3 and report.reason == "hash does not match content"


def test_deleted_entry_is_found(runtime: Runtime) -> None:
    _append(runtime, 5, "client:a")
    with unit_of_work(runtime.sessions) as session:
        session.execute(text("DELETE FROM audit_entry WHERE seq = 2"))
    with unit_of_work(runtime.sessions) as session:
        report = service.verify_chain(session)
    assert report.first_bad_seq == 2 and report.reason == "missing entry"


def test_fields_are_length_prefixed() -> None:
    # Moving a character between adjacent fields must change the hash.
    a = {"seq": 1, "actor": "ab", "action": "c"}
    b = {"seq": 1, "actor": "a", "action": "bc"}
    assert entry_hash(GENESIS_HASH, a) != entry_hash(GENESIS_HASH, b)
