"""Optional SigV4 verification with botocore's signer."""

import urllib.error
import urllib.request

import pytest
from botocore import UNSIGNED

from conftest import arithmetic, write_jsonl
from service_harness import ApiOnlyServer
from tunesmith.service.auth import parse_credentials

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
