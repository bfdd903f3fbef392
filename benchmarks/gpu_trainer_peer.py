"""The peer of ``gpu_vs_trainer.py``: ``transformers.Trainer`` + PEFT at its best (its sweep of
micro-batch sizes and collations, one configuration at a time), and the measurements both sides
share (the trained records and FLOPs per token, peak memory). The module docstring of
``gpu_vs_trainer.py`` says what the peer runs with and why."""

from __future__ import annotations

import importlib.util
import resource
import sys
import time
from pathlib import Path

from train_vs_trainer import LEARNING_RATE, LORA, MAX_LENGTH, linear_sizes, native_bf16

COLLATIONS = ("padded", "flattened")


def importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def peak_memory_mb(device: str) -> float:
    """This process's peak: what the CUDA caching allocator handed out, or the resident set."""
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def describe_data(examples: list, model) -> dict:
    """The trained records as both sides count them, and the model's FLOPs per token (module docstring)."""
    from tunesmith.training.prefixes import shared_prefix_share

    decoder, head = linear_sizes(model)
    return {
        "records": len(examples), "tokens": sum(len(e) for e in examples), "targets": sum(e.target_count for e in examples),
        "shared_share": shared_prefix_share([e.input_ids for e in examples]), "flops_per_token": 4.0 * (decoder + head),
    }


def peer_rows(job: dict) -> tuple[list[dict], dict]:
    """The peer's training rows (labels -100 outside the answers) and what they hold."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from tunesmith.datasets import DatasetKind
    from tunesmith.models.loading import load_tokenizer, quiet_transformers
    from tunesmith.models.registry import resolve_model
    from tunesmith.training.examples import read_records, tokenize_records

    quiet_transformers()
    source = resolve_model(job["model"])
    tokenizer = load_tokenizer(source)
    examples = tokenize_records(read_records(Path(job["data"])), tokenizer, DatasetKind.FINE_TUNING, MAX_LENGTH).examples
    rows = [
        {"input_ids": e.input_ids, "attention_mask": [1] * len(e), "labels": [t if keep else -100 for t, keep in zip(e.input_ids, e.targets)]}
        for e in examples
    ]
    with torch.device("meta"):  # an empty copy, to count its weights
        shell = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(source.folder()))
    return rows, describe_data(examples, shell)


def run_trainer_once(job: dict, rows: list[dict], micro_batch: int, collation: str) -> dict:
    """One configuration of the peer's sweep: a fresh model, Trainer and clock."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        DataCollatorForSeq2Seq,
        DataCollatorWithFlattening,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from tunesmith.models.loading import load_tokenizer
    from tunesmith.models.registry import resolve_model

    cuda = job["device"] == "cuda"
    source = resolve_model(job["model"])
    accumulation = source.tier.effective_batch_size // micro_batch
    flash = cuda and importable("flash_attn")
    liger = cuda and importable("liger_kernel")
    bf16 = cuda or native_bf16()
    torch.manual_seed(0)
    loaded = AutoModelForCausalLM.from_pretrained(
        source.folder(), dtype=torch.bfloat16 if cuda else torch.float32, **({"attn_implementation": "flash_attention_2"} if flash else {})
    )
    model = get_peft_model(loaded, LoraConfig(**LORA))
    if collation == "flattened":  # flash_attention_2 reads the boundaries; sdpa/eager/flex get a mask built from the position ids
        collator = DataCollatorWithFlattening(return_flash_attn_kwargs=flash)
    else:
        collator = DataCollatorForSeq2Seq(load_tokenizer(source), padding="longest")
    counted = {"tokens": 0, "padded": 0}

    def counting_collator(features):
        batch = collator(features)
        real = sum(len(f["input_ids"]) for f in features)
        counted["tokens"] += real
        counted["padded"] += batch["input_ids"].numel() - real
        return batch

    class Timer(TrainerCallback):
        def on_train_begin(self, *args, **kwargs):
            counted["start"] = time.perf_counter()

        def on_train_end(self, *args, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            counted["seconds"] = time.perf_counter() - counted["start"]

    args = TrainingArguments(
        output_dir=str(Path(job["output"]) / f"{micro_batch}-{collation}"), per_device_train_batch_size=micro_batch,
        gradient_accumulation_steps=accumulation, max_steps=job["steps"], learning_rate=LEARNING_RATE, lr_scheduler_type="constant",
        bf16=bf16, train_sampling_strategy="group_by_length", use_cpu=not cuda, use_liger_kernel=liger, save_strategy="no",
        report_to=[], logging_strategy="no", dataloader_num_workers=0, disable_tqdm=True, remove_unused_columns=False, seed=0,
    )
    Trainer(model=model, args=args, train_dataset=rows, data_collator=counting_collator, callbacks=[Timer()]).train()
    settings = {
        "precision": "bf16 weights, bf16 autocast" if cuda else "fp32 weights, " + ("bf16 autocast" if bf16 else "fp32"),
        "micro_batch_records": micro_batch, "accumulation": accumulation, "collation": collation,
        "attention": str(getattr(model.config, "_attn_implementation", "unknown")), "liger_kernel": liger,
        "sampling": args.train_sampling_strategy, "optimizer": str(getattr(args.optim, "value", args.optim)),
    }
    return {"tokens": counted["tokens"], "padded": counted["padded"], "seconds": counted["seconds"], "settings": settings}


def run_trainer(job: dict) -> dict:
    """The peer's whole sweep, one configuration after the other in this process. On CUDA each
    starts from freed memory with the peak statistics reset, so each peak is its own; on the
    CPU the resident-set peak is the process's so far."""
    import gc

    import torch

    rows, data = peer_rows(job)
    sweep = []
    for micro_batch in job["micro_batches"]:
        for collation in COLLATIONS:
            done: dict = {"micro_batch": micro_batch, "collation": collation}
            gc.collect()
            if job["device"] == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            print(f"... trainer: {micro_batch} records per micro-batch, {collation}", file=sys.stderr, flush=True)
            try:
                done.update(run_trainer_once(job, rows, micro_batch, collation))
            except Exception as error:  # an out-of-memory configuration ends itself, not the sweep
                done["error"] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:300]
            else:
                done["peak_mb"] = peak_memory_mb(job["device"])
            sweep.append(done)
    return {"data": data, "sweep": sweep}
