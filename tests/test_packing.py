"""Packed (padding-free) micro-batches train exactly as padded ones do."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from test_shared_prefix import tiny_llama
from tunesmith.training import batches
from tunesmith.training.examples import Example
from tunesmith.training.loss import target_loss
from tunesmith.training.packed_attention import VARLEN, choose_packed_attention, register_varlen, varlen_attention
from tunesmith.training.packing import bucket_size, pack, packed_target_loss, packed_width

PAD = 0


def mixed_lengths(seed: int = 3, count: int = 7) -> list[Example]:
    """Records of 3 to 40 tokens, answers of various lengths, one learning every token."""
    rng = random.Random(seed)
    examples = []
    for n in range(count):
        length = rng.randrange(3, 41)
        prompt = rng.randrange(1, length)
        ids = [rng.randrange(1, 97) for _ in range(length)]
        targets = [True] * length if n == 2 else [i >= prompt for i in range(length)]
        examples.append(Example(ids, targets))
    return examples


def reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k, scale=None, window_size=(-1, 0), enable_gqa=False):
    """What torch's varlen flash attention computes, one sequence at a time with SDPA (CPU)."""
    assert window_size == (-1, 0)
    out = []
    for a, b in zip(cu_q.tolist(), cu_q.tolist()[1:]):
        qs, ks, vs = (t[a:b].transpose(0, 1) for t in (q, k, v))  # heads x length x size
        if enable_gqa:
            ks, vs = (t.repeat_interleave(qs.shape[0] // t.shape[0], dim=0) for t in (ks, vs))
        out.append(F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scale).transpose(0, 1))
    return torch.cat(out)


def grads_of(model, compute) -> tuple[float, int, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss, count = compute()
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    return loss.item(), count, grads


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("attention", ["eager", "sdpa", "varlen"])
@pytest.mark.parametrize("static", [False, True], ids=["exact-width", "bucketed"])
def test_packed_loss_and_gradients_equal_padded(lora, attention, static):
    examples = mixed_lengths()
    padded_model = tiny_llama("eager", lora)
    padded = batches.collate(examples, PAD)
    loss, count, grads = grads_of(padded_model, lambda: target_loss(padded_model, padded))

    model = tiny_llama("eager", lora)
    if attention == "varlen":
        register_varlen(kernel=reference_varlen)
        model.set_attn_implementation(VARLEN)
    else:
        model.set_attn_implementation(attention)
    width = packed_width(examples, list(range(len(examples))), 128, static, aligned=False)
    row = pack(examples, PAD, width)
    assert row.width == width and (row.width > row.tokens) == static
    packed_loss, packed_count, packed_grads = grads_of(model, lambda: packed_target_loss(model, row, attention == "varlen"))

    assert packed_count == count
    assert packed_loss == pytest.approx(loss, rel=1e-5)
    assert packed_grads.keys() == grads.keys() and grads
    for name, grad in grads.items():
        torch.testing.assert_close(packed_grads[name], grad, rtol=1e-5, atol=1e-5, msg=name)


def test_a_record_attending_across_its_neighbour_would_be_caught():
    """The comparison can fail: without restarting positions (one long sequence) the loss differs."""
    examples = mixed_lengths()
    model = tiny_llama("sdpa", lora=False)
    padded, _ = target_loss(model, batches.collate(examples, PAD))
    row = pack(examples, PAD)
    joined = type(row)(row.input_ids, torch.arange(row.width).unsqueeze(0), row.cu_seq_lens, row.max_length,
                       row.predict_at, row.labels, row.tokens)
    wrong, _ = packed_target_loss(model, joined)
    assert abs(wrong.item() - padded.item()) > 1e-3


def test_pack_layout():
    examples = [Example([5, 6, 7], [False, True, True]), Example([8, 9], [False, True])]
    row = pack(examples, PAD, width=8)
    assert row.input_ids.tolist() == [[5, 6, 7, 8, 9, 0, 0, 0]]
    assert row.position_ids.tolist() == [[0, 1, 2, 0, 1, 0, 1, 2]]
    assert row.cu_seq_lens.tolist() == [0, 3, 5, 8] and row.cu_seq_lens.dtype == torch.int32
    assert row.predict_at.tolist() == [0, 1, 3] and row.labels.tolist() == [6, 7, 9]
    assert row.tokens == 5 and row.max_length == 3
    assert pack(examples, PAD).cu_seq_lens.tolist() == [0, 3, 5]  # no tail, no tail sequence


def test_buckets_are_few_aligned_and_hold_the_row():
    sizes = {bucket_size(n, 2048) for n in range(1, 2049)}
    assert sizes == {256 * k for k in range(1, 9)}
    assert all(bucket_size(n, 2048) >= n for n in range(1, 3000))
    assert bucket_size(3000, 2048) == 3072  # one record over the budget: rounded up alone
    assert bucket_size(10, 100) == 64 and bucket_size(65, 100) == 128


def test_varlen_attention_scores_right_padded_batches_too():
    """Validation and the quickstart's checks run padded batches on the training model: each row is one sequence."""
    examples = mixed_lengths()
    batch = batches.collate(examples, PAD)
    expected, count = target_loss(tiny_llama("eager", lora=True), batch)
    model = tiny_llama("eager", lora=True)
    register_varlen(kernel=reference_varlen)
    model.set_attn_implementation(VARLEN)
    loss, same = target_loss(model, batch)
    assert same == count and loss.item() == pytest.approx(expected.item(), rel=1e-5)
    q = torch.zeros(2, 2, 4, 8)
    with pytest.raises(ValueError, match="one packed row"):
        varlen_attention(None, q, q, q, None, cu_seq_lens_q=torch.tensor([0, 4]), max_length_q=4, kernel=reference_varlen)
    with pytest.raises(ValueError, match="not for generation"):
        varlen_attention(None, q[:, :, :1], q, q, None, kernel=reference_varlen)


def test_choice_by_measurement_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_HOME", str(tmp_path))
    model = tiny_llama("eager", lora=True)
    row = pack(mixed_lengths(), PAD, 128)
    calls = []

    def step():
        calls.append(model.config._attn_implementation)
        loss, _ = packed_target_loss(model, row)
        loss.backward()

    choice, seconds = choose_packed_attention(model, torch.device("cpu"), "fp32", step, ["eager", "sdpa", "no-such-kernel"])
    assert choice in ("eager", "sdpa") and seconds["no-such-kernel"] is None
    assert seconds["eager"] > 0 and seconds["sdpa"] > 0
    assert model.config._attn_implementation == choice
    assert (tmp_path / "packed_attention.json").exists()
    calls.clear()
    again, _ = choose_packed_attention(model, torch.device("cpu"), "fp32", step, ["eager", "sdpa", "no-such-kernel"])
    assert again == choice and calls == []  # cached: nothing timed


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("attention", ["tunesmith_varlen", "flash_attention_2", "flex_attention", "sdpa"])
def test_packed_equals_padded_on_cuda(attention):
    """Every packed-attention candidate against the padded path, on the GPU (bf16 kernels: a looser bound)."""
    from tunesmith.training.packed_attention import available, set_attention

    device = torch.device("cuda")
    if attention not in available(device):
        pytest.skip(f"{attention} is not available here")
    examples = mixed_lengths(count=12)
    padded_model = tiny_llama("sdpa", lora=True).to(device)
    with torch.autocast("cuda", torch.bfloat16):
        loss, count, grads = grads_of(padded_model, lambda: target_loss(padded_model, {k: v.to(device) for k, v in batches.collate(examples, PAD).items()}))
    model = tiny_llama("sdpa", lora=True).to(device)
    set_attention(model, attention)
    row = pack(examples, PAD, packed_width(examples, list(range(len(examples))), 512, True)).to(device)
    with torch.autocast("cuda", torch.bfloat16):
        packed_loss, packed_count, packed_grads = grads_of(model, lambda: packed_target_loss(model, row, attention in ("tunesmith_varlen", "flash_attention_2")))
    assert packed_count == count
    assert packed_loss == pytest.approx(loss, rel=2e-2)
    for name, grad in grads.items():
        torch.testing.assert_close(packed_grads[name].float(), grad.float(), rtol=5e-2, atol=5e-3, msg=name)


# -- the training loop with packing --------------------------------------------------------------
def _train(tmp_path, tiny_model, name, **overrides):
    from conftest import arithmetic, write_jsonl
    from tunesmith.hyperparameters import Hyperparameters
    from tunesmith.training import TrainConfig, finetune

    data = tmp_path / "t.jsonl"
    if not data.exists():
        write_jsonl(data, arithmetic(40))
    config = TrainConfig(data=data, output=tmp_path / name, model=str(tiny_model), hyperparameters=Hyperparameters(2, 1e-4, 2),
                         precision="fp32", device="cpu", micro_batch_tokens=160, merge=False, **overrides)
    import json

    from safetensors.torch import load_file

    manifest = finetune(config).manifest
    events = [json.loads(line) for line in (config.output / "events.jsonl").read_text().splitlines()]
    manifest["curve"] = [e["loss"] for e in events if e["event"] == "step"]
    return manifest, load_file(config.output / "adapter" / "adapter_model.safetensors")


def test_a_packed_run_trains_as_a_padded_one(tmp_path, tiny_model):
    """Several micro-batches per step, 6 steps in fp32: the same loss curve and adapter, less computed."""
    padded, padded_weights = _train(tmp_path, tiny_model, "padded", packing=False, share_prefixes=False)
    packed, packed_weights = _train(tmp_path, tiny_model, "packed", packing=True)
    assert len(padded["curve"]) == 6
    assert packed["curve"] == pytest.approx(padded["curve"], rel=1e-5)
    for name, weight in padded_weights.items():
        torch.testing.assert_close(packed_weights[name], weight, rtol=1e-4, atol=1e-6, msg=name)
    assert packed["result"]["batching"].startswith("packed") and padded["result"]["batching"].startswith("padded")


def test_packing_and_shared_prefixes_cannot_both_be_asked(tmp_path):
    from tunesmith.errors import ConfigError
    from tunesmith.training import TrainConfig

    with pytest.raises(ConfigError, match="packing and share_prefixes"):
        TrainConfig(data=tmp_path / "t.jsonl", output=tmp_path / "o", packing=True, share_prefixes=True)


def test_the_loops_measurement_leaves_weights_gradients_and_rng_alone(tmp_path, tiny_model, monkeypatch):
    """What runs on CUDA at setup, here on the CPU with the CPU's two kernels as candidates."""
    from conftest import arithmetic, write_jsonl
    from tunesmith.training import TrainConfig, packed_attention
    from tunesmith.training.config import LoraSettings
    from tunesmith.training.loop import TrainingRun

    monkeypatch.setattr(packed_attention, "available", lambda device: ["eager", "sdpa"])
    write_jsonl(tmp_path / "t.jsonl", arithmetic(40))
    run = TrainingRun(TrainConfig(data=tmp_path / "t.jsonl", output=tmp_path / "o", model=str(tiny_model), precision="fp32",
                                  device="cpu", packing=True, lora=LoraSettings(4, 8, 0.1)))
    run.setup()
    weights = {n: p.detach().clone() for n, p in run.model.named_parameters()}
    rng = torch.get_rng_state()
    choice, seconds = run._choose_packed_attention()
    assert choice in ("eager", "sdpa") and set(seconds) == {"eager", "sdpa"}
    assert run.model.config._attn_implementation == choice
    assert torch.equal(torch.get_rng_state(), rng)  # dropout drew masks while timing; the run's RNG is as it was
    assert all(p.grad is None for p in run.model.parameters())
    assert all(torch.equal(p, weights[n]) for n, p in run.model.named_parameters())
