"""Deciding with the subject's consent, in-process on SQLite (`make bench`).

- decide_with_consent: consent.service.decide for a consent-based purpose, reading the
  subject's status and current consent from the database on every call (no cache, so a
  withdrawal stops the next request), against policy.decide alone. Target >= 20,000/s.
- profile_read_consent_overhead: profiles.service.read (decision, decryption, audit entry,
  commit) with the consent lookup, against the same read whose decision skips the lookup, same
  purpose and fields, alternated in the same run. Target: the lookup adds <= 20 %.
"""

from __future__ import annotations

import base64
import os
import random
import shutil
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cdp.api import Runtime
from cdp.app import build_runtime, start
from cdp.audit.service import RequestContext
from cdp.auth.principal import Principal
from cdp.config import Settings
from cdp.consent import service as consent
from cdp.db import unit_of_work
from cdp.policy import decide as policy_decide
from cdp.profiles import service as profiles

# Benchmarks: `make bench` runs them, `make test` (-m "not slow") does not.
pytestmark = pytest.mark.slow

SUBJECTS = 2_000
PURPOSE = "marketing"
APP = Principal(
    kind="client",
    id="cli_bench",
    role="app",
    scopes=frozenset({"profiles:read", "profiles:write"}),
    purposes=frozenset({"service_delivery", PURPOSE}),
)


@pytest.fixture
def rt(tmp_path: Path, sqlite_template: Path) -> Iterator[Runtime]:
    shutil.copyfile(sqlite_template, tmp_path / "cdp.db")
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'cdp.db'}",
        keystore_url=f"sqlite:///{tmp_path / 'keys.db'}",
        data_dir=tmp_path,
        jwt_secret="bench-" + "c" * 40,
        master_key="k1:" + base64.b64encode(os.urandom(32)).decode(),
        log_level="WARNING",
    )
    runtime = build_runtime(settings)
    start(runtime)
    yield runtime
    runtime.engine.dispose()
    runtime.keystore.dispose()


def _seed(rt: Runtime) -> list[str]:
    """Profiles with a consent history: a few records per purpose, the latest a grant."""
    ids = []
    with unit_of_work(rt.sessions) as session:
        session.info["ctx"] = RequestContext(rt.policy.version)
        for i in range(SUBJECTS):
            view = profiles.create(
                session,
                crypto=rt.crypto,
                policy=rt.policy,
                principal=APP,
                purpose="service_delivery",
                values={"email": f"u{i}@example.cn", "name": f"张伟{i}", "city": "上海"},
            )
            ids.append(view.id)
            for name, states in (
                (PURPOSE, ("granted", "withdrawn", "granted")),
                ("analytics", ("refused", "granted")),
                ("customer_care", ("granted",)),
            ):
                for state in states:
                    session.add(
                        consent.new_record(
                            rt.policy,
                            "client:cli_bench",
                            view.id,
                            consent.ConsentInput(
                                purpose=name,
                                state=state,  # type: ignore[arg-type]
                                notice_id="privacy-notice",
                                notice_version=2,
                                channel="app",
                                text_sha256="ab" * 32,
                                locale="zh-CN",
                            ),
                            consent.utcnow(),
                        )
                    )
    return ids


def _rate(fn: Callable[[], Any], seconds: float = 2.0) -> float:
    fn()
    n, start_at = 0, time.perf_counter()
    while time.perf_counter() - start_at < seconds:
        for _ in range(100):
            fn()
        n += 100
    return n / (time.perf_counter() - start_at)


def test_decide_with_consent_lookup(rt: Runtime) -> None:
    ids = _seed(rt)
    pick = random.Random(7)
    with unit_of_work(rt.sessions) as session:
        session.info["ctx"] = RequestContext(rt.policy.version)

        def with_consent() -> None:
            decision = consent.decide(
                session,
                policy=rt.policy,
                principal=APP,
                purpose=PURPOSE,
                subject=ids[pick.randrange(SUBJECTS)],
            )
            assert decision.allowed_fields

        def policy_only() -> None:
            policy_decide(rt.policy, APP, PURPOSE, subject=ids[pick.randrange(SUBJECTS)])

        rate, base = _rate(with_consent), _rate(policy_only)
    print(
        f"\nbench: decide_with_consent {rate:.0f} decisions/s ratio={rate / base:.3f} "
        f"baseline=policy.decide without the subject's state ({base:.0f}/s)"
    )
    assert rate >= 20_000, f"{rate:.0f} decisions/s is under the 20,000/s target"


def test_profile_read_consent_overhead(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = _seed(rt)
    pick = random.Random(11)
    real = consent.decide

    def policy_only(session: Any, **kw: Any) -> Any:
        return policy_decide(
            kw["policy"], kw["principal"], kw["purpose"], subject=kw.get("subject")
        )

    def read_once() -> None:
        with unit_of_work(rt.sessions) as session:
            session.info["ctx"] = RequestContext(rt.policy.version)
            view = profiles.read(
                session,
                crypto=rt.crypto,
                policy=rt.policy,
                principal=APP,
                purpose=PURPOSE,
                subject_id=ids[pick.randrange(SUBJECTS)],
            )
            assert "email" in view.values

    def timed(lookup: Callable[..., Any], n: int = 400) -> float:
        monkeypatch.setattr(consent, "decide", lookup)
        start_at = time.perf_counter()
        for _ in range(n):
            read_once()
        return (time.perf_counter() - start_at) / n

    read_once()
    with_lookup, without = [], []
    for _ in range(6):  # alternated, so drift (WAL growth, caches) hits both alike
        with_lookup.append(timed(real))
        without.append(timed(policy_only))
    monkeypatch.setattr(consent, "decide", real)
    t_with, t_without = statistics.median(with_lookup), statistics.median(without)
    added = t_with / t_without - 1
    print(
        f"\nprofile read: {1 / t_with:.0f}/s with the consent lookup, "
        f"{1 / t_without:.0f}/s without (median of 6 rounds of 400)"
    )
    print(
        f"bench: profile_read_consent_overhead {added * 100:.1f} % ratio={t_with / t_without:.3f} "
        f"baseline=the same read deciding by policy alone ({1 / t_without:.0f} reads/s)"
    )
    assert added <= 0.20, f"the consent lookup adds {added:.0%} to a profile read"
