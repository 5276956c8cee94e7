"""Property-based conformance: every operation, generated inputs, responses as documented.

Runs on SQLite only (the contract, not the backend, is under test) with a bounded, derandomised
number of examples per operation so CI is reproducible and quick.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from starlette.types import Receive, Scope, Send
from tests.conftest import _register

from cdp.api import Runtime
from cdp.app import create_app
from cdp.cli import openapi_document
from cdp.config import Settings

CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {"mode": "all", "deterministic": True, "database": "none"},
        "phases": {"stateful": {"enabled": False}},
        "operations": [
            {
                # Role and purposes are checked against the loaded policy, which the document
                # must not name (it would then differ between deployments): 422 is a valid answer.
                "include-operation-id": "createClient",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", 401, 403, 404, 409, 422, 429]
                    }
                },
            },
            {
                # X-Purpose values and trait names come from the policy too: an unknown purpose
                # is 400 and a trait outside fields.yaml is 422, both right for such input.
                "include-tag": "profiles",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", 400, 401, 403, 404, 409, 422, 429]
                    }
                },
            },
            {
                # Consents name purposes, notice versions and subjects from the policy and the
                # database (an import row for an unknown customer is rejected): 422 is right.
                "include-tag": "consents",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", 401, 403, 404, 415, 422, 429]
                    }
                },
            },
            {
                # A one-time code is checked against the database: a generated one is wrong (400).
                "include-operation-id": "confirmVerification",
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": ["2xx", 400, 422, 429]}
                },
            },
            {
                # Rights requests name subjects and requests from the database, a lifecycle state
                # (409) and fields or purposes from the policy (422).
                "include-tag": "rights",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", 401, 403, 404, 409, 422, 429]
                    }
                },
            },
            {
                # The same for the customer's own choices (a purpose or version policy lacks).
                "include-tag": "self-service",
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": ["2xx", 401, 403, 422, 429]}
                },
            },
            {
                # Segment bodies are liberal by schema; what makes a message usable (an id, an
                # event name, a known type) is Segment's rule, not the schema's: a body with no
                # usable message is 400. A purpose or a subject comes from policy and data.
                "include-tag": "tracking",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", 400, 401, 403, 404, 409, 422, 429]
                    }
                },
            },
            {
                # Segment conditions name fields, events and other segments from the policy and
                # the database (422 `invalid_condition`, 404, 409); members and a profile's
                # segments need a purpose from policy (400); metric windows are bounded (422).
                "include-tag": "segments",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", 400, 401, 403, 404, 409, 422, 429]
                    }
                },
            },
            {
                # Feedback and follow-ups name a purpose (400 when unknown), subjects, plans and
                # segments from the database (404, 422 for unknown segments or profile ids), a
                # lifecycle state (409), and a purpose must cover feedback or the channel (403,
                # 422); a survey needs a score, a complaint a comment (422).
                "include-tag": ["feedback", "followups"],
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", 400, 401, 403, 404, 409, 422, 429]
                    }
                },
            },
            {
                # Alert rules: a parameter of the other kind, or a segment the database lacks,
                # is 422; an alert's lifecycle is 409; webhooks need an http(s) URL (422).
                "include-tag": "alerts",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", 401, 403, 404, 409, 422, 429]
                    }
                },
            },
            {
                # Metric windows are bounded and ordered; a report month must exist (422).
                "include-operation-id": [
                    "getFeedbackMetrics",
                    "getFollowupMetrics",
                    "getFollowupReport",
                ],
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": ["2xx", 401, 403, 422, 429]}
                },
            },
            {
                # A time window whose `to` is not after its `from` is refused (422), and an
                # incident export names a client from the database (404).
                "include-operation-id-regex": "^(getRightsSla|exportIncident)$",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", 401, 403, 404, 422, 429]
                    }
                },
            },
            {
                "include-operation-id": "getCustomerMetrics",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", 401, 403, 404, 422, 429]
                    }
                },
            },
            {
                # Segment's HTTP API takes what the SDKs send "verbatim": a field of an unexpected
                # type is ignored or drops that message only (reported in `dropped`), so a body
                # that strays from the documented types is rightly answered 200.
                "include-operation-id-regex": "^segment",
                "checks": {"negative_data_rejection": {"enabled": False}},
            },
        ],
    }
)
# The consent import takes JSON Lines; its generated bodies are strings, sent as they are.
schemathesis.serializer.alias("application/x-ndjson", "text/plain")
SCHEMA = schemathesis.openapi.from_dict(json.loads(openapi_document()), config=CONFIG)


class _HttpOnly:
    """The app under test without its lifespan: the fixture's TestClient runs that once."""

    app: FastAPI | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.app is None:
            raise RuntimeError("lifespan is run by the fixture")  # read as "no lifespan support"
        await self.app(scope, receive, send)


# Every request, including the probes some checks send (e.g. without credentials), goes here.
TARGET = _HttpOnly()
SCHEMA.app = TARGET


@pytest.fixture(scope="module")
def live(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """One app on a copied SQLite database for the whole module, and an admin's bearer header."""
    tmp = tmp_path_factory.mktemp("schemathesis")
    shutil.copyfile(sqlite_template, tmp / "cdp.db")
    app = create_app(
        Settings(
            database_url=f"sqlite:///{tmp / 'cdp.db'}",
            keystore_url=f"sqlite:///{tmp / 'keys.db'}",
            data_dir=tmp / "state",
            jwt_secret="test-signing-secret-that-is-long-enough-0123456789",
            secret_scrypt_n=2**4,
            log_json=False,
            log_level="WARNING",
            rate_limit_per_minute=1_000_000,
            rate_limit_burst=1_000_000,
        )
    )
    rt: Runtime = app.state.runtime
    with TestClient(app, raise_server_exceptions=False) as client:
        cid, secret = _register(rt, "admin")
        resp = client.post(
            "/v1/oauth/token",
            data={"grant_type": "client_credentials", "client_id": cid, "client_secret": secret},
        )
        assert resp.status_code == 200, resp.text
        TARGET.app = app
        try:
            yield {"Authorization": f"Bearer {resp.json()['access_token']}"}
        finally:
            TARGET.app = None


def _problem_on_error(response: Any) -> None:
    if response.status_code >= 400:
        content_type = (response.headers.get("content-type") or [""])[0]
        assert content_type.startswith("application/problem+json"), (
            response.status_code,
            content_type,
        )
        body = response.json()
        assert body["status"] == response.status_code and body["code"], body
        assert "Traceback" not in response.text


@SCHEMA.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms(case: schemathesis.Case[Any], live: dict[str, str]) -> None:
    positive = case.meta is not None and case.meta.generation.mode == GenerationMode.POSITIVE
    if positive and isinstance(case.query, dict):
        # A cursor is an opaque HMAC'd token the schema cannot describe: any generated one is
        # rightly refused (422), so schema-valid cases leave it out.
        case.query.pop("cursor", None)
    response = case.call(headers=dict(live))  # call() adds to the dict it is given
    assert response.status_code < 500, response.text
    _problem_on_error(response)
    case.validate_response(response, headers=dict(live))
