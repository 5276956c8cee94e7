"""Master-key rotation (re-wrapping every data key online, in short batches) and key status."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Engine

from cdp.crypto import keystore as store
from cdp.crypto.masterkey import BatchMasterKeyProvider, MasterKeyProvider
from cdp.db import utcnow
from cdp.errors import MasterKeyUnavailable

# Re-wrapping sweeps: a later sweep picks up keys a process with a stale view of the master
# keys created with the old version while an earlier sweep ran.
MAX_SWEEPS = 3


def dek_aad(subject_id: str) -> bytes:
    """Associated data of a wrapped data key: it unwraps only as its own subject's key."""
    return f"cdp/dek|{subject_id}".encode()


def index_key_aad(version: int) -> bytes:
    return f"cdp/index-key|{version}".encode()


@dataclass(frozen=True, slots=True)
class RotationReport:
    """What a rotation did; subject ids never appear, only counts and version ids."""

    target: str
    rewrapped: int
    index_keys_rewrapped: int
    failed: int
    deks_per_version: dict[str, int]
    unused_versions: list[str]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class KeyStatus:
    current: str
    versions: list[str]
    deks_per_version: dict[str, int]
    deks_total: int
    index_key_version: str | None
    unused_versions: list[str]
    erasures: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sweep(engine: Engine, provider: MasterKeyProvider, target: str, batch: int) -> tuple[int, int]:
    """One pass over every key not under target: (re-wrapped, could not be unwrapped)."""
    moved = failed = 0
    after = ""
    while True:
        with engine.begin() as conn:
            rows = store.rewrap_candidates(conn, target, after, batch)
            if not rows:
                return moved, failed
            at = utcnow()
            updates: list[dict[str, Any]] = []
            for (subject_id, _, kek_id, _), moved_key in zip(
                rows, _rewrapped(provider, rows), strict=True
            ):
                if isinstance(moved_key, MasterKeyUnavailable):
                    failed += 1
                    continue
                new_kek, blob = moved_key
                updates.append(
                    {
                        "b_subject_id": subject_id,
                        "b_old_kek": kek_id,
                        "b_kek_id": new_kek,
                        "b_wrapped": blob,
                        "b_at": at,
                    }
                )
            if updates:
                moved += store.store_rewrapped(conn, updates)
            after = rows[-1][0]


def _rewrapped(
    provider: MasterKeyProvider, rows: list[store.KeyRow]
) -> list[tuple[str, bytes] | MasterKeyUnavailable]:
    """Each row's key wrapped under the current version, or why it could not be unwrapped.

    A batch provider (Vault) re-wraps on its side in one request; the key never leaves it."""
    items = [(kek_id, wrapped, dek_aad(sid)) for sid, _, kek_id, wrapped in rows]
    if isinstance(provider, BatchMasterKeyProvider):
        return provider.rewrap_many(items)
    out: list[tuple[str, bytes] | MasterKeyUnavailable] = []
    for kek_id, wrapped, aad in items:
        try:
            dek = provider.unwrap(kek_id, wrapped, aad=aad)
        except MasterKeyUnavailable as exc:
            out.append(exc)
            continue
        out.append(provider.wrap(dek, aad=aad))
    return out


def _rewrap_index_keys(engine: Engine, provider: MasterKeyProvider, target: str) -> int:
    done = 0
    with engine.begin() as conn:
        for version, kek_id, wrapped in store.index_keys(conn):
            if kek_id == target:
                continue
            aad = index_key_aad(version)
            new_kek, blob = provider.wrap(provider.unwrap(kek_id, wrapped, aad=aad), aad=aad)
            store.store_rewrapped_index_key(conn, version, kek_id, new_kek, blob, utcnow())
            done += 1
    return done


def _usage(engine: Engine) -> tuple[dict[str, int], set[str], str | None, int]:
    with engine.connect() as conn:
        per_version = store.keys_per_version(conn)
        index_rows = store.index_keys(conn)
        erasures = store.count_erasures(conn)
    used = set(per_version) | {row[1] for row in index_rows}
    newest = max(index_rows, key=lambda row: row[0], default=None)
    return per_version, used, newest[1] if newest is not None else None, erasures


def rotate(engine: Engine, provider: MasterKeyProvider, *, batch: int = 500) -> RotationReport:
    """Re-wraps every data key and the index key under provider.current_id, online."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    started = time.perf_counter()
    target = provider.current_id
    rewrapped = failed = 0
    for _ in range(MAX_SWEEPS):
        moved, failed = _sweep(engine, provider, target, batch)
        rewrapped += moved
        if moved == 0:
            break
    index_done = _rewrap_index_keys(engine, provider, target)
    per_version, used, _, _ = _usage(engine)
    return RotationReport(
        target=target,
        rewrapped=rewrapped,
        index_keys_rewrapped=index_done,
        failed=failed,
        deks_per_version=dict(sorted(per_version.items())),
        unused_versions=[v for v in provider.versions() if v not in used and v != target],
        seconds=round(time.perf_counter() - started, 3),
    )


def status(engine: Engine, provider: MasterKeyProvider) -> KeyStatus:
    """Versions known, the current one, data keys per version, the index key's version."""
    per_version, used, index_version, erasures = _usage(engine)
    current = provider.current_id
    return KeyStatus(
        current=current,
        versions=provider.versions(),
        deks_per_version=dict(sorted(per_version.items())),
        deks_total=sum(per_version.values()),
        index_key_version=index_version,
        unused_versions=[v for v in provider.versions() if v not in used and v != current],
        erasures=erasures,
    )
