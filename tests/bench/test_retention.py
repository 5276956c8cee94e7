"""A retention run over many events, on SQLite and PostgreSQL (`make bench`).

- retention_run_<db>: 200,000 events over two years (with their de-duplication keys and daily
  rollups), about half past their cutoff, a tenth of them completed orders under the 30-year
  accounting hold. The run (every rule, held counts, orphaned keys, rollups, visitors, codes,
  free text, report and audit entry) against the baseline: bare DELETEs of the same expired
  events by name and time, and of their de-duplication keys, on a copy of the same data.
  Reported as expired events removed per second.
"""

from __future__ import annotations

import base64
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, insert, or_, select

from cdp.api import Runtime
from cdp.app import build_runtime, start
from cdp.audit.service import RequestContext
from cdp.config import Settings
from cdp.db import unit_of_work
from cdp.events.models import Event, EventMessage
from cdp.retention import service
from cdp.retention.run import event_cutoffs
from tests.pgcluster import PgCluster

pytestmark = pytest.mark.slow

EVENTS = 200_000
NAMES = ("Product Viewed", "Page Viewed", "Signed In", "Order Completed")
NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def _runtime(url: str, tmp_path: Path) -> Runtime:
    settings = Settings(
        database_url=url,
        keystore_url=f"sqlite:///{tmp_path / 'keys.db'}",
        data_dir=tmp_path,
        jwt_secret="bench-" + "r" * 40,
        master_key="k1:" + base64.b64encode(os.urandom(32)).decode(),
        log_level="WARNING",
    )
    runtime = build_runtime(settings)
    start(runtime)
    return runtime


@pytest.fixture(params=["sqlite", "postgresql"])
def rts(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Runtime, Runtime]]:
    """Two databases with the same data: one for the run, one for the baseline."""
    made: list[tuple[Runtime, str | None]] = []
    for copy in ("a", "b"):
        if request.param == "sqlite":
            template = request.getfixturevalue("sqlite_template")
            target = tmp_path / f"{copy}.db"
            target.write_bytes(Path(template).read_bytes())
            url, name = f"sqlite:///{target}", None
        else:
            cluster: PgCluster = request.getfixturevalue("pg_cluster")
            name = f"bench_retention_{copy}_{os.getpid()}"
            url = cluster.create_database(name, template="cdp_template")
        (tmp_path / copy).mkdir()
        made.append((_runtime(url, tmp_path / copy), name))
    yield request.param, made[0][0], made[1][0]
    for runtime, name in made:
        runtime.engine.dispose()
        runtime.keystore.dispose()
        if name is not None:
            request.getfixturevalue("pg_cluster").drop_database(name)


def _seed(rt: Runtime) -> None:
    rows: list[dict[str, Any]] = []
    keys: list[dict[str, Any]] = []
    step = timedelta(days=700) / EVENTS
    for i in range(EVENTS):
        at = NOW - step * i
        key = f"m{i}"
        rows.append(
            {
                "id": uuid.uuid4().hex,
                "timestamp": at,
                "source_id": "src-bench",
                "message_id": key,
                "subject_id": None,
                "anonymous_key": None,
                "type": "track",
                "name": NAMES[i % 10 // 3] if i % 10 else NAMES[3],
                "received_at": at,
                "properties": {},
                "sealed": {},
                "context": {},
            }
        )
        keys.append({"source_id": "src-bench", "message_id": key, "received_at": at})
    with unit_of_work(rt.sessions) as session:
        for start_at in range(0, EVENTS, 10_000):
            session.execute(insert(Event), rows[start_at : start_at + 10_000])
            session.execute(insert(EventMessage), keys[start_at : start_at + 10_000])


def test_retention_run(rts: tuple[str, Runtime, Runtime]) -> None:
    kind, rt, base = rts
    _seed(rt)
    _seed(base)
    cutoffs, _, _ = event_cutoffs(base.policy, NOW)
    held = {c.name for c in cutoffs if c.hold}
    started = time.perf_counter()
    with unit_of_work(base.sessions) as session:
        gone = session.execute(
            delete(Event).where(
                or_(
                    *(
                        (Event.name == c.name) & (Event.timestamp < c.cutoff)
                        for c in cutoffs
                        if c.name not in held
                    )
                )
            )
        )
        # and the keys of exactly those events, by key, without the orphan check
        keys = session.execute(
            delete(EventMessage).where(
                EventMessage.received_at < max(c.cutoff for c in cutoffs),
                EventMessage.message_id.not_in(select(Event.message_id)),
            )
        )
    baseline = time.perf_counter() - started
    started = time.perf_counter()
    with unit_of_work(rt.sessions) as session:
        session.info["ctx"] = RequestContext(rt.policy.version)
        report = service.as_read(
            service.run(
                session, crypto=rt.crypto, policy=rt.policy, actor="bench", dry_run=False, now=NOW
            )
        )
    elapsed = time.perf_counter() - started
    removed = report["totals"]["event"]
    assert removed == int(getattr(gone, "rowcount", 0)) > EVENTS // 3
    assert report["totals"]["event_message"] == int(getattr(keys, "rowcount", 0))
    assert report["totals"]["held"] > 0 and report["totals"]["event_message"] == removed
    rate = removed / elapsed
    print(
        f"\nbench: retention_run_{kind} {rate:.0f} events/s ratio={baseline / elapsed:.2f} "
        f"baseline=bare DELETEs of the same {removed} expired events and their keys"
        f" ({removed / baseline:.0f}/s)"
    )
