"""Schemathesis against the API's own OpenAPI document: generated requests
(valid and not) to every operation, signed in as a real account, must
never get a 500, and every answer must match what the document says
(status codes, content type, headers, body schema)."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import SignInLimiter, create_app
from core import services as lk
from core.site import Site

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def signed_in(site: Site) -> tuple[Any, dict[str, str]]:
    """The app (with a roomy sign-in limit) and a real account's token."""
    app = create_app(site, sign_in_limiter=SignInLimiter(attempts=10_000))
    lk.create_account(site, "Ada", "ada@example.com", "correct horse battery")
    with TestClient(app) as http:
        token = http.post(
            "/session", json={"email": "ada@example.com", "password": "correct horse battery"}
        ).json()["token"]
    return app, {"Authorization": f"Bearer {token}"}


@pytest.fixture
def api_schema(signed_in: tuple[Any, dict[str, str]]) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", signed_in[0])


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_error_and_every_answer_matches_the_document(
    case: Any, signed_in: tuple[Any, dict[str, str]]
) -> None:
    headers = dict(signed_in[1])
    if case.headers and "Authorization" in case.headers:
        headers = {}  # the case brings its own (unknown) token
    case.call_and_validate(headers=headers, checks=CHECKS)
