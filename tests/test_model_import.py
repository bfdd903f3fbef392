"""Custom Model Import: a result folder trained with the CLI, registered on a live server with boto3's
``create_model_import_job`` (or ``tunesmith models import``), answers through Converse and through
``/v1/chat/completions`` exactly as the folder's model answers in the engine."""

import json
import shutil
import urllib.request
from pathlib import Path

import botocore.session
import openai
import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner

from conftest import arithmetic, write_jsonl
from service_harness import ApiOnlyServer
from tunesmith.cli import cli
from tunesmith.evaluation.generation import GenerationSettings, generate
from tunesmith.hyperparameters import Hyperparameters
from tunesmith.statuses import ImportJobStatus
from tunesmith.training import TrainConfig, finetune

ROLE = "arn:aws:iam::123456789012:role/import"
QUESTION = "What is 3 plus 3?"


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory, taught_model) -> Path:
    """A folder shaped like the quickstart's: a finished LoRA run of the taught tiny model in micro-lora/."""
    folder = tmp_path_factory.mktemp("imports") / "tunesmith-quickstart"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", arithmetic(32))
    finetune(TrainConfig(data=folder / "train.jsonl", output=folder / "micro-lora", model=str(taught_model),
                         hyperparameters=Hyperparameters(1, 1e-4, 0), precision="fp32"))
    return folder


@pytest.fixture(scope="module")
def reference(quickstart) -> str:
    """The trained model's greedy answer, computed in the engine from the folder itself."""
    from tunesmith.models.loading import load_model, load_tokenizer
    from tunesmith.models.registry import resolve_model

    source = resolve_model(str(quickstart / "micro-lora"))
    [answer] = generate(load_model(source), load_tokenizer(source), [[{"role": "user", "content": QUESTION}]],
                        GenerationSettings(max_new_tokens=24))
    assert len(answer.text) > 5  # real text, not an empty answer that would agree trivially
    return answer.text


@pytest.fixture
def server(tmp_path, quickstart):
    """A live API whose allowed folders hold the quickstart folder (and tmp_path)."""
    with ApiOnlyServer(tmp_path / "home", quickstart.parent) as running:
        yield running


def create(client, source: str, name: str = "arith", job: str = "import-arith", **extra) -> str:
    return client.create_model_import_job(jobName=job, importedModelName=name, roleArn=ROLE,
                                          modelDataSource={"s3DataSource": {"s3Uri": source}}, **extra)["jobArn"]


def test_an_imported_folder_answers_through_converse_and_openai(server, quickstart, reference, taught_model):
    bedrock = server.client()
    arn = create(bedrock, str(quickstart / "micro-lora"))
    job = bedrock.get_model_import_job(jobIdentifier=arn)
    assert (job["status"], job["jobName"], job["importedModelName"], job["roleArn"]) == ("Completed", "import-arith", "arith", ROLE)
    assert job["modelDataSource"] == {"s3DataSource": {"s3Uri": str(quickstart / "micro-lora")}}
    model_arn = job["importedModelArn"]
    assert model_arn.startswith("arn:aws:bedrock:us-east-1:123456789012:imported-model/") and job["endTime"] >= job["creationTime"]
    [summary] = bedrock.list_model_import_jobs(statusEquals="Completed")["modelImportJobSummaries"]
    assert (summary["jobArn"], summary["importedModelArn"], summary["importedModelName"]) == (arn, model_arn, "arith")
    model = bedrock.get_custom_model(modelIdentifier="arith")
    assert (model["modelArn"], model["customizationType"], model["modelStatus"], model["jobArn"]) == (model_arn, "IMPORTED", "Active", arn)
    assert model["baseModelArn"] == f"arn:aws:bedrock:us-east-1::foundation-model/{taught_model.name}"  # the base the run names

    runtime = server.client("bedrock-runtime")
    for model_id in ("arith", model_arn):
        reply = runtime.converse(modelId=model_id, messages=[{"role": "user", "content": [{"text": QUESTION}]}],
                                 inferenceConfig={"maxTokens": 24, "temperature": 0})
        assert reply["output"]["message"]["content"][0]["text"] == reference
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    assert "arith" in [m.id for m in client.models.list().data]
    answer = client.chat.completions.create(model="arith", messages=[{"role": "user", "content": QUESTION}], temperature=0, max_tokens=24)
    assert answer.choices[0].message.content == reference
    assert 'value="arith"' in urllib.request.urlopen(server.url + "/console/playground").read().decode()  # the console offers it


def test_the_model_is_copied_and_deleting_it_leaves_the_folder(server, quickstart, tmp_path):
    bedrock = server.client()
    create(bedrock, str(quickstart))  # the quickstart's folder: its one result
    copy = Path(server.app.state.store.model(server.app.state.store.session(), "arith").folder)
    assert copy.parent == tmp_path / "home" / "imports" and {p.name for p in copy.iterdir()} == {"manifest.json", "model"}
    bedrock.delete_custom_model(modelIdentifier="arith")
    assert not copy.exists() and (quickstart / "micro-lora" / "model" / "model.safetensors").is_file()
    assert bedrock.get_model_import_job(jobIdentifier="import-arith")["status"] == "Completed"  # the job's record stays


def refused(call, code: str, message: str) -> None:
    with pytest.raises(ClientError) as caught:
        call()
    assert caught.value.response["Error"]["Code"] == code
    assert message in caught.value.response["Error"]["Message"], caught.value.response["Error"]["Message"]


def test_bad_imports_are_refused_saying_why(server, quickstart, tmp_path):
    bedrock = server.client()
    field = "modelDataSource.s3DataSource.s3Uri: "
    refused(lambda: create(bedrock, "/etc"), "ValidationException", f"{field}'/etc' is outside the folders this server may use")
    refused(lambda: create(bedrock, f"file://{quickstart}%00"), "ValidationException", "decodes to a control character (U+0000)")
    refused(lambda: create(bedrock, str(quickstart) + "\x01"), "ValidationException", "control character")
    empty = quickstart.parent / "empty"
    empty.mkdir(exist_ok=True)
    refused(lambda: create(bedrock, str(empty)), "ValidationException", f"{field}{empty}: not a tunesmith result folder (no manifest.json)")
    adapter_only = quickstart.parent / "adapter-only"
    shutil.copytree(quickstart / "micro-lora", adapter_only, ignore=shutil.ignore_patterns("model", "checkpoints"), dirs_exist_ok=True)
    refused(lambda: create(bedrock, str(adapter_only)), "ValidationException", "holds adapter/ but no merged model/")
    outside = tmp_path / "outside-model"  # a symlinked weight file must not reach outside the allowed folders
    shutil.copytree(quickstart / "micro-lora", outside, ignore=shutil.ignore_patterns("checkpoints"))
    linked = quickstart.parent / "linked"
    shutil.copytree(quickstart / "micro-lora", linked, ignore=shutil.ignore_patterns("checkpoints"), dirs_exist_ok=True)
    (linked / "model" / "model.safetensors").unlink()
    (linked / "model" / "model.safetensors").symlink_to(outside / "model" / "model.safetensors")
    refused(lambda: create(bedrock, str(linked)), "ValidationException", "model.safetensors' is outside the folders")
    imports = tmp_path / "home" / "imports"
    assert bedrock.list_model_import_jobs()["modelImportJobSummaries"] == [] and not (imports.exists() and any(imports.iterdir()))

    first = create(bedrock, str(quickstart), clientRequestToken="once")
    assert create(bedrock, str(quickstart), clientRequestToken="once") == first  # an idempotent retry
    refused(lambda: create(bedrock, str(quickstart), name="other"), "ConflictException", "job name is currently in use")
    refused(lambda: create(bedrock, str(quickstart), job="import-2"), "ConflictException", "model name arith is currently in use")
    refused(lambda: bedrock.get_model_import_job(jobIdentifier="nope"), "ResourceNotFoundException", "Could not find import job")


def test_tunesmith_models_import_registers_a_folder(server, quickstart, reference):
    result = CliRunner().invoke(cli, ["models", "import", str(quickstart), "--name", "arith-cli", "--endpoint", server.url, "--json"])
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == f"{quickstart} holds one result: importing {quickstart / 'micro-lora'}"
    job = json.loads(result.stdout)
    assert job["status"] == "Completed" and job["importedModelName"] == "arith-cli" and job["jobName"].startswith("arith-cli-import-")
    reply = server.client("bedrock-runtime").converse(modelId="arith-cli", messages=[{"role": "user", "content": [{"text": QUESTION}]}],
                                                      inferenceConfig={"maxTokens": 24, "temperature": 0})
    assert reply["output"]["message"]["content"][0]["text"] == reference
    again = CliRunner().invoke(cli, ["models", "import", str(quickstart), "--name", "arith-cli", "--endpoint", server.url])
    assert again.exit_code != 0 and "ConflictException: The provided model name arith-cli is currently in use." in again.output


def test_the_import_statuses_are_the_hosted_apis():
    bedrock = botocore.session.get_session().get_service_model("bedrock")
    assert [status.value for status in ImportJobStatus] == bedrock.shape_for("ModelImportJobStatus").enum


def test_a_result_on_s3_is_imported_and_downloaded_when_first_used(tmp_path, quickstart, reference, monkeypatch):
    """moto's real S3 server: the prefix is checked, not copied; the runtime downloads it on first use."""
    import boto3
    from moto.server import ThreadedMotoServer

    from service_harness import free_port
    from tunesmith.jobs.artifacts import upload_folder

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    moto.start()
    try:
        for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
                           "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}"}.items():
            monkeypatch.setenv(key, value)
        boto3.client("s3").create_bucket(Bucket="models")
        upload_folder(quickstart / "micro-lora", "s3://models/arith")
        with ApiOnlyServer(tmp_path / "home", tmp_path) as server:
            bedrock = server.client()
            refused(lambda: create(bedrock, "s3://models/nothing"), "ValidationException",
                    "modelDataSource.s3DataSource.s3Uri: s3://models/nothing holds no result (manifest.json and model are needed; found: nothing)")
            job = bedrock.get_model_import_job(jobIdentifier=create(bedrock, "s3://models/arith"))
            assert job["status"] == "Completed" and not (tmp_path / "home" / "imports").exists()
            reply = server.client("bedrock-runtime").converse(modelId="arith", messages=[{"role": "user", "content": [{"text": QUESTION}]}],
                                                              inferenceConfig={"maxTokens": 24, "temperature": 0})
            assert reply["output"]["message"]["content"][0]["text"] == reference
            assert (tmp_path / "home" / "model-cache" / job["importedModelArn"].rsplit("/", 1)[-1] / "model").is_dir()
    finally:
        moto.stop()
