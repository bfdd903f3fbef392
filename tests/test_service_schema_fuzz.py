"""Schemathesis over the OpenAPI schema the typed models give: every route, valid and invalid
inputs generated from the schema; no 5xx, every error in Bedrock's shape.

Bounded for CI (``FUZZ_EXAMPLES`` per operation, default 20, about 30 s in all on 2 cores).
"""

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

from service_harness import ApiOnlyServer

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "20"))


@pytest.fixture(scope="module")
def openapi(tmp_path_factory):
    folder = tmp_path_factory.mktemp("schema-fuzz")
    with ApiOnlyServer(folder / "home", folder) as server:
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
        yield schema


schema = schemathesis.pytest.from_fixture("openapi")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_bedrock_shaped_errors(case):
    response = case.call(timeout=10)
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert response.headers.get("x-amzn-errortype"), (response.status_code, response.headers)
        assert "message" in response.json()
