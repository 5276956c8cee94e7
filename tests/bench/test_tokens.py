"""Token issue and validation rates, each against a bare baseline measured in the same run.

Run with `make bench`. Issue goes through the real endpoint (scrypt at production cost,
audit entry, commit) and is compared with one bare scrypt of the same cost; validation goes
through the hardened wrapper and is compared with a bare python-jose decode of the same token.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from jose import jwt

from cdp.api import Runtime
from cdp.app import create_app
from cdp.config import Settings
from tests.conftest import _register


def _rate(fn: Callable[[], object], seconds: float = 2.0) -> float:
    fn()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - start)


@pytest.fixture
def bench_app(tmp_path: Path, sqlite_template: Path) -> TestClient:
    import shutil

    shutil.copyfile(sqlite_template, tmp_path / "cdp.db")
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'cdp.db'}",
        keystore_url=f"sqlite:///{tmp_path / 'keys.db'}",
        data_dir=tmp_path,
        jwt_secret="bench-secret-" + "x" * 40,
        log_level="WARNING",
        rate_limit_per_minute=10**9,
        rate_limit_burst=10**9,
    )
    return TestClient(create_app(settings))


def test_token_issue_rate(bench_app: TestClient) -> None:
    with bench_app as client:
        rt: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
        cid, secret = _register(rt, "app")
        form = {"grant_type": "client_credentials", "client_id": cid, "client_secret": secret}

        def issue() -> None:
            assert client.post("/v1/oauth/token", data=form).status_code == 200

        def bare_scrypt() -> None:
            hashlib.scrypt(b"x" * 40, salt=b"s" * 16, n=2**14, r=8, p=1, maxmem=2**27, dklen=32)

        rate, base = _rate(issue), _rate(bare_scrypt)
    print(
        f"\nbench: token_issue {rate:.1f} tokens/s ratio={rate / base:.3f} "
        f"baseline=bare scrypt n=2^14 ({base:.1f}/s)"
    )


def test_token_validation_rate(bench_app: TestClient) -> None:
    with bench_app as client:
        rt: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
        cid, secret = _register(rt, "app")
        form = {"grant_type": "client_credentials", "client_id": cid, "client_secret": secret}
        token = client.post("/v1/oauth/token", data=form).json()["access_token"]
        secret_key = rt.settings.jwt_secret

        def wrapped() -> None:
            rt.tokens.verify(token)

        def bare() -> None:
            jwt.decode(token, secret_key, algorithms=["HS256"], audience="cdp-api")

        rate, base = _rate(wrapped), _rate(bare)
        headers = {"Authorization": f"Bearer {token}"}
        request_rate = _rate(lambda: client.get("/v1/policies/purposes", headers=headers))
    print(f"\nauthenticated GET /v1/policies/purposes in-process: {request_rate:.0f} req/s")
    print(
        f"bench: token_validate {rate:.0f} tokens/s ratio={rate / base:.3f} "
        f"baseline=bare python-jose decode ({base:.0f}/s)"
    )
