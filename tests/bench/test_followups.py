"""Scheduling a 100,000-member follow-up plan on PostgreSQL (`make bench`).

- followup_schedule_100k: followups.service.schedule for a plan of 100,000 profiles, each
  with a phone and a current customer_care consent (a tenth with an older withdrawal in its
  history), committed: the consent, restriction and channel checks run in the INSERT ...
  SELECT. Baseline: a plain INSERT ... SELECT of the same rows with no checks. Target <= 5 s.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text

from cdp.api import Runtime
from cdp.audit.service import RequestContext
from cdp.auth.principal import Principal
from cdp.consent.models import ConsentRecord
from cdp.db import unit_of_work, utcnow
from cdp.followups import service
from cdp.followups.models import FollowupPlanMember, FollowupTask
from cdp.profiles.models import Identity, Profile
from tests.bench.runtime import pg_runtime
from tests.pgcluster import PgCluster

pytestmark = pytest.mark.slow

MEMBERS = 100_000
CHUNK = 10_000
APP = Principal(
    kind="client",
    id="cli_bench",
    role="app",
    scopes=frozenset({"followups:write"}),
    purposes=frozenset({"customer_care"}),
)


@pytest.fixture
def rt(tmp_path: Path, pg_cluster: PgCluster) -> Iterator[Runtime]:
    with pg_runtime(tmp_path, pg_cluster, "bench_followups") as runtime:
        yield runtime


def _seed(rt: Runtime) -> list[str]:
    """Profiles with a phone identity and a current consent, through Core bulk inserts."""
    version = rt.policy.notices["privacy-notice"].latest.version
    now = utcnow()
    ids = [str(uuid.uuid4()) for _ in range(MEMBERS)]
    with rt.engine.begin() as conn:
        for i in range(0, MEMBERS, CHUNK):
            chunk = ids[i : i + CHUNK]
            conn.execute(
                insert(Profile),
                [
                    {"id": s, "plain": {}, "sealed": {}, "created_at": now, "updated_at": now}
                    for s in chunk
                ],
            )
            conn.execute(
                insert(Identity),
                [
                    {
                        "subject_id": s,
                        "kind": "phone",
                        "blind_index": uuid.uuid4().hex * 2,
                        "sealed_value": "v1.bench",
                        "created_at": now,
                    }
                    for s in chunk
                ],
            )
            records = []
            for n, s in enumerate(chunk):
                history = ["withdrawn", "granted"] if n % 10 == 0 else ["granted"]
                for k, state in enumerate(history):
                    records.append(
                        {
                            "subject_id": s,
                            "purpose": "customer_care",
                            "state": state,
                            "notice_id": "privacy-notice",
                            "notice_version": version,
                            "channel": "app",
                            "evidence": {"text_sha256": "ab" * 32, "locale": "zh-CN"},
                            "separate": False,
                            "guardian": None,
                            "actor": "client:cli_bench",
                            "policy_version": rt.policy.version,
                            "at": now - timedelta(days=len(history) - k),
                        }
                    )
            conn.execute(insert(ConsentRecord), records)
        conn.execute(text("ANALYZE"))
    return ids


def _plan(rt: Runtime, ids: list[str]) -> str:
    with unit_of_work(rt.sessions) as session:
        session.info["ctx"] = RequestContext(rt.policy.version)
        view = service.create_plan(
            session,
            policy=rt.policy,
            principal=APP,
            data=service.PlanInput(
                name="bench",
                purpose="customer_care",
                channel="phone",
                owner="agent-1",
                start_at=utcnow() + timedelta(days=1),
                subject_ids=ids,
            ),
        )
        return view.plan.id


def test_schedule_100k_member_plan_on_postgresql(rt: Runtime) -> None:
    ids = _seed(rt)
    ours_plan, base_plan = _plan(rt, ids), _plan(rt, ids)
    with rt.engine.begin() as conn:
        conn.execute(text("ANALYZE"))

    started = time.perf_counter()
    with unit_of_work(rt.sessions) as session:
        session.info["ctx"] = RequestContext(rt.policy.version)
        result = service.schedule(session, policy=rt.policy, principal=APP, plan_id=ours_plan)
    ours = time.perf_counter() - started
    assert result.created == MEMBERS and result.eligible == MEMBERS

    member = FollowupPlanMember
    now = utcnow()
    started = time.perf_counter()
    with rt.engine.begin() as conn:
        conn.execute(
            insert(FollowupTask).from_select(
                [
                    "plan_id",
                    "subject_id",
                    "occurrence",
                    "purpose",
                    "channel",
                    "owner",
                    "due_at",
                    "status",
                    "created_at",
                ],
                select(
                    member.plan_id,
                    member.subject_id,
                    func.cast(1, FollowupTask.occurrence.type),
                    func.cast("customer_care", FollowupTask.purpose.type),
                    func.cast("phone", FollowupTask.channel.type),
                    func.cast("agent-1", FollowupTask.owner.type),
                    func.cast(now, FollowupTask.due_at.type),
                    func.cast("open", FollowupTask.status.type),
                    func.cast(now, FollowupTask.created_at.type),
                ).where(member.plan_id == base_plan),
            )
        )
    base = time.perf_counter() - started
    with rt.engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(FollowupTask)).scalar_one()
    assert total == 2 * MEMBERS
    print(
        f"\nbench: followup_schedule_100k {ours:.2f} s ratio={ours / base:.2f} "
        f"baseline=plain INSERT … SELECT of the same rows ({base:.2f} s)"
    )
    assert ours <= 5.0, f"scheduling 100,000 tasks took {ours:.2f} s, over 5 s"
