"""The speed levers of the training engine keep its results: shared prefixes, memory-sized
micro-batches, eager attention on the CPU, the first-step estimate."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import conversation, write_jsonl
from tunesmith.devices import place
from tunesmith.hyperparameters import Hyperparameters
from tunesmith.training import TrainConfig, finetune
from tunesmith.training.memory import MAX_MICRO_BATCH_TOKENS, MemoryModel, fit_micro_batch

SYSTEM = "You are a careful calculator. Answer with the sum and nothing else, in digits."


def mixed_records(n: int) -> list[dict]:
    """Two thirds share a system prompt; the rest have none."""
    return [conversation(f"What is {i} plus {i}?", f"{i} plus {i} is {2 * i}.", system=SYSTEM if i % 3 else None) for i in range(n)]


def run(tmp_path, tiny_model, name, **overrides):
    data = tmp_path / "mixed.jsonl"
    if not data.exists():
        write_jsonl(data, mixed_records(40))
    config = TrainConfig(data=data, output=tmp_path / name, model=str(tiny_model), hyperparameters=Hyperparameters(2, 1e-4, 0),
                         precision="fp32", merge=False, device="cpu", **overrides)
    return finetune(config)


def adapter(output):
    from safetensors.torch import load_file

    return load_file(output / "adapter" / "adapter_model.safetensors")


def test_shared_prefix_training_gives_the_per_record_run(tmp_path, tiny_model):
    shared = run(tmp_path, tiny_model, "shared", share_prefixes=True)
    alone = run(tmp_path, tiny_model, "alone", share_prefixes=False)
    assert shared.manifest["result"]["sharedPrefixFraction"] > 0.2
    assert alone.manifest["result"]["sharedPrefixFraction"] == 0.0
    assert shared.state.tokens == alone.state.tokens  # dataset tokens either way
    steps = lambda result: [row[2] for row in result.state.history["training"]]  # noqa: E731
    assert steps(shared) == pytest.approx(steps(alone), rel=1e-5)
    a, b = adapter(shared.output), adapter(alone.output)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=1e-4, atol=1e-6), name


def test_the_cpu_shares_prefixes_and_uses_eager_attention_by_default(tmp_path, tiny_model):
    result = run(tmp_path, tiny_model, "default")
    start = next(e for e in map(json.loads, (result.output / "events.jsonl").read_text().splitlines()) if e["event"] == "start")
    assert start["shared_prefixes"] is True and start["attention"] == "eager"
    summary = result.manifest["result"]
    assert summary["sharedPrefixTokens"] > 0 and summary["peakMemoryMB"] > 100
    assert summary["microBatchTokens"] == start["micro_batch_tokens"] and start["memory_budget_mb"] > 0


def tiny_llama(layers=2, hidden=64):
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(vocab_size=500, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                                        num_attention_heads=4, num_key_value_heads=2))


def test_micro_batches_fit_the_memory_budget():
    model, cpu = tiny_llama(layers=24, hidden=512), place("cpu", "fp32")
    memory = MemoryModel.of(model, "fp32", 100, eager_attention=True)
    sizes = []
    for gigabytes in (2.8, 3.2, 3.6):
        size = fit_micro_batch(model, cpu, [50, 80, 100], True, gigabytes, None)
        assert size.warning is None and size.budget_mb == pytest.approx(gigabytes * 1024, abs=1)
        assert memory.peak(size.tokens) <= gigabytes * 2**30 < memory.peak(size.tokens / 0.75)  # about 80% of what is left
        sizes.append(size.tokens)
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1] < MAX_MICRO_BATCH_TOKENS["cpu"]
    big = MemoryModel.of(model, "fp32", 100, eager_attention=False)
    small_budget, large_budget = big.micro_batch_tokens(big.fixed + 300 * big.per_token), big.micro_batch_tokens(1e12)
    assert small_budget == 240 and large_budget > 2048  # no cap unless the device has one
    assert big.micro_batch_tokens(1e12, cap=2048) == 2048
    assert fit_micro_batch(model, cpu, [50], True, None, 777).tokens == 777  # --micro-batch-tokens wins


def test_a_budget_too_small_for_one_record_warns_and_trains_one_at_a_time():
    size = fit_micro_batch(tiny_llama(), place("cpu", "fp32"), [300], False, 1.0, None)
    assert size.tokens == 300 and "--max-memory 1.0 GB is below" in size.warning


def test_bf16_and_eager_attention_change_the_estimate():
    model = tiny_llama()
    fp32, bf16 = MemoryModel.of(model, "fp32", 512, False), MemoryModel.of(model, "bf16", 512, False)
    assert bf16.per_token < fp32.per_token
    assert MemoryModel.of(model, "fp32", 512, True).per_token > fp32.per_token


def test_the_first_step_estimate_reads_as_a_duration():
    from tunesmith.cli.progress import first_step_estimate
    from tunesmith.training import StepInfo

    info = StepInfo(step=1, total_steps=32, epoch=0, loss=1.0, lr=1e-4, tokens_per_s=420.0, elapsed_s=10.0, eta_s=320.0)
    assert first_step_estimate(info) == "estimate: 5 min 30 s of training on this machine (32 steps at 420 tokens/s, measured on step 1)"


def test_bf16_lora_keeps_the_frozen_base_in_bf16_and_nothing_else(tmp_path, tiny_model):
    seen = {}

    def on_start(run):
        seen.update({name: p.dtype for name, p in run.model.named_parameters()})

    data = tmp_path / "mixed.jsonl"
    write_jsonl(data, mixed_records(20))
    finetune(TrainConfig(data=data, output=tmp_path / "bf16", model=str(tiny_model), hyperparameters=Hyperparameters(1, 1e-4, 0),
                         precision="bf16", merge=False, device="cpu"), on_start=on_start)
    low = {name for name, dtype in seen.items() if dtype == torch.bfloat16}
    assert low and all(".base_layer." in name for name in low)
    assert all(seen[name] == torch.float32 for name in seen if "lora_" in name or "norm" in name or "embed" in name)


def test_on_cuda_the_default_micro_batch_comes_from_the_devices_free_memory(monkeypatch):
    """Not from the peer's CPU footprint: an H200's free memory gives a micro-batch as large as
    the GPU cap, a small GPU's a small one, and the reason names the device."""
    from types import SimpleNamespace

    model = tiny_llama(layers=24, hidden=512)
    gpu = SimpleNamespace(device=torch.device("cuda", 0), precision="bf16")
    held = 300 * 2**20
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: held)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (130 * 2**30, 140 * 2**30))
    large = fit_micro_batch(model, gpu, [100, 110, 120], False, None, None)
    assert large.tokens == MAX_MICRO_BATCH_TOKENS["cuda"]
    assert "90% of the 130.0 GB free on NVIDIA H200" in large.reason and "capped at 65,536" in large.reason
    peer = MemoryModel.of(model, "bf16", 120, False, runtime=False).peer_peak(16, 120)
    assert large.budget_mb > 10 * peer / 2**20  # the old default: the peer's footprint

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2 * 2**30, 8 * 2**30))
    small = fit_micro_batch(model, gpu, [100, 110, 120], False, None, None)
    memory = MemoryModel.of(model, "bf16", 120, False, runtime=False)
    assert 120 <= small.tokens < MAX_MICRO_BATCH_TOKENS["cuda"]
    assert memory.peak(small.tokens) <= held + 0.9 * 2 * 2**30
    assert "2.0 GB free" in small.reason and "capped" not in small.reason
    assert "--max-memory 4 GB" in fit_micro_batch(model, gpu, [100], False, 4.0, None).reason  # the flag still wins
    assert fit_micro_batch(model, gpu, [100], False, None, 777).reason == "--micro-batch-tokens 777"


def test_the_cpu_default_still_follows_the_peer():
    size = fit_micro_batch(tiny_llama(), place("cpu", "fp32"), [50, 60], False, None, None)
    assert "transformers.Trainer would take" in size.reason
