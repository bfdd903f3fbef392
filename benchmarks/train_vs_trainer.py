"""tunesmith's training engine against ``transformers.Trainer`` at its best on this machine.

    python benchmarks/train_vs_trainer.py [--steps 3] [--model micro] [--data quickstart|long-system|both]

Both sides train the same model on the same records with the same LoRA (rank 16, alpha 32,
dropout 0, all linear layers), effective batch (the tier's, 64 for micro), maximum length
(1024), number of optimizer steps (``--steps``; ``steps x batch`` records, each seen once)
and constant learning rate 1e-4.

- The peer, ``transformers.Trainer`` + PEFT, with the settings its documentation offers for a
  CPU: ``use_cpu=True``; ``bf16=True`` (autocast) when the CPU has native bf16 (as
  oneDNN reports it: the ``avx512_bf16`` or ``amx_bf16`` flag, unless ``ONEDNN_MAX_CPU_ISA``
  caps it), else fp32; ``train_sampling_strategy=
  "group_by_length"`` (transformers 5's name for the old ``group_by_length=True``) so each
  micro-batch of 16 holds records of similar length; gradient accumulation to the effective
  batch; labels -100 outside the answers; a collator padding to the longest record of each
  micro-batch, wrapped to count tokens and padding. Its clock runs from ``on_train_begin``
  to ``on_train_end``; the attention is whatever ``from_pretrained`` picks.
- tunesmith: ``finetune(TrainConfig(...))`` with ``precision="auto"`` and the engine's own
  defaults (micro-batches bounded in padded tokens, length-grouped). Its clock is
  ``result.state.elapsed_s``: the optimizer steps alone. Where the engine computes a prefix
  shared by several records once (``result.state.shared_tokens``), that count is printed.

Each side runs in its own process, one after the other, so peak RSS (``ru_maxrss``) is its
own. Two datasets (``--data``, default both):

- ``quickstart``: the quickstart task's records (``tunesmith.quickstart.task``), short
  (~70 tokens) with a one-line system prompt.
- ``long-system``: the same ticket task behind a 429-token support policy shared by every
  record (``long_system_prompt.py``): the case where prefix sharing can pay.

Printed: the CPU (model name, the flags among avx2, avx512f, avx512_bf16, amx_bf16,
amx_tile), torch version and threads; each side's configuration (precision, micro-batch,
sampling, attention implementation); then per dataset and side the dataset tokens (every
token of the trained records, prompts included, padding not: the same figure for both
sides), seconds, dataset tokens/s, padding share and peak RSS; then the speed ratio and
the peak-RSS ratio. Label the figures with the CPU they came from.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MICRO_BATCH = 16
MAX_LENGTH = 1024
LEARNING_RATE = 1e-4
LORA = dict(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
DATASETS = ("quickstart", "long-system")
SIDES = ("trainer", "tunesmith")


def cpu_flags() -> tuple[str, set[str]]:
    """The CPU's model name and the flags of ``FLAGS`` it has (empty off Linux)."""
    name, flags = "unknown CPU", set()
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and name == "unknown CPU":
            name = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split()) & set(FLAGS)
    return name, flags


def native_bf16() -> bool:
    """What tunesmith's ``--precision auto`` asks too: oneDNN's answer, which follows the CPU
    flags and honours ``ONEDNN_MAX_CPU_ISA`` (so an AVX2-only CPU can be emulated)."""
    from tunesmith.devices import cpu_has_native_bf16

    return cpu_has_native_bf16()


def make_records(dataset: str, count: int) -> list[dict]:
    if dataset == "quickstart":
        from tunesmith.quickstart.task import make_splits

        return make_splits(count, 0)[0]
    from long_system_prompt import make_records as long_system_records

    return long_system_records(count)


def measure_dataset(data: Path, model: str) -> dict:
    """Records, tokens and shared-prefix share of the data as both sides train on it."""
    from tunesmith.datasets import DatasetKind
    from tunesmith.models.loading import load_tokenizer
    from tunesmith.models.registry import resolve_model
    from tunesmith.training.examples import read_records, tokenize_records
    from tunesmith.training.prefixes import shared_prefix_share

    tokenized = tokenize_records(read_records(data), load_tokenizer(resolve_model(model)), DatasetKind.FINE_TUNING, MAX_LENGTH)
    ids = [e.input_ids for e in tokenized.examples]
    targets = sum(e.target_count for e in tokenized.examples)
    return {"records": len(ids), "tokens": tokenized.tokens, "targets": targets, "shared_share": shared_prefix_share(ids)}


def linear_sizes(model) -> tuple[int, int]:
    """Multiply-adds per position of the decoder's linear layers (adapters left out) and of
    the output head: what a position costs in matmuls, forward or backward."""
    import torch

    head = model.get_output_embeddings()
    decoder = sum(
        m.weight.numel() for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and m is not head and "lora_" not in name
    )
    return decoder, head.weight.numel()


def attention_of(model) -> str:
    return str(getattr(getattr(model, "config", None), "_attn_implementation", "unknown"))


def run_tunesmith(data: Path, model: str, steps: int, output: Path) -> dict:
    from tunesmith.hyperparameters import Hyperparameters
    from tunesmith.training import LoraSettings, TrainConfig, finetune

    config = TrainConfig(
        data=data, output=output, model=model, hyperparameters=Hyperparameters(1, LEARNING_RATE, 0),
        lora=LoraSettings(16, 32, 0.0), max_length=MAX_LENGTH, precision="auto", merge=False,
    )
    seen: dict = {}

    def on_start(run) -> None:
        placement = getattr(run, "placement", None)
        seen["precision"] = getattr(placement, "precision", "unknown")
        seen["attention"] = attention_of(run.model)
        seen["micro_batch"] = f"up to {run.micro_batch.tokens} padded tokens (memory budget {run.micro_batch.budget_mb:,.0f} MB)"
        seen["shared"] = "shared prefixes computed once" if run.share_prefixes else "no prefix sharing"
        seen["linear_sizes"] = linear_sizes(run.model)

    result = finetune(config, on_start=on_start)
    assert result.plan.total_steps == steps, (result.plan.total_steps, steps)
    state = result.state  # elapsed_s sums the optimizer steps alone: no loading, checkpoints or saving
    return {
        "precision": seen["precision"], "attention": seen["attention"],
        "micro_batch": seen["micro_batch"], "sampling": f"length-grouped, {seen['shared']}",
        "tokens": state.tokens, "padded": state.padded_tokens, "seconds": state.elapsed_s,
        "shared_tokens": state.shared_tokens, "linear_sizes": seen["linear_sizes"],
    }


def run_trainer(data: Path, model_name: str, steps: int, output: Path) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments

    from tunesmith.datasets import DatasetKind
    from tunesmith.models.loading import load_model, load_tokenizer
    from tunesmith.models.registry import resolve_model
    from tunesmith.training.examples import read_records, tokenize_records

    source = resolve_model(model_name)
    tokenizer = load_tokenizer(source)
    examples = tokenize_records(read_records(data), tokenizer, DatasetKind.FINE_TUNING, MAX_LENGTH).examples
    rows = [
        {"input_ids": e.input_ids, "attention_mask": [1] * len(e), "labels": [t if keep else -100 for t, keep in zip(e.input_ids, e.targets)]}
        for e in examples
    ]
    torch.manual_seed(0)
    model = get_peft_model(load_model(source), LoraConfig(**LORA))
    collator = DataCollatorForSeq2Seq(tokenizer, padding="longest")
    counted = {"tokens": 0, "padded": 0}

    def counting_collator(features):
        batch = collator(features)
        real = int(batch["attention_mask"].sum())
        counted["tokens"] += real
        counted["padded"] += batch["attention_mask"].numel() - real
        return batch

    class Timer(TrainerCallback):
        def on_train_begin(self, *args, **kwargs):
            counted["start"] = time.perf_counter()

        def on_train_end(self, *args, **kwargs):
            counted["seconds"] = time.perf_counter() - counted["start"]

    bf16 = native_bf16()
    accumulation = source.tier.effective_batch_size // MICRO_BATCH
    args = TrainingArguments(
        output_dir=str(output), per_device_train_batch_size=MICRO_BATCH, gradient_accumulation_steps=accumulation,
        max_steps=steps, learning_rate=LEARNING_RATE, lr_scheduler_type="constant", bf16=bf16,
        train_sampling_strategy="group_by_length", use_cpu=True, save_strategy="no", report_to=[], logging_steps=1,
        dataloader_num_workers=0, disable_tqdm=True, remove_unused_columns=False,
    )
    Trainer(model=model, args=args, train_dataset=rows, data_collator=counting_collator, callbacks=[Timer()]).train()
    return {
        "precision": "bf16" if bf16 else "fp32", "attention": attention_of(model),
        "micro_batch": f"{MICRO_BATCH} records x {accumulation} accumulation steps", "sampling": args.train_sampling_strategy,
        "tokens": counted["tokens"], "padded": counted["padded"], "seconds": counted["seconds"],
    }


def child(which: str, data: str, model: str, steps: int, output: str) -> None:
    runner = run_tunesmith if which == "tunesmith" else run_trainer
    result = runner(Path(data), model, steps, Path(output))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def run_side(which: str, data: Path, model: str, steps: int, output: Path) -> dict:
    command = [sys.executable, __file__, "--model", model, "--child", which, str(data), str(steps), str(output)]
    done = subprocess.run(command, capture_output=True, text=True)
    line = next((row for row in done.stdout.splitlines() if row.startswith("RESULT ")), None)
    if line is None:
        sys.exit(f"{which} failed on {data.name}:\n{done.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def print_machine() -> None:
    import peft
    import torch
    import transformers

    name, flags = cpu_flags()
    present = " ".join(f for f in FLAGS if f in flags) or "none"
    print(f"CPU: {name} ({os.cpu_count()} cores); flags: {present}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; transformers {transformers.__version__}, peft {peft.__version__}")
    caps = {k: os.environ[k] for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS") if k in os.environ}
    if caps:
        print("instruction sets capped (emulating an older CPU): " + ", ".join(f"{k}={v}" for k, v in caps.items())
              + f"; torch kernels {torch.backends.cpu.get_cpu_capability()}, native bf16 {native_bf16()}")


def print_configurations(results: dict) -> None:
    print("configuration")
    for which in SIDES:
        r = results[which]
        print(f"  {which:<10} precision {r['precision']}, micro-batch {r['micro_batch']}, sampling {r['sampling']}, attention {r['attention']}")


def print_dataset(dataset: str, measured: dict, results: dict) -> None:
    tokens = measured["tokens"]
    print(f"\ndataset {dataset}: {measured['records']} records, {tokens:,} tokens (prompts included), "
          f"{measured['shared_share']:.1%} of them in a prefix shared with another record")
    print(f"{'engine':<11}{'dataset tokens':>15}{'seconds':>9}{'tokens/s':>10}{'padding':>9}{'peak RSS':>10}  prefix tokens computed once")
    for which in SIDES:
        r = results[which]
        padding = r["padded"] / (r["tokens"] + r["padded"]) if r["tokens"] + r["padded"] else 0.0
        shared = f"{r['shared_tokens']:,}" if "shared_tokens" in r else "-"
        print(f"{which:<11}{tokens:>15,}{r['seconds']:>9.1f}{tokens / r['seconds']:>10.1f}{padding:>9.1%}{r['peak_rss_mb']:>8.0f}MB  {shared}")
        if r["tokens"] != tokens:  # an engine that skips recomputed prefix tokens counts fewer; the rate above uses the dataset's
            print(f"{'':<11}({which} counted {r['tokens']:,} tokens processed)")
    speed = results["trainer"]["seconds"] / results["tunesmith"]["seconds"]  # same tokens on both sides
    memory = results["tunesmith"]["peak_rss_mb"] / results["trainer"]["peak_rss_mb"]
    print(f"speed ratio tunesmith/trainer: {speed:.2f}x; peak RSS ratio tunesmith/trainer: {memory:.2f}")
    ours, peer = results["tunesmith"], results["trainer"]
    decoder, head = ours["linear_sizes"]
    # The Trainer runs every position through the decoder and the head; tunesmith runs a shared
    # prefix once and the head only where an answer token is predicted.
    peer_work = (peer["tokens"] + peer["padded"]) * (decoder + head)
    our_work = (ours["tokens"] + ours["padded"] - ours["shared_tokens"]) * decoder + measured["targets"] * head
    print(f"linear-layer work trainer/tunesmith: {peer_work / our_work:.2f}x (the speed ratio if both ran their matmuls "
          f"equally fast; decoder {decoder / 1e6:.0f}M and head {head / 1e6:.0f}M multiply-adds per position)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--model", default="micro")
    parser.add_argument("--data", choices=[*DATASETS, "both"], default="both")
    parser.add_argument("--child", nargs=4, metavar=("WHICH", "DATA", "STEPS", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        which, data, steps, output = args.child
        child(which, data, args.model, int(steps), output)
        return
    from tunesmith.models.registry import resolve_model

    print_machine()
    batch = resolve_model(args.model).tier.effective_batch_size
    print(f"model {args.model}, {args.steps} optimizer step(s) of {batch} records, LoRA r16 alpha32 dropout0 all-linear, "
          f"max length {MAX_LENGTH}, constant LR {LEARNING_RATE:g}", flush=True)
    datasets = DATASETS if args.data == "both" else (args.data,)
    runs = {}
    with tempfile.TemporaryDirectory() as folder:
        for dataset in datasets:
            data = Path(folder) / f"{dataset}.jsonl"
            data.write_text("".join(json.dumps(r) + "\n" for r in make_records(dataset, batch * args.steps)))
            measured = measure_dataset(data, args.model)
            results = {}
            for which in SIDES:
                print(f"... {which} on {dataset}", file=sys.stderr, flush=True)
                results[which] = run_side(which, data, args.model, args.steps, Path(folder) / f"{dataset}-{which}")
            runs[dataset] = (measured, results)
    print_configurations(runs[datasets[0]][1])  # the same for every dataset: nothing in it depends on the data
    for dataset, (measured, results) in runs.items():
        print_dataset(dataset, measured, results)


if __name__ == "__main__":
    main()
