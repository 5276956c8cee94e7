"""Per-caller token buckets kept in process memory (each worker enforces its own share)."""

from __future__ import annotations

import math
import threading
import time


class RateLimiter:
    """`rate_per_minute` sustained with bursts up to `burst`; returns seconds to wait or None."""

    def __init__(self, rate_per_minute: int, burst: int) -> None:
        self.rate = rate_per_minute / 60.0
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, cost: float = 1.0) -> int | None:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < cost:
                self._buckets[key] = (tokens, now)
                return max(1, math.ceil((cost - tokens) / self.rate))
            self._buckets[key] = (tokens - cost, now)
            if len(self._buckets) > 100_000:  # forget idle callers rather than grow without end
                self._buckets.clear()
            return None
