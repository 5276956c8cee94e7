"""p50 latency of small responses from `cdp serve --workers 2` against one worker, same run.

DESIGN.md: uvicorn's multi-worker mode handed out connections without TCP_NODELAY, so small
responses waited ~40 ms for a delayed ACK; cdp sets it on every connection.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import httpx

from tests.e2e.server import cdp_env, running_server


def _p50(base: str, n: int = 400) -> float:
    samples = []
    with httpx.Client(base_url=base) as client:
        for _ in range(20):
            client.get("/healthz")
        for _ in range(n):
            start = time.perf_counter()
            client.get("/healthz")
            samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def test_p50_with_two_workers(tmp_path: Path) -> None:
    env = cdp_env(tmp_path / "state", CDP_JWT_SECRET="bench-" + "y" * 40)
    with running_server(env, workers=1) as base:
        one = _p50(base)
    with running_server(env, workers=2) as base:
        two = _p50(base)
    assert two < 10, f"p50 with 2 workers {two:.1f} ms"
    print(
        f"\nbench: serve_p50_2_workers {two:.2f} ms ratio={two / one:.2f} "
        f"baseline=same server with 1 worker ({one:.2f} ms)"
    )
