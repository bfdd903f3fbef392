"""train / evaluate / generate / models from the command line, on the tiny model."""

import json

from click.testing import CliRunner
from transformers import AutoModelForCausalLM

from conftest import arithmetic, conversation, write_jsonl
from tunesmith.cli import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_train_evaluate_generate(in_tmp, tiny_model):
    write_jsonl(in_tmp / "t.jsonl", arithmetic(40))
    write_jsonl(in_tmp / "v.jsonl", arithmetic(8, start=100))
    result = run("train", "t.jsonl", "--validation", "v.jsonl", "--model", tiny_model, "--output", "out",
                 "--epochs", 1, "--learning-rate", "1e-4", "--warmup-steps", 1, "--precision", "fp32", "--json")
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.output[result.output.index("{"):])
    assert manifest["hyperParameters"]["sent"] == {"epochCount": "1", "learningRate": "1e-4", "learningRateWarmupSteps": "1"}
    assert AutoModelForCausalLM.from_pretrained(in_tmp / "out" / "model") is not None

    result = run("evaluate", "--model", "out", "--data", "v.jsonl", "--compare", tiny_model, "--max-new-tokens", 8, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output[result.output.index("{"):])
    assert [r["records"] for r in data["results"]] == [8, 8]
    assert {"loss", "perplexity", "exactMatch", "rougeL"} <= set(data["results"][0])
    lines = (in_tmp / "v.predictions.jsonl").read_text().splitlines()
    assert len(lines) == 16 and set(json.loads(lines[0])) >= {"model", "prompt", "reference", "prediction", "exactMatch"}

    write_jsonl(in_tmp / "prompts.jsonl", [conversation(f"What is {i} plus {i}?") for i in range(3)])
    result = run("generate", "--model", "out", "--data", "prompts.jsonl", "--out", "answers.jsonl", "--max-new-tokens", 4)
    assert result.exit_code == 0, result.output
    answers = [json.loads(line) for line in (in_tmp / "answers.jsonl").read_text().splitlines()]
    assert [a["messages"][-1]["role"] for a in answers] == ["assistant"] * 3
    again = run("generate", "--model", "out", "--data", "prompts.jsonl", "--out", "answers.jsonl")
    assert again.exit_code == 1 and "already exists" in again.output


def test_train_refuses_bad_input_without_a_traceback(in_tmp, tiny_model):
    write_jsonl(in_tmp / "t.jsonl", arithmetic(20))
    missing = run("train", "nope.jsonl", "--model", tiny_model, "--output", "o")
    assert missing.exit_code == 1 and "nope.jsonl: file: no such file" in missing.output
    bad_hp = run("train", "t.jsonl", "--model", tiny_model, "--output", "o", "--epochs", 9)
    assert bad_hp.exit_code == 1 and "epochCount=9 is out of range: must be between 1 and 5" in bad_hp.output
    lite = run("train", "t.jsonl", "--model", "lite", "--output", "o")
    assert lite.exit_code == 1 and "no model is configured for the lite tier" in lite.output
    mixed = run("train", "t.jsonl", "--output", "o", "--advised", "--epochs", 2)
    assert mixed.exit_code == 2
    assert not (in_tmp / "o" / "checkpoints").exists()


def test_train_advised(in_tmp, tiny_model):
    write_jsonl(in_tmp / "t.jsonl", arithmetic(20))
    result = run("train", "t.jsonl", "--model", tiny_model, "--output", "o", "--advised", "--precision", "fp32", "--json")
    assert result.exit_code == 0, result.output
    manifest = json.loads((in_tmp / "o" / "manifest.json").read_text())
    # 20 records on a custom model (batch 16): 5 epochs, 10x duplication, warmup 200/160 -> 1
    assert manifest["hyperParameters"]["resolved"]["epochCount"] == "5" and manifest["duplicationFactor"] == 10
    assert manifest["hyperParameters"]["resolved"]["learningRateWarmupSteps"] == "1"


def test_train_shows_plan_warnings_and_stops_cleanly(in_tmp, tiny_model, monkeypatch):
    import contextlib
    import os
    import signal

    import tunesmith.cli.train as train_command

    @contextlib.contextmanager
    def interrupt_after_step_2(description="training"):
        yield lambda info: info.step == 2 and os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(train_command, "training_progress", interrupt_after_step_2)
    write_jsonl(in_tmp / "t.jsonl", arithmetic(40))
    result = run("train", "t.jsonl", "--model", tiny_model, "--output", "out", "--epochs", 1, "--warmup-steps", 5,
                 "--learning-rate", "1e-4", "--precision", "fp32")
    assert result.exit_code == 130, result.output
    assert "warning: warmup (5 steps) is not shorter than training (3 steps)" in result.output
    assert result.output.index("warning: warmup") < result.output.index("stopped after step 2 of 3")
    assert "--resume" in result.output and not (in_tmp / "out" / "manifest.json").exists()
    assert (in_tmp / "out" / "checkpoints" / "step-000002").is_dir()


def test_train_and_distill_flags_take_their_defaults_from_the_config_dataclasses():
    import dataclasses

    from tunesmith import guide
    from tunesmith.cli.distill import distill
    from tunesmith.cli.train import train
    from tunesmith.distillation.distill import DistillConfig
    from tunesmith.training.config import LoraSettings, TrainConfig

    flags = {p.name: p for p in train.params}
    for item in dataclasses.fields(TrainConfig):
        if item.name in flags and item.default is not dataclasses.MISSING:
            assert flags[item.name].default == getattr(item.default, "value", item.default), item.name
    assert {name: flags[f"lora_{name}"].default for name in ("rank", "alpha", "dropout")} == vars(LoraSettings())
    assert flags["duplication"].opts == ["--duplicate"] and flags["max_length"].type.min == 8
    assert flags["output"].required and list(flags["kind"].type.choices) == ["fine-tuning", "pretraining"]
    options = {p.name: p for p in distill.params}
    budget = options["max_response_length"]
    assert budget.default == DistillConfig.__dataclass_fields__["max_response_length"].default == guide.DEFAULT_RESPONSE_TOKENS
    assert (budget.type.min, budget.type.max) == (1, guide.MAX_RESPONSE_TOKENS)
    assert options["method"].default == "lora" and list(options["precision"].type.choices) == ["auto", "bf16", "fp16", "fp32"]


def test_models_list_json():
    rows = json.loads(run("models", "list", "--json").output)
    assert [r["name"] for r in rows] == ["micro", "lite", "pro"]
    assert rows[1]["available"] is False and rows[0]["effectiveBatchSize"] == 64


def test_bad_model_config_is_reported(in_tmp):
    (in_tmp / "models.toml").write_text("[tiers.lite]\nsourc = 'x'\n")
    result = run("models", "list")
    assert result.exit_code == 1 and "tiers.lite.source: missing" in result.output


def test_validate_counts_tokens_with_a_models_tokenizer(in_tmp, tiny_model):
    write_jsonl(in_tmp / "t.jsonl", arithmetic(10))
    result = run("validate", "t.jsonl", "--tokens", tiny_model, "--json")
    assert result.exit_code == 0, result.output
    tokens = json.loads(result.output)["stats"]["tokens"]
    assert tokens["total"] > 0 and set(tokens["perRecord"]) == {"min", "median", "p95", "max"}
    assert "tokens (" in run("validate", "t.jsonl", "--tokens", tiny_model).output


def test_validate_reports_the_share_of_tokens_in_shared_prefixes(in_tmp, tiny_model):
    from tunesmith.models.loading import load_tokenizer
    from tunesmith.models.registry import resolve_model

    system = "You are a careful assistant. " * 8
    write_jsonl(in_tmp / "plain.jsonl", arithmetic(10))
    write_jsonl(in_tmp / "system.jsonl", [conversation(f"What is {i} plus {i}?", f"{i} plus {i} is {2 * i}.", system=system) for i in range(10)])
    tokens = json.loads(run("validate", "system.jsonl", "--tokens", tiny_model, "--json").output)["stats"]["tokens"]
    # every record repeats the system turn and "What is"; what follows differs from the first digit on
    header = f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\nWhat is"
    shared = len(load_tokenizer(resolve_model(str(tiny_model)))(header, add_special_tokens=False)["input_ids"])
    assert tokens["perRecord"]["min"] == tokens["perRecord"]["max"]
    assert tokens["sharedPrefixShare"] == round(shared / tokens["perRecord"]["max"], 4) and tokens["sharedPrefixShare"] > 0.8
    # "<|im_start|>user\nWhat is" is 6 tokens, under the 8 worth computing once; validation files do not count
    plain = run("validate", "plain.jsonl", "--validation", "system.jsonl", "--tokens", tiny_model, "--json").output
    assert json.loads(plain)["stats"]["tokens"]["sharedPrefixShare"] == 0.0
    text = run("validate", "system.jsonl", "--tokens", tiny_model).output
    assert f"shared prefix: {tokens['sharedPrefixShare']:.1%} of tokens (computed once per micro-batch when training)" in text


def test_chat_keeps_the_conversation(in_tmp, tiny_model):
    result = CliRunner().invoke(cli, ["chat", "--model", str(tiny_model), "--max-new-tokens", "3"], input="What is 1 plus 1?\nAnd 2?\n\n")
    assert result.exit_code == 0, result.output
    assert result.output.count("you> ") == 3 and result.output.count("> ") >= 5
