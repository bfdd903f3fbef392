"""The control plane through boto3's ``bedrock`` client against a real loopback server (no training)."""

import threading

import pytest

from conftest import arithmetic, write_jsonl
from service_harness import ApiOnlyServer

ROLE = "arn:aws:iam::123456789012:role/tunesmith"


@pytest.fixture
def api(tmp_path, database_url):
    """Each test once on SQLite and once on PostgreSQL."""
    write_jsonl(tmp_path / "t.jsonl", arithmetic(20))
    with ApiOnlyServer(tmp_path / "home", tmp_path, database_url=database_url) as server:
        yield server, server.client(), tmp_path


def create(client, folder, name="job-1", **overrides):
    request = dict(
        jobName=name, customModelName=f"{name}-model", roleArn=ROLE, baseModelIdentifier="amazon.nova-micro-v1:0:128k",
        trainingDataConfig={"s3Uri": f"file://{folder}/t.jsonl"}, outputDataConfig={"s3Uri": f"file://{folder}/out"},
    )
    request.update(overrides)
    return client.create_model_customization_job(**request)


def test_create_and_get(api):
    server, client, folder = api
    arn = create(client, folder, hyperParameters={"epochCount": "3"})["jobArn"]
    assert arn.startswith("arn:aws:bedrock:us-east-1:123456789012:model-customization-job/amazon.nova-micro-v1:0:128k/")
    assert len(arn.rsplit("/", 1)[1]) == 12
    for identifier in (arn, "job-1"):
        job = client.get_model_customization_job(jobIdentifier=identifier)
        assert job["jobArn"] == arn and job["status"] == "InProgress"
    assert job["hyperParameters"] == {"epochCount": "3", "learningRate": "1e-05", "learningRateWarmupSteps": "10"}
    assert job["statusDetails"]["validationDetails"]["status"] == "NotStarted"
    assert job["baseModelArn"] == "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-micro-v1:0:128k"


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"jobName": "bad name!"}, "jobName 'bad name!' does not match the pattern"),
        ({"jobName": "j" * 64}, "jobName 'jjjj"),
        ({"customModelName": "bad.name"}, "customModelName 'bad.name' does not match the pattern"),
        ({"roleArn": "not-a-role"}, "roleArn 'not-a-role' is not an IAM role ARN"),
        ({"baseModelIdentifier": "amazon.titan-text-v1"}, 'baseModelIdentifier: unknown model "amazon.titan-text-v1": known models are micro'),
        ({"customizationType": "REINFORCEMENT_FINE_TUNING"}, "customizationType REINFORCEMENT_FINE_TUNING is not supported by this tunesmith build yet"),
        ({"customizationType": "DISTILLATION"}, "teacherModelIdentifier is required for DISTILLATION"),
        ({"customizationType": "DISTILLATION", "customizationConfig": {"distillationConfig": {"teacherModelConfig": {
            "teacherModelIdentifier": "amazon.titan-x-v1"}}}}, 'teacherModelIdentifier: unknown model "amazon.titan-x-v1"'),
        ({"customizationType": "DISTILLATION", "customizationConfig": {"distillationConfig": {"teacherModelConfig": {
            "teacherModelIdentifier": "amazon.nova-pro-v1:0", "maxResponseLengthForInference": 0}}}}, "maxResponseLengthForInference 0 is out of range"),
        ({"customizationType": "MAGIC"}, "customizationType 'MAGIC' is not one of"),
        ({"hyperParameters": {"epochCount": "0", "learningRate": "abc"}},
         "hyperParameters: epochCount=0 is out of range: must be between 1 and 5; learningRate=abc is not a number"),
        ({"hyperParameters": {"batchSize": "8"}}, "batchSize is not a hyperparameter of these models"),
        ({"trainingDataConfig": {"s3Uri": "/etc/passwd"}}, "trainingDataConfig.s3Uri: '/etc/passwd' is outside the folders this server may use"),
        ({"trainingDataConfig": {}}, "trainingDataConfig.s3Uri is required"),
        ({"outputDataConfig": {"s3Uri": "http://example.com/x"}}, "outputDataConfig.s3Uri: 'http://example.com/x' is not an s3://, file:// or local path"),
        ({"validationDataConfig": {"validators": [{"s3Uri": "s3://b/k"}] * 11}}, "at most 10 are allowed"),
    ],
)
def test_validation_errors(api, overrides, message):
    server, client, folder = api
    with pytest.raises(client.exceptions.ValidationException) as info:
        create(client, folder, **overrides)
    assert message in info.value.response["Error"]["Message"]
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_path_traversal_is_refused(api):
    server, client, folder = api
    with pytest.raises(client.exceptions.ValidationException, match="outside the folders"):
        create(client, folder, trainingDataConfig={"s3Uri": f"file://{folder}/../../etc/passwd"})


def test_duplicate_name_and_idempotency(api):
    server, client, folder = api
    first = create(client, folder, clientRequestToken="token-1")["jobArn"]
    assert create(client, folder, clientRequestToken="token-1")["jobArn"] == first  # replayed, not duplicated
    with pytest.raises(client.exceptions.ConflictException, match="The provided job name is currently in use."):
        create(client, folder, clientRequestToken="token-2")
    with pytest.raises(client.exceptions.ConflictException, match="custom model name job-1-model is currently in use"):
        create(client, folder, name="job-2", customModelName="job-1-model")
    assert len(client.list_model_customization_jobs()["modelCustomizationJobSummaries"]) == 1


def test_concurrent_creates_of_one_name_have_one_winner(api):
    server, client, folder = api
    outcomes = []

    def attempt(i):
        try:
            create(server.client(), folder, name="race", customModelName=f"race-model-{i}")
            outcomes.append("won")
        except Exception as exc:  # noqa: BLE001 - the test counts the kinds
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ConflictException"] * 5 + ["won"]


def test_concurrent_creates_of_one_model_name_have_one_winner(api):
    server, client, folder = api
    outcomes = []

    def attempt(i):
        try:
            create(server.client(), folder, name=f"racer-{i}", customModelName="contested-model")
            outcomes.append("won")
        except Exception as exc:  # noqa: BLE001 - the test counts the kinds
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ConflictException"] * 11 + ["won"]


def test_concurrent_retries_with_one_token_all_get_the_same_job(api):
    server, client, folder = api
    arns = []
    threads = [threading.Thread(target=lambda: arns.append(create(server.client(), folder, name="retried",
                                                                   clientRequestToken="token-1")["jobArn"]))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(arns) == 8 and len(set(arns)) == 1


def test_list_filters_sorting_and_pagination(api):
    server, client, folder = api
    arns = [create(client, folder, name=f"job-{i}")["jobArn"] for i in range(5)]
    pages, token = [], None
    while True:
        kwargs = {"maxResults": 2, "sortOrder": "Ascending"} | ({"nextToken": token} if token else {})
        page = client.list_model_customization_jobs(**kwargs)
        pages.append([s["jobArn"] for s in page["modelCustomizationJobSummaries"]])
        token = page.get("nextToken")
        if not token:
            break
    assert pages == [arns[0:2], arns[2:4], arns[4:5]]
    newest_first = [s["jobArn"] for s in client.list_model_customization_jobs()["modelCustomizationJobSummaries"]]
    assert newest_first == arns[::-1]
    assert [s["jobName"] for s in client.list_model_customization_jobs(nameContains="job-3")["modelCustomizationJobSummaries"]] == ["job-3"]
    created = client.get_model_customization_job(jobIdentifier=arns[2])["creationTime"]
    after = client.list_model_customization_jobs(creationTimeAfter=created, sortOrder="Ascending")["modelCustomizationJobSummaries"]
    assert [s["jobArn"] for s in after] == arns[3:]
    client.stop_model_customization_job(jobIdentifier=arns[0])
    stopped = client.list_model_customization_jobs(statusEquals="Stopped")["modelCustomizationJobSummaries"]
    assert [s["jobArn"] for s in stopped] == [arns[0]]
    with pytest.raises(client.exceptions.ValidationException, match="nextToken"):
        client.list_model_customization_jobs(nextToken="garbage!")


def test_stop_before_start_and_twice(api):
    server, client, folder = api
    arn = create(client, folder)["jobArn"]
    client.stop_model_customization_job(jobIdentifier=arn)
    job = client.get_model_customization_job(jobIdentifier=arn)
    assert job["status"] == "Stopped" and job["statusDetails"]["trainingDetails"]["status"] == "Stopped"
    with pytest.raises(client.exceptions.ValidationException, match="only an InProgress job can be stopped"):
        client.stop_model_customization_job(jobIdentifier=arn)


def test_not_found(api):
    server, client, folder = api
    with pytest.raises(client.exceptions.ResourceNotFoundException, match="Could not find job with identifier nope"):
        client.get_model_customization_job(jobIdentifier="nope")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.stop_model_customization_job(jobIdentifier="arn:aws:bedrock:us-east-1:123456789012:model-customization-job/amazon.nova-micro-v1:0:128k/aaaaaaaaaaaa")
    with pytest.raises(client.exceptions.ResourceNotFoundException, match="Could not find model"):
        client.get_custom_model(modelIdentifier="nope")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.delete_custom_model(modelIdentifier="nope")


def test_jobs_cli_talks_to_the_server(api):
    import json

    from click.testing import CliRunner

    from tunesmith.cli import cli

    server, client, folder = api
    run = lambda *args: CliRunner().invoke(cli, ["jobs", *args, "--endpoint", server.url])  # noqa: E731
    created = run("create", "--name", "cli-job", "--model-name", "cli-model", "--data", str(folder / "t.jsonl"),
                  "--output", str(folder / "out"), "--epochs", "3")
    assert created.exit_code == 0, created.output
    assert created.output.strip().startswith("arn:aws:bedrock:")
    listed = json.loads(run("list", "--json").output)
    assert [j["jobName"] for j in listed] == ["cli-job"]
    detail = json.loads(run("get", "cli-job").output)
    assert detail["hyperParameters"]["epochCount"] == "3"
    assert run("stop", "cli-job").exit_code == 0
    missing = run("get", "nope")
    assert missing.exit_code == 1 and "ResourceNotFoundException: Could not find job" in missing.output
    bad = run("create", "--name", "x", "--model-name", "y", "--data", "/etc/passwd", "--output", str(folder))
    assert bad.exit_code == 1 and "ValidationException" in bad.output
