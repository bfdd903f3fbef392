"""The training engine on a tiny model built from a config (CPU, seconds)."""

import csv
import json
import os
import signal

import pytest
import torch

from conftest import arithmetic, conversation, write_jsonl
from tunesmith.hyperparameters import Hyperparameters
from tunesmith.models.gguf_cache import ModelUnavailableError
from tunesmith.training import DataError, OutputError, TrainConfig, finetune
from tunesmith.training.checkpoints import CheckpointError, latest_checkpoint, list_checkpoints


def config(tmp_path, tiny_model, **overrides):
    if not (tmp_path / "t.jsonl").exists():
        write_jsonl(tmp_path / "t.jsonl", arithmetic(40))
        write_jsonl(tmp_path / "v.jsonl", arithmetic(8, start=100))
    settings = dict(
        data=tmp_path / "t.jsonl", validation=[tmp_path / "v.jsonl"], output=tmp_path / "out", model=str(tiny_model),
        hyperparameters=Hyperparameters(2, 1e-4, 3), precision="fp32",
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def events(output, kind):
    lines = (output / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == kind]


def csv_rows(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_warmup_schedule_at_every_step(tmp_path, tiny_model):
    # 40 records, tiny model tier batch 16 -> 3 steps per epoch, 2 epochs = 6 steps; warmup 3.
    cfg = config(tmp_path, tiny_model, hyperparameters=Hyperparameters(2, 1e-4, 3))
    finetune(cfg)
    lrs = [e["lr"] for e in events(cfg.output, "step")]
    assert lrs == pytest.approx([1e-4 / 3, 2e-4 / 3, 1e-4, 1e-4, 1e-4, 1e-4], rel=1e-12)


def test_no_warmup_trains_at_the_set_rate_from_step_one(tmp_path, tiny_model):
    cfg = config(tmp_path, tiny_model, hyperparameters=Hyperparameters(1, 5e-5, 0))
    finetune(cfg)
    assert [e["lr"] for e in events(cfg.output, "step")] == [5e-5] * 3


def test_metric_files_have_the_hosted_columns(tmp_path, tiny_model):
    cfg = config(tmp_path, tiny_model)
    manifest = finetune(cfg).manifest
    training = csv_rows(cfg.output / "training_artifacts" / "step_wise_training_metrics.csv")
    validation = csv_rows(cfg.output / "validation_artifacts" / "post_fine_tuning_validation" / "validation_metrics.csv")
    assert training[0] == ["step_number", "epoch_number", "training_loss", "perplexity"]
    assert validation[0] == ["step_number", "epoch_number", "validation_loss", "perplexity"]
    assert [r[:2] for r in training[1:]] == [["0", "0"], ["1", "0"], ["2", "0"], ["3", "1"], ["4", "1"], ["5", "1"]]
    assert [r[:2] for r in validation[1:]] == [["2", "0"], ["5", "1"]]
    for row in training[1:]:
        assert float(row[3]) == pytest.approx(torch.tensor(float(row[2])).exp().item(), rel=1e-5)
    assert manifest["result"]["finalValidationLoss"] == float(validation[-1][2])
    step_events = events(cfg.output, "step")
    assert set(step_events[0]) >= {"step", "loss", "lr", "tokens_per_s", "elapsed_s", "eta_s"}
    # steps count from 1 everywhere but the hosted CSVs, which count from 0
    assert [e["step"] for e in step_events] == [1, 2, 3, 4, 5, 6]
    assert [e["step"] for e in events(cfg.output, "validation")] == [3, 6]
    assert [e["step"] for e in events(cfg.output, "checkpoint")] == [3, 6]
    assert [p.name for p in list_checkpoints(cfg.output)] == ["step-000003", "step-000006"]


def test_result_folder(tmp_path, tiny_model):
    cfg = config(tmp_path, tiny_model)
    manifest = finetune(cfg).manifest
    out = cfg.output
    assert (out / "adapter" / "adapter_config.json").exists()
    assert (out / "model" / "model.safetensors").exists() and (out / "model" / "tokenizer.json").exists()
    assert (out / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((out / "manifest.json").read_text())
    assert saved == manifest
    assert saved["hyperParameters"]["resolved"] == {"epochCount": "2", "learningRate": "0.0001", "learningRateWarmupSteps": "3"}
    assert saved["data"]["training"]["records"] == 40 and len(saved["data"]["training"]["sha256"]) == 64
    assert saved["result"]["steps"] == 6 and saved["method"] == "lora"
    assert {"torch", "transformers", "peft"} <= set(saved["versions"])


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_merged_lora_equals_base_plus_adapter(tmp_path, tiny_model, precision):
    """Also in bf16, where the frozen base trains in bf16 and the merge uses the fp32 original."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg = config(tmp_path, tiny_model, hyperparameters=Hyperparameters(2, 1e-4, 0), precision=precision)
    result = finetune(cfg)
    assert result.manifest["result"]["steps"] == 6
    merged_dtypes = {p.dtype for p in AutoModelForCausalLM.from_pretrained(cfg.output / "model", dtype="auto").parameters()}
    assert merged_dtypes == {torch.float32}
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    with_adapter = PeftModel.from_pretrained(base, cfg.output / "adapter").eval()
    merged = AutoModelForCausalLM.from_pretrained(cfg.output / "model").eval()
    ids = torch.tensor([[5, 17, 42, 99, 3, 250, 7]])
    with torch.no_grad():
        expected, got = with_adapter(ids).logits, merged(ids).logits
        plain = AutoModelForCausalLM.from_pretrained(tiny_model)(ids).logits
    assert torch.allclose(expected, got, atol=1e-5)
    assert (plain - got).abs().max() > 1e-6  # training changed the model


def test_same_seed_same_loss_curve(tmp_path, tiny_model):
    first = finetune(config(tmp_path, tiny_model, output=tmp_path / "a")).manifest
    finetune(config(tmp_path, tiny_model, output=tmp_path / "b"))
    rows_a = csv_rows(tmp_path / "a" / "training_artifacts" / "step_wise_training_metrics.csv")
    rows_b = csv_rows(tmp_path / "b" / "training_artifacts" / "step_wise_training_metrics.csv")
    assert rows_a == rows_b
    third = finetune(config(tmp_path, tiny_model, output=tmp_path / "c", seed=1)).manifest
    assert third["result"]["finalTrainingLoss"] != first["result"]["finalTrainingLoss"]


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_resume_equals_uninterrupted(tmp_path, tiny_model, dropout):
    from tunesmith.training import LoraSettings

    whole = config(tmp_path, tiny_model, output=tmp_path / "whole", lora=LoraSettings(dropout=dropout))
    finetune(whole)

    interrupted = config(tmp_path, tiny_model, output=tmp_path / "resumed", lora=LoraSettings(dropout=dropout), save_every=1)
    done = []
    stopped = finetune(interrupted, on_step=lambda info: done.append(info.step), stop=lambda: done[-1:] == [4])
    assert stopped.stopped and stopped.state.step == 4 and stopped.manifest is None
    assert latest_checkpoint(interrupted.output).name == "step-000004"

    interrupted.resume = True
    finetune(interrupted)
    name = "training_artifacts/step_wise_training_metrics.csv"
    assert csv_rows(tmp_path / "resumed" / name) == csv_rows(tmp_path / "whole" / name)
    valid = "validation_artifacts/post_fine_tuning_validation/validation_metrics.csv"
    assert csv_rows(tmp_path / "resumed" / valid) == csv_rows(tmp_path / "whole" / valid)
    from safetensors.torch import load_file

    a = load_file(tmp_path / "whole" / "model" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "model" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_full_fine_tuning(tmp_path, tiny_model):
    cfg = config(tmp_path, tiny_model, method="full")
    manifest = finetune(cfg).manifest
    assert not (cfg.output / "adapter").exists() and (cfg.output / "model" / "model.safetensors").exists()
    assert manifest["method"] == "full" and manifest["lora"] is None


def test_sigterm_checkpoints_and_stops(tmp_path, tiny_model):
    cfg = config(tmp_path, tiny_model)
    result = finetune(cfg, on_step=lambda info: info.step == 2 and os.kill(os.getpid(), signal.SIGTERM))
    state = result.state
    assert result.stopped and state.stopped and state.step == 2
    assert latest_checkpoint(cfg.output).name == "step-000002"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored


def test_checkpoints_are_rotated(tmp_path, tiny_model):
    cfg = config(tmp_path, tiny_model, save_every=1, keep_checkpoints=2)
    finetune(cfg)
    assert [p.name for p in list_checkpoints(cfg.output)] == ["step-000005", "step-000006"]


def test_disk_full_while_checkpointing_leaves_latest_intact(tmp_path, tiny_model, monkeypatch):
    import tunesmith.training.checkpoints as checkpoints

    cfg = config(tmp_path, tiny_model, save_every=1)
    real_save = checkpoints.save_file
    calls = {"n": 0}

    def flaky_save(tensors, path):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        real_save(tensors, path)

    monkeypatch.setattr(checkpoints, "save_file", flaky_save)
    with pytest.raises(CheckpointError, match="No space left on device"):
        finetune(cfg)
    assert [p.name for p in list_checkpoints(cfg.output)] == ["step-000001", "step-000002"]
    leftovers = [p.name for p in (cfg.output / "checkpoints").iterdir()]
    assert sorted(leftovers) == ["step-000001", "step-000002"]


def test_bad_data_fails_before_any_model_loads(tmp_path, tiny_model, monkeypatch):
    import tunesmith.training.loop as loop

    monkeypatch.setattr(loop, "load_model", lambda *a: pytest.fail("model loaded"))
    monkeypatch.setattr(loop, "load_tokenizer", lambda *a: pytest.fail("tokenizer loaded"))
    write_jsonl(tmp_path / "bad.jsonl", arithmetic(10) + ['{"messages": "oops"}'])
    with pytest.raises(DataError) as info:
        finetune(config(tmp_path, tiny_model, data=tmp_path / "bad.jsonl", validation=[]))
    assert str(info.value.report.log.errors[0]).endswith("bad.jsonl:11: messages: expected an array of messages, got a string")


def test_unconfigured_tier_fails_before_any_model_loads(tmp_path, tiny_model, monkeypatch):
    import tunesmith.training.loop as loop

    monkeypatch.setattr(loop, "load_model", lambda *a: pytest.fail("model loaded"))
    with pytest.raises(ModelUnavailableError, match=r"no model is configured for the lite tier: add to .*models.toml"):
        finetune(config(tmp_path, tiny_model, model="lite"))


def test_configured_tier_uses_the_configured_folder_and_batch(tmp_path, tiny_model):
    (tmp_path / "models.toml").write_text(f'[tiers.lite]\nsource = "{tiny_model}"\neffective_batch_size = 8\n')
    cfg = config(tmp_path, tiny_model, model="amazon.nova-lite-v1:0:300k", hyperparameters=Hyperparameters(1, 1e-4, 0))
    manifest = finetune(cfg).manifest
    assert manifest["tier"] == "lite" and manifest["effectiveBatchSize"] == 8 and manifest["result"]["steps"] == 5


def test_existing_run_needs_resume(tmp_path, tiny_model):
    cfg = config(tmp_path, tiny_model)
    finetune(cfg)
    with pytest.raises(OutputError, match="already holds a training run: pass --resume"):
        finetune(config(tmp_path, tiny_model))


def test_unwritable_output(tmp_path, tiny_model):
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="exists and is not a folder"):
        finetune(config(tmp_path, tiny_model, output=tmp_path / "file"))
    with pytest.raises(OutputError, match="cannot write to"):
        finetune(config(tmp_path, tiny_model, output=tmp_path / "file" / "sub"))


def test_truncation_is_counted(tmp_path, tiny_model):
    records = arithmetic(30) + [conversation("Tell me a story.", "once upon a time " * 200)]
    write_jsonl(tmp_path / "long.jsonl", records)
    cfg = config(tmp_path, tiny_model, data=tmp_path / "long.jsonl", validation=[], max_length=64)
    runs = []
    result = finetune(cfg, on_start=runs.append, stop=lambda: True)  # set up, then stop before the first micro-batch
    run = runs[0]
    assert run.train_data.truncated == 1 and run.train_data.dropped == 0
    assert max(len(e) for e in run.train_data.examples) == 64
    assert result.stopped and result.state.step == 0 and not list_checkpoints(cfg.output)
    assert "1 record(s) longer than 64 tokens (max_length) were cut" in result.warnings


def test_continued_pretraining(tmp_path, tiny_model):
    write_jsonl(tmp_path / "text.jsonl", [{"text": f"{i} plus {i} is {2 * i}."} for i in range(20)])
    cfg = config(tmp_path, tiny_model, data=tmp_path / "text.jsonl", validation=[], kind="pretraining")
    runs = []
    result = finetune(cfg, on_start=runs.append)
    assert all(all(e.targets) for e in runs[0].train_data.examples)
    assert result.manifest["kind"] == "pretraining"


def test_stop_between_micro_batches_throws_the_step_away_and_resumes_exactly(tmp_path, tiny_model):
    from safetensors.torch import load_file

    from tunesmith.training import LoraSettings

    # dropout draws random numbers in every micro-batch: the discarded ones must not leak into the resumed run
    settings = dict(lora=LoraSettings(dropout=0.1), micro_batch_tokens=64)
    whole = finetune(config(tmp_path, tiny_model, output=tmp_path / "whole", **settings))

    interrupted = config(tmp_path, tiny_model, output=tmp_path / "resumed", **settings)
    done, polls = [], []

    def stop():
        polls.append(len(done))  # steps completed when polled
        return polls.count(4) == 3  # step 5 has run two micro-batches

    stopped = finetune(interrupted, on_step=lambda info: done.append(info.step), stop=stop)
    assert stopped.stopped and stopped.state.step == 4 and done == [1, 2, 3, 4]
    assert polls.count(3) >= 3  # several micro-batches per step: the stop really came mid-step
    assert latest_checkpoint(interrupted.output).name == "step-000004"
    [event] = events(interrupted.output, "stopped")
    assert (event["step"], event["discarded_step"]) == (4, 5)
    assert len(csv_rows(interrupted.output / "training_artifacts" / "step_wise_training_metrics.csv")) == 1 + 4

    interrupted.resume = True
    resumed = finetune(interrupted)
    name = "training_artifacts/step_wise_training_metrics.csv"
    assert csv_rows(tmp_path / "resumed" / name) == csv_rows(tmp_path / "whole" / name)
    assert resumed.manifest["result"]["tokens"] == whole.manifest["result"]["tokens"]
    a = load_file(tmp_path / "whole" / "model" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "model" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_plan_warnings_reach_the_result_the_start_event_and_the_manifest(tmp_path, tiny_model):
    cfg = config(tmp_path, tiny_model, hyperparameters=Hyperparameters(1, 1e-4, 5))
    result = finetune(cfg)
    expected = "warmup (5 steps) is not shorter than training (3 steps): the learning rate never reaches the value you set"
    assert any(w.startswith(expected) for w in result.warnings)
    [start] = events(cfg.output, "start")
    assert start["warnings"] == result.warnings == result.manifest["warnings"]


def test_the_plan_counts_the_records_that_train(tmp_path, tiny_model):
    # 9 records whose answer lies beyond max_length are skipped: 40 train, in ceil(40 / 16) = 3 steps, not ceil(49 / 16) = 4
    long_prompts = [conversation("Tell me a story. " + "once upon a time " * 60 + str(i), "The end.") for i in range(9)]
    write_jsonl(tmp_path / "mixed.jsonl", arithmetic(40) + long_prompts)
    cfg = config(tmp_path, tiny_model, data=tmp_path / "mixed.jsonl", validation=[], max_length=64,
                 hyperparameters=Hyperparameters(1, 1e-4, 0))
    result = finetune(cfg)
    manifest = result.manifest
    assert manifest["data"]["droppedRecords"] == 9 and manifest["data"]["training"]["records"] == 49
    assert manifest["plan"]["recordsAfterDuplication"] == result.plan.records == 40
    assert manifest["plan"]["totalSteps"] == manifest["result"]["totalSteps"] == manifest["result"]["steps"] == 3
    assert any(w.startswith("9 record(s) had no answer tokens left") for w in result.warnings)


def test_advised_config_is_a_pure_function(tmp_path):
    from tunesmith.tiers import ModelTier
    from tunesmith.training import advised_config

    given = TrainConfig(data=tmp_path / "absent.jsonl", output=tmp_path / "out", seed=3)
    advised, advice = advised_config(given, 20, ModelTier.custom("tiny", effective_batch_size=16))
    # 20 records, batch 16: 5 epochs, 10x duplication, warmup 200 / 160 -> 1
    assert advised.hyperparameters.to_wire() == {"epochCount": "5", "learningRate": "1e-05", "learningRateWarmupSteps": "1"}
    assert advised.duplication == advice.plan.duplication_factor == 10 and advised.hyperparameters == advice.hyperparameters
    assert (given.duplication, given.hyperparameters, advised.seed) == (1, Hyperparameters(), 3)


def test_settings_are_checked_against_their_declared_bounds(tmp_path):
    from tunesmith.errors import ConfigError
    from tunesmith.training import LoraSettings

    with pytest.raises(ConfigError, match="max_length must be at least 8, got 4"):
        TrainConfig(data=tmp_path / "t.jsonl", output=tmp_path / "o", max_length=4)
    with pytest.raises(ConfigError, match="duplication must be between 1 and 100, got 101"):
        TrainConfig(data=tmp_path / "t.jsonl", output=tmp_path / "o", duplication=101)
    with pytest.raises(ConfigError, match=r"LoRA dropout must be in \[0, 1\), got 1"):
        LoraSettings(dropout=1)
