"""Export with a signed manifest, verified offline: the whole chain, filtered exports, and
every kind of tampering named by its sequence, on both databases."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from tests.unit.audit.factories import (
    checkpoint,
    export,
    fill,
    lines,
    manifest,
    public_keys,
    rewrite_history,
)

from cdp.api import Runtime
from cdp.audit import verify
from cdp.audit.chain import manifest_message
from cdp.audit.export import ExportFilter
from cdp.audit.signing import Signer
from cdp.db import utcnow


def _check(rt: Runtime, path: Path, jobs: int = 1) -> verify.Report:
    return verify.verify_file(path, public_keys(rt), jobs=jobs)


def _entry_line(path: Path, seq: int) -> int:
    """Index in lines(path) of the JSONL line for seq."""
    for index, raw in enumerate(lines(path)[:-1]):
        if json.loads(raw)["seq"] == seq:
            return index
    raise LookupError(seq)


def _rewrite(path: Path, new: list[bytes]) -> Path:
    path.write_bytes(b"".join(new))
    return path


@pytest.fixture
def chain(runtime: Runtime) -> Runtime:
    """350 entries, checkpoints at 100, 200 and 300, 50 entries (and the export's) after."""
    fill(runtime, 350)
    checkpoint(runtime, every=100)
    return runtime


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_of_5000_entries_verifies(runtime: Runtime, tmp_path: Path, fmt: str) -> None:
    fill(runtime, 5000)
    checkpoint(runtime, every=1000)
    path = export(runtime, tmp_path / f"audit.{fmt}", fmt=fmt)  # type: ignore[arg-type]
    report = _check(runtime, path)
    assert report.ok, report.summary()
    assert (report.entries, report.skipped, report.checkpoints) == (5001, 0, 5)
    assert report.unsigned == 1  # the export's own audit entry, signed by the manifest only
    found = manifest(path)
    assert found["entries"] == 5001 and found["first_seq"] == 1 and found["last_seq"] == 5001
    assert [c["seq"] for c in found["checkpoints"]] == [1000, 2000, 3000, 4000, 5000]
    assert found["unsigned_tail"] == {"from_seq": 5001, "seq": 5001}


@pytest.mark.slow
def test_export_of_100000_entries_verifies(runtime: Runtime, tmp_path: Path) -> None:
    fill(runtime, 100_000, batch=10_000)
    checkpoint(runtime, every=1000)
    path = export(runtime, tmp_path / "audit.jsonl", batch=5000)
    report = _check(runtime, path, jobs=2)
    assert report.ok, report.summary()
    assert report.entries == 100_001 and report.checkpoints == 100


def test_edited_line_is_named(chain: Runtime, tmp_path: Path) -> None:
    path = export(chain, tmp_path / "audit.jsonl")
    rows = lines(path)
    at = _entry_line(path, 123)
    entry = json.loads(rows[at])
    entry["actor"] = "client:innocent"
    rows[at] = (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
    report = _check(chain, _rewrite(path, rows))
    assert not report.ok and report.first_bad_seq == 123
    assert report.reason is not None and "hash does not match" in report.reason
    assert any("body SHA-256" in p.reason for p in report.problems)


def test_edited_line_with_its_hash_recomputed_is_named(chain: Runtime, tmp_path: Path) -> None:
    from cdp.audit.chain import entry_hash

    path = export(chain, tmp_path / "audit.jsonl")
    rows = lines(path)
    at = _entry_line(path, 150)
    entry = json.loads(rows[at])
    entry["decision"] = "deny"
    entry["hash"] = entry_hash(entry["prev_hash"], entry)
    rows[at] = (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
    report = _check(chain, _rewrite(path, rows))
    assert report.first_bad_seq == 150 and report.reason is not None
    assert "prev_hash of seq 151" in report.reason
    assert any(p.seq == 200 and "checkpoint" in p.reason for p in report.problems)


def test_deleted_line_is_named(chain: Runtime, tmp_path: Path) -> None:
    path = export(chain, tmp_path / "audit.jsonl")
    rows = lines(path)
    del rows[_entry_line(path, 77)]
    report = _check(chain, _rewrite(path, rows))
    assert report.first_bad_seq == 77 and report.reason is not None
    assert "missing" in report.reason


def test_reordered_lines_are_named(chain: Runtime, tmp_path: Path) -> None:
    path = export(chain, tmp_path / "audit.jsonl")
    rows = lines(path)
    a, b = _entry_line(path, 210), _entry_line(path, 211)
    rows[a], rows[b] = rows[b], rows[a]
    report = _check(chain, _rewrite(path, rows))
    assert report.first_bad_seq == 210 and report.reason is not None
    assert "out of order" in report.reason


def test_inserted_line_is_named(chain: Runtime, tmp_path: Path) -> None:
    path = export(chain, tmp_path / "audit.jsonl")
    rows = lines(path)
    at = _entry_line(path, 42)
    rows.insert(at + 1, rows[at])  # a copy of 42 after 42
    report = _check(chain, _rewrite(path, rows))
    assert report.first_bad_seq == 42 and report.reason == "appears again or out of order"


def test_inserted_forged_entry_is_named(chain: Runtime, tmp_path: Path) -> None:
    from cdp.audit.chain import entry_hash

    path = export(chain, tmp_path / "audit.jsonl")
    rows = lines(path)
    at = _entry_line(path, 60)
    forged = json.loads(rows[at])
    forged["seq"], forged["prev_hash"] = 61, forged["hash"]
    forged["hash"] = entry_hash(forged["prev_hash"], forged)
    rows.insert(at + 1, (json.dumps(forged, separators=(",", ":")) + "\n").encode())
    report = _check(chain, _rewrite(path, rows))
    assert report.first_bad_seq == 61, report.summary()


def test_forged_checkpoint_is_named(chain: Runtime, tmp_path: Path) -> None:
    path = export(chain, tmp_path / "audit.jsonl")
    rows = lines(path)
    doc = json.loads(rows[-1])
    doc["manifest"]["checkpoints"][1]["hash"] = "ab" * 32
    rows[-1] = (json.dumps(doc, separators=(",", ":")) + "\n").encode()
    report = _check(chain, _rewrite(path, rows))
    assert report.first_bad_seq == 200
    assert report.reason == "checkpoint signature invalid (forged or altered)"
    assert any(
        p.reason == "manifest signature invalid (forged or altered)" for p in report.problems
    )


def test_checkpoint_by_a_foreign_key_is_named(chain: Runtime, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from cdp.audit.chain import checkpoint_message

    path = export(chain, tmp_path / "audit.jsonl")
    rows = lines(path)
    doc = json.loads(rows[-1])
    mallory = Signer.of(Ed25519PrivateKey.generate())
    cp = doc["manifest"]["checkpoints"][0]
    cp["key_id"] = mallory.key_id
    cp["signature"] = mallory.sign(
        checkpoint_message(
            from_seq=cp["from_seq"],
            seq=cp["seq"],
            last_hash=cp["hash"],
            digest=cp["range_digest"],
            at=cp["at"],
            key_id=cp["key_id"],
        )
    )
    doc["manifest"]["key_id"] = mallory.key_id
    doc["manifest"]["signature"] = mallory.sign(manifest_message(doc["manifest"]))
    rows[-1] = (json.dumps(doc, separators=(",", ":")) + "\n").encode()
    report = _check(chain, _rewrite(path, rows))
    assert report.first_bad_seq == 100 and report.reason is not None
    assert "not a trusted public key" in report.reason


def test_changed_manifest_body_hash_is_found(chain: Runtime, tmp_path: Path) -> None:
    path = export(chain, tmp_path / "audit.jsonl")
    rows = lines(path)
    doc = json.loads(rows[-1])
    doc["manifest"]["body_sha256"] = "00" * 32
    rows[-1] = (json.dumps(doc, separators=(",", ":")) + "\n").encode()
    report = _check(chain, _rewrite(path, rows))
    reasons = [p.reason for p in report.problems]
    assert "body SHA-256 does not match the manifest (body altered after export)" in reasons
    assert "manifest signature invalid (forged or altered)" in reasons


def test_truncated_export_is_incomplete(chain: Runtime, tmp_path: Path) -> None:
    path = export(chain, tmp_path / "audit.jsonl")
    report = _check(chain, _rewrite(path, lines(path)[:-1]))
    assert not report.ok and report.reason == "the export has no manifest: it is incomplete"


def test_history_rewritten_in_the_database_fails_the_export(chain: Runtime, tmp_path: Path) -> None:
    rewrite_history(chain, 120, "client:someone_else")
    report = _check(chain, export(chain, tmp_path / "audit.jsonl"))
    assert report.first_bad_seq == 200
    assert report.reason == "entries do not match the checkpoint's hash and range digest"


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_filtered_export_verifies(chain: Runtime, tmp_path: Path, fmt: str) -> None:
    subject = "00000000-0000-4000-8000-000000000007"  # entries 8, 58, 108, ...: every block
    path = export(
        chain,
        tmp_path / f"subject.{fmt}",
        fmt=fmt,  # type: ignore[arg-type]
        wanted=ExportFilter(subject=subject),
    )
    report = _check(chain, path)
    assert report.ok, report.summary()
    assert report.filtered and report.entries == 7 and report.skipped == 344
    found = manifest(path)
    assert found["filter"]["subject"] == subject and found["filtered"] is True
    assert [c["seq"] for c in found["checkpoints"]] == [100, 200, 300]
    assert found["unsigned_tail"] == {"from_seq": 301, "seq": 351}


def test_filtered_export_holds_only_the_blocks_with_matches(chain: Runtime, tmp_path: Path) -> None:
    path = export(chain, tmp_path / "one.jsonl", wanted=ExportFilter(subject=None, actor="x"))
    assert _check(chain, path).ok and manifest(path)["entries"] == 0
    assert len(lines(path)) == 1  # the manifest alone
    since = utcnow() - timedelta(days=1)
    path = export(chain, tmp_path / "day.jsonl", wanted=ExportFilter(since=since))
    report = _check(chain, path)
    assert report.ok and report.entries == 352  # two export entries too


def test_filtered_export_tampering_is_found(chain: Runtime, tmp_path: Path) -> None:
    subject = "00000000-0000-4000-8000-000000000007"
    path = export(chain, tmp_path / "subject.jsonl", wanted=ExportFilter(subject=subject))
    rows = lines(path)
    # A skipped entry's hash changed: bound by the checkpoint's range digest.
    at = _entry_line(path, 130)
    skipped = json.loads(rows[at])
    assert skipped.get("skipped") is True
    skipped["hash"] = "cd" * 32
    rows[at] = (json.dumps(skipped) + "\n").encode()
    report = _check(chain, _rewrite(path, rows))
    # 129 and 131 are skipped too: no link names 130, the block's signed range digest does.
    assert report.first_bad_seq == 200
    assert report.reason == "entries do not match the checkpoint's hash and range digest"
    # An exported entry that does not match the stated filter.
    rows = lines(path)
    at = _entry_line(path, 58)
    rows[at], rows[_entry_line(path, 59)] = rows[_entry_line(path, 59)], rows[at]
    assert _check(chain, _rewrite(path, rows)).first_bad_seq == 58


def test_skipped_line_in_an_unfiltered_export_is_named(chain: Runtime, tmp_path: Path) -> None:
    path = export(chain, tmp_path / "audit.jsonl")
    rows = lines(path)
    at = _entry_line(path, 33)
    entry = json.loads(rows[at])
    rows[at] = (json.dumps({"seq": 33, "hash": entry["hash"], "skipped": True}) + "\n").encode()
    report = _check(chain, _rewrite(path, rows))
    assert report.first_bad_seq == 33 and report.reason == "skipped line in an unfiltered export"


def test_csv_edit_is_named(chain: Runtime, tmp_path: Path) -> None:
    path = export(chain, tmp_path / "audit.csv", fmt="csv")
    rows = lines(path)
    at = next(i for i, r in enumerate(rows) if r.startswith(b"entry,222,"))
    rows[at] = rows[at].replace(b",allow,", b",deny,", 1)
    report = _check(chain, _rewrite(path, rows))
    assert report.first_bad_seq == 222


def test_parallel_verification_finds_the_same(
    chain: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small chunks, two worker processes: lines and blocks cross chunk boundaries.
    monkeypatch.setattr(verify, "_CHUNK_BYTES", 4096)
    path = export(chain, tmp_path / "audit.jsonl")
    assert _check(chain, path, jobs=2).ok
    rows = lines(path)
    del rows[_entry_line(path, 250)]
    report = _check(chain, _rewrite(path, rows), jobs=2)
    assert report.first_bad_seq == 250
    csv_path = export(chain, tmp_path / "audit.csv", fmt="csv")
    assert _check(chain, csv_path, jobs=2).ok
