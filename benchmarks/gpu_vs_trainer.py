"""tunesmith's GPU engine against ``transformers.Trainer`` at its best on the same GPU.

    python benchmarks/gpu_vs_trainer.py [--device cuda|cpu] [--steps 94] [--records N] [--data short|long-system|both]
        [--model micro|0.5b-shape|both|<HF folder>] [--peer-batches 16,32,64] [--output PATH]

The GPU counterpart of ``train_vs_trainer.py``, with its approach: both sides train the same
model on the same records with the same LoRA (rank 16, alpha 32, dropout 0, all linear
layers), effective batch (the tier's, 64 for micro), maximum length (1024), number of
optimizer steps (``--steps``, default 94; ``steps x batch`` records, each seen once; or
``--records``, a whole number of batches) and constant learning rate 1e-4. Each side runs
in a process of its own, which prints one ``RESULT {json}`` line; the peer's process runs
its sweep one configuration after another, each with a freshly loaded model and, on CUDA,
the peak-memory statistics reset, so each peak is its own (on the CPU, peak RSS is the
process's so far). The parent process never touches the GPU.

- The peer, ``transformers.Trainer`` + PEFT, at its best: base weights loaded in bf16 and
  ``bf16=True`` (autocast; on the CPU fp32 weights, and bf16 autocast only where the CPU has
  native bf16, as in ``train_vs_trainer.py``, with ``use_cpu=True``);
  ``train_sampling_strategy="group_by_length"``; ``use_liger_kernel=True`` when
  ``liger_kernel`` is importable (CUDA only); ``attn_implementation="flash_attention_2"``
  when ``flash_attn`` is importable, else whatever ``from_pretrained`` picks (sdpa);
  gradient accumulation to the effective batch. Swept: micro-batches of ``--peer-batches``
  records (16, 32, 64) x two collations, padded to the longest record of the micro-batch
  (``DataCollatorForSeq2Seq``) and padding-free (``DataCollatorWithFlattening``: one row,
  position ids restarting at each record, no attention mask; transformers 5 then builds a
  block-diagonal mask for sdpa, eager and flex attention from the position ids,
  ``masking_utils.find_packed_sequence_indices``, and flash_attention_2 takes the records'
  boundaries, which the collator then hands over as ``cu_seq_lens``). The fastest of the
  sweep is the peer; every run of the sweep is printed and saved. Its clock runs from
  ``on_train_begin`` to ``on_train_end`` (after a CUDA synchronize).
- tunesmith: ``finetune(TrainConfig(...))`` with no speed flag (no ``micro_batch_tokens``,
  no ``max_memory``, ``packing`` and ``share_prefixes`` left to their defaults),
  ``precision="auto"``, ``merge=False``. Its clock is ``result.state.elapsed_s``, the
  optimizer steps alone. The settings it chose (micro-batch size and why, batching,
  attention kernel and the timings that chose it) are taken from the ``on_start`` hook.

Tokens/s on both sides count the same thing: the dataset tokens of the trained records
(prompt and answer, padding not), divided by that side's clock. Peak memory is
``torch.cuda.max_memory_allocated()`` of the run's process on CUDA (peak RSS on the CPU).

MFU is the achieved FLOP/s over the GPU's dense bf16 peak (``PEAK_FLOPS``: H200 and H100
SXM 989 TFLOP/s, A100 312; "-" elsewhere), with one simple formula for both sides:
``flops_per_token = 4 x (decoder linear weights + output head weights)``, i.e. 2 FLOPs per
multiply-add, once for the forward pass and once for the backward pass's input gradients
(a frozen base computes no weight gradients); the adapters, attention scores and the head
being needed only at answer positions are left out, so it is a yardstick, not a roofline.

Datasets (``--data``): ``short``, the quickstart task's records (``tunesmith.quickstart.task``:
61-68 tokens, 63 on average, with micro's tokenizer, 23 of them answer), and ``long-system``,
the same task behind a support policy shared by every record (``long_system_prompt.py``:
472-479 tokens, 92% of them a prefix shared with other records). Models (``--model``):
``micro`` (the shipped SmolLM2-135M), ``0.5b-shape`` (Qwen2.5-0.5B's shape with random
weights and micro's tokenizer, built in a temporary folder: nothing is downloaded; it is
registered through a temporary ``TUNESMITH_CONFIG`` with micro's effective batch, since a
plain folder would get 16), ``both``, or any model name tunesmith resolves (an HF folder:
both sides then use the effective batch tunesmith gives it, 16 for a plain folder).

Printed: the device, then per dataset x model each side's tokens/s, peak memory, MFU and
settings, the peer's sweep, then the speed ratio (tunesmith's tokens/s over the peer's best)
and the memory ratio (tunesmith's peak over that fastest peer run's). On CUDA, or with
``--output``, the rows are written as JSON (``benchmarks/results/gpu/latest.json`` by
default) with the device and the commit; rows the file holds from the same device for other
dataset x model pairs are kept (each row names its commit), so runs of one pair at a time
add up (``--model micro --data short``, ...). ``--device cpu`` is a smoke test of the script
(``tests/test_gpu_benchmark.py``); its figures say nothing about GPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_trainer_peer import COLLATIONS, describe_data, peak_memory_mb, run_trainer  # noqa: E402
from train_vs_trainer import LEARNING_RATE, MAX_LENGTH, cpu_flags, make_records  # noqa: E402

DEFAULT_STEPS = 94
DATASETS = {"short": "quickstart", "long-system": "long-system"}
"""This script's dataset names and ``train_vs_trainer.make_records``'s."""
MODELS = ("micro", "0.5b-shape")
SHAPE_05B = dict(
    hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
    vocab_size=151936, max_position_embeddings=32768, tie_word_embeddings=True, rope_theta=1e6,
)
"""Qwen2.5-0.5B's shape (494M parameters, 136M of them the tied embeddings)."""
PEAK_FLOPS = (("H200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12), ("A100", 312e12))
"""Dense bf16 FLOP/s by a substring of the GPU's name, first match wins (NVIDIA's data sheets)."""
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "gpu" / "latest.json"
RATIO_LINE = "speed ratio tunesmith/trainer"


# -- the machine -----------------------------------------------------------------------------
def device_name(device: str) -> str | None:
    """The GPU's name (None without one), or the CPU's model name. The GPU is asked in a
    process of its own, so that this one holds no CUDA context while the runs measure."""
    if device != "cuda":
        return cpu_flags()[0]
    ask = "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
    return subprocess.run([sys.executable, "-c", ask], capture_output=True, text=True).stdout.strip() or None


def peak_flops(name: str) -> float | None:
    """The dense bf16 peak of the GPU called ``name``; None when it is not in the table."""
    return next((flops for part, flops in PEAK_FLOPS if part in name), None)


def mfu(tokens_per_s: float, flops_per_token: float, peak: float | None) -> float | None:
    return tokens_per_s * flops_per_token / peak if peak else None


def git_commit() -> str:
    """``git rev-parse HEAD``, with ``-dirty`` when the tree has changes; "unknown" outside a checkout."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


# -- the models ------------------------------------------------------------------------------
def build_05b_shape(folder: Path) -> Path:
    """A Qwen2 model of Qwen2.5-0.5B's shape with random weights, saved in bf16 with micro's
    tokenizer, so that ``folder`` loads as an HF folder."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from tunesmith.models.loading import load_tokenizer
    from tunesmith.models.registry import resolve_model

    tokenizer = load_tokenizer(resolve_model("micro"))
    config = Qwen2Config(**SHAPE_05B, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    assert config.rope_parameters["rope_theta"] == SHAPE_05B["rope_theta"], config.rope_parameters
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def register_model(name: str, folder: Path, batch: int, where: Path) -> None:
    """Make ``name`` resolve to ``folder`` with effective batch ``batch`` in this process and its
    children: a copy of the user's model configuration with one entry added, as ``TUNESMITH_CONFIG``."""
    from tunesmith.models.config import config_path
    from tunesmith.models.registry import resolve_model

    current = config_path()
    text = current.read_text(encoding="utf-8") if current.is_file() else ""
    entry = f'\n[models."{name}"]\nsource = {json.dumps(str(folder))}\neffective_batch_size = {batch}\n'
    path = where / "models.toml"
    path.write_text(text + entry, encoding="utf-8")
    os.environ["TUNESMITH_CONFIG"] = str(path)
    assert resolve_model(name).tier.effective_batch_size == batch


def effective_batch(model: str) -> int:
    from tunesmith.models.registry import resolve_model

    return resolve_model(model).tier.effective_batch_size


def plan_steps(batch: int, steps: int | None, records: int | None) -> int:
    """Optimizer steps for a model whose effective batch is ``batch``: ``--steps``, or ``--records / batch``."""
    if records is None:
        return steps or DEFAULT_STEPS
    if records < batch or records % batch:
        sys.exit(f"--records {records} is not a whole number of {batch}-record optimizer steps")
    if steps is not None and steps != records // batch:
        sys.exit(f"--steps {steps} and --records {records} disagree: {records} records make {records // batch} step(s) of {batch}")
    return records // batch


# -- the runs, in child processes ------------------------------------------------------------
def run_tunesmith(job: dict) -> dict:
    from tunesmith.hyperparameters import Hyperparameters
    from tunesmith.training import LoraSettings, TrainConfig, finetune

    config = TrainConfig(
        data=Path(job["data"]), output=Path(job["output"]), model=job["model"], hyperparameters=Hyperparameters(1, LEARNING_RATE, 0),
        lora=LoraSettings(16, 32, 0.0), max_length=MAX_LENGTH, precision="auto", merge=False, device=job["device"],
    )
    seen: dict = {}

    def on_start(run) -> None:
        seen["data"] = describe_data(run.train_data.examples, run.model)
        seen["settings"] = dict(
            precision=run.placement.precision, micro_batch_tokens=run.micro_batch.tokens, micro_batch_reason=run.micro_batch.reason,
            batching=run.batching, attention=run.attention,
            attention_seconds={k: None if v is None else round(v, 5) for k, v in run.attention_seconds.items()},
            packing=run.packing, share_prefixes=run.share_prefixes,
        )

    result = finetune(config, on_start=on_start)
    assert result.plan.total_steps == job["steps"], (result.plan.total_steps, job["steps"])
    state = result.state  # elapsed_s sums the optimizer steps alone: no loading, kernel choice or saving
    return {
        "data": seen["data"], "tokens": state.tokens, "padded": state.padded_tokens, "seconds": state.elapsed_s,
        "peak_mb": peak_memory_mb(job["device"]), "settings": seen["settings"],
    }


def child(job: dict) -> None:
    result = (run_tunesmith if job["side"] == "tunesmith" else run_trainer)(job)
    print("RESULT " + json.dumps(result), flush=True)


def run_child(job: dict) -> dict:
    """One side in its own process: its RESULT, or ``{"error": ...}`` with the last line of its stderr."""
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)], stdout=subprocess.PIPE, text=True)
    line = next((row for row in done.stdout.splitlines() if row.startswith("RESULT ")), None)
    return json.loads(line[len("RESULT "):]) if line is not None else {"error": f"exit status {done.returncode} (its stderr is above)"}


# -- one dataset x model ---------------------------------------------------------------------
def side_figures(result: dict, dataset_tokens: int, flops: float, peak: float | None) -> dict:
    """A run's figures as the row keeps them: tokens/s over the dataset's tokens."""
    tokens_per_s = dataset_tokens / result["seconds"]
    return {
        "tokens_per_s": tokens_per_s, "peak_mb": result["peak_mb"], "mfu": mfu(tokens_per_s, flops, peak), "seconds": result["seconds"],
        "tokens_counted": result["tokens"], "padded_tokens": result["padded"], "settings": result["settings"],
    }


def run_cell(dataset: str, model: str, steps: int, batch: int, device: str, peer_batches: list[int], peak: float | None, folder: Path) -> dict:
    """Train ``model`` on ``dataset`` with tunesmith and with every peer configuration; the row."""
    data = folder / f"{dataset}-{model.strip('/').replace('/', '_')}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_records(DATASETS[dataset], steps * batch)))
    job = {"data": str(data), "model": model, "steps": steps, "device": device}
    print(f"... tunesmith on {dataset} x {model}", file=sys.stderr, flush=True)
    ours = run_child({**job, "side": "tunesmith", "output": str(folder / f"{data.stem}-tunesmith")})
    usable = [b for b in peer_batches if batch % b == 0]
    print(f"... trainer on {dataset} x {model}", file=sys.stderr, flush=True)
    peer = run_child({**job, "side": "trainer", "micro_batches": usable, "output": str(folder / f"{data.stem}-trainer")})
    measured = ours.get("data") or peer.get("data")
    if measured is None:
        return {"dataset": dataset, "model": model, "steps": steps, "effective_batch": batch, "default_settings": True,
                "speed_ratio": None, "memory_ratio": None, "error": f"tunesmith: {ours['error']}; trainer: {peer['error']}"}
    tokens, flops = measured["tokens"], measured["flops_per_token"]
    notes = []
    if "data" in peer and peer["data"] != measured:  # both sides tokenize the same file: a difference is a bug here
        notes.append(f"the trainer's records differ from tunesmith's: {peer['data']} against {measured}")
    sweep = [{"micro_batch": b, "collation": c, "error": f"does not divide the effective batch {batch}"}
             for b in peer_batches if b not in usable for c in COLLATIONS]
    for run in peer.get("sweep", []):
        keep = {"micro_batch": run["micro_batch"], "collation": run["collation"]}
        sweep.append({**keep, **(side_figures(run, tokens, flops, peak) if "error" not in run else {"error": run["error"]})})
    if "error" in peer:
        sweep.append({"micro_batch": None, "collation": None, "error": peer["error"]})
    row = {
        "dataset": dataset, "model": model, "records": measured["records"], "steps": steps, "effective_batch": batch,
        "dataset_tokens": tokens, "target_tokens": measured["targets"], "shared_prefix_share": measured["shared_share"],
        "flops_per_token": flops, "default_settings": True, "speed_ratio": None, "memory_ratio": None, "notes": notes,
        "tunesmith": side_figures(ours, tokens, flops, peak) if "error" not in ours else {"error": ours["error"]},
        "trainer": None, "trainer_sweep": sweep,
    }
    finished = [run for run in sweep if "error" not in run]
    if finished:
        best = max(finished, key=lambda run: run["tokens_per_s"])
        row["trainer"] = {k: v for k, v in best.items() if k not in ("micro_batch", "collation")}
        if "error" not in ours:
            row["speed_ratio"] = row["tunesmith"]["tokens_per_s"] / best["tokens_per_s"]
            row["memory_ratio"] = row["tunesmith"]["peak_mb"] / best["peak_mb"]
    return row


# -- printing --------------------------------------------------------------------------------
def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def describe_tunesmith(s: dict) -> str:
    timings = ", ".join(f"{k} {'-' if v is None else f'{v * 1000:.1f} ms'}" for k, v in s["attention_seconds"].items())
    return (f"{s['precision']}; micro-batches of up to {s['micro_batch_tokens']:,} tokens ({s['micro_batch_reason']}); "
            f"{s['batching']}; attention {s['attention']}" + (f" (timed: {timings})" if timings else ""))


def describe_trainer(s: dict) -> str:
    return (f"{s['precision']}; {s['micro_batch_records']} records x {s['accumulation']} accumulation, {s['collation']}; "
            f"attention {s['attention']}; liger kernel {'on' if s['liger_kernel'] else 'off'}; {s['sampling']}; {s['optimizer']}")


def print_row(row: dict, memory: str) -> None:
    if "error" in row:
        print(f"\n{row['dataset']} x {row['model']}: both sides failed ({row['error']})")
        return
    print(f"\n{row['dataset']} x {row['model']}: {row['records']:,} records ({row['steps']} step(s) of {row['effective_batch']}), "
          f"{row['dataset_tokens']:,} dataset tokens, {row['shared_prefix_share']:.1%} of them in a prefix shared with another record; "
          f"{row['flops_per_token'] / 1e6:.3g} MFLOP per token")
    print(f"{'engine':<11}{'tokens/s':>12}{memory:>13}{'MFU':>8}  settings")
    for side, describe in (("tunesmith", describe_tunesmith), ("trainer", describe_trainer)):
        figures = row[side]
        if figures is None or "error" in figures:
            print(f"{side:<11}{'failed':>12}  {figures['error'] if figures else 'every configuration of the sweep failed'}")
            continue
        print(f"{side:<11}{figures['tokens_per_s']:>12,.0f}{figures['peak_mb']:>13,.0f}{percent(figures['mfu']):>8}  {describe(figures['settings'])}")
    print("  trainer sweep (records per micro-batch, collation: tokens/s, peak MB):")
    for run in row["trainer_sweep"]:
        outcome = f"failed: {run['error']}" if "error" in run else f"{run['tokens_per_s']:,.0f} tokens/s, {run['peak_mb']:,.0f} MB"
        print(f"    {run['micro_batch'] or '-'!s:>3} {run['collation'] or '-':<10} {outcome}")
    counted = [f"{side} counted {row[side]['tokens_counted']:,} tokens" for side in ("tunesmith", "trainer")
               if row[side] and "error" not in row[side] and row[side]["tokens_counted"] != row["dataset_tokens"]]
    for note in row["notes"] + counted:
        print(f"  note: {note}")
    if row["speed_ratio"] is not None:
        print(f"{RATIO_LINE}: {row['speed_ratio']:.2f}x; memory ratio tunesmith/trainer: {row['memory_ratio']:.2f}")


def print_summary(rows: list[dict]) -> None:
    print("\nsummary: speed ratio (tunesmith tokens/s over the peer's best), memory ratio (tunesmith's peak over that run's)")
    for row in rows:
        speed = "-" if row["speed_ratio"] is None else f"{row['speed_ratio']:.2f}x"
        memory = "-" if row["memory_ratio"] is None else f"{row['memory_ratio']:.2f}"
        print(f"  {row['dataset']:<12} {row['model']:<12} {speed:>7} {memory:>6}")


# -- main ------------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: a smoke test of the script")
    parser.add_argument("--steps", type=int, default=None, help=f"optimizer steps (default {DEFAULT_STEPS})")
    parser.add_argument("--records", type=int, default=None, help="records to train on instead: a whole number of effective batches")
    parser.add_argument("--data", choices=[*DATASETS, "both"], default="both")
    parser.add_argument("--model", default="both", help="micro, 0.5b-shape, both, or any model tunesmith resolves (an HF folder)")
    parser.add_argument("--peer-batches", default="16,32,64", help="the Trainer's micro-batch sizes to sweep, in records")
    parser.add_argument("--output", type=Path, default=None, help=f"JSON results (default on CUDA: {DEFAULT_OUTPUT})")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args()


def earlier_rows(output: Path, device: str, rows: list[dict]) -> list[dict]:
    """The rows ``output`` already holds from the same device for dataset x model pairs this run
    did not measure (each row names its commit), so that runs of one pair at a time add up."""
    if not output.is_file():
        return []
    try:
        earlier = json.loads(output.read_text())
    except json.JSONDecodeError:
        return []
    done = {(row["dataset"], row["model"]) for row in rows}
    if earlier.get("device") != device:
        return []
    return [row for row in earlier.get("rows", []) if (row.get("dataset"), row.get("model")) not in done]


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("torch", "transformers", "peft", "liger-kernel", "flash-attn"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "-"
    return found


def main() -> None:
    args = parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    name = device_name(args.device)
    if name is None:
        sys.exit("no CUDA device here: pass --device cpu for the smoke run")
    peer_batches = [int(b) for b in args.peer_batches.split(",")]
    models = list(MODELS) if args.model == "both" else [args.model]
    datasets = list(DATASETS) if args.data == "both" else [args.data]
    peak = peak_flops(name) if args.device == "cuda" else None
    memory = "peak GPU MB" if args.device == "cuda" else "peak RSS MB"
    found = versions()
    print(f"device: {name}" + ("" if args.device == "cuda" else " (CPU smoke run: the figures say nothing about GPUs)"))
    print(", ".join(f"{package} {v}" for package, v in found.items()) + f"; peak bf16 {'-' if peak is None else f'{peak / 1e12:.0f} TFLOP/s'}")
    print(f"LoRA r16 alpha32 dropout0 all-linear, max length {MAX_LENGTH}, constant LR {LEARNING_RATE:g}; "
          f"peer micro-batches of {args.peer_batches} records x {', '.join(COLLATIONS)} collation", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for model in models:
            if model == "0.5b-shape":
                print("... building the 0.5b-shape model", file=sys.stderr, flush=True)
                built = build_05b_shape(Path(folder) / "0.5b-shape")
                register_model(model, built, effective_batch("micro"), Path(folder))
            batch = effective_batch(model)
            steps = plan_steps(batch, args.steps, args.records)
            for dataset in datasets:
                row = run_cell(dataset, model, steps, batch, args.device, peer_batches, peak, Path(folder))
                print_row(row, memory)
                rows.append(row)
    print_summary(rows)
    output = args.output or (DEFAULT_OUTPUT if args.device == "cuda" else None)
    if output is not None:
        commit = git_commit()
        rows = earlier_rows(output, name, rows) + [{**row, "commit": commit} for row in rows]
        output.parent.mkdir(parents=True, exist_ok=True)
        report = {"device": name, "commit": commit, "memory": memory, "peak_flops": peak, "versions": found, "rows": rows}
        output.write_text(json.dumps(report, indent=2) + "\n")
        print(f"written: {output} ({len(rows)} row(s))")


if __name__ == "__main__":
    main()
