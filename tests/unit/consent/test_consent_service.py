"""The consent service: evidence without full IPs, and concurrent writers on one subject."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from cdp.api import Runtime
from cdp.audit.service import RequestContext, verify_chain
from cdp.consent import service
from cdp.consent.models import ConsentCurrent, ConsentRecord
from cdp.db import unit_of_work

WRITES = 1000
THREADS = 12


@pytest.mark.parametrize(
    ("ip", "prefix"),
    [
        ("203.0.113.57", "203.0.113.0/24"),
        (" 10.1.2.3 ", "10.1.2.0/24"),
        ("2001:db8:1234:5678::1", "2001:db8:1234::/48"),
        ("::ffff:198.51.100.9", "198.51.100.0/24"),
    ],
)
def test_ip_prefix_keeps_only_the_network(ip: str, prefix: str) -> None:
    assert service.ip_prefix(ip) == prefix


@pytest.mark.parametrize("bad", ["", "localhost", "300.1.1.1", "1.2.3.4/24"])
def test_ip_prefix_refuses_what_is_not_an_address(bad: str) -> None:
    with pytest.raises(ValueError):
        service.ip_prefix(bad)


def test_concurrent_grants_and_withdrawals_leave_the_last_commit_current(
    client: TestClient, token_for: Callable[..., dict[str, str]], runtime: Runtime
) -> None:
    headers = {**token_for("app"), "X-Purpose": "service_delivery"}
    created = client.post("/v1/profiles", json={"external_id": "busy"}, headers=headers)
    subject = created.json()["id"]
    rng = random.Random(1234)
    states = [rng.choice(["granted", "withdrawn"]) for _ in range(WRITES)]
    commit_order: list[tuple[int, str]] = []
    order = threading.Lock()

    def write(index: int) -> None:
        session = runtime.sessions()
        session.info["ctx"] = RequestContext(runtime.policy.version)
        try:
            service.record(
                session,
                policy=runtime.policy,
                actor=f"client:writer-{index % THREADS}",
                subject_id=subject,
                change=service.ConsentInput(
                    purpose="marketing",
                    state=states[index],  # type: ignore[arg-type]
                    notice_id="privacy-notice",
                    notice_version=2,
                    channel="app",
                    text_sha256="cd" * 32,
                    locale="zh-CN",
                ),
            )
            # A writer holds the subject's lock until it commits, so commits happen in this
            # order; noting it under a lock records exactly the order the database saw.
            with order:
                session.commit()
                commit_order.append((index, states[index]))
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(write, range(WRITES)))

    with unit_of_work(runtime.sessions) as session:
        history = list(
            session.scalars(
                select(ConsentRecord)
                .where(ConsentRecord.subject_id == subject)
                .order_by(ConsentRecord.at, ConsentRecord.id)
            )
        )
        current = service.current(session, [subject])[subject]["marketing"]
        row = session.get(ConsentCurrent, (subject, "marketing"))
        report = verify_chain(session)
    assert len(history) == WRITES == len(commit_order)
    # The derived state is the last committed write, and history follows commit order.
    assert current.state == commit_order[-1][1]
    # consent_current, which decisions and member lists read, holds that last record.
    assert row is not None and (row.record_id, row.state) == (history[-1].id, current.state)
    assert [r.state for r in history] == [state for _, state in commit_order]
    assert report.first_bad_seq is None and report.checked >= WRITES
