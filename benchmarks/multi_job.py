"""Many jobs on one base model: trained together, one at a time, and as separate processes.

    python benchmarks/multi_job.py [--device cuda|cpu] [--jobs 8] [--records 1000 | --steps N] [--model micro]
        [--precision auto|fp32|bf16] [--output PATH]

K LoRA jobs over the same base, each with its own data (the quickstart task's generator with
a seed per job, so no two jobs share a record), learning rate (1e-4, 5e-5, 2e-5, ... in turn),
warmup (0 to 3 steps) and seed, one epoch each, trained three ways on ``--device``:

- **together**: one :class:`tunesmith.multi_adapter.JobsTogether` (one frozen base, an
  adapter per job, one forward and backward per micro-batch for all of them). Clock: its
  ``training_seconds`` (forward, backward and optimizer steps).
- **one at a time**: ``finetune`` of each job in turn, in this process. Clock: the sum of the
  runs' ``elapsed_s`` (their optimizer steps).
- **separate processes**: K processes started at once, each a ``finetune`` of one job on the
  same device. Clock: from the first process's first step to the last process's last (the
  children report when their training began and ended), so loading models is not counted.

Printed: the device, each way's aggregate tokens/s (every job's dataset tokens over the
way's clock) and the ratios, then the largest difference between a job's per-step loss
trained together and trained alone (one at a time), over every step of every job. The last
line is exactly ``max loss difference vs alone: <number>``. The exit status is 1 when that
difference is over the bound (``--tolerance``: 1e-4 in fp32, 1e-3 in bf16).

On CUDA (or with ``--output``) the figures go to ``benchmarks/results/gpu/multi_job.json``:
``{"device", "commit", "jobs", "records", "precision", "vs_one_at_a_time",
"vs_separate_processes", "max_loss_difference", "ways": {...}}``.

``--device cpu --jobs 3 --steps 2`` runs on a 2-core CPU in a few minutes with micro (fp32);
``--model`` takes any model folder (the tests use a tiny one).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from gpu_vs_trainer import device_name, git_commit  # noqa: E402

LEARNING_RATES = (1e-4, 5e-5, 2e-5, 8e-5, 3e-5, 6e-5, 1e-5, 4e-5)
RESULTS = HERE / "results" / "gpu" / "multi_job.json"


def job_settings(k: int, data: Path, output: Path, model: str, device: str, precision: str) -> dict:
    return {
        "data": str(data), "output": str(output), "model": model, "device": device, "precision": precision, "seed": k,
        "learning_rate": LEARNING_RATES[k % len(LEARNING_RATES)], "warmup": k % 4,
    }


def config_of(settings: dict):
    from tunesmith.hyperparameters import Hyperparameters
    from tunesmith.training import TrainConfig

    return TrainConfig(
        data=Path(settings["data"]), output=Path(settings["output"]), model=settings["model"], device=settings["device"],
        precision=settings["precision"], seed=settings["seed"], merge=False,
        hyperparameters=Hyperparameters(1, settings["learning_rate"], settings["warmup"]),
    )


def step_losses(output: Path) -> list[float]:
    lines = (output / "events.jsonl").read_text().splitlines()
    return [e["loss"] for e in map(json.loads, lines) if e["event"] == "step"]


def child(settings: dict) -> None:
    """One job alone in this process; prints ``RESULT {tokens, began, ended}`` (wall-clock times of its steps)."""
    from tunesmith.training import finetune

    marks: dict[str, float] = {}

    def on_start(run) -> None:
        marks["began"] = time.time()

    def on_step(info) -> None:
        marks["ended"] = time.time()

    result = finetune(config_of(settings), on_step=on_step, on_start=on_start)
    print("RESULT " + json.dumps({"tokens": result.state.tokens, **marks}), flush=True)


def effective_batch(model: str) -> int:
    from tunesmith.models.registry import resolve_model

    return resolve_model(model).tier.effective_batch_size


def write_data(folder: Path, jobs: int, records: int) -> list[Path]:
    from tunesmith.quickstart.task import make_splits

    paths = []
    for k in range(jobs):
        path = folder / f"job{k}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in make_splits(records, seed=1000 + k)[0]))
        paths.append(path)
    return paths


def together(settings: list[dict]) -> dict:
    from tunesmith.multi_adapter import JobsTogether

    group = JobsTogether()
    for k, job in enumerate(settings):
        group.add(config_of(job), name=f"job{k}")
    outcomes = group.run()
    tokens = sum(o.result.state.tokens for o in outcomes.values())
    return {"tokens": tokens, "seconds": group.training_seconds, "batching": "packed" if group.packed else "padded",
            "adapters": "stacked" if group.stacked else "looped", "micro_batch_tokens": group.micro_batch.tokens}


def one_at_a_time(settings: list[dict]) -> dict:
    from tunesmith.training import finetune

    tokens = seconds = 0.0
    for job in settings:
        state = finetune(config_of(job)).state
        tokens, seconds = tokens + state.tokens, seconds + state.elapsed_s
    return {"tokens": tokens, "seconds": seconds}


def separate_processes(settings: list[dict]) -> dict:
    script = str(Path(__file__).resolve())
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    children = [subprocess.Popen([sys.executable, script, "--child", json.dumps(job)], stdout=subprocess.PIPE, text=True, env=env)
                for job in settings]
    results = []
    for process in children:
        out, _ = process.communicate()
        if process.returncode:
            raise SystemExit(f"a separate-process job failed (exit {process.returncode})")
        results.append(json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:]))
    seconds = max(r["ended"] for r in results) - min(r["began"] for r in results)
    return {"tokens": sum(r["tokens"] for r in results), "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--records", type=int, help="Records per job (default 1,000; or --steps)")
    parser.add_argument("--steps", type=int, help="Optimizer steps per job: steps x the model's batch records")
    parser.add_argument("--model", default="micro")
    parser.add_argument("--precision", default=None, help="Default: fp32 on the CPU (exact comparison), auto elsewhere")
    parser.add_argument("--tolerance", type=float, help="Default: 1e-4 in fp32, 1e-3 otherwise")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return 0
    from tunesmith.devices import DeviceError, resolve_device

    try:
        resolve_device(args.device)
    except DeviceError as exc:
        raise SystemExit(f"{exc}: pass --device cpu for the CPU run") from None
    precision = args.precision or ("fp32" if args.device == "cpu" else "auto")
    records = args.records or (args.steps * effective_batch(args.model) if args.steps else 1000)
    folder = Path(tempfile.mkdtemp(prefix="multi-job-"))
    data = write_data(folder, args.jobs, records)

    def settings(way: str) -> list[dict]:
        return [job_settings(k, path, folder / way / f"job{k}", args.model, args.device, precision) for k, path in enumerate(data)]

    print(f"device: {device_name(args.device)}; {args.jobs} jobs of {records} records on {args.model}, precision {precision}", flush=True)
    ways = {}
    for way, runner in (("together", together), ("one_at_a_time", one_at_a_time), ("separate_processes", separate_processes)):
        ways[way] = runner(settings(way))
        ways[way]["tokens_per_s"] = round(ways[way]["tokens"] / ways[way]["seconds"], 1)
        print(f"{way.replace('_', ' '):>20}: {ways[way]['tokens_per_s']:>10,.1f} tokens/s "
              f"({ways[way]['tokens']:,.0f} tokens in {ways[way]['seconds']:.1f} s)", flush=True)
    difference = 0.0
    for k in range(args.jobs):
        mine, alone = step_losses(folder / "together" / f"job{k}"), step_losses(folder / "one_at_a_time" / f"job{k}")
        if len(mine) != len(alone):
            raise SystemExit(f"job{k} trained {len(mine)} steps together and {len(alone)} alone")
        difference = max(difference, *(abs(a - b) for a, b in zip(mine, alone)))
    speed = {name: ways["together"]["tokens_per_s"] / ways[name]["tokens_per_s"] for name in ("one_at_a_time", "separate_processes")}
    print(f"together vs one at a time: {speed['one_at_a_time']:.2f}x; vs separate processes: {speed['separate_processes']:.2f}x")
    output = args.output or (RESULTS if args.device.startswith("cuda") else None)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps({
            "device": device_name(args.device), "commit": git_commit(), "jobs": args.jobs, "records": records, "precision": precision,
            "model": args.model, "vs_one_at_a_time": round(speed["one_at_a_time"], 3),
            "vs_separate_processes": round(speed["separate_processes"], 3), "max_loss_difference": difference, "ways": ways,
        }, indent=2) + "\n")
    tolerance = args.tolerance or (1e-4 if precision == "fp32" else 1e-3)
    print(f"max loss difference vs alone: {difference:.3g}")
    return 0 if difference <= tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
