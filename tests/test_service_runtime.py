"""The runtime API through boto3's ``bedrock-runtime`` client (a tiny model standing in for micro)."""

import json

import pytest

from service_harness import ApiOnlyServer

MESSAGES = [{"role": "user", "content": [{"text": "What is 2 plus 2?"}]}]


@pytest.fixture
def runtime(tmp_path, tiny_model):
    (tmp_path / "models.toml").write_text(f'[tiers.micro]\nsource = "{tiny_model}"\neffective_batch_size = 16\n')
    with ApiOnlyServer(tmp_path / "home", tmp_path) as server:
        yield server.client("bedrock-runtime")


def test_converse(runtime):
    response = runtime.converse(modelId="amazon.nova-micro-v1:0", messages=MESSAGES, inferenceConfig={"maxTokens": 5, "temperature": 0})
    assert response["output"]["message"]["role"] == "assistant"
    assert isinstance(response["output"]["message"]["content"][0]["text"], str)
    usage = response["usage"]
    assert usage["outputTokens"] <= 5 and usage["inputTokens"] > 5 and usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]
    assert response["stopReason"] in ("end_turn", "max_tokens")
    assert response["metrics"]["latencyMs"] >= 0


def test_max_tokens_stop_reason(runtime):
    response = runtime.converse(modelId="micro", messages=MESSAGES, inferenceConfig={"maxTokens": 1, "temperature": 0})
    assert response["usage"]["outputTokens"] == 1
    assert response["stopReason"] in ("max_tokens", "end_turn")


def test_converse_stream_matches_converse(runtime):
    config = {"maxTokens": 8, "temperature": 0}
    whole = runtime.converse(modelId="micro", messages=MESSAGES, inferenceConfig=config)
    events = list(runtime.converse_stream(modelId="micro", messages=MESSAGES, inferenceConfig=config)["stream"])
    kinds = [next(iter(e)) for e in events]
    assert kinds[0] == "messageStart" and kinds[-3:] == ["contentBlockStop", "messageStop", "metadata"]
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert text == whole["output"]["message"]["content"][0]["text"]
    assert events[-2]["messageStop"]["stopReason"] == whole["stopReason"]
    assert events[-1]["metadata"]["usage"] == whole["usage"]


def test_invoke_model_nova_body(runtime):
    body = {"schemaVersion": "messages-v1", "system": [{"text": "Be brief."}], "messages": MESSAGES,
            "inferenceConfig": {"maxTokens": 4, "temperature": 0}}
    response = runtime.invoke_model(modelId="amazon.nova-micro-v1:0", body=json.dumps(body))
    payload = json.loads(response["body"].read())
    assert payload["output"]["message"]["role"] == "assistant"
    assert payload["usage"]["outputTokens"] <= 4 and payload["stopReason"] in ("end_turn", "max_tokens")


def test_runtime_errors(runtime):
    with pytest.raises(runtime.exceptions.ResourceNotFoundException, match="is not a base model, a custom model or a deployment"):
        runtime.converse(modelId="amazon.titan-text-v1", messages=MESSAGES)
    with pytest.raises(runtime.exceptions.ValidationException, match="temperature"):
        runtime.converse(modelId="micro", messages=MESSAGES, inferenceConfig={"temperature": 1.5})
    with pytest.raises(runtime.exceptions.ValidationException, match="last message must be from the user"):
        runtime.converse(modelId="micro", messages=[{"role": "assistant", "content": [{"text": "hi"}]}])


def test_health_and_control_plane_answer_while_many_converse_calls_queue(tmp_path, tiny_model):
    """Generation has threads of its own: 48 queued Converse calls leave /health and Get* alone."""
    import threading
    import time
    import urllib.request

    (tmp_path / "models.toml").write_text(f'[tiers.micro]\nsource = "{tiny_model}"\neffective_batch_size = 16\n')
    with ApiOnlyServer(tmp_path / "home", tmp_path) as server:
        client = server.client("bedrock-runtime")
        client.converse(modelId="micro", messages=MESSAGES, inferenceConfig={"maxTokens": 2})  # loaded once
        calls = [threading.Thread(target=client.converse, kwargs={"modelId": "micro", "messages": MESSAGES,
                                                                   "inferenceConfig": {"maxTokens": 64, "temperature": 0}})
                 for _ in range(48)]
        for call in calls:
            call.start()
        slowest = 0.0
        for _ in range(20):
            started = time.perf_counter()
            urllib.request.urlopen(server.url + "/health", timeout=10).read()
            server.client().list_model_customization_jobs()
            slowest = max(slowest, time.perf_counter() - started)
            time.sleep(0.02)
        for call in calls:
            call.join()
    assert slowest < 1.0, f"{slowest:.2f} s"
