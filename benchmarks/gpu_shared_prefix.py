"""Shared-prefix training on a CUDA GPU: equal gradients, and what it saves.

    python benchmarks/gpu_shared_prefix.py [--steps 3]

1. Equivalence on the GPU: a tiny Llama, a mixed micro-batch (some records share a system
   prompt, some nothing), loss and per-parameter gradients with shared prefixes against
   each record alone, in fp32 and under bf16 autocast (largest relative difference printed).
2. Speed: a model of SmolLM2-135M's shape (random weights: no download), LoRA r16 on every
   linear layer, bf16 autocast, one micro-batch of 64 records per optimizer step; records
   of a 430-token shared prompt + 60 own tokens, and of a 20-token one + 50 own. Dataset
   tokens/s and peak GPU memory with and without prefix sharing.
3. ``finetune`` end to end on ``--device cuda`` with a model of micro's shape (random
   weights), 640 records behind a long system prompt, with and without sharing.

Needs a CUDA GPU; prints the device name first. The figures belong to that GPU.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from tunesmith.training import batches  # noqa: E402
from tunesmith.training.examples import Example  # noqa: E402
from tunesmith.training.loss import target_loss  # noqa: E402
from tunesmith.training.prefixes import prefix_groups  # noqa: E402
from tunesmith.training.shared_loss import micro_batch_loss  # noqa: E402

PAD = 0


def llama(device, lora: bool, **shape):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(pad_token_id=PAD, tie_word_embeddings=True, **shape)
    model = LlamaForCausalLM(config)
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear"))
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(parameter, std=0.02)
    return model.to(device).train()


def records(count: int, shared: int, own: int, vocab: int, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    prompt = [rng.randrange(1, vocab) for _ in range(shared)]
    out = []
    for _ in range(count):
        mine = [rng.randrange(1, vocab) for _ in range(own + rng.randrange(-own // 4, own // 4 + 1))]
        ids = prompt + mine
        answer = len(mine) // 2
        out.append(Example(ids, [i >= len(ids) - answer for i in range(len(ids))]))
    return out


def grads(model, examples, groups, device, shared: bool):
    """Summed loss and every parameter's gradient, with shared prefixes or each record alone."""
    model.zero_grad(set_to_none=True)
    if shared:
        loss, _ = micro_batch_loss(model, examples, groups, PAD, device)
    else:
        loss = sum(target_loss(model, {k: v.to(device) for k, v in batches.collate([e], PAD).items()})[0] for e in examples)
    loss.backward()
    return loss.item(), {n: p.grad.detach().float().clone() for n, p in model.named_parameters() if p.grad is not None}


def equivalence(device) -> None:
    shape = dict(vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=512)
    examples = records(5, 24, 12, 97, seed=1) + records(3, 0, 30, 97, seed=2)
    groups = prefix_groups([e.input_ids for e in examples], list(range(len(examples))))
    for lora in (False, True):
        model = llama(device, lora, **shape)
        for dtype in (None, torch.bfloat16):
            with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
                expected_loss, expected = grads(model, examples, groups, device, shared=False)
                loss, got = grads(model, examples, groups, device, shared=True)
            worst = max((got[n] - g).norm().item() / g.norm().item() for n, g in expected.items() if g.norm() > 0)
            print(f"equivalence {'lora' if lora else 'full'} {'bf16' if dtype else 'fp32'}: loss {loss:.6f} vs {expected_loss:.6f}, "
                  f"largest relative gradient difference {worst:.2e}")


def train_step(model, optimizer, examples, device, shared: bool) -> None:
    with torch.autocast("cuda", dtype=torch.bfloat16):
        if shared:
            groups = prefix_groups([e.input_ids for e in examples], list(range(len(examples))))
            loss, _ = micro_batch_loss(model, examples, groups, PAD, device)
        else:
            loss, _ = target_loss(model, {k: v.to(device) for k, v in batches.collate(examples, PAD).items()})
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def speed(device, steps: int) -> None:
    shape = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                 num_key_value_heads=3, max_position_embeddings=2048)
    model = llama(device, True, **shape)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    for name, (shared, own) in {"long-system": (430, 60), "short-system": (20, 50)}.items():
        examples = records(64, shared, own, 49152)
        tokens = sum(len(e) for e in examples)
        for share in (False, True):
            train_step(model, optimizer, examples, device, share)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            started = time.perf_counter()
            for _ in range(steps):
                train_step(model, optimizer, examples, device, share)
            torch.cuda.synchronize()
            seconds = (time.perf_counter() - started) / steps
            print(f"speed {name} ({shared}+{own} tokens/record) {'shared' if share else 'per-record'}: "
                  f"{tokens / seconds:,.0f} dataset tokens/s, {seconds * 1000:.0f} ms/step, "
                  f"peak {torch.cuda.max_memory_allocated() / 2**20:,.0f} MB")


def end_to_end() -> None:
    """``finetune`` on ``--device cuda`` with a model of micro's shape (random weights, the
    tests' small tokenizer): the engine's own micro-batch sizing, with and without sharing."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from conftest import arithmetic, build_tiny_model, write_jsonl
    from tunesmith.hyperparameters import Hyperparameters
    from tunesmith.training import TrainConfig, finetune

    with tempfile.TemporaryDirectory() as folder:
        model = build_tiny_model(Path(folder) / "model")
        tokenizer = AutoTokenizer.from_pretrained(model)
        LlamaForCausalLM(LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
            num_key_value_heads=3, max_position_embeddings=2048, tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
        )).save_pretrained(model)
        records = [dict(r, system=[{"text": "You are a careful calculator. " * 20}]) for r in arithmetic(640)]
        data = write_jsonl(Path(folder) / "train.jsonl", records)
        for share in (False, True):
            result = finetune(TrainConfig(data=data, output=Path(folder) / f"out-{share}", model=str(model), device="cuda",
                                          hyperparameters=Hyperparameters(1, 1e-4, 0), share_prefixes=share, merge=False))
            print(f"finetune on cuda, share_prefixes={share}:", json.dumps(result.manifest["result"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("needs a CUDA GPU")
    device = torch.device("cuda")
    print(f"{torch.cuda.get_device_name()}; torch {torch.__version__}")
    equivalence(device)
    speed(device, args.steps)
    end_to_end()


if __name__ == "__main__":
    main()
