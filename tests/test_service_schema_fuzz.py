"""Schemathesis over the OpenAPI schema the typed models give: every route, valid and invalid
inputs generated from the schema; no 5xx, every error in Bedrock's shape (OpenAI's under /v1/).

Bounded for CI (``FUZZ_EXAMPLES`` per operation and mode, default 25; about 30 s in all on
2 cores). The operations are driven through hypothesis directly rather than schemathesis's
pytest plugin, whose hooks follow pytest's internals from release to release.
"""

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from service_harness import ApiOnlyServer

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("schema-fuzz")
    with ApiOnlyServer(folder / "home", folder) as running:
        yield running


def check(case) -> None:
    response = case.call(timeout=10)
    assert response.status_code < 500, (case.method, case.formatted_path, response.status_code, response.text[:300])
    if response.status_code >= 400:
        assert response.headers.get("x-amzn-errortype"), (case.method, case.formatted_path, response.status_code)
        body = response.json()
        assert "message" in (body["error"] if case.formatted_path.startswith("/v1/") else body)  # OpenAI's shape there


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_answers_without_5xx_in_bedrock_shape(server, mode):
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15, [op.label for op in operations]
    for operation in operations:
        if mode == GenerationMode.NEGATIVE and not list(operation.iter_parameters()) and not len(operation.body):
            continue  # no inputs (GET /v1/models): nothing to make invalid
        @given(operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def fuzz(case):
            check(case)

        fuzz()
    assert server.client().list_model_customization_jobs()["ResponseMetadata"]["HTTPStatusCode"] == 200
