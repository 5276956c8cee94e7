"""Signed checkpoints: every N entries, every M minutes (also with no entries), only over a
complete chain; stored ones checked by verify_chain, on both databases."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from tests.unit.audit.factories import checkpoint, fill, rewrite_history, signer, tamper

from cdp.api import Runtime
from cdp.audit import service
from cdp.audit.chain import EMPTY_RANGE_DIGEST, checkpoint_message, range_digest
from cdp.audit.models import AuditCheckpoint, AuditEntry
from cdp.audit.signing import verify_signature
from cdp.db import unit_of_work, utcnow
from cdp.errors import AuditChainBroken


def _verify(rt: Runtime) -> service.ChainReport:
    with unit_of_work(rt.sessions) as session:
        return service.verify_chain(session, keys={signer(rt).key_id: signer(rt).public_raw})


def _hashes(rt: Runtime, first: int, last: int) -> list[str]:
    with unit_of_work(rt.sessions) as session:
        return list(
            session.scalars(
                select(AuditEntry.hash)
                .where(AuditEntry.seq.between(first, last))
                .order_by(AuditEntry.seq)
            )
        )


def test_count_checkpoints_land_on_multiples_of_n(runtime: Runtime) -> None:
    fill(runtime, 2500)
    made = checkpoint(runtime, every=1000)
    assert [(c.from_seq, c.seq) for c in made] == [(1, 1000), (1001, 2000)]
    key = signer(runtime)
    for cp in made:
        hashes = _hashes(runtime, cp.from_seq, cp.seq)
        assert cp.hash == hashes[-1] and cp.range_digest == range_digest(hashes)
        message = checkpoint_message(
            from_seq=cp.from_seq,
            seq=cp.seq,
            last_hash=cp.hash,
            digest=cp.range_digest,
            at=cp.at,
            key_id=cp.key_id,
        )
        assert cp.key_id == key.key_id and verify_signature(key.public_raw, cp.signature, message)
    assert checkpoint(runtime, every=1000) == []  # nothing due: 500 entries, just now
    report = _verify(runtime)
    assert report.first_bad_seq is None and report.checked == 2500 and report.checkpoints == 2


def test_a_backlog_is_split_into_ranges_of_n(runtime: Runtime) -> None:
    fill(runtime, 1050)
    made = checkpoint(runtime, every=100)
    assert [c.seq for c in made] == list(range(100, 1001, 100))
    assert all(c.seq - c.from_seq + 1 == 100 for c in made)


def test_checkpoint_in_an_empty_period(runtime: Runtime) -> None:
    fill(runtime, 10)
    now = utcnow()
    assert checkpoint(runtime, minutes=60, now=now) == []  # the first entry is not 60 min old
    first = checkpoint(runtime, minutes=60, now=now + timedelta(minutes=61))
    assert [(c.from_seq, c.seq) for c in first] == [(1, 10)]
    assert checkpoint(runtime, minutes=60, now=now + timedelta(minutes=90)) == []
    # An hour later with no entry appended: a checkpoint over the empty range 11..10.
    quiet = checkpoint(runtime, minutes=60, now=now + timedelta(minutes=122))
    assert [(c.from_seq, c.seq) for c in quiet] == [(11, 10)]
    assert quiet[0].hash == first[0].hash and quiet[0].range_digest == EMPTY_RANGE_DIGEST
    fill(runtime, 3, start=10)
    later = checkpoint(runtime, minutes=60, now=now + timedelta(minutes=183))
    assert [(c.from_seq, c.seq) for c in later] == [(11, 13)]
    report = _verify(runtime)
    assert report.first_bad_seq is None and report.checkpoints == 3


def test_force_signs_at_the_head_and_an_empty_chain_is_checkpointed(runtime: Runtime) -> None:
    made = checkpoint(runtime, force=True)
    assert [(c.from_seq, c.seq) for c in made] == [(1, 0)]
    fill(runtime, 5)
    assert [c.seq for c in checkpoint(runtime, force=True)] == [5]
    assert _verify(runtime).checkpoints == 2


def test_concurrent_schedulers_sign_each_checkpoint_once(runtime: Runtime) -> None:
    fill(runtime, 3000)
    threads = [threading.Thread(target=checkpoint, args=(runtime,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with unit_of_work(runtime.sessions) as session:
        seqs = list(session.scalars(select(AuditCheckpoint.seq).order_by(AuditCheckpoint.id)))
    assert seqs == [1000, 2000, 3000]


def test_a_forged_checkpoint_is_found(runtime: Runtime) -> None:
    fill(runtime, 300)
    made = checkpoint(runtime, every=100)
    with unit_of_work(runtime.sessions) as session:
        tamper(
            session,
            "UPDATE audit_checkpoint SET signature = :s WHERE id = :id",
            s="00" * 64,
            id=made[1].id,
        )
    report = _verify(runtime)
    assert report.first_bad_seq == 200 and report.reason == "checkpoint signature invalid"


def test_a_checkpoint_by_an_unknown_key_is_found(runtime: Runtime) -> None:
    fill(runtime, 100)
    checkpoint(runtime, every=100)
    with unit_of_work(runtime.sessions) as session:
        report = service.verify_chain(session, keys={})
    assert report.first_bad_seq == 100 and report.reason is not None
    assert "unknown key" in report.reason


def test_rewritten_history_is_caught_by_the_checkpoint(runtime: Runtime) -> None:
    # An owner rewrites entry 50 and every later hash: the links verify, the signature not.
    fill(runtime, 150)
    checkpoint(runtime, every=100)
    rewrite_history(runtime, 50, "client:someone_else")
    report = _verify(runtime)
    assert report.first_bad_seq == 100
    assert report.reason == "checkpoint hash does not match the entry"


def test_a_truncated_chain_is_not_signed_again(runtime: Runtime) -> None:
    fill(runtime, 100)
    checkpoint(runtime, every=50)
    with unit_of_work(runtime.sessions) as session:
        tamper(session, "DELETE FROM audit_entry WHERE seq > 90")
    with pytest.raises(AuditChainBroken) as broken:
        checkpoint(runtime, force=True)
    assert broken.value.seq == 91
    report = _verify(runtime)
    assert report.first_bad_seq == 91 and report.reason is not None
    assert report.reason.startswith("missing entry")


def test_a_gap_is_not_signed(runtime: Runtime) -> None:
    fill(runtime, 20)
    with unit_of_work(runtime.sessions) as session:
        tamper(session, "DELETE FROM audit_entry WHERE seq = 7")
    with pytest.raises(AuditChainBroken) as broken:
        checkpoint(runtime, every=10)
    assert broken.value.seq == 7
    with unit_of_work(runtime.sessions) as session:
        assert session.scalar(select(func.count()).select_from(AuditCheckpoint)) == 0
