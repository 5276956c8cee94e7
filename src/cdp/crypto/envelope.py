"""Envelope encryption: one data key (DEK) per subject, wrapped by the master key, shreddable.

Unwrapped DEKs live only in a SubjectKeys object (one batch of work), never in a process-wide
cache, so a subject shredded by another process cannot be decrypted here a moment later. (The
one exception: new keys of subject ids not handed out yet, which nothing was sealed with.) The
blind-index key is not per subject and is cached in the Crypto object.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine, text

from cdp.crypto import keystore as store
from cdp.crypto.aead import KEY_BYTES, field_aad, open_parsed, parse, seal_text
from cdp.crypto.blind_index import index_of, normalise
from cdp.crypto.masterkey import BatchMasterKeyProvider, MasterKeyProvider, wrap_many
from cdp.crypto.rotation import KeyStatus, RotationReport, dek_aad, index_key_aad, rotate, status
from cdp.db import utcnow
from cdp.errors import CiphertextInvalid, MasterKeyUnavailable, SubjectKeyMissing

MAX_REASON = 200
# Subject ids handed out by new_subject_id get their keys made this many at a time.
ID_BATCH = 64
_Wrapped = tuple[int, str, bytes]  # key version, master-key version, wrapped DEK


class SubjectKeys:
    """The data keys of a batch of subjects, unwrapped on first use; not shared between threads."""

    __slots__ = ("_create", "_crypto", "_failed", "_missing", "_open", "_wrapped")

    def __init__(
        self, crypto: Crypto, wrapped: dict[str, _Wrapped], missing: set[str], *, create: bool
    ) -> None:
        self._crypto = crypto
        self._create = create
        self._wrapped = wrapped
        self._missing = missing
        self._open: dict[str, tuple[int, AESGCM]] = {}
        self._failed: dict[str, MasterKeyUnavailable] = {}

    def __contains__(self, subject_id: object) -> bool:
        return subject_id in self._open or subject_id in self._wrapped

    def _dek(self, subject_id: str, *, create: bool) -> tuple[int, AESGCM]:
        found = self._open.get(subject_id)
        if found is not None:
            return found
        wrapped = self._wrapped.get(subject_id)
        if wrapped is None:
            if subject_id in self._missing and not create:
                raise SubjectKeyMissing("no data key for this subject: its data was erased")
            more, _ = self._crypto._load([subject_id], create=create)
            wrapped = more.get(subject_id)
            if wrapped is None:
                self._missing.add(subject_id)
                raise SubjectKeyMissing("no data key for this subject: its data was erased")
            self._missing.discard(subject_id)
        batch = self._crypto.batch_provider
        if batch is not None and subject_id in self._wrapped:
            self._open_all(batch)
            failed = self._failed.get(subject_id)
            if failed is not None:
                raise failed
            return self._open[subject_id]
        version, kek_id, blob = wrapped
        dek = self._crypto.provider.unwrap(kek_id, blob, aad=dek_aad(subject_id))
        found = (version, AESGCM(dek))
        self._open[subject_id] = found
        return found

    def _open_all(self, provider: BatchMasterKeyProvider) -> None:
        """Unwraps every key of the batch not yet open in one request (a remote KMS)."""
        pending = [s for s in self._wrapped if s not in self._open and s not in self._failed]
        items = [(self._wrapped[s][1], self._wrapped[s][2], dek_aad(s)) for s in pending]
        for subject_id, dek in zip(pending, provider.unwrap_many(items), strict=True):
            if isinstance(dek, MasterKeyUnavailable):
                self._failed[subject_id] = dek
            else:
                self._open[subject_id] = (self._wrapped[subject_id][0], AESGCM(dek))

    def seal(self, subject_id: str, table: str, column: str, plaintext: str) -> str:
        """Encrypts one field value (SubjectKeyMissing without a key, unless created)."""
        version, aead = self._dek(subject_id, create=self._create)
        return seal_text(aead, version, plaintext, field_aad(table, column, subject_id))

    def open(self, subject_id: str, table: str, column: str, ciphertext: str) -> str:
        """Decrypts one field value: CiphertextInvalid if altered or moved, SubjectKeyMissing if
        the subject's key was shredded."""
        version, aead = self._dek(subject_id, create=False)
        sealed_version, nonce, body = parse(ciphertext)
        if sealed_version != version:
            if sealed_version < version:
                raise SubjectKeyMissing("the data key this value was sealed with was erased")
            raise CiphertextInvalid("the ciphertext names a data key that never existed")
        return open_parsed(aead, nonce, body, field_aad(table, column, subject_id))


class Crypto:
    """Field encryption, blind indexes, crypto-shredding and key rotation over one key store."""

    def __init__(self, keystore: Engine, provider: MasterKeyProvider) -> None:
        self.keystore = keystore
        self.provider = provider
        # Looked up once: an isinstance check against a Protocol costs more than a seal.
        self.batch_provider = provider if isinstance(provider, BatchMasterKeyProvider) else None
        self._index_key: bytes | None = None
        self._index_lock = threading.Lock()
        self._fresh: list[tuple[str, int, bytes]] = []  # (subject id, key version, data key)
        self._fresh_lock = threading.Lock()

    # --- data keys ----------------------------------------------------------------------------

    def _load(
        self, subject_ids: list[str], *, create: bool
    ) -> tuple[dict[str, _Wrapped], set[str]]:
        """Wrapped keys of those subjects (one query), creating missing ones when asked."""
        rows = store.fetch_subject_keys(self.keystore, subject_ids)
        wrapped: dict[str, _Wrapped] = {sid: (ver, kek, blob) for sid, ver, kek, blob in rows}
        missing = {sid for sid in subject_ids if sid not in wrapped}
        if create and missing:
            wrapped.update(self._create_keys(sorted(missing)))
            missing.clear()
        return wrapped, missing

    def _create_keys(self, subject_ids: list[str]) -> dict[str, _Wrapped]:
        wrapped, _ = self._store_new_keys(subject_ids)
        lost = [sid for sid in subject_ids if sid not in wrapped]
        if lost:  # another writer created these keys first: theirs are the ones in use
            for sid, ver, kek, blob in store.fetch_subject_keys(self.keystore, lost):
                wrapped[sid] = (ver, kek, blob)
        return wrapped

    def _store_new_keys(
        self, subject_ids: list[str]
    ) -> tuple[dict[str, _Wrapped], dict[str, bytes]]:
        """New data keys, wrapped and stored in one key-store statement: (wrapped, plain) of
        those stored (a subject that had a key already is left out of both)."""
        fresh = {sid: os.urandom(KEY_BYTES) for sid in subject_ids}
        sealed = dict(
            zip(
                fresh,
                wrap_many(self.provider, [(dek, dek_aad(sid)) for sid, dek in fresh.items()]),
                strict=True,
            )
        )
        versions = store.insert_subject_keys(self.keystore, sealed, created_at=utcnow())
        wrapped: dict[str, _Wrapped] = {
            sid: (version, *sealed[sid]) for sid, version in versions.items()
        }
        self._follow_rotation(wrapped, fresh)
        return wrapped, {sid: fresh[sid] for sid in wrapped}

    def _follow_rotation(self, wrapped: dict[str, _Wrapped], fresh: dict[str, bytes]) -> None:
        """Re-wraps keys just stored under a master key that was rotated meanwhile.

        A rotation's last sweep may pass before a key wrapped under the old version is
        committed, and the old version may then be retired; checking after the commit closes
        that gap (the rotation counts the row as using the old version until this runs).
        """
        current = self.provider.current_id
        stale = [sid for sid, (_, kek_id, _) in wrapped.items() if kek_id != current]
        if not stale:
            return
        now, updates = utcnow(), []
        again = wrap_many(self.provider, [(fresh[sid], dek_aad(sid)) for sid in stale])
        for sid, (kek_id, blob) in zip(stale, again, strict=True):
            version, old_kek, _ = wrapped[sid]
            wrapped[sid] = (version, kek_id, blob)
            updates.append(
                {
                    "b_subject_id": sid,
                    "b_old_kek": old_kek,
                    "b_kek_id": kek_id,
                    "b_wrapped": blob,
                    "b_at": now,
                }
            )
        with self.keystore.begin() as conn:
            store.store_rewrapped(conn, updates)

    def keys_for(self, subject_ids: Iterable[str], *, create: bool = False) -> SubjectKeys:
        """The keys of many subjects from one key-store query (create=True: make missing ones).

        Subjects outside the list are fetched on first use. A subject without a key raises
        SubjectKeyMissing on open, and on seal too unless create is set.
        """
        ids = list(dict.fromkeys(subject_ids))
        wrapped, missing = self._load(ids, create=create) if ids else ({}, set())
        return SubjectKeys(self, wrapped, missing, create=create)

    def new_subject_id(self) -> str:
        """A new random subject id (UUID4) whose data key already exists.

        Keys are created ID_BATCH at a time in one key-store transaction, so a new profile costs
        a key-store read instead of a write; ids never used leave keys without data (harmless,
        as does a create that fails after its first seal).
        """
        return self.new_subjects(1)[0][0]

    def new_subjects(self, n: int) -> tuple[list[str], SubjectKeys]:
        """n new random subject ids (UUID4) whose data keys already exist, and those keys,
        open: a batch of new profiles costs no key-store read and no unwrap.

        Keys are made in multiples of ID_BATCH in one key-store statement; the ones left over
        wait, unwrapped, for the next new subjects. Only keys no data was sealed with yet are
        kept that way, so no erasure can miss them.
        """
        with self._fresh_lock:
            while len(self._fresh) < n:
                short = n - len(self._fresh)
                ids = [str(uuid.uuid4()) for _ in range(-(-short // ID_BATCH) * ID_BATCH)]
                wrapped, plain = self._store_new_keys(ids)
                self._fresh += [(sid, wrapped[sid][0], plain[sid]) for sid in plain]
            cut = len(self._fresh) - n
            taken, self._fresh = self._fresh[cut:], self._fresh[:cut]
        keys = SubjectKeys(self, {}, set(), create=False)
        for sid, version, dek in taken:
            keys._open[sid] = (version, AESGCM(dek))
        return [sid for sid, _, _ in taken], keys

    def seal(self, subject_id: str, table: str, column: str, plaintext: str) -> str:
        """Encrypts one value for a subject, creating the subject's data key on first use."""
        return self.keys_for((subject_id,), create=True).seal(subject_id, table, column, plaintext)

    def open(self, subject_id: str, table: str, column: str, ciphertext: str) -> str:
        """Decrypts one value: CiphertextInvalid (altered or moved) or SubjectKeyMissing."""
        return self.keys_for((subject_id,)).open(subject_id, table, column, ciphertext)

    def has_key(self, subject_id: str) -> bool:
        with self.keystore.connect() as conn:
            return store.has_subject_key(conn, subject_id)

    # --- erasure ------------------------------------------------------------------------------

    def shred(self, subject_id: str, *, reason: str) -> None:
        """Destroys the subject's data key and records the erasure (reason must hold no PI)."""
        if not reason or len(reason) > MAX_REASON:
            raise ValueError(f"reason must be 1-{MAX_REASON} characters")
        with self.keystore.begin() as conn:
            store.delete_subject_key(conn, subject_id, created_before=None)
            store.record_erasure(conn, subject_id, utcnow(), reason)

    def erasures(self, after: datetime | None = None) -> list[tuple[str, datetime]]:
        """The erasure ledger in order: (subject_id, erased_at), after the given time if any."""
        with self.keystore.connect() as conn:
            return store.list_erasures(conn, after)

    def replay_erasure(self, subject_id: str, erased_at: datetime) -> bool:
        """Shreds again a key created no later than a recorded erasure (a restored key store);
        a key created after it belongs to new data and is kept. No new ledger row."""
        with self.keystore.begin() as conn:
            return store.delete_subject_key(conn, subject_id, created_before=erased_at) > 0

    # --- blind indexes ------------------------------------------------------------------------

    def normalise(self, kind: str, value: str) -> str:
        return normalise(kind, value)

    def identifier(self, kind: str, value: str) -> tuple[str, str]:
        """(normal form, blind index) of an identifier; InvalidIdentifier on bad input."""
        normalised = normalise(kind, value)
        key = self._index_key
        if key is None:
            key = self._load_index_key()
        return normalised, index_of(key, kind, normalised)

    def blind_index(self, kind: str, value: str) -> str:
        """HMAC-SHA256 blind index of the normalised value; InvalidIdentifier on bad input."""
        normalised = normalise(kind, value)
        key = self._index_key
        if key is None:
            key = self._load_index_key()
        return index_of(key, kind, normalised)

    def _load_index_key(self) -> bytes:
        with self._index_lock:
            if self._index_key is not None:
                return self._index_key
            with self.keystore.connect() as conn:
                row = store.current_index_key(conn)
            if row is None:
                kek_id, blob = self.provider.wrap(os.urandom(KEY_BYTES), aad=index_key_aad(1))
                new: dict[str, Any] = {
                    "version": 1,
                    "kek_id": kek_id,
                    "wrapped": blob,
                    "created_at": utcnow(),
                    "rewrapped_at": None,
                }
                with self.keystore.begin() as conn:
                    store.insert_index_key(conn, new)  # a concurrent creator may have won
                    row = store.current_index_key(conn)
                assert row is not None
            version, kek_id, blob = row
            key = self.provider.unwrap(kek_id, blob, aad=index_key_aad(version))
            current = self.provider.current_id
            if kek_id != current:  # created or left under an older master key: move it along
                new_kek, new_blob = self.provider.wrap(key, aad=index_key_aad(version))
                with self.keystore.begin() as conn:
                    store.store_rewrapped_index_key(
                        conn, version, kek_id, new_kek, new_blob, utcnow()
                    )
            self._index_key = key
            return key

    # --- operations ---------------------------------------------------------------------------

    def rotate(self, *, batch: int = 500) -> RotationReport:
        """Re-wraps every DEK and the index key under the provider's current master key."""
        try:
            return rotate(self.keystore, self.provider, batch=batch)
        finally:
            with self._index_lock:
                self._index_key = None

    def status(self) -> KeyStatus:
        return status(self.keystore, self.provider)

    def ping(self) -> None:
        """Raises when the key store is unreachable or the master key is not configured."""
        with self.keystore.connect() as conn:
            conn.execute(text("SELECT 1"))
        _ = self.provider.current_id
