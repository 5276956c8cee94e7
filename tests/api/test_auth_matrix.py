"""The 401, 403 and 422 cases of every operation, found from the app's routes.

A new endpoint is covered without editing this file: it must refuse a missing token, refuse a
token without its scope, and refuse a malformed JSON body without storing anything. Customer
(self-service) operations take only customer tokens, which count as the scope `self`: an API
client's token there is 403, and a customer token on any client operation is 401.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.security import HTTPBearer
from fastapi.testclient import TestClient
from sqlalchemy import func, select, table
from sqlalchemy import inspect as sa_inspect

from cdp.api import Runtime, current_subject
from cdp.app import create_app
from cdp.config import Settings

# Operations anyone may call; every other operation needs a bearer token.
PUBLIC = {
    "healthz",
    "readyz",
    "metrics",
    "issueToken",
    "getJwks",
    # A one-time code or a signed download link is the credential (tests/api/test_rights.py).
    "startVerification",
    "confirmVerification",
    "downloadRightsExport",
}
# The Segment-compatible operations take a source's write key (body, Basic or X-Write-Key), or a
# bearer token checked in the route; their 401, 403 and 400 cases are in tests/api/test_segment.py.
WRITE_KEY = {
    "segmentBatch",
    "segmentTrack",
    "segmentIdentify",
    "segmentPage",
    "segmentScreen",
    "segmentAlias",
    "segmentGroup",
}
# Operations any valid token may call (API.md, Platform), customers' too; every other one
# demands a scope.
ANY_TOKEN = {"getPolicy", "listPurposes", "getNotice"}
# The scope a customer token stands for; only /v1/self operations ask for it.
SELF = "self"
# Placeholder for path parameters: valid as a string and as a UUID, naming nothing stored.
MISSING_ID = "00000000-0000-4000-8000-000000000000"
# Path parameters that name policy, not stored data: the demo policy's value, so that an
# any-token operation can answer 200.
POLICY_PATH_VALUES = {"notice_id": "privacy-notice"}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    uses_bearer: bool
    scope: str | None
    body_example: dict[str, Any] | None  # set when the operation takes a JSON object body
    spec: dict[str, Any]

    def purpose(self) -> dict[str, str]:
        """An X-Purpose an admin holds, for operations that read one: only the tested rule bites."""
        names = {p["name"].lower() for p in self.spec.get("parameters", []) if p["in"] == "header"}
        return {"X-Purpose": "service_delivery"} if "x-purpose" in names else {}

    def url(self) -> str:
        out = self.path
        for param in self.spec.get("parameters", []):
            if param["in"] == "path":
                value = POLICY_PATH_VALUES.get(param["name"], MISSING_ID)
                out = out.replace("{" + param["name"] + "}", value)
        return out


def _walk(dependant: Any) -> Iterator[Any]:
    for dep in dependant.dependencies:
        yield dep
        yield from _walk(dep)


def _required_scope(route: APIRoute) -> str | None:
    # `cdp.api.require(scope)` builds a `check` closure over the scope it demands;
    # `cdp.api.current_subject` admits customer tokens only, i.e. the scope `self`.
    for dep in _walk(route.dependant):
        if dep.call is current_subject:
            return SELF
        if getattr(dep.call, "__qualname__", "") == "require.<locals>.check":
            scope = inspect.getclosurevars(dep.call).nonlocals["scope"]
            assert isinstance(scope, str)
            return scope
    return None


def _resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = doc
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


def _json_example(doc: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any] | None:
    media = spec.get("requestBody", {}).get("content", {}).get("application/json")
    if media is None:
        return None
    if "example" in media:
        example: dict[str, Any] = media["example"]
        return example
    schema = _resolve(doc, media["schema"])
    examples = schema.get("examples") or [{}]
    first: dict[str, Any] = examples[0]
    return first


def _operations() -> list[Operation]:
    # Listing needs no database: in-memory SQLite, never connected to.
    app = create_app(
        Settings(
            database_url="sqlite://", keystore_url="sqlite://", jwt_secret="list", log_json=False
        )
    )
    doc = app.openapi()
    found = []
    # app.routes nests included routers; iter_route_contexts flattens them with their prefixes.
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        path = context.path_format or route.path_format
        for method in sorted(route.methods or ()):
            spec = doc["paths"][path][method.lower()]
            found.append(
                Operation(
                    method=method,
                    path=path,
                    operation_id=spec["operationId"],
                    uses_bearer=any(isinstance(d.call, HTTPBearer) for d in _walk(route.dependant)),
                    scope=_required_scope(route),
                    body_example=_json_example(doc, spec),
                    spec=spec,
                )
            )
    rt: Runtime = app.state.runtime
    rt.engine.dispose()
    rt.keystore.dispose()
    return found


ALL = _operations()
PROTECTED = [op for op in ALL if op.operation_id not in PUBLIC | WRITE_KEY]
SCOPED = [op for op in PROTECTED if op.operation_id not in ANY_TOKEN]
WITH_BODY = [op for op in PROTECTED if op.body_example is not None]
SELF_OPS = [op for op in SCOPED if op.scope == SELF]
CLIENT_OPS = [op for op in SCOPED if op.scope != SELF]


def _ids(ops: list[Operation]) -> list[str]:
    return [op.operation_id for op in ops]


def _assert_problem(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
    body: dict[str, Any] = resp.json()
    assert body["status"] == status and body["code"] == code, body
    assert body["detail"] and body["title"] and body["type"].endswith(code)
    assert "Traceback" not in resp.text
    return body


def _call(client: TestClient, op: Operation, headers: dict[str, str], **kw: Any) -> Any:
    if op.body_example is not None and "content" not in kw and "json" not in kw:
        kw["json"] = op.body_example
    return client.request(op.method, op.url(), headers=headers, **kw)


def _forged_cursor(op: Operation) -> dict[str, Any]:
    """A cursor the server never issued: it must not be judged before the caller is."""
    names = {p["name"] for p in op.spec.get("parameters", []) if p["in"] == "query"}
    return {"params": {"cursor": "forged"}} if "cursor" in names else {}


def _row_counts(rt: Runtime) -> dict[str, int]:
    with rt.engine.connect() as conn:
        names = [n for n in sa_inspect(conn).get_table_names() if n != "alembic_version"]
        return {
            n: conn.execute(select(func.count()).select_from(table(n))).scalar_one() for n in names
        }


def test_public_allow_list_matches_the_routes() -> None:
    # Both ways: a new route without the bearer dependency fails here until it is listed.
    assert {op.operation_id for op in ALL if not op.uses_bearer} == PUBLIC | WRITE_KEY


@pytest.mark.parametrize("op", PROTECTED, ids=_ids(PROTECTED))
def test_without_token_is_401(client: TestClient, op: Operation) -> None:
    resp = _call(client, op, {})
    _assert_problem(resp, 401, "unauthorized")
    assert resp.headers["www-authenticate"].startswith("Bearer")
    resp = _call(client, op, {"Authorization": "Bearer not-a-token"})
    _assert_problem(resp, 401, "invalid_token")
    resp = _call(client, op, {"Authorization": "Basic dXNlcjpwYXNz"})
    _assert_problem(resp, 401, "unauthorized")
    if _forged_cursor(op):
        _assert_problem(_call(client, op, {}, **_forged_cursor(op)), 401, "unauthorized")


@pytest.fixture
def narrow_tokens(
    client: TestClient,
    make_client: Callable[..., tuple[str, str]],
    token_for: Callable[..., dict[str, str]],
) -> dict[str, dict[str, str]]:
    """Tokens with one scope each: a tracker's and an admin's narrowed to policies:read."""
    cid, secret = make_client("admin")
    resp = client.post(
        "/v1/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": cid,
            "client_secret": secret,
            "scope": "policies:read",
        },
    )
    assert resp.status_code == 200 and resp.json()["scope"] == "policies:read", resp.text
    narrowed = {"Authorization": f"Bearer {resp.json()['access_token']}"}
    return {"events:write": token_for("tracker"), "policies:read": narrowed}


def test_scope_allow_list_matches_the_routes() -> None:
    # A new operation that takes a token but checks no scope fails here until it is listed.
    assert {op.operation_id for op in PROTECTED if op.scope is None} == ANY_TOKEN


@pytest.mark.parametrize("op", SCOPED, ids=_ids(SCOPED))
def test_token_without_scope_is_403(
    client: TestClient, op: Operation, narrow_tokens: dict[str, dict[str, str]]
) -> None:
    assert op.scope is not None
    held, headers = next((s, h) for s, h in narrow_tokens.items() if s != op.scope)
    purpose = {"X-Purpose": "analytics"}  # a purpose both tokens hold: only the scope is missing
    body = _assert_problem(_call(client, op, {**headers, **purpose}), 403, "insufficient_scope")
    assert op.scope in body["detail"] and held not in body["detail"]
    if _forged_cursor(op):
        resp = _call(client, op, {**headers, **purpose}, **_forged_cursor(op))
        _assert_problem(resp, 403, "insufficient_scope")


@pytest.fixture
def customer_token(client: TestClient, token_for: Callable[..., dict[str, str]]) -> dict[str, str]:
    """A customer token (role subject, scope self) for a fresh profile."""
    app = token_for("app")
    created = client.post(
        "/v1/profiles",
        json={"external_id": "matrix-1"},
        headers={**app, "X-Purpose": "service_delivery"},
    )
    assert created.status_code == 201, created.text
    resp = client.post(f"/v1/profiles/{created.json()['id']}/subject-token", headers=app)
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


@pytest.fixture
def caller_for(
    customer_token: dict[str, str], token_for: Callable[..., dict[str, str]]
) -> Callable[[Operation], dict[str, str]]:
    """Headers holding every scope an operation may ask for: an admin's, or a customer's."""
    admin = token_for("admin")
    return lambda op: customer_token if op.scope == SELF else {**admin, **op.purpose()}


@pytest.mark.parametrize("op", sorted(ANY_TOKEN))
def test_any_token_operations_take_the_narrowest_tokens(
    client: TestClient,
    op: str,
    narrow_tokens: dict[str, dict[str, str]],
    customer_token: dict[str, str],
) -> None:
    target = next(o for o in PROTECTED if o.operation_id == op)
    for headers in [*narrow_tokens.values(), customer_token]:
        resp = _call(client, target, headers)
        assert resp.status_code == 200, resp.text


def test_self_operations_are_listed() -> None:
    # The customer's own operations live under /v1/self and nowhere else.
    assert SELF_OPS and all(op.path.startswith("/v1/self/") for op in SELF_OPS)
    assert all(op.scope == SELF for op in SCOPED if op.path.startswith("/v1/self/"))


@pytest.mark.parametrize("op", SELF_OPS, ids=_ids(SELF_OPS))
def test_client_token_on_self_operation_is_403(
    client: TestClient, op: Operation, token_for: Callable[..., dict[str, str]]
) -> None:
    # Even an admin, holding every staff scope, is not the customer.
    body = _assert_problem(_call(client, op, token_for("admin")), 403, "insufficient_scope")
    assert SELF in body["detail"]


@pytest.mark.parametrize("op", CLIENT_OPS, ids=_ids(CLIENT_OPS))
def test_customer_token_on_client_operation_is_401(
    client: TestClient, op: Operation, customer_token: dict[str, str]
) -> None:
    resp = _call(client, op, {**customer_token, **op.purpose()})
    _assert_problem(resp, 401, "invalid_token")


@pytest.mark.parametrize("op", PROTECTED, ids=_ids(PROTECTED))
def test_admin_token_passes_auth(
    client: TestClient, op: Operation, caller_for: Callable[[Operation], dict[str, str]]
) -> None:
    # The control for the tests above: with every scope the refusal is not about auth.
    resp = _call(client, op, caller_for(op))
    assert resp.status_code not in (401, 403), resp.text
    assert resp.status_code < 500, resp.text


@pytest.mark.parametrize("path", sorted({op.path for op in ALL}))
def test_other_methods_are_405_naming_every_allowed_one(client: TestClient, path: str) -> None:
    allowed = sorted(op.method for op in ALL if op.path == path)
    url = next(op.url() for op in ALL if op.path == path)
    unused = next(m for m in ("PUT", "PATCH", "DELETE", "POST") if m not in allowed)
    resp = client.request(unused, url)
    _assert_problem(resp, 405, "method_not_allowed")
    assert sorted(m.strip() for m in resp.headers["allow"].split(",")) == allowed


def _malformed_bodies(example: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield (
        "invalid JSON",
        {"content": b'{"name": "x",', "headers": {"Content-Type": "application/json"}},
    )
    yield (
        "not UTF-8",
        {"content": b'{"name": "\xff\xfe"}', "headers": {"Content-Type": "application/json"}},
    )
    yield "not an object", {"json": ["a", "list"]}
    yield "empty body", {"content": b"", "headers": {"Content-Type": "application/json"}}
    yield "extra field", {"json": {**example, "unexpected_field": 1}}
    for name, value in example.items():
        # A JSON type no field of this kind accepts, even in Pydantic's lax mode.
        wrong = [1] if isinstance(value, dict) else {"nested": [1]}
        yield f"wrong type for {name}", {"json": {**example, name: wrong}}


@pytest.mark.parametrize("op", WITH_BODY, ids=_ids(WITH_BODY))
def test_malformed_body_is_422_and_stores_nothing(
    client: TestClient,
    runtime: Runtime,
    op: Operation,
    caller_for: Callable[[Operation], dict[str, str]],
) -> None:
    assert op.body_example is not None
    admin = caller_for(op)
    before = _row_counts(runtime)
    for label, kw in _malformed_bodies(op.body_example):
        extra_headers = kw.pop("headers", {})
        resp = _call(client, op, {**admin, **extra_headers}, **kw)
        body = _assert_problem(resp, 422, "validation_error")
        errors = body.get("errors")
        assert isinstance(errors, list) and errors, f"{label}: per-field errors"
        assert all(set(e) == {"loc", "msg", "type"} for e in errors), f"{label}: {errors}"
        assert any(e["loc"][:1] == ["body"] for e in errors), f"{label}: {errors}"
    assert _row_counts(runtime) == before, "a refused request stored something"
