"""Data parallel on the CPU: N ranks x 1 thread against 1 process x N threads, in one run.

    python benchmarks/data_parallel.py [--model micro] [--records 128] [--nproc 2]

Both sides run ``tunesmith train`` on the same records (the example order data, repeated to
``--records``), one epoch, fp32 or the CPU's auto precision, same tier batch; each side in its
own processes, one after the other. Printed: training tokens/s (from the manifest: the
loop's own clock), wall seconds of the whole command (start-up and model loading included),
and the ratio. Label the figures with the CPU they came from.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "orders.train.jsonl"


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            flags = Path("/proc/cpuinfo").read_text()
            return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores, {'native bf16' if 'avx512_bf16' in flags else 'no native bf16'})"
    return platform.processor() or "unknown CPU"


def run(data: Path, output: Path, model: str, nproc: int, threads: int, precision: str) -> dict:
    command = [sys.executable, "-m", "tunesmith", "train", str(data), "--model", model, "--output", str(output),
               "--epochs", "1", "--learning-rate", "0.0001", "--warmup-steps", "0", "--precision", precision, "--device", "cpu"]
    if nproc > 1:
        command += ["--nproc", str(nproc)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{nproc} rank(s) failed:\n{done.stderr[-3000:]}")
    result = json.loads((output / "manifest.json").read_text())["result"]
    return {"tokens_per_s": result["tokensPerSecond"], "train_s": result["wallSeconds"], "wall_s": wall, "steps": result["steps"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="micro")
    parser.add_argument("--records", type=int, default=128)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    lines = EXAMPLES.read_text().splitlines()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        data = folder / "data.jsonl"
        data.write_text("\n".join(itertools.islice(itertools.cycle(lines), args.records)) + "\n")
        single = run(data, folder / "single", args.model, 1, args.nproc, args.precision)
        ranks = run(data, folder / "ranks", args.model, args.nproc, 1, args.precision)
    print(f"CPU: {cpu_name()}; model {args.model}; {args.records} records, {single['steps']} optimizer steps; precision {args.precision}")
    print(f"{'side':<28}{'train tokens/s':>16}{'train s':>10}{'command wall s':>16}")
    for name, r in ((f"1 process x {args.nproc} threads", single), (f"{args.nproc} ranks x 1 thread", ranks)):
        print(f"{name:<28}{r['tokens_per_s']:>16.1f}{r['train_s']:>10.1f}{r['wall_s']:>16.1f}")
    print(f"ranks / process: {ranks['tokens_per_s'] / single['tokens_per_s']:.2f}x training speed, "
          f"{single['wall_s'] / ranks['wall_s']:.2f}x command wall speed")


if __name__ == "__main__":
    main()
