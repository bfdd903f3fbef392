"""tunesmith's training engine against a plain ``transformers.Trainer``, in one run.

    python benchmarks/train_vs_trainer.py [--steps 5] [--model micro]

Both train the same model on the same records (the quickstart task) with the same LoRA
config (rank 16, alpha 32, dropout 0, all linear layers), effective batch (the tier's, 64
for micro), maximum length and number of optimizer steps. The baseline uses Trainer's
defaults: fp32, the whole-vocabulary loss, and a collator padding to the longest record in
each micro-batch of 16. Each side runs in its own process so peak RSS is its own. Prints
non-padding tokens/s for each, their ratio, and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MICRO_BATCH = 16
LORA = dict(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")


def write_data(folder: Path, records: int) -> Path:
    from tunesmith.quickstart.task import make_splits

    train, _ = make_splits(records, 0)
    path = folder / "bench.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in train))
    return path


def run_tunesmith(data: Path, model: str, steps: int, output: Path) -> dict:
    from tunesmith.hyperparameters import Hyperparameters
    from tunesmith.training import LoraSettings, TrainConfig, finetune

    config = TrainConfig(
        data=data, output=output, model=model, hyperparameters=Hyperparameters(1, 1e-4, 0), lora=LoraSettings(16, 32, 0.0),
        merge=False,
    )
    result = finetune(config)
    assert result.plan.total_steps == steps, (result.plan.total_steps, steps)
    state = result.state  # elapsed_s sums the optimizer steps alone: no loading, checkpoints or saving
    return {"tokens": state.tokens, "seconds": state.elapsed_s, "padding": state.padded_tokens / (state.tokens + state.padded_tokens)}


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
    examples = tokenize_records(read_records(data), tokenizer, DatasetKind.FINE_TUNING, 1024).examples
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

    args = TrainingArguments(
        output_dir=str(output), per_device_train_batch_size=MICRO_BATCH,
        gradient_accumulation_steps=source.tier.effective_batch_size // MICRO_BATCH, max_steps=steps,
        learning_rate=1e-4, lr_scheduler_type="constant", save_strategy="no", report_to=[], logging_steps=1,
        use_cpu=True, dataloader_num_workers=0, disable_tqdm=True, remove_unused_columns=False,
    )
    Trainer(model=model, args=args, train_dataset=rows, data_collator=counting_collator, callbacks=[Timer()]).train()
    padding = counted["padded"] / (counted["tokens"] + counted["padded"])
    return {"tokens": counted["tokens"], "seconds": counted["seconds"], "padding": padding}


def child(which: str, data: str, model: str, steps: int, output: str) -> None:
    runner = run_tunesmith if which == "tunesmith" else run_trainer
    result = runner(Path(data), model, steps, Path(output))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--model", default="micro")
    parser.add_argument("--child", nargs=4, metavar=("WHICH", "DATA", "STEPS", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        which, data, steps, output = args.child
        child(which, data, args.model, int(steps), output)
        return
    from tunesmith.models.registry import resolve_model

    batch = resolve_model(args.model).tier.effective_batch_size
    with tempfile.TemporaryDirectory() as folder:
        data = write_data(Path(folder), batch * args.steps)
        results = {}
        for which in ("trainer", "tunesmith"):
            command = [sys.executable, __file__, "--model", args.model, "--child", which, str(data), str(args.steps), f"{folder}/{which}"]
            out = subprocess.run(command, capture_output=True, text=True)
            line = next((row for row in out.stdout.splitlines() if row.startswith("RESULT ")), None)
            if line is None:
                sys.exit(f"{which} failed:\n{out.stderr[-3000:]}")
            results[which] = json.loads(line[len("RESULT "):])
    print(f"model {args.model}, {args.steps} optimizer steps of {batch} records, LoRA r16 all-linear")
    print(f"{'engine':<12}{'tokens':>9}{'seconds':>9}{'tokens/s':>10}{'padding':>9}{'peak RSS':>10}")
    for which in ("trainer", "tunesmith"):
        r = results[which]
        print(f"{which:<12}{r['tokens']:>9,}{r['seconds']:>9.1f}{r['tokens'] / r['seconds']:>10.1f}{r['padding']:>9.1%}{r['peak_rss_mb']:>8.0f}MB")
    speed = {which: r["tokens"] / r["seconds"] for which, r in results.items()}
    print(f"speed ratio tunesmith/trainer: {speed['tunesmith'] / speed['trainer']:.2f}x; "
          f"peak RSS ratio: {results['tunesmith']['peak_rss_mb'] / results['trainer']['peak_rss_mb']:.2f}")


if __name__ == "__main__":
    main()
