"""kill -9 of `cdp serve` under sustained tracking load: every event acknowledged before the
kill is in the database after a restart, no batch is half-stored, and the SDK-style retry of
the unacknowledged batches stores each message once."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from tests.e2e.server import SERVER_PIDS, cdp, cdp_env, running_server
from tests.pgcluster import PgCluster

BATCH = 50
CONSENT = {"consent": {"categoryPreferences": {"Analytics": True}}}


def _batch(number: int) -> bytes:
    return json.dumps(
        {
            "batch": [
                {
                    "type": "track",
                    "messageId": f"b{number}-{i}",
                    "anonymousId": f"visitor-{number % 50}",
                    "event": "Product Viewed",
                    "properties": {"product_id": f"sku-{i}"},
                    "context": CONSENT,
                }
                for i in range(BATCH)
            ]
        }
    ).encode()


# One source sends as fast as it can, then resends everything unacknowledged at once: the
# per-source rate limit is not what these tests are about.
UNLIMITED = {"CDP_RATE_LIMIT_PER_MINUTE": "1000000", "CDP_RATE_LIMIT_BURST": "1000000"}


def _stored_per_batch(url: str) -> dict[int, int]:
    engine = create_engine(url)
    counts: dict[int, int] = {}
    with engine.connect() as conn:
        for (message_id,) in conn.execute(text("SELECT message_id FROM event")):
            number = int(message_id.split("-")[0][1:])
            counts[number] = counts.get(number, 0) + 1
    engine.dispose()
    return counts


def _hammer(base: str, key: str, acked: set[int], sent: set[int], stop: threading.Event) -> None:
    counter = iter(range(10**9))
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(base_url=base, timeout=10) as http:
            while not stop.is_set():
                with lock:
                    number = next(counter)
                    sent.add(number)
                try:
                    resp = http.post(
                        "/v1/batch", content=_batch(number), headers={"X-Write-Key": key}
                    )
                except httpx.HTTPError:
                    return  # the server is gone
                if resp.status_code == 200:
                    with lock:
                        acked.add(number)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)


def _kill_under_load(env: dict[str, str], url: str, workers: int) -> None:
    source = json.loads(cdp(env, "sources", "create", "--name", "k", "--json").stdout)
    key = source["write_key"]
    acked: set[int] = set()
    sent: set[int] = set()
    stop = threading.Event()
    with running_server(env, workers=workers, own_group=True) as base:
        loader = threading.Thread(target=_hammer, args=(base, key, acked, sent, stop))
        loader.start()
        time.sleep(3)
        os.killpg(SERVER_PIDS[base], signal.SIGKILL)  # the server and its workers, mid-request
        stop.set()
        loader.join(60)
    assert len(acked) > 5, "the load did not get going before the kill"
    with running_server(env, workers=workers) as base:
        stored = _stored_per_batch(url)
        missing = sorted(n for n in acked if stored.get(n) != BATCH)
        assert not missing, f"acknowledged batches not (fully) stored: {missing[:10]}"
        half = {n: c for n, c in stored.items() if c != BATCH}
        assert not half, f"half-stored batches: {half}"
        # What an SDK does next: send the unacknowledged batches again.
        for number in sorted(sent - acked):
            resp = httpx.post(
                f"{base}/v1/batch", content=_batch(number), headers={"X-Write-Key": key}
            )
            assert resp.status_code == 200, resp.text
    assert _stored_per_batch(url) == dict.fromkeys(sorted(sent), BATCH)


def test_kill_9_on_embedded_sqlite(tmp_path: Path) -> None:
    env = cdp_env(tmp_path / "state", CDP_JWT_SECRET="e2e-secret-" + "k" * 32, **UNLIMITED)
    assert cdp(env, "db", "upgrade").returncode == 0
    _kill_under_load(env, f"sqlite:///{tmp_path / 'state' / 'cdp.db'}", workers=1)


def test_kill_9_on_postgresql_with_two_workers(tmp_path: Path, pg_cluster: PgCluster) -> None:
    url = pg_cluster.create_database("e2e_kill9")
    env = cdp_env(
        tmp_path / "state",
        CDP_DATABASE_URL=url,
        CDP_JWT_SECRET="e2e-secret-" + "k" * 32,
        CDP_MASTER_KEY="k1:" + "A" * 43 + "=",
        **UNLIMITED,
    )
    assert cdp(env, "db", "upgrade").returncode == 0, "migrate"
    try:
        _kill_under_load(env, url, workers=2)
    finally:
        pg_cluster.drop_database("e2e_kill9")
