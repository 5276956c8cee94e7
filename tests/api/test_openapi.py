"""The committed OpenAPI document is current and teaches every operation: ids, examples, errors."""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.security import HTTPBearer

from cdp.app import create_app
from cdp.cli import OPENAPI_PATH, openapi_document
from cdp.config import Settings

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
PROBLEM_REF = "#/components/schemas/Problem"


@cache
def _document() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(openapi_document())
    return doc


def _operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in _document()["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield method, path, op


def _ids() -> list[str]:
    return [f"{m.upper()} {p}" for m, p, _ in _operations()]


OPERATIONS = list(_operations())


def _resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        target: Any = doc
        for part in ref[2:].split("/"):
            target = target[part]
        node = target
    return node


def _has_example(doc: dict[str, Any], media: dict[str, Any]) -> bool:
    if media.get("example") is not None or media.get("examples"):
        return True
    schema = media.get("schema", {})
    if schema.get("examples") or schema.get("example") is not None:
        return True
    return bool(_resolve(doc, schema).get("examples")) if "$ref" in schema else False


def test_committed_document_is_current() -> None:
    # The same comparison as `cdp openapi export --check`, run in the test suite.
    committed = Path(OPENAPI_PATH)
    assert committed.exists(), f"{committed} is missing: run `make openapi`"
    old = committed.read_text(encoding="utf-8")
    new = openapi_document()
    diff = "".join(
        list(difflib.unified_diff(old.splitlines(True), new.splitlines(True), "committed", "code"))[
            :40
        ]
    )
    assert old == new, f"{committed} is stale: run `make openapi` and commit it\n{diff}"


def test_document_is_deterministic_and_portable(tmp_path: Path) -> None:
    text = openapi_document()
    assert list(_document()["paths"]) == sorted(_document()["paths"])
    for place in (Path.cwd(), Path.home(), Path(__file__).resolve().parents[2], tmp_path):
        if len(place.parts) > 1:  # "/" alone would match any text
            assert str(place) not in text, f"machine-specific path {place} in the document"
    # Another process, hash seed, working directory and no CDP_* settings: the same bytes.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDP_")}
    env["PYTHONHASHSEED"] = "4242"
    script = (
        "import sys; from cdp.cli import openapi_document; sys.stdout.write(openapi_document())"
    )
    other = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        check=True,
        text=True,
        encoding="utf-8",
    ).stdout
    assert other == text, "the document depends on the process, directory or environment"


def test_operation_ids_are_unique() -> None:
    ids = [str(op.get("operationId") or "") for _, _, op in OPERATIONS]
    assert all(ids), "every operation needs an operationId"
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


@pytest.mark.parametrize(("method", "path", "op"), OPERATIONS, ids=_ids())
def test_operation_is_documented(method: str, path: str, op: dict[str, Any]) -> None:
    doc = _document()
    assert op.get("tags"), "at least one tag"
    assert op.get("summary"), "a summary"
    responses: dict[str, Any] = op["responses"]

    success = [code for code in responses if code.startswith("2")]
    assert success, "a documented 2xx response"
    for code in success:
        for media_type, media in responses[code].get("content", {}).items():
            assert _has_example(doc, media), f"{code} {media_type}: an example of the body"

    body = op.get("requestBody")
    if body is not None:
        for media_type, media in _resolve(doc, body)["content"].items():
            if "json" in media_type:
                assert _has_example(doc, media), f"request {media_type}: an example"

    if op.get("security"):
        for status in ("401", "403"):
            assert status in responses, f"{status} for an operation that requires a token"
    if op.get("parameters") or body is not None:
        assert "422" in responses, "422 for an operation with parameters or a body"

    for code, response in responses.items():
        if code[0] in "45":
            content = response.get("content", {})
            assert list(content) == ["application/problem+json"], f"{code}: problem+json only"
            assert content["application/problem+json"]["schema"] == {"$ref": PROBLEM_REF}, code


def test_bearer_routes_carry_security() -> None:
    # Detected from the routes themselves, so the document cannot drift from the dependencies.
    app = create_app(
        Settings(database_url="sqlite://", keystore_url="sqlite://", jwt_secret="x", log_json=False)
    )
    doc = _document()

    def uses_bearer(dependant: Any) -> bool:
        return any(isinstance(d.call, HTTPBearer) or uses_bearer(d) for d in dependant.dependencies)

    seen = set()
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods or ():
            seen.add((method.lower(), context.path_format))
            op = doc["paths"][context.path_format][method.lower()]
            assert bool(op.get("security")) == uses_bearer(route.dependant), route.name
    assert seen == {(m, p) for m, p, _ in OPERATIONS}, "the routes and the document differ"
    rt = app.state.runtime
    rt.engine.dispose()
    rt.keystore.dispose()


def test_problem_schema_and_validation_example() -> None:
    doc = _document()
    problem = doc["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "code"} <= set(problem["required"])
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    create = doc["paths"]["/v1/clients"]["post"]["responses"]["422"]
    example = create["content"]["application/problem+json"]["example"]
    assert example["code"] == "validation_error" and example["errors"]
