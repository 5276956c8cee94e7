"""Token attacks, each forged here, and the client-credentials grant."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from jose import jwt

from cdp.api import Runtime

SECRET = "test-signing-secret-that-is-long-enough-0123456789"


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _claims(rt: Runtime, sub: str, **over: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {
        "iss": "cdp",
        "aud": "cdp-api",
        "sub": sub,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": "j-1",
        "scope": "policies:read clients:admin",
        "role": "admin",
        "purposes": list(rt.policy.purposes),
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def _kid(rt: Runtime) -> str:
    return next(iter(rt.tokens._keys))


def _forge(rt: Runtime, claims: dict[str, object], key: str = SECRET, alg: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": _kid(rt)})


def _problem(resp: object, status: int, code: str) -> None:
    assert resp.status_code == status, resp.text  # type: ignore[attr-defined]
    assert resp.headers["content-type"].startswith("application/problem+json")  # type: ignore[attr-defined]
    body = resp.json()  # type: ignore[attr-defined]
    assert body["status"] == status and body["code"] == code and body["detail"]


@pytest.fixture
def admin_id(make_client: Callable[..., tuple[str, str]]) -> str:
    return make_client("admin")[0]


def _get(client: TestClient, token: str) -> object:
    return client.get("/v1/clients", headers={"Authorization": f"Bearer {token}"})


def test_valid_forged_with_real_key_is_accepted(
    client: TestClient, runtime: Runtime, admin_id: str
) -> None:
    # The control: the same forging path with the right key and claims works.
    assert _get(client, _forge(runtime, _claims(runtime, admin_id))).status_code == 200  # type: ignore[attr-defined]


def test_alg_none_rejected(client: TestClient, runtime: Runtime, admin_id: str) -> None:
    token = f"{_b64({'alg': 'none', 'kid': _kid(runtime)})}.{_b64(_claims(runtime, admin_id))}."
    _problem(_get(client, token), 401, "invalid_token")


def test_hs256_signed_with_wrong_key_rejected(
    client: TestClient, runtime: Runtime, admin_id: str
) -> None:
    token = _forge(runtime, _claims(runtime, admin_id), key="another-secret-another-secret-12345")
    _problem(_get(client, token), 401, "invalid_token")


def test_hs256_signed_with_public_key_rejected(tmp_path, settings, db_url) -> None:  # type: ignore[no-untyped-def]
    # Algorithm confusion: the server signs RS256; an attacker signs HS256 with its public key.
    from tests.conftest import _register

    from cdp.app import create_app

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "jwt.pem").write_bytes(pem)
    rs_settings = settings.model_copy(update={"jwt_private_key_file": tmp_path / "jwt.pem"})
    app = create_app(rs_settings)
    rt: Runtime = app.state.runtime
    with TestClient(app, raise_server_exceptions=False) as c:
        cid, secret = _register(rt, "admin")
        good = c.post(
            "/v1/oauth/token",
            data={"grant_type": "client_credentials", "client_id": cid, "client_secret": secret},
        ).json()["access_token"]
        assert _get(c, good).status_code == 200  # type: ignore[attr-defined]
        jwks = c.get("/v1/oauth/jwks").json()["keys"]
        assert jwks and jwks[0]["alg"] == "RS256" and "d" not in jwks[0]
        public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        header = {"alg": "HS256", "kid": jwks[0]["kid"], "typ": "JWT"}
        import hashlib
        import hmac

        signing_input = f"{_b64(header)}.{_b64(_claims(rt, cid))}"
        sig = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
        forged = signing_input + "." + base64.urlsafe_b64encode(sig).decode().rstrip("=")
        _problem(_get(c, forged), 401, "invalid_token")
    rt.engine.dispose()


@pytest.mark.parametrize("missing", ["aud", "exp", "iat", "sub", "jti", "iss"])
def test_missing_required_claim_rejected(
    client: TestClient, runtime: Runtime, admin_id: str, missing: str
) -> None:
    claims = _claims(runtime, admin_id)
    del claims[missing]
    _problem(_get(client, _forge(runtime, claims)), 401, "invalid_token")


def test_wrong_audience_rejected(client: TestClient, runtime: Runtime, admin_id: str) -> None:
    token = _forge(runtime, _claims(runtime, admin_id, aud="someone-else"))
    _problem(_get(client, token), 401, "invalid_token")


def test_expired_rejected(client: TestClient, runtime: Runtime, admin_id: str) -> None:
    now = int(time.time())
    token = _forge(runtime, _claims(runtime, admin_id, iat=now - 900, nbf=now - 900, exp=now - 60))
    _problem(_get(client, token), 401, "invalid_token")


def test_future_iat_rejected(client: TestClient, runtime: Runtime, admin_id: str) -> None:
    now = int(time.time())
    token = _forge(runtime, _claims(runtime, admin_id, iat=now + 3600, nbf=now, exp=now + 3900))
    _problem(_get(client, token), 401, "invalid_token")


def test_lifetime_over_policy_rejected(client: TestClient, runtime: Runtime, admin_id: str) -> None:
    token = _forge(runtime, _claims(runtime, admin_id, exp=int(time.time()) + 30 * 86400))
    _problem(_get(client, token), 401, "invalid_token")


def test_unknown_kid_rejected(client: TestClient, runtime: Runtime, admin_id: str) -> None:
    token = jwt.encode(
        _claims(runtime, admin_id), SECRET, algorithm="HS256", headers={"kid": "hs-unknown"}
    )
    _problem(_get(client, token), 401, "invalid_token")


def test_oversize_token_rejected(client: TestClient, runtime: Runtime, admin_id: str) -> None:
    token = _forge(runtime, _claims(runtime, admin_id, padding="x" * 9000))
    _problem(_get(client, token), 401, "invalid_token")


def test_garbage_token_rejected(client: TestClient) -> None:
    for token in ("abc", "a.b.c", "....", "e30.e30.e30"):
        _problem(_get(client, token), 401, "invalid_token")


def test_revoked_client_token_stops_at_once(
    client: TestClient, token_for: Callable[..., dict[str, str]]
) -> None:
    admin = token_for("admin")
    victim_headers = token_for("admin")
    victim_id = client.get("/v1/clients", headers=victim_headers).json()["items"]
    me = [c for c in victim_id if c["revoked_at"] is None]
    assert len(me) == 2
    # Find the victim's own id from its token's subject.
    sub = jwt.get_unverified_claims(victim_headers["Authorization"].split()[1])["sub"]
    assert client.delete(f"/v1/clients/{sub}", headers=admin).status_code == 200
    _problem(client.get("/v1/clients", headers=victim_headers), 401, "invalid_token")


def test_token_grant_and_claims(
    client: TestClient, make_client: Callable[..., tuple[str, str]], runtime: Runtime
) -> None:
    cid, secret = make_client("support")
    resp = client.post(
        "/v1/oauth/token",
        data={"grant_type": "client_credentials", "client_id": cid, "client_secret": secret},
    )
    assert resp.status_code == 200
    body = resp.json()
    claims = jwt.get_unverified_claims(body["access_token"])
    assert claims["sub"] == cid and claims["role"] == "support"
    assert set(claims["scope"].split()) == set(runtime.policy.roles["support"].scopes)
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0


def test_token_grant_with_basic_auth_and_narrowed_scope(
    client: TestClient, make_client: Callable[..., tuple[str, str]]
) -> None:
    cid, secret = make_client("admin")
    basic = base64.b64encode(f"{cid}:{secret}".encode()).decode()
    resp = client.post(
        "/v1/oauth/token",
        data={"grant_type": "client_credentials", "scope": "policies:read"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert resp.status_code == 200 and resp.json()["scope"] == "policies:read"
    token = resp.json()["access_token"]
    _problem(_get(client, token), 403, "insufficient_scope")


def test_wrong_secret_and_unknown_client_look_the_same(
    client: TestClient, make_client: Callable[..., tuple[str, str]]
) -> None:
    cid, _ = make_client("admin")
    for client_id, secret in ((cid, "cs_wrong"), ("cli_doesnotexist", "cs_wrong")):
        resp = client.post(
            "/v1/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
            },
        )
        _problem(resp, 401, "invalid_client")
        assert client_id not in resp.text


def test_unsupported_grant_and_missing_fields(client: TestClient) -> None:
    resp = client.post("/v1/oauth/token", data={"grant_type": "password"})
    _problem(resp, 400, "bad_request")
    _problem(client.post("/v1/oauth/token", data={}), 422, "validation_error")


def test_scope_not_granted_is_refused(
    client: TestClient, make_client: Callable[..., tuple[str, str]]
) -> None:
    cid, secret = make_client("tracker")
    resp = client.post(
        "/v1/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": cid,
            "client_secret": secret,
            "scope": "clients:admin",
        },
    )
    _problem(resp, 401, "invalid_client")
