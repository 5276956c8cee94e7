"""Offline verifier for cdp audit exports. Needs only the standard library, `cryptography` and
`cdp.audit.chain` (itself standard library only), so an auditor can run it, or re-implement it
from this description, away from the platform.

    python -m cdp.audit.verify EXPORT --public-key KEYS        (also: cdp audit verify)

KEYS holds the trusted Ed25519 public keys: PEM blocks ("-----BEGIN PUBLIC KEY-----", as
`cdp audit public-key` writes them) or the JSON of GET /v1/audit/keys. A key's id is
computed from the key itself (chain.key_id), never read from the file. Exit status: 0 the
export verifies, 1 it does not (the first bad sequence number and the reason are printed),
2 the export or the key file cannot be read.

The rules (see cdp.audit.chain for the hash, checkpoint and manifest byte strings):
1. The export ends with a newline; its last line is the manifest: `{"manifest": {...}}` in
   JSONL, `# manifest: {...}` in CSV. The body is every byte before that line.
2. The manifest's `signature` is an Ed25519 signature, by the trusted key `key_id`, over
   chain.manifest_message(manifest); `body_sha256` is SHA-256 of the body.
3. Blocks: each entry of `checkpoints` covers from_seq..seq, `unsigned_tail` (if any) the
   entries after the last checkpoint; they are ascending and do not overlap. Each
   checkpoint's signature verifies with the trusted key it names.
4. The body holds, in order, exactly every sequence number of every block: an entry line or,
   in a filtered export only, a skipped line. JSONL entry lines are objects holding every
   field of chain.CHAIN_FIELDS plus prev_hash and hash; skipped lines {"seq", "hash",
   "skipped": true}. CSV starts with the header `kind,<CHAIN_FIELDS>,prev_hash,hash`; each row's
   kind is `entry` or `skipped` and its chain cells are the canonical field texts.
5. Each entry: hash = SHA-256(prev_hash || canonical(entry)); when the line before holds
   seq - 1, prev_hash is that line's hash (seq 1: the genesis hash); in a filtered export
   the entry matches the manifest's filter (times compare as their fixed-width UTC text).
6. At the end of each checkpoint's block, the last hash is the checkpoint's hash and SHA-256
   over the block's raw 32-byte hashes, in order, is its range_digest.
7. entries, skipped, first/last seq and hash equal the manifest's.

What a passing export proves. Unfiltered: every entry up to the head at export time, in
order, none added, changed or removed, since each checkpoint was signed (a checkpoint is
only signed over entries that verify and continue the previous checkpoint) and, for the
unsigned tail, since the export was signed. Filtered: each exported entry is authentic and
in its place: its hash is recomputed from its content, and every hash of its checkpoint's
block, skipped ones included, is bound by that checkpoint's signed range digest (hashes of
skipped entries alone would not do: a run of them would link to nothing). A filtered export
does not prove that every matching entry was exported: the server chose the lines, and
skipped entries are seen only by their hashes. For completeness, export unfiltered.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import multiprocessing
import os
import sys
from array import array
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from json.scanner import make_scanner
from operator import itemgetter
from pathlib import Path
from typing import IO, Any, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

from cdp.audit.chain import (
    CHAIN_FIELDS,
    GENESIS_HASH,
    canonical_values,
    checkpoint_message,
    key_id,
    manifest_message,
)

CSV_HEADER = ",".join(("kind", *CHAIN_FIELDS, "prev_hash", "hash"))
CSV_MANIFEST_PREFIX = b"# manifest: "
JSONL_MANIFEST_PREFIX = b'{"manifest"'
MAX_PROBLEMS = 50
_MAX_MANIFEST_BYTES = 256 * 1024 * 1024
# Positions in CHAIN_FIELDS of what an export can be filtered by.
_AT, _ACTOR, _ACTION, _SUBJECT, _PURPOSE = (
    CHAIN_FIELDS.index(name) for name in ("at", "actor", "action", "subject", "purpose")
)
_entry_values = itemgetter(*CHAIN_FIELDS)


class Unreadable(Exception):
    """The export or the key file cannot be read at all (exit status 2)."""


@dataclass(frozen=True, slots=True)
class Problem:
    seq: int | None
    reason: str

    def __str__(self) -> str:
        return self.reason if self.seq is None else f"seq {self.seq}: {self.reason}"


@dataclass
class Report:
    entries: int = 0
    skipped: int = 0
    checkpoints: int = 0
    unsigned: int = 0  # entries after the last checkpoint: vouched for by the manifest only
    filtered: bool = False
    problems: list[Problem] = field(default_factory=list)
    _more: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def _first(self) -> Problem | None:
        # The lowest sequence named (the earliest report of it); else the first problem found.
        named = [p for p in self.problems if p.seq is not None]
        if named:
            return min(named, key=lambda p: p.seq or 0)
        return self.problems[0] if self.problems else None

    @property
    def first_bad_seq(self) -> int | None:
        first = self._first()
        return first.seq if first else None

    @property
    def reason(self) -> str | None:
        first = self._first()
        return first.reason if first else None

    def add(self, seq: int | None, reason: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(seq, reason))
        else:
            self._more += 1

    def summary(self) -> str:
        kind = "filtered export" if self.filtered else "export"
        counts = (
            f"{self.entries} entries, {self.skipped} skipped, {self.checkpoints} checkpoints"
            f", {self.unsigned} entries after the last checkpoint (manifest signature only)"
        )
        if self.ok:
            return f"OK: {kind} verifies: {counts}"
        lines = [f"TAMPERED: first bad sequence {self.first_bad_seq}: {self.reason}"]
        lines += [f"  {p}" for p in self.problems]
        if self._more:
            lines.append(f"  ... and {self._more} more")
        return "\n".join(lines)


# --- keys --------------------------------------------------------------------------------------


def load_public_keys(data: bytes) -> dict[str, bytes]:
    """Raw Ed25519 public keys by key id from PEM blocks or the JSON of GET /v1/audit/keys."""
    try:
        text = data.decode("utf-8")
        raws: list[bytes] = []
        if text.lstrip().startswith("{"):
            raws = [bytes.fromhex(item["public_key"]) for item in json.loads(text)["items"]]
        else:
            end = "-----END PUBLIC KEY-----"
            for block in text.split(end)[:-1]:
                key = load_pem_public_key((block.strip() + "\n" + end + "\n").encode())
                if not isinstance(key, Ed25519PublicKey):
                    raise ValueError("not an Ed25519 public key")
                raws.append(key.public_bytes(Encoding.Raw, PublicFormat.Raw))
        for raw in raws:
            Ed25519PublicKey.from_public_bytes(raw)
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise Unreadable(f"public key file: {exc}") from None
    if not raws:
        raise Unreadable("public key file holds no key")
    return {key_id(raw): raw for raw in raws}


def _signed(keys: Mapping[str, bytes], kid: Any, signature: Any, message: bytes) -> str | None:
    """None when the signature verifies, else why not."""
    raw = keys.get(kid) if isinstance(kid, str) else None
    if raw is None:
        return f"signed by key {kid}, which is not a trusted public key"
    try:
        Ed25519PublicKey.from_public_bytes(raw).verify(bytes.fromhex(signature), message)
    except (InvalidSignature, ValueError, TypeError):
        return "signature invalid (forged or altered)"
    return None


# --- the manifest ------------------------------------------------------------------------------


def _manifest(stream: IO[bytes]) -> tuple[int, bytes]:
    """Offset and bytes of the last line."""
    size = stream.seek(0, 2)
    if size == 0:
        raise Unreadable("the export is empty")
    end, step, tail = size, 64 * 1024, b""
    while True:
        start = max(0, end - step)
        stream.seek(start)
        tail = stream.read(end - start) + tail
        cut = tail.rfind(b"\n", 0, len(tail) - 1)
        if cut >= 0:
            return start + cut + 1, tail[cut + 1 :]
        if start == 0:
            return 0, tail
        if len(tail) > _MAX_MANIFEST_BYTES:
            raise Unreadable("the last line is too long to be a manifest")
        end, step = start, step * 2


@dataclass(frozen=True, slots=True)
class Block:
    from_seq: int
    seq: int
    checkpoint: Mapping[str, Any] | None


def _blocks(manifest: Mapping[str, Any], keys: Mapping[str, bytes], report: Report) -> list[Block]:
    blocks: list[Block] = []
    for cp in manifest.get("checkpoints") or []:
        try:
            message = checkpoint_message(
                from_seq=int(cp["from_seq"]),
                seq=int(cp["seq"]),
                last_hash=str(cp["hash"]),
                digest=str(cp["range_digest"]),
                at=str(cp["at"]),
                key_id=str(cp["key_id"]),
            )
            block = Block(int(cp["from_seq"]), int(cp["seq"]), cp)
        except (KeyError, TypeError, ValueError):
            report.add(None, "manifest: a checkpoint is malformed")
            continue
        problem = _signed(keys, cp["key_id"], cp.get("signature"), message)
        if problem:
            report.add(block.seq, f"checkpoint {problem}")
        blocks.append(block)
    tail = manifest.get("unsigned_tail")
    if tail is not None:
        try:
            blocks.append(Block(int(tail["from_seq"]), int(tail["seq"]), None))
        except (KeyError, TypeError, ValueError):
            report.add(None, "manifest: unsigned_tail is malformed")
    previous = 0
    for block in blocks:
        if block.from_seq <= previous or block.seq < block.from_seq:
            report.add(block.seq, "manifest: checkpoint ranges overlap or are out of order")
            return []
        previous = block.seq
    report.checkpoints = sum(1 for b in blocks if b.checkpoint is not None)
    return blocks


# --- the body: lines read in parallel chunks, checked in order -----------------------------------

ENTRY, SKIPPED, MALFORMED = 0, 1, 2
_NO_HASH = bytes(32)
_CHUNK_BYTES = 4 * 1024 * 1024
_PARALLEL_FROM_BYTES = 16 * 1024 * 1024


@dataclass
class Scanned:
    """What a worker found in one chunk of body lines, per line in order (compact arrays)."""

    seqs: array[int]  # -1 where the line is malformed
    kinds: bytearray  # ENTRY, SKIPPED or MALFORMED
    hashes: bytes  # 32 bytes per line
    prevs: bytes  # 32 bytes per line: an entry's prev_hash (zeros for the others)
    problems: list[tuple[int, int | None, str]]  # line index in the chunk, seq, reason


def _filter_test(wanted: Mapping[str, Any]) -> Any:
    """A predicate over chain values: does an entry match the manifest's filter?"""
    since, until = wanted.get("from"), wanted.get("to")
    named = ((_ACTOR, "actor"), (_ACTION, "action"), (_SUBJECT, "subject"), (_PURPOSE, "purpose"))
    equal = [(index, wanted[name]) for index, name in named if wanted.get(name) is not None]

    def matches(values: Sequence[Any]) -> bool:
        at = values[_AT]
        if since is not None and not (isinstance(at, str) and at >= since):
            return False
        if until is not None and not (isinstance(at, str) and at < until):
            return False
        return all(values[index] == value for index, value in equal)

    return matches


Record = tuple[Any, Any, Sequence[Any] | None, Any]  # seq, hash, chain values, prev_hash


def _jsonl_parser() -> Any:
    """A JSONL line to its record; chain values None for a skipped line."""
    scan = make_scanner(cast(Any, json.JSONDecoder()))

    def parse(raw: bytes) -> Record:
        text = raw.decode("utf-8")
        obj, end = scan(text, 0)
        if end != len(text) or type(obj) is not dict:
            raise ValueError("not one JSON object")
        if "skipped" in obj:
            return obj["seq"], obj["hash"], None, None
        return obj["seq"], obj["hash"], _entry_values(obj), obj["prev_hash"]

    return parse


_CSV_WIDTH = len(CHAIN_FIELDS) + 3


def _csv_record(row: list[str]) -> Record:
    """The same from a CSV row (its chain cells are already the canonical texts)."""
    if len(row) != _CSV_WIDTH or row[0] not in ("entry", "skipped"):
        raise ValueError("not an export row")
    if row[0] == "skipped":
        return int(row[1]), row[-1], None, None
    return int(row[1]), row[-1], row[1:-2], row[-2]


def _csv_rows(data: bytes) -> Iterator[list[str]]:
    """CSV rows; a row the reader cannot read ends the chunk as one malformed row."""
    reader = csv.reader(io.StringIO(data.decode("utf-8", "replace"), newline=""))
    try:
        yield from reader
    except csv.Error:
        yield []


def scan_chunk(
    path: str, start: int, end: int, encoding: str, wanted: Mapping[str, Any]
) -> Scanned:
    """Parse one chunk of body lines and check each on its own: its hash against its content,
    the filter (in a filtered export), skipped lines only where allowed."""
    with open(path, "rb") as stream:
        stream.seek(start)
        data = stream.read(end - start)
    filtered = wanted.get("filtered", False)
    matches = _filter_test(wanted.get("filter") or {})
    sha256, fromhex, canon = hashlib.sha256, bytes.fromhex, canonical_values
    seqs, kinds, hashes, prevs = array("q"), bytearray(), bytearray(), bytearray()
    problems: list[tuple[int, int | None, str]] = []
    items: Any
    if encoding == "csv":
        items, parse = _csv_rows(data), _csv_record
    else:
        items, parse = data.split(b"\n")[:-1], _jsonl_parser()
    for index, item in enumerate(items):
        try:
            seq, hash_hex, values, prev_hex = parse(item)
            if type(seq) is not int or seq < 1:
                raise ValueError("no positive integer seq")
            digest = fromhex(hash_hex)
            prev = fromhex(prev_hex) if values is not None else _NO_HASH
            if len(digest) != 32 or len(prev) != 32:
                raise ValueError("hash is not 64 hex digits")
        except (ValueError, KeyError, TypeError, StopIteration):
            problems.append((index, None, "malformed line"))
            seqs.append(-1)
            kinds.append(MALFORMED)
            hashes += _NO_HASH
            prevs += _NO_HASH
            continue
        if values is None:
            if not filtered:
                problems.append((index, seq, "skipped line in an unfiltered export"))
        else:
            if sha256(prev + canon(values)).digest() != digest:
                problems.append((index, seq, "hash does not match the entry's content (altered)"))
            if filtered and not matches(values):
                problems.append((index, seq, "entry does not match the export's filter"))
        seqs.append(seq)
        kinds.append(SKIPPED if values is None else ENTRY)
        hashes += digest
        prevs += prev
    return Scanned(seqs, kinds, bytes(hashes), bytes(prevs), problems)


def _chunk_bounds(
    stream: IO[bytes], start: int, length: int, csv_rows: bool, digest: Any
) -> Iterator[tuple[int, int]]:
    """Body chunks ending at a line end (for CSV: outside quotes); hashes the body on the way."""
    stream.seek(start)
    position, chunk_start, quotes = start, start, 0
    while position < length:
        piece = stream.read(min(_CHUNK_BYTES, length - position))
        if not piece:
            break
        digest.update(piece)
        cut = piece.rfind(b"\n")
        while csv_rows and cut >= 0 and (quotes + piece.count(b'"', 0, cut)) % 2:
            cut = piece.rfind(b"\n", 0, cut)
        if csv_rows:
            quotes += piece.count(b'"')
        if cut >= 0 and position + cut + 1 > chunk_start:
            yield chunk_start, position + cut + 1
            chunk_start = position + cut + 1
        position += len(piece)
    if chunk_start < length:
        yield chunk_start, length


def _scanned(
    path: Path,
    bounds: Iterator[tuple[int, int]],
    encoding: str,
    wanted: Mapping[str, Any],
    jobs: int,
) -> Iterator[Scanned]:
    """Scanned chunks in file order; with jobs > 1 in worker processes, a few ahead."""
    name = str(path)
    if jobs <= 1:
        for start, end in bounds:
            yield scan_chunk(name, start, end, encoding, wanted)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        ahead: deque[Future[Scanned]] = deque()
        for start, end in bounds:
            ahead.append(pool.submit(scan_chunk, name, start, end, encoding, wanted))
            if len(ahead) > 2 * jobs:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()


@dataclass
class _Cursor:
    """Where the check stands: the block and the next sequence expected, the last line seen."""

    blocks: list[Block]
    index: int = 0
    expect: int | None = None
    digest: Any = field(default_factory=hashlib.sha256)
    intact: bool = True
    last_seq: int = 0
    last_hash: bytes = bytes.fromhex(GENESIS_HASH)
    first: tuple[int, str] | None = None
    last: tuple[int, str] | None = None

    def __post_init__(self) -> None:
        self.expect = self.blocks[0].from_seq if self.blocks else None

    @property
    def block(self) -> Block | None:
        return self.blocks[self.index] if self.index < len(self.blocks) else None

    def close_block(self, report: Report) -> None:
        block = self.blocks[self.index]
        cp = block.checkpoint
        if cp is None:
            report.unsigned += block.seq - block.from_seq + 1
        elif self.intact and (cp.get("hash"), cp.get("range_digest")) != (
            self.last_hash.hex(),
            self.digest.hexdigest(),
        ):
            report.add(block.seq, "entries do not match the checkpoint's hash and range digest")
        self.index += 1
        self.expect = self.block.from_seq if self.block else None
        self.digest, self.intact = hashlib.sha256(), True


def _check_order_fast(chunk: Scanned, cursor: _Cursor, report: Report) -> bool:
    """_check_order for the common case, with whole-array comparisons: no problem found so far,
    every line an entry, the expected sequence numbers without a gap, every link intact.
    False (nothing changed) when the chunk is not such a case: the line by line check runs."""
    count = len(chunk.seqs)
    if chunk.problems or SKIPPED in chunk.kinds or cursor.expect is None or count == 0:
        return False
    if cursor.last_seq != cursor.expect - 1:
        return False
    segments: list[tuple[int, int, bool]] = []  # lines [start, end) of one block; closes it?
    index, expect, position = cursor.index, cursor.expect, 0
    while position < count:
        if index >= len(cursor.blocks):
            return False
        block = cursor.blocks[index]
        take = min(count - position, block.seq - expect + 1)
        if chunk.seqs[position : position + take] != array("q", range(expect, expect + take)):
            return False
        closes = expect + take - 1 == block.seq
        segments.append((position, position + take, closes))
        position, expect = position + take, expect + take
        if closes:
            index += 1
            if index < len(cursor.blocks):
                if cursor.blocks[index].from_seq != expect:
                    return False  # a gap between blocks: links there are not checked
                expect = cursor.blocks[index].from_seq
    if chunk.prevs != cursor.last_hash + chunk.hashes[:-32]:
        return False
    for start, end, closes in segments:
        cursor.digest.update(chunk.hashes[start * 32 : end * 32])
        cursor.last_seq = chunk.seqs[end - 1]
        cursor.last_hash = chunk.hashes[(end - 1) * 32 : end * 32]
        if closes:
            cursor.close_block(report)
        else:
            cursor.expect = cursor.last_seq + 1
    report.entries += count
    cursor.first = cursor.first or (chunk.seqs[0], chunk.hashes[:32].hex())
    cursor.last = (chunk.seqs[-1], chunk.hashes[-32:].hex())
    return True


def _check_order(chunk: Scanned, cursor: _Cursor, report: Report) -> None:
    """The checks that need the lines before: order, completeness, links, checkpoint ranges."""
    if _check_order_fast(chunk, cursor, report):
        return
    local: dict[int, list[tuple[int | None, str]]] = {}
    for index, seq, reason in chunk.problems:
        local.setdefault(index, []).append((seq, reason))
    for index, seq in enumerate(chunk.seqs):
        for found, reason in local.get(index, ()):
            report.add(found if found is not None else cursor.expect, reason)
        kind = chunk.kinds[index]
        if kind == MALFORMED:
            cursor.intact = False
            continue
        if seq != cursor.expect:
            if cursor.expect is None or seq < cursor.expect:
                report.add(seq, "appears again or out of order")
                cursor.intact = False
                continue
            expected = cursor.expect
            report.add(expected, f"expected seq {expected}, found {seq}: missing or out of order")
            while cursor.block is not None and seq > cursor.block.seq:
                cursor.intact = False
                cursor.close_block(report)
            if cursor.block is None or seq < cursor.block.from_seq:
                report.add(seq, "outside the exported ranges")
                continue
            cursor.intact = False
        at = index * 32
        digest = chunk.hashes[at : at + 32]
        if kind == ENTRY:
            prev = chunk.prevs[at : at + 32]
            if seq == 1 and prev != bytes(32):
                report.add(seq, "the first entry does not start from the genesis hash")
            elif cursor.last_seq == seq - 1 and prev != cursor.last_hash:
                report.add(seq - 1, f"hash does not match prev_hash of seq {seq}: one was altered")
            report.entries += 1
            cursor.first = cursor.first or (seq, digest.hex())
            cursor.last = (seq, digest.hex())
        else:
            report.skipped += 1
        cursor.digest.update(digest)
        cursor.last_seq, cursor.last_hash = seq, digest
        if seq == cursor.block.seq:  # type: ignore[union-attr]  # seq lies in the block
            cursor.close_block(report)
        else:
            cursor.expect = seq + 1


def _check_totals(cursor: _Cursor, manifest: Mapping[str, Any], report: Report) -> None:
    if cursor.expect is not None:
        report.add(cursor.expect, "missing: the body ends before it")
    first, last = cursor.first, cursor.last
    for name, value in (
        ("entries", report.entries),
        ("skipped", report.skipped),
        ("first_seq", first[0] if first else None),
        ("first_hash", first[1] if first else None),
        ("last_seq", last[0] if last else None),
        ("last_hash", last[1] if last else None),
    ):
        if manifest.get(name) != value:
            report.add(None, f"manifest {name} is {manifest.get(name)!r}, the body has {value!r}")


def verify_file(path: Path, keys: Mapping[str, bytes], *, jobs: int | None = None) -> Report:
    """Check an export against the rules above; `jobs` worker processes parse it (default:
    one per CPU for a large file)."""
    report = Report()
    try:
        with path.open("rb") as stream:
            start, last_line = _manifest(stream)
            manifest, encoding = _read_manifest(last_line, report)
            if manifest is None:
                return report
            report.filtered = bool(manifest.get("filtered"))
            problem = _signed(
                keys, manifest.get("key_id"), manifest.get("signature"), manifest_message(manifest)
            )
            if problem:
                report.add(None, f"manifest {problem}")
            blocks = _blocks(manifest, keys, report)
            body, first_row = hashlib.sha256(), 0
            if encoding == "csv":
                stream.seek(0)
                header = stream.readline()
                body.update(header)
                first_row = len(header)
                if header.rstrip(b"\n").decode("utf-8", "replace") != CSV_HEADER:
                    report.add(None, "CSV header is not the export's")
            if jobs is None:
                jobs = min(os.cpu_count() or 1, 8) if start > _PARALLEL_FROM_BYTES else 1
            wanted = {"filtered": report.filtered, "filter": manifest.get("filter") or {}}
            bounds = _chunk_bounds(stream, first_row, start, encoding == "csv", body)
            cursor = _Cursor(blocks)
            for chunk in _scanned(path, bounds, encoding, wanted, jobs):
                _check_order(chunk, cursor, report)
            _check_totals(cursor, manifest, report)
    except OSError as exc:
        raise Unreadable(f"{path}: {exc.strerror or exc}") from None
    if body.hexdigest() != manifest.get("body_sha256"):
        report.add(None, "body SHA-256 does not match the manifest (body altered after export)")
    return report


def _read_manifest(last_line: bytes, report: Report) -> tuple[dict[str, Any] | None, str]:
    if not last_line.endswith(b"\n"):
        report.add(None, "the export does not end with a newline: it is incomplete")
        return None, ""
    try:
        if last_line.startswith(CSV_MANIFEST_PREFIX):
            encoding, manifest = "csv", json.loads(last_line[len(CSV_MANIFEST_PREFIX) :])
        elif last_line.startswith(JSONL_MANIFEST_PREFIX):
            encoding, manifest = "jsonl", json.loads(last_line)["manifest"]
        else:
            raise ValueError
        if not isinstance(manifest, dict):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        report.add(None, "the export has no manifest: it is incomplete")
        return None, ""
    if manifest.get("encoding") != encoding:
        report.add(None, f"manifest says {manifest.get('encoding')!r} but the file is {encoding}")
    return manifest, encoding


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify a cdp audit export offline.")
    parser.add_argument("export", type=Path)
    parser.add_argument("--public-key", type=Path, required=True, help="trusted public keys")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes")
    args = parser.parse_args(argv)
    try:
        keys = load_public_keys(args.public_key.read_bytes())
        report = verify_file(args.export, keys, jobs=args.jobs)
    except (OSError, Unreadable) as exc:
        print(f"cannot verify: {exc}", file=sys.stderr)
        return 2
    print(report.summary(), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
