"""Jobs whose output is on S3 (moto's real server): checkpoints and the trained model go there,
another host resumes the job from S3 and serves the model from a bounded local cache."""

import json
import re
import shutil
import urllib.request

import pytest

from conftest import arithmetic, write_jsonl
from service_harness import ApiOnlyServer, free_port
from test_service_devices import post, request_body

MESSAGES = [{"role": "user", "content": [{"text": "What is 2 plus 2?"}]}]


@pytest.fixture
def s3(tmp_path, tiny_model, monkeypatch):
    """A moto S3 server with the bucket ``out``, the data, and micro mapped to the tiny model."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr("tunesmith.jobs.artifacts.RETRY_SECONDS", 0.0)
    client = boto3.client("s3")
    client.create_bucket(Bucket="out")
    write_jsonl(tmp_path / "t.jsonl", arithmetic(40))
    (tmp_path / "models.toml").write_text(f'[tiers.micro]\nsource = "{tiny_model}"\neffective_batch_size = 16\n')
    yield client
    server.stop()


def keys(client, prefix):
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket="out", Prefix=prefix).get("Contents", []))


def create_job(tmp_path, name):
    """A job (created through the API, no workers) with its output on S3; (store, job id)."""
    with ApiOnlyServer(tmp_path / "host-a", tmp_path) as server:
        status, body = post(server.url, request_body(tmp_path, name, outputDataConfig={"s3Uri": "s3://out/jobs"},
                                                     hyperParameters={"epochCount": "2", "learningRateWarmupSteps": "0"}))
        assert status == 201, body
        store = server.app.state.store
    return store, body["jobArn"].rsplit("/", 1)[1]


def worker(store, home, job_id, stop_at=None):
    from tunesmith.jobs.worker import JobWorker

    job_worker = JobWorker(store, home, job_id, save_every=2, device="cpu", allowed_roots=[str(home.parent)])  # as create_job's server
    if stop_at is not None:  # as SIGTERM does: the job goes back to the queue, its checkpoint behind it
        job_worker.stop_requested = lambda: job_worker.run is not None and job_worker.run.state.step >= stop_at
    return job_worker


def test_another_host_resumes_from_s3_and_serves_the_model(tmp_path, s3):
    from tunesmith.jobs.layout import JobFolder
    from tunesmith.jobs.store import Job

    store, job_id = create_job(tmp_path, "moving")
    prefix = f"jobs/model-customization-job-{job_id}"
    worker(store, tmp_path / "host-a", job_id, stop_at=4).execute()  # 40 records, 16 a step: 3 steps an epoch, 6 in all
    with store.session() as session:
        job = session.get(Job, job_id)
        assert job.status == "InProgress" and job.worker_pid is None  # queued again
        assert [(c["step"], c["s3Uri"]) for c in job.checkpoints] == [(s, f"s3://out/{prefix}/checkpoints/step-00000{s}") for s in (3, 4)]
    remote = keys(s3, f"{prefix}/checkpoints/")
    assert {k.split("/")[3] for k in remote} == {"step-000003", "step-000004"}  # S3 keeps what the run folder keeps
    assert f"{prefix}/checkpoints/step-000004/state.json" in remote

    shutil.rmtree(JobFolder(tmp_path / "host-a", job_id).root)  # host A is gone
    worker(store, tmp_path / "host-b", job_id).execute()
    with store.session() as session:
        job = session.get(Job, job_id)
        assert job.status == "Completed", job.failure_message
        model = store.model(session, job.output_model_arn)
        model_arn, model_uri = model.arn, model.details["modelUri"]
    events = [json.loads(line) for line in JobFolder(tmp_path / "host-b", job_id).events.read_text().splitlines()]
    assert [e["resumed_from"] for e in events if e["event"] == "start"] == [4]
    assert [e["step"] for e in events if e["event"] == "step"] == [5, 6]
    assert model_uri == f"s3://out/{prefix}"
    assert {f"{prefix}/manifest.json", f"{prefix}/model/config.json", f"{prefix}/model/model.safetensors"} <= set(keys(s3, prefix))

    shutil.rmtree(tmp_path / "host-b")  # host C serves the model from S3
    database = f"sqlite:///{tmp_path / 'host-a' / 'tunesmith.db'}"
    with ApiOnlyServer(tmp_path / "host-c", tmp_path, database_url=database, device="cpu") as server:
        runtime = server.client("bedrock-runtime")
        answer = runtime.converse(modelId=model_arn, messages=MESSAGES, inferenceConfig={"maxTokens": 3, "temperature": 0})
        assert answer["usage"]["outputTokens"] <= 3
        assert (tmp_path / "host-c" / "model-cache" / model_arn.rsplit("/", 1)[1] / "model" / "config.json").is_file()
        request = urllib.request.Request(f"{server.url}/v1/chat/completions", headers={"Content-Type": "application/json"}, data=json.dumps(
            {"model": model_arn, "messages": [{"role": "user", "content": "What is 2 plus 2?"}], "max_tokens": 3, "temperature": 0}).encode())
        chat = json.loads(urllib.request.urlopen(request).read())
        assert chat["choices"][0]["message"]["content"] == answer["output"]["message"]["content"][0]["text"]


def test_a_failed_checkpoint_upload_fails_the_job_with_the_reason(tmp_path, s3, monkeypatch):
    from tunesmith.jobs.store import Job

    def refuse(folder, uri, last=None):
        raise ConnectionError("connection reset by peer")

    monkeypatch.setattr("tunesmith.jobs.artifacts.upload_folder", refuse)
    store, job_id = create_job(tmp_path, "unlucky")
    worker(store, tmp_path / "host-a", job_id).execute()
    with store.session() as session:
        job = session.get(Job, job_id)
    assert job.status == "Failed"
    target = f"s3://out/jobs/model-customization-job-{job_id}/checkpoints"
    assert re.fullmatch(rf"cannot upload checkpoint (step-\d+) to {target}/\1 \(3 attempts\): connection reset by peer", job.failure_message)


def upload_model(client, name, size):
    client.put_object(Bucket="out", Key=f"models/{name}/manifest.json", Body=b"{}")
    client.put_object(Bucket="out", Key=f"models/{name}/model/weights.bin", Body=b"x" * size)
    client.put_object(Bucket="out", Key=f"models/{name}/training_artifacts/metrics.csv", Body=b"not downloaded")


def test_model_cache_evicts_the_least_recently_used_model_not_in_use(tmp_path, s3):
    from tunesmith.inference.model_downloads import ModelDownloads
    from tunesmith.jobs.errors import ServiceUnavailableException, ValidationException

    for name in ("a", "b", "c"):
        upload_model(s3, name, 1000)
    upload_model(s3, "huge", 5000)
    cache = ModelDownloads(tmp_path / "cache", max_bytes=2100)
    for name in ("a", "b"):
        folder = cache.local(f"arn:custom-model/{name}", f"s3://out/models/{name}")
        assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == ["manifest.json", "model/weights.bin"]
    cache.local("arn:custom-model/c", "s3://out/models/c", in_use=["arn:custom-model/a"])  # b, not a: a is loaded
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["a", "c"]

    with pytest.raises(ValidationException, match=r"model arn:custom-model/huge is 0.00 GB, more than the model cache holds .* --model-cache-gb"):
        cache.local("arn:custom-model/huge", "s3://out/models/huge")
    with pytest.raises(ServiceUnavailableException) as missing:
        cache.local("arn:custom-model/gone", "s3://out/models/gone")
    assert missing.value.message == "cannot download model arn:custom-model/gone: nothing is stored under s3://out/models/gone"


def test_a_model_that_cannot_be_downloaded_is_a_clear_error(tmp_path, s3):
    from botocore.exceptions import ClientError

    from tunesmith.jobs.store import CustomModel

    with ApiOnlyServer(tmp_path / "home", tmp_path, device="cpu") as server:
        store = server.app.state.store
        with store.session() as session:
            session.add(CustomModel(id="m1", arn="arn:aws:bedrock:us-east-1:123456789012:custom-model/x/m1", name="elsewhere",
                                    job_arn="j", job_name="j", base_model_arn="b", customization_type="FINE_TUNING", status="Active",
                                    folder="/no/such/host/run", details={"modelUri": "s3://missing-bucket/jobs/x"}))
            session.commit()
        with pytest.raises(ClientError) as error:
            server.client("bedrock-runtime").converse(modelId="elsewhere", messages=MESSAGES)
    assert error.value.response["Error"]["Code"] == "ServiceUnavailableException"
    message = error.value.response["Error"]["Message"]
    assert message.startswith("cannot download model arn:aws:bedrock:us-east-1:123456789012:custom-model/x/m1 from s3://missing-bucket/jobs/x: ")
    assert "NoSuchBucket" in message and "\n" not in message
