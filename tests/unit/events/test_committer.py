"""Group commit: concurrent requests share a transaction; one that fails it is retried alone
and the others are stored all the same."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cdp.api import Runtime
from cdp.events import service
from cdp.events.committer import GroupCommit
from cdp.events.service import Message, Prepared

NOW = datetime(2026, 11, 25, tzinfo=UTC)
YES = {"consent": {"categoryPreferences": {"analytics": True}}}


def _prepare(rt: Runtime, source: str, message_id: str) -> Prepared:
    msg = Message(
        index=0,
        type="track",
        message_id=message_id,
        anonymous_id="v",
        name="Signed In",
        context=YES,
    )
    return service.prepare(
        crypto=rt.crypto, policy=rt.policy, source_id=source, messages=[msg], received_at=NOW
    )


def test_one_failing_request_does_not_fail_the_others(
    client: TestClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `client` runs the app's start-up: migrated key store and database.
    real = service.store

    def store(session: Any, **kw: Any) -> None:
        if any(job.source_id == "src_bad" for job in kw["jobs"]):
            raise RuntimeError("the database refused it")
        real(session, **kw)

    monkeypatch.setattr(service, "store", store)
    group = GroupCommit(runtime.sessions, runtime.crypto, lambda: runtime.policy)
    results: dict[str, Any] = {}
    ready = threading.Barrier(4)

    def send(source: str, message_id: str) -> None:
        job = _prepare(runtime, source, message_id)
        ready.wait()
        try:
            results[message_id] = group.submit(job, lambda: _prepare(runtime, source, message_id))
        except RuntimeError as exc:
            results[message_id] = exc

    threads = [
        threading.Thread(target=send, args=(source, mid))
        for source, mid in (("src_a", "a"), ("src_b", "b"), ("src_bad", "c"), ("src_a", "d"))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert isinstance(results["c"], RuntimeError)
    assert {k: v.accepted for k, v in results.items() if k != "c"} == {"a": 1, "b": 1, "d": 1}
    # The same message id again is a duplicate, in a batch of its own or shared.
    again = group.submit(_prepare(runtime, "src_a", "a"), lambda: _prepare(runtime, "src_a", "a"))
    assert (again.accepted, again.duplicates) == (0, 1)
