"""Group commit: the tracking requests a worker receives at the same time share one
transaction, so a single-event /v1/track costs a share of a batch, not a batch of its own.

Each request is checked against the plan in its own thread (a body with nothing usable is
refused at once), queued, and answered only after the transaction holding it has committed:
nothing is acknowledged before it is durable. A committer thread takes whatever is queued
when it is free (no added wait when the worker is idle) and stores it as one batch; a few
such threads overlap their database round trips. If a transaction fails, each of its requests
is retried in a transaction of its own, so one bad request cannot fail the others. Threads
exit when idle and start again on the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from cdp.audit.service import RequestContext
from cdp.crypto import Crypto
from cdp.db import unit_of_work
from cdp.errors import ServiceUnavailable
from cdp.events import service
from cdp.events.service import IngestResult, Prepared
from cdp.policy import Policy

log = logging.getLogger("cdp.events")
# Messages stored in one transaction at most; more wait for the next round.
MAX_MESSAGES = 2000
IDLE_SECONDS = 2.0
# Committer threads per worker: enough to overlap round trips, few enough to keep batches big.
THREADS = 3
# Another thread starts only when this many messages wait: single events are better served by
# one thread taking them all at once than by several taking two each.
BACKLOG = 100
WAIT_SECONDS = 60.0


@dataclass(eq=False)
class _Job:
    prepared: Prepared
    redo: Callable[[], Prepared]
    # Called by the committer thread once the job is settled (committed or failed).
    settled: Callable[[], None]
    error: BaseException | None = None


class GroupCommit:
    """One per worker process (per Runtime); thread-safe."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        crypto: Crypto,
        policy: Callable[[], Policy],
        *,
        idle_seconds: float = IDLE_SECONDS,
        threads: int = THREADS,
    ) -> None:
        self._sessions = sessions
        self._crypto = crypto
        self._policy = policy
        self._idle = idle_seconds
        self._max_threads = threads
        self._queue: list[_Job] = []
        self._cond = threading.Condition()
        self._threads = 0
        self._waiting = 0

    def submit(self, prepared: Prepared, redo: Callable[[], Prepared]) -> IngestResult:
        """Stores a prepared request with whatever else is queued; returns once committed.
        `redo` prepares the request again, for a retry in a transaction of its own."""
        done = threading.Event()
        job = _Job(prepared, redo, done.set)
        self._enqueue(job)
        if not done.wait(WAIT_SECONDS):
            raise ServiceUnavailable("the event store did not answer in time; retry")
        return self._outcome(job)

    async def submit_async(self, prepared: Prepared, redo: Callable[[], Prepared]) -> IngestResult:
        """submit() for the event loop: waits for the commit without holding a thread."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def resolve() -> None:
            if not done.done():
                done.set_result(None)

        def settled() -> None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(resolve)

        job = _Job(prepared, redo, settled)
        self._enqueue(job)
        try:
            await asyncio.wait_for(asyncio.shield(done), WAIT_SECONDS)
        except TimeoutError:
            raise ServiceUnavailable("the event store did not answer in time; retry") from None
        return self._outcome(job)

    @staticmethod
    def _outcome(job: _Job) -> IngestResult:
        if job.error is not None:
            raise job.error
        return job.prepared.result

    def _enqueue(self, job: _Job) -> None:
        with self._cond:
            self._queue.append(job)
            backlog = sum(len(j.prepared.items) for j in self._queue)
            wanted = self._threads == 0 or (
                self._threads < self._max_threads and backlog >= BACKLOG
            )
            if self._waiting == 0 and wanted:
                self._threads += 1
                threading.Thread(target=self._run, name="cdp-group-commit", daemon=True).start()
            self._cond.notify()

    def _take(self) -> list[_Job] | None:
        with self._cond:
            while not self._queue:
                self._waiting += 1
                woken = self._cond.wait(self._idle)
                self._waiting -= 1
                if not woken and not self._queue:
                    self._threads -= 1
                    return None
            taken: list[_Job] = []
            size = 0
            while self._queue and (not taken or size < MAX_MESSAGES):
                job = self._queue.pop(0)
                taken.append(job)
                size += len(job.prepared.items)
            return taken

    def _run(self) -> None:
        while True:
            jobs = self._take()
            if jobs is None:
                return
            try:
                self._commit(jobs)
            except BaseException as exc:  # never leave a request waiting
                for job in jobs:
                    job.error = job.error or exc
            finally:
                for job in jobs:
                    job.settled()

    def _store(self, jobs: list[_Job]) -> None:
        policy = self._policy()
        with unit_of_work(self._sessions) as session:
            session.info["ctx"] = RequestContext(policy.version)
            service.store(
                session, crypto=self._crypto, policy=policy, jobs=[j.prepared for j in jobs]
            )

    def _commit(self, jobs: list[_Job]) -> None:
        try:
            self._store(jobs)
            return
        except Exception as exc:
            if len(jobs) == 1:
                jobs[0].error = exc
                return
            log.warning("group commit failed; retrying %d requests one by one", len(jobs))
        for job in jobs:
            try:
                job.prepared = job.redo()
                self._store([job])
            except Exception as exc:
                job.error = exc
