"""Optional SigV4 verification with botocore's signer."""

import urllib.error
import urllib.request

import pytest
from botocore import UNSIGNED

from conftest import arithmetic, write_jsonl
from service_harness import ApiOnlyServer
from tunesmith.api.auth import parse_credentials

ROLE = "arn:aws:iam::123456789012:role/tunesmith"


@pytest.fixture
def secured(tmp_path):
    write_jsonl(tmp_path / "t.jsonl", arithmetic(20))
    with ApiOnlyServer(tmp_path / "home", tmp_path, credentials={"AKIDTUNESMITH": "s3cret"}) as server:
        yield server, tmp_path


def create(client, folder, name):
    return client.create_model_customization_job(
        jobName=name, customModelName=f"{name}-m", roleArn=ROLE, baseModelIdentifier="micro",
        trainingDataConfig={"s3Uri": f"{folder}/t.jsonl"}, outputDataConfig={"s3Uri": f"{folder}/out"},
    )


def test_correctly_signed_requests_pass(secured):
    server, folder = secured
    client = server.client(key="AKIDTUNESMITH", secret="s3cret")
    arn = create(client, folder, "signed")["jobArn"]
    assert client.get_model_customization_job(jobIdentifier=arn)["jobName"] == "signed"  # ARN in the path, percent-encoded
    assert client.list_model_customization_jobs(nameContains="sig", maxResults=5)["modelCustomizationJobSummaries"]


def test_wrong_secret_unknown_key_and_unsigned_are_denied(secured):
    server, folder = secured
    with pytest.raises(server.client().exceptions.AccessDeniedException, match="does not match"):
        create(server.client(key="AKIDTUNESMITH", secret="wrong"), folder, "a")
    with pytest.raises(server.client().exceptions.AccessDeniedException, match="not known"):
        create(server.client(key="AKIDOTHER", secret="s3cret"), folder, "b")
    with pytest.raises(server.client().exceptions.AccessDeniedException, match="not signed"):
        create(server.client(signature_version=UNSIGNED), folder, "c")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{server.url}/model-customization-jobs")
    assert info.value.code == 403 and info.value.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    assert urllib.request.urlopen(f"{server.url}/health").read() == b"ok"


def test_auth_off_accepts_anything(tmp_path):
    write_jsonl(tmp_path / "t.jsonl", arithmetic(20))
    with ApiOnlyServer(tmp_path / "home", tmp_path) as server:
        assert create(server.client(key="any", secret="thing"), tmp_path, "open")["jobArn"]


def test_credentials_parsing():
    assert parse_credentials(["A:b", "C:d:e"]) == {"A": "b", "C": "d:e"}
    with pytest.raises(ValueError, match="are not ACCESS_KEY:SECRET"):
        parse_credentials(["nocolon"])


def _signed(url: str, method: str, body: bytes, key: str, secret: str, region: str = "us-east-1", service: str = "bedrock",
            headers: dict | None = None):
    """A request signed by botocore's SigV4 signer with the given scope; returns (status, error type)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method=method, url=url, data=body, headers={"Content-Type": "application/json", **(headers or {})})
    SigV4Auth(Credentials(key, secret), service, region).add_auth(request)
    prepared = urllib.request.Request(url, data=body or None, headers=dict(request.headers.items()), method=method)
    try:
        return urllib.request.urlopen(prepared).status, None
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["x-amzn-ErrorType"] + ": " + exc.read().decode()


def test_scope_must_name_this_region_and_bedrock(secured):
    server, _ = secured
    url = f"{server.url}/model-customization-jobs"
    assert _signed(url, "GET", b"", "AKIDTUNESMITH", "s3cret")[0] == 200
    status, error = _signed(url, "GET", b"", "AKIDTUNESMITH", "s3cret", service="s3")
    assert status == 403 and "names the service 's3'" in error
    status, error = _signed(url, "GET", b"", "AKIDTUNESMITH", "s3cret", region="eu-west-1")
    assert status == 403 and "names the region 'eu-west-1'" in error


def test_unsigned_payload_and_a_swapped_body_are_refused(secured):
    server, folder = secured
    url = f"{server.url}/model-customization-jobs"
    body = b'{"jobName": "x"}'
    status, error = _signed(url, "POST", body, "AKIDTUNESMITH", "s3cret", headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    assert status == 403 and "UNSIGNED-PAYLOAD is not accepted" in error
    import hashlib

    other = hashlib.sha256(b"something else").hexdigest()
    status, error = _signed(url, "POST", body, "AKIDTUNESMITH", "s3cret", headers={"X-Amz-Content-SHA256": other})
    assert status == 403 and "does not match the body" in error


def test_unsigned_payload_when_allowed(tmp_path):
    with ApiOnlyServer(tmp_path / "home", tmp_path, credentials={"K": "s"}, allow_unsigned_payload=True) as server:
        status, error = _signed(f"{server.url}/model-customization-jobs", "GET", b"", "K", "s",
                                headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
        assert status == 200, error


def test_jobs_events_signs_its_requests(secured, monkeypatch):
    from click.testing import CliRunner

    from tunesmith.cli import cli

    server, folder = secured
    create(server.client(key="AKIDTUNESMITH", secret="s3cret"), folder, "evented")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTUNESMITH")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    result = CliRunner().invoke(cli, ["jobs", "events", "evented", "--endpoint", server.url])
    assert result.exit_code == 0, result.output
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    denied = CliRunner().invoke(cli, ["jobs", "events", "evented", "--endpoint", server.url])
    assert denied.exit_code == 1 and "AccessDeniedException" in denied.output


def test_the_api_description_is_public_and_nothing_else_is(secured):
    server, _ = secured

    def status(path):
        try:
            return urllib.request.urlopen(server.url + path, timeout=10).status
        except urllib.error.HTTPError as error:
            return error.code

    for path in ("/health", "/docs", "/redoc", "/openapi.json", "/docs-assets/swagger-ui.css", "/docs/oauth2-redirect"):
        assert status(path) == 200, path
    for path in ("/model-customization-jobs", "/custom-models", "/docsx", "/docs-assetsx", "/v1/models", "/metrics"):
        assert status(path) in (401, 403), path
