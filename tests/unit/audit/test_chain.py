"""The audit chain: serialised appends, verification, tamper detection, on both databases."""

from __future__ import annotations

import threading

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from cdp.api import Runtime
from cdp.audit import service
from cdp.audit.chain import GENESIS_HASH, entry_hash
from cdp.audit.models import AuditEntry, AuditPending
from cdp.audit.service import Event, RequestContext
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


def _entries(rt: Runtime) -> list[AuditEntry]:
    with unit_of_work(rt.sessions) as session:
        return list(session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))


def test_rollback_leaves_no_entry_and_no_gap(runtime: Runtime) -> None:
    try:
        with unit_of_work(runtime.sessions) as session:
            session.info["ctx"] = RequestContext(runtime.policy.version)
            service.append(session, actor="x", action="test.rolled_back")
            service.append(session, actor="x", action="test.rolled_back")
            raise RuntimeError("the change failed")
    except RuntimeError:
        pass
    _append(runtime, 2, "client:after")
    entries = _entries(runtime)
    assert "test.rolled_back" not in {e.action for e in entries}
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    assert [e.actor for e in entries[-2:]] == ["client:after", "client:after"]
    with unit_of_work(runtime.sessions) as session:
        assert service.verify_chain(session).first_bad_seq is None
        assert session.scalar(select(func.count()).select_from(AuditPending)) == 0


def _transactions(rt: Runtime, writer: int, n: int) -> None:
    """n transactions of three entries each; every fourth one rolls back."""
    for i in range(n):
        try:
            with unit_of_work(rt.sessions) as session:
                session.info["ctx"] = RequestContext(rt.policy.version, f"w{writer}-{i}")
                service.append_many(
                    session,
                    [Event(actor=f"client:w{writer}", action=f"test.{k}") for k in range(3)],
                )
                if i % 4 == 3:
                    raise RuntimeError("rolled back")
        except RuntimeError:
            pass


def test_concurrent_transactions_chain_each_one_whole_and_in_order(runtime: Runtime) -> None:
    threads = [threading.Thread(target=_transactions, args=(runtime, w, 40)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = [e for e in _entries(runtime) if e.action.startswith("test.")]
    # 4 writers x 30 committed transactions x 3 entries; none of a rolled-back one.
    assert len(entries) == 360
    assert all(int(str(e.request_id).split("-")[1]) % 4 != 3 for e in entries)
    # A transaction's entries are consecutive and in the order appended; times follow seqs.
    by_request: dict[str | None, list[AuditEntry]] = {}
    for entry in entries:
        by_request.setdefault(entry.request_id, []).append(entry)
    for mine in by_request.values():
        assert [e.action for e in mine] == ["test.0", "test.1", "test.2"]
        assert mine[2].seq - mine[0].seq == 2
    times = [e.at for e in _entries(runtime)]
    assert times == sorted(times)
    with unit_of_work(runtime.sessions) as session:
        report = service.verify_chain(session)
        assert session.scalar(select(func.count()).select_from(AuditPending)) == 0
    assert report.first_bad_seq is None and report.checked == len(_entries(runtime))


def test_the_appending_transaction_reads_its_own_entries(runtime: Runtime) -> None:
    with unit_of_work(runtime.sessions) as session:
        session.info["ctx"] = RequestContext(runtime.policy.version)
        service.append(session, actor="client:me", action="test.own")
        found = service.search(session, actor="client:me")
        assert [e.action for e in found] == ["test.own"]
        service.append(session, actor="client:me", action="test.own_again")
        report = service.verify_chain(session)
        assert report.first_bad_seq is None
        assert report.checked == session.scalar(select(func.max(AuditEntry.seq)))
        assert [e.action for e in service.search(session, actor="client:me")] == [
            "test.own",
            "test.own_again",
        ]
    assert [e.action for e in _entries(runtime)][-2:] == ["test.own", "test.own_again"]


def tamper(session: Session, statement: str) -> None:
    """Run a statement on audit_entry as an attacker holding the owner's rights would: on
    PostgreSQL, with the append-only trigger disabled for this transaction only."""
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        session.execute(text("ALTER TABLE audit_entry DISABLE TRIGGER audit_entry_append_only"))
    session.execute(text(statement))
    if postgres:
        session.execute(text("ALTER TABLE audit_entry ENABLE TRIGGER audit_entry_append_only"))


def test_tampering_is_found_at_its_sequence(runtime: Runtime) -> None:
    _append(runtime, 5, "client:a")
    with unit_of_work(runtime.sessions) as session:
        tamper(session, "UPDATE audit_entry SET actor = 'client:b' WHERE seq = 3")
    with unit_of_work(runtime.sessions) as session:
        report = service.verify_chain(session)
    assert report.first_bad_seq == 3 and report.reason == "hash does not match content"


def test_deleted_entry_is_found(runtime: Runtime) -> None:
    _append(runtime, 5, "client:a")
    with unit_of_work(runtime.sessions) as session:
        tamper(session, "DELETE FROM audit_entry WHERE seq = 2")
    with unit_of_work(runtime.sessions) as session:
        report = service.verify_chain(session)
    assert report.first_bad_seq == 2 and report.reason == "missing entry"


def test_fields_are_length_prefixed() -> None:
    # Moving a character between adjacent fields must change the hash.
    a = {"seq": 1, "actor": "ab", "action": "c"}
    b = {"seq": 1, "actor": "a", "action": "bc"}
    assert entry_hash(GENESIS_HASH, a) != entry_hash(GENESIS_HASH, b)


def test_fast_paths_serialise_as_the_rule_says() -> None:
    # canonical() takes shortcuts for strings, nulls, integers and lists of field names; each
    # must give the bytes of the documented rule (json.dumps, sorted keys, compact, no escaping).
    import json
    import random

    from cdp.audit.chain import CHAIN_FIELDS, canonical, field_text

    def rule(entry: dict[str, object]) -> bytes:
        out = b""
        for name in CHAIN_FIELDS:
            value = entry.get(name)
            if isinstance(value, list | dict):
                text_ = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            else:
                text_ = field_text(value)
            out += len(text_.encode()).to_bytes(8, "big") + text_.encode()
        return out

    pieces = ["a", '"', "\\", "\n", "\x00", "\x7f", "中", "\u2028", " ", "é", "😀", "\x1f"]
    rng = random.Random(7)
    for _ in range(3000):
        words = [
            "".join(rng.choices(pieces, k=rng.randint(0, 3))) for _ in range(rng.randint(0, 3))
        ]
        mixed: list[object] = [*words, rng.choice([1, None, 2.5, True, {"b": [1], "a": "中"}])]
        entry = {
            "seq": rng.randint(1, 10**12),
            "actor": rng.choice([*words, None, ""]),
            "fields": words if rng.random() < 0.7 else mixed,
            "detail": rng.choice([{}, {"z": words, "a": {"y": 1.5, "b": None}}]),
            "code": rng.choice([None, True, 0]),
        }
        assert canonical(entry) == rule(entry), entry
