"""Write key -> source, remembered for a few seconds in each worker.

The Segment endpoints are the hottest path: a database round trip per request only to find
the source would cost more than storing the event (which the group commit shares). A revoked
source stops at once in the worker that revoked it, and within `ttl` seconds in the others.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy.orm import Session

from cdp.auth import service
from cdp.auth.secrets import fingerprint

TTL_SECONDS = 5.0
MAX_ENTRIES = 4096


class WriteKeys:
    """Active sources by write-key fingerprint; unknown keys are never remembered, so keys
    sprayed by a caller cannot fill the cache."""

    def __init__(self, ttl: float = TTL_SECONDS, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl, self.max_entries = ttl, max_entries
        self._known: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def cached(self, write_key: str) -> str | None:
        """The source the key names if it was looked up within the TTL, without the database;
        None says nothing (look it up with source_id)."""
        if not write_key or len(write_key) > service.MAX_WRITE_KEY:
            return None
        found = self._known.get(fingerprint(write_key))
        return found[0] if found is not None and found[1] > time.monotonic() else None

    def source_id(self, session: Session, write_key: str) -> str | None:
        """The active source the key names, or None."""
        if not write_key or len(write_key) > service.MAX_WRITE_KEY:
            return None
        key, now = fingerprint(write_key), time.monotonic()
        found = self._known.get(key)
        if found is not None and found[1] > now:
            return found[0]
        source = service.source_for_write_key(session, write_key)
        with self._lock:
            if source is None:
                self._known.pop(key, None)
                return None
            if len(self._known) >= self.max_entries:
                self._known.clear()
            self._known[key] = (source.id, now + self.ttl)
        return source.id

    def forget(self, source_id: str) -> None:
        """Drop a source at once (it was revoked here)."""
        with self._lock:
            for key in [k for k, (sid, _) in self._known.items() if sid == source_id]:
                del self._known[key]
