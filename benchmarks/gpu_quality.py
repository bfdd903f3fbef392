"""Quality on the GPU: the quickstart data trained with ``--advised``, packed (the CUDA
default) and padded (``--no-packing``), each scored on the quickstart's held-out test records.

    python benchmarks/gpu_quality.py [--device cuda] [--folder /tmp/gpu-quality]

Prints, per path, the manifest's steps, tokens/s, peak memory, batching and final training loss,
and the greedy exact match on the 50 test records; then the packed path's final loss relative
to the padded one's. Exit status 1 when the packed path's exact match is under 100% or its final
loss differs from the padded path's by more than 2% (the GPU engine's quality bar).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def tunesmith(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "tunesmith", *args], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"tunesmith {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/gpu-quality"))
    args = parser.parse_args()
    from tunesmith.quickstart.run import write_dataset

    args.folder.mkdir(parents=True, exist_ok=True)
    train, _validation, test = write_dataset(args.folder)
    scores = {}
    for name, flags in (("packed", ["--packing"]), ("padded", ["--no-packing"])):
        output = args.folder / name
        tunesmith("train", str(train), "--output", str(output), "--advised", "--device", args.device, *flags)
        result = json.loads((output / "manifest.json").read_text())["result"]
        evaluation = json.loads(tunesmith("evaluate", "--model", str(output), "--data", str(test), "--device", args.device, "--json"))
        scores[name] = {"final_loss": result["finalTrainingLoss"], "evaluation": evaluation,
                        **{k: result.get(k) for k in ("steps", "tokensPerSecond", "peakMemoryMB", "batching", "microBatchReason")}}
        print(name, json.dumps(scores[name]), flush=True)
    relative = scores["packed"]["final_loss"] / scores["padded"]["final_loss"] - 1
    exact = {name: s["evaluation"]["results"][0]["exactMatch"] for name, s in scores.items()}
    print(f"exact match: packed {exact['packed']:.0%}, padded {exact['padded']:.0%}; packed final loss vs padded: {relative:+.2%}")
    return 0 if abs(relative) <= 0.02 and exact["packed"] == 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
