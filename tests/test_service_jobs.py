"""Jobs that really train: a ``tunesmith serve`` subprocess with worker processes, a tiny model
standing in for micro, driven only through boto3 (bedrock and, for S3, moto's real server)."""

import csv
import io
import json
import time
import urllib.request

import pytest

from conftest import arithmetic, write_jsonl
from service_harness import Server, free_port, wait_for

ROLE = "arn:aws:iam::123456789012:role/tunesmith"


@pytest.fixture
def world(tmp_path, tiny_model):
    """Data files and a model config mapping the micro tier to the tiny model."""
    write_jsonl(tmp_path / "t.jsonl", arithmetic(40))
    write_jsonl(tmp_path / "v.jsonl", arithmetic(8, start=100))
    (tmp_path / "models.toml").write_text(f'[tiers.micro]\nsource = "{tiny_model}"\neffective_batch_size = 16\n')
    (tmp_path / "home").mkdir()
    return tmp_path


def start(world, *options: str, **env: str) -> Server:
    return Server(world / "home", world, world / "models.toml", env=env, options=list(options)).start()


def create(client, name, training, output, validators=(), **overrides):
    request = dict(
        jobName=name, customModelName=f"{name}-model", roleArn=ROLE, baseModelIdentifier="amazon.nova-micro-v1:0:128k",
        trainingDataConfig={"s3Uri": training}, outputDataConfig={"s3Uri": output},
        validationDataConfig={"validators": [{"s3Uri": v} for v in validators]},
        hyperParameters={"epochCount": "2", "learningRate": "0.0001", "learningRateWarmupSteps": "1"},
    )
    request.update(overrides)
    return client.create_model_customization_job(**request)["jobArn"]


@pytest.fixture
def s3(world):
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_job_on_s3_runs_to_completed_and_publishes_metrics(world, s3, monkeypatch):
    import boto3

    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    bucket = boto3.client("s3", endpoint_url=s3)
    bucket.create_bucket(Bucket="data")
    bucket.upload_file(str(world / "t.jsonl"), "data", "in/train.jsonl")
    bucket.upload_file(str(world / "v.jsonl"), "data", "in/valid.jsonl")
    server = start(world, AWS_ENDPOINT_URL_S3=s3)
    try:
        client = server.client()
        arn = create(client, "s3-job", "s3://data/in/train.jsonl", "s3://data/out", ["s3://data/in/valid.jsonl"])
        job = wait_for(client, arn, {"Completed", "Failed"})
        assert job["status"] == "Completed", job.get("failureMessage")
        assert {d["status"] for d in job["statusDetails"].values()} == {"Completed"}
        assert job["trainingMetrics"]["trainingLoss"] > 0 and len(job["validationMetrics"]) == 2
        job_id = arn.rsplit("/", 1)[1]
        body = bucket.get_object(Bucket="data", Key=f"out/model-customization-job-{job_id}/training_artifacts/step_wise_training_metrics.csv")
        rows = list(csv.reader(io.StringIO(body["Body"].read().decode())))
        assert rows[0] == ["step_number", "epoch_number", "training_loss", "perplexity"] and len(rows) == 7
        key = f"out/model-customization-job-{job_id}/validation_artifacts/post_fine_tuning_validation/validation_metrics.csv"
        assert bucket.get_object(Bucket="data", Key=key)["Body"].read().decode().startswith("step_number,epoch_number,validation_loss")

        model = client.get_custom_model(modelIdentifier=job["outputModelArn"])
        assert model["modelStatus"] == "Active" and model["modelName"] == "s3-job-model" and model["jobArn"] == arn
        assert [m["modelName"] for m in client.list_custom_models()["modelSummaries"]] == ["s3-job-model"]
        events = urllib.request.urlopen(f"{server.url}/model-customization-jobs/s3-job/events").read().decode().splitlines()
        assert [json.loads(e)["event"] for e in events].count("step") == 6

        deployment = client.create_custom_model_deployment(modelDeploymentName="s3-deploy", modelArn=job["outputModelArn"])
        deployment_arn = deployment["customModelDeploymentArn"]
        assert client.get_custom_model_deployment(customModelDeploymentIdentifier=deployment_arn)["status"] == "Active"
        assert [d["customModelDeploymentName"] for d in client.list_custom_model_deployments()["modelDeploymentSummaries"]] == ["s3-deploy"]
        runtime = server.client("bedrock-runtime")
        messages = [{"role": "user", "content": [{"text": "What is 3 plus 3?"}]}]
        config = {"maxTokens": 6, "temperature": 0}
        answer = runtime.converse(modelId=deployment_arn, messages=messages, inferenceConfig=config)
        assert answer["usage"]["outputTokens"] <= 6
        streamed = list(runtime.converse_stream(modelId=deployment_arn, messages=messages, inferenceConfig=config)["stream"])
        text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in streamed if "contentBlockDelta" in e)
        assert text == answer["output"]["message"]["content"][0]["text"]
        by_model = runtime.converse(modelId=job["outputModelArn"], messages=messages, inferenceConfig=config)
        assert by_model["output"] == answer["output"]
        client.delete_custom_model_deployment(customModelDeploymentIdentifier=deployment_arn)
        client.delete_custom_model(modelIdentifier="s3-job-model")
        assert client.list_custom_models()["modelSummaries"] == []
    finally:
        server.kill()


def test_invalid_data_fails_with_a_message_naming_the_line(world):
    bad = {"messages": [{"role": "bot", "content": [{"text": "x"}]}, {"role": "assistant", "content": [{"text": "y"}]}]}
    write_jsonl(world / "bad.jsonl", arithmetic(10) + [bad])
    server = start(world)
    try:
        client = server.client()
        arn = create(client, "bad-job", str(world / "bad.jsonl"), str(world / "out"))
        job = wait_for(client, arn, {"Completed", "Failed"})
        assert job["status"] == "Failed"
        assert 'bad.jsonl:11: messages[0].role: "bot" is not "user" or "assistant"' in job["failureMessage"]
        assert job["statusDetails"]["validationDetails"]["status"] == "Failed"
        assert job["statusDetails"]["trainingDetails"]["status"] == "NotStarted"
    finally:
        server.kill()


def test_plan_warnings_reach_the_job_and_its_start_event(world):
    server = start(world)
    try:
        client = server.client()
        arn = create(client, "warned", str(world / "t.jsonl"), str(world / "out"),
                     hyperParameters={"epochCount": "1", "learningRate": "0.0001", "learningRateWarmupSteps": "20"})
        assert wait_for(client, arn, {"Completed", "Failed"})["status"] == "Completed"
        from urllib.parse import quote

        raw = json.loads(urllib.request.urlopen(f"{server.url}/model-customization-jobs/{quote(arn, safe='')}").read())
        assert any("never reaches" in w for w in raw["tunesmith"]["warnings"]), raw["tunesmith"]
        events = urllib.request.urlopen(f"{server.url}/model-customization-jobs/warned/events").read().decode().splitlines()
        start_event = next(json.loads(e) for e in events if json.loads(e)["event"] == "start")
        assert any("never reaches" in w for w in start_event["warnings"])
    finally:
        server.kill()


def wait_until_training(client, arn, timeout=60):
    deadline = time.monotonic() + timeout
    while "trainingMetrics" not in client.get_model_customization_job(jobIdentifier=arn):
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.1)


def checkpoints(server, arn):
    from urllib.parse import quote

    url = f"{server.url}/model-customization-jobs/{quote(arn, safe='')}/checkpoints"
    return json.loads(urllib.request.urlopen(url).read())["checkpoints"]


def long_data(world):
    write_jsonl(world / "long.jsonl", arithmetic(2000))
    return str(world / "long.jsonl")


def test_stop_during_training(world):
    server = start(world)
    try:
        client = server.client()
        arn = create(client, "stop-me", long_data(world), str(world / "out"),
                     hyperParameters={"epochCount": "5", "learningRate": "0.0001", "learningRateWarmupSteps": "0"})
        wait_until_training(client, arn)
        client.stop_model_customization_job(jobIdentifier=arn)
        assert client.get_model_customization_job(jobIdentifier=arn)["status"] in ("Stopping", "Stopped")
        job = wait_for(client, arn, {"Stopped", "Completed", "Failed"})
        assert job["status"] == "Stopped" and job["statusDetails"]["trainingDetails"]["status"] == "Stopped"
        assert checkpoints(server, arn)  # a checkpoint was saved on the way out
        assert client.list_custom_models()["modelSummaries"] == []
    finally:
        server.kill()


def test_restart_after_kill_9_resumes_from_the_last_checkpoint(world):
    server = start(world, "--save-every", "5")
    client = server.client()
    arn = create(client, "survivor", long_data(world), str(world / "out"),
                 hyperParameters={"epochCount": "1", "learningRate": "0.0001", "learningRateWarmupSteps": "0"})
    deadline = time.monotonic() + 60
    while not checkpoints(server, arn):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    server.kill()  # kill -9 the server and its worker mid-training

    server = start(world, "--save-every", "5")
    try:
        client = server.client()
        job = wait_for(client, arn, {"Completed", "Failed"}, timeout=180)
        assert job["status"] == "Completed", job.get("failureMessage")
        job_id = arn.rsplit("/", 1)[1]
        rows = (world / "out" / f"model-customization-job-{job_id}" / "training_artifacts" / "step_wise_training_metrics.csv").read_text().splitlines()
        steps = [int(r.split(",")[0]) for r in rows[1:]]
        assert steps == list(range(125))  # 2,000 records / 16 per step: every step exactly once
        assert len(client.list_model_customization_jobs()["modelCustomizationJobSummaries"]) == 1
        events = urllib.request.urlopen(f"{server.url}/model-customization-jobs/survivor/events").read().decode().splitlines()
        starts = [e for e in map(json.loads, events) if e["event"] == "start"]
        assert starts[0]["resumed_from"] == 0 and starts[-1]["resumed_from"] >= 5  # the second worker resumed
    finally:
        server.kill()


def test_restart_without_checkpoint_fails_the_job_clearly(world):
    server = start(world)
    client = server.client()
    arn = create(client, "early", long_data(world), str(world / "out"),
                 hyperParameters={"epochCount": "5", "learningRate": "0.0001", "learningRateWarmupSteps": "0"})
    wait_until_training(client, arn)
    server.kill()
    server = start(world)
    try:
        job = server.client().get_model_customization_job(jobIdentifier=arn)
        assert job["status"] == "Failed"
        assert "stopped before the first checkpoint" in job["failureMessage"]
    finally:
        server.kill()


def test_stop_right_after_create(world):
    server = start(world)
    try:
        client = server.client()
        arn = create(client, "quick-stop", long_data(world), str(world / "out"))
        client.stop_model_customization_job(jobIdentifier=arn)
        job = wait_for(client, arn, {"Stopped", "Completed", "Failed"})
        assert job["status"] == "Stopped"
    finally:
        server.kill()


def test_distillation_job_through_the_api(world, taught_model, tiny_model):
    from conftest import conversation

    (world / "models.toml").write_text(
        f'[tiers.micro]\nsource = "{tiny_model}"\neffective_batch_size = 16\n[tiers.pro]\nsource = "{taught_model}"\n'
    )
    write_jsonl(world / "prompts.jsonl", [conversation(f"What is {i} plus {i}?") for i in range(30)] + arithmetic(4, start=300))
    server = start(world)
    try:
        client = server.client()
        arn = create(client, "distill-job", str(world / "prompts.jsonl"), str(world / "out"), customizationType="DISTILLATION",
                     customizationConfig={"distillationConfig": {"teacherModelConfig": {
                         "teacherModelIdentifier": "amazon.nova-pro-v1:0", "maxResponseLengthForInference": 24}}})
        job = wait_for(client, arn, {"Completed", "Failed"})
        assert job["status"] == "Completed", job.get("failureMessage")
        assert job["statusDetails"]["dataProcessingDetails"]["status"] == "Completed"
        job_id = arn.rsplit("/", 1)[1]
        report = json.loads((world / "out" / f"model-customization-job-{job_id}" / "distillation" / "prompt_report.json").read_text())
        assert report["prompts"] == 30 and report["labelled"] == 4 and report["accepted"] > 0
        assert report["teacherAgreementWithLabels"]["records"] == 4
        assert client.get_custom_model(modelIdentifier=job["outputModelArn"])["modelStatus"] == "Active"
    finally:
        server.kill()


def test_a_job_duplicates_its_data_as_train_duplicate_does(tmp_path):
    from service_harness import ApiOnlyServer
    from test_service_devices import post, request_body
    from tunesmith.datasets import DatasetKind
    from tunesmith.datasets.duplicate import MAX_FACTOR
    from tunesmith.jobs.worker import JobWorker

    write_jsonl(tmp_path / "t.jsonl", arithmetic(20))
    with ApiOnlyServer(tmp_path / "home", tmp_path) as server:
        status, _ = post(server.url, request_body(tmp_path, "dup", tunesmithConfig={"duplicationFactor": 3}))
        assert status == 201
        status, _ = post(server.url, request_body(tmp_path, "plain"))
        assert status == 201
        store = server.app.state.store
        for name, factor in (("dup", 3), ("plain", 1)):
            with store.session() as session:
                job = store.job(session, name)
                spec, job_id = job.spec, job.id
            assert spec.duplication == factor
            worker = JobWorker(store, tmp_path / "home", job_id)
            config = worker._train_config(spec, tmp_path / "t.jsonl", [], DatasetKind.FINE_TUNING, resume=False)
            assert config.duplication == factor  # TrainConfig.duplication: virtual, as `tunesmith train --duplicate`
        for factor in (0, MAX_FACTOR + 1):
            status, body = post(server.url, request_body(tmp_path, f"bad{factor}", tunesmithConfig={"duplicationFactor": factor}))
            assert status == 400 and "tunesmithConfig.duplicationFactor" in body["message"]
