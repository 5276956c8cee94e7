"""Erasure and the access bundle for a heavy subject on PostgreSQL (`make bench`).

- erase_subject_10k: cdp.rights.erasure.erase_subject for a subject with 10,000 events (a
  tenth with a sealed PI property) and 100 feedback items, committed: every table with a
  subject_id walked, the key shredded, the ledger and audit written. Baseline: plain DELETEs of
  the same event and feedback rows of an identical subject. Target <= 1 s.
- access_bundle_10k: cdp.rights.bundle.build + JSON for the same subject (decrypting profile,
  identities, sealed event properties and feedback text). Baseline: a plain SELECT of the
  subject's event rows. Target <= 2 s.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select

from cdp.api import Runtime
from cdp.audit.service import RequestContext
from cdp.auth.principal import Principal
from cdp.db import unit_of_work, utcnow
from cdp.events.models import Event
from cdp.events.service import EVENT_TABLE
from cdp.events.writes import insert_events
from cdp.feedback.models import Feedback
from cdp.profiles import service as profiles
from cdp.rights import bundle, erasure
from tests.bench.runtime import pg_runtime
from tests.pgcluster import PgCluster

pytestmark = pytest.mark.slow

EVENTS = 10_000
FEEDBACK = 100
APP = Principal(
    kind="client",
    id="cli_bench",
    role="app",
    scopes=frozenset({"profiles:write"}),
    purposes=frozenset({"service_delivery"}),
)


@pytest.fixture
def rt(tmp_path: Path, pg_cluster: PgCluster) -> Iterator[Runtime]:
    with pg_runtime(tmp_path, pg_cluster, "bench_rights") as runtime:
        yield runtime


def _subject(rt: Runtime, n: int, events: int = EVENTS, feedback: int = FEEDBACK) -> str:
    """A customer with `events` events and `feedback` feedback items, as the domains store them."""
    now = utcnow()
    with unit_of_work(rt.sessions) as session:
        session.info["ctx"] = RequestContext(rt.policy.version)
        view = profiles.create(
            session,
            crypto=rt.crypto,
            policy=rt.policy,
            principal=APP,
            purpose="service_delivery",
            values={"email": f"heavy{n}@example.cn", "city": "上海", "external_id": f"h{n}"},
        )
        sid = view.id
        keys = rt.crypto.keys_for([sid])
        rows = []
        for i in range(events):
            eid = uuid.uuid4().hex
            sealed = {}
            if i % 10 == 0:
                sealed["address"] = keys.seal(sid, EVENT_TABLE, f"{eid}.address", '"静安路 1 号"')
            rows.append(
                {
                    "id": eid,
                    "timestamp": now - timedelta(milliseconds=i),
                    "source_id": "src_bench",
                    "message_id": f"m-{eid}",
                    "subject_id": sid,
                    "anonymous_key": None,
                    "type": "track",
                    "name": "Product Viewed",
                    "received_at": now,
                    "properties": {"sku": f"SKU-{i % 500}", "price": 99.5},
                    "sealed": sealed,
                    "context": {"locale": "zh-CN"},
                }
            )
        insert_events(session, rows)
        for _ in range(feedback):
            session.add(
                Feedback(
                    id=str(uuid.uuid4()),
                    subject_id=sid,
                    kind="survey",
                    purpose="customer_care",
                    csat=4,
                    comment_sealed=keys.seal(sid, "feedback", "comment", "送货很快，包装完好"),  # noqa: RUF001
                    reopen_count=0,
                    created_by="client:cli_bench",
                    created_at=now,
                    updated_at=now,
                )
            )
    return sid


def test_erase_and_access_bundle_10k(rt: Runtime) -> None:
    for n in range(5):  # other customers' rows around the one erased
        _subject(rt, 100 + n, events=2_000, feedback=10)
    target, twin = _subject(rt, 1), _subject(rt, 2)

    with unit_of_work(rt.sessions) as session:
        session.info["ctx"] = RequestContext(rt.policy.version)
        began = time.perf_counter()
        rows = session.execute(select(Event).where(Event.subject_id == target)).all()
        base_read = time.perf_counter() - began
        assert len(rows) == EVENTS
    with unit_of_work(rt.sessions) as session:
        session.info["ctx"] = RequestContext(rt.policy.version)
        began = time.perf_counter()
        built = bundle.build(session, crypto=rt.crypto, policy=rt.policy, subject_id=target)
        body = bundle.as_json(built)
        t_bundle = time.perf_counter() - began
    assert len(built["events"]) == EVENTS and len(built["feedback"]) == FEEDBACK
    opened = [e["properties"].get("address") for e in json.loads(body)["events"]]
    assert opened.count("静安路 1 号") == EVENTS // 10
    print(
        f"\nbench: access_bundle_10k {t_bundle:.3f} s ratio={t_bundle / base_read:.2f} "
        f"baseline=plain SELECT of the subject's {EVENTS} event rows ({base_read:.3f} s)"
    )

    began = time.perf_counter()
    with unit_of_work(rt.sessions) as session:
        session.info["ctx"] = RequestContext(rt.policy.version)
        session.execute(delete(Event).where(Event.subject_id == twin))
        session.execute(delete(Feedback).where(Feedback.subject_id == twin))
    base_delete = time.perf_counter() - began
    began = time.perf_counter()
    with unit_of_work(rt.sessions) as session:
        session.info["ctx"] = RequestContext(rt.policy.version)
        result = erasure.erase_subject(
            session,
            crypto=rt.crypto,
            policy=rt.policy,
            actor="operator:bench",
            subject_id=target,
            reason="bench",
        )
    t_erase = time.perf_counter() - began
    assert result.erased and result.deleted["event"] == EVENTS
    assert result.deleted["feedback"] == FEEDBACK
    with unit_of_work(rt.sessions) as session:
        left = session.scalar(select(func.count()).select_from(Event))
        assert left == 5 * 2_000
    print(
        f"bench: erase_subject_10k {t_erase:.3f} s ratio={t_erase / base_delete:.2f} "
        f"baseline=plain DELETE of the same {EVENTS} events and {FEEDBACK} feedback rows "
        f"({base_delete:.3f} s)"
    )
    assert t_bundle <= 2.0, f"access bundle took {t_bundle:.2f} s"
    assert t_erase <= 1.0, f"erasure took {t_erase:.2f} s"
