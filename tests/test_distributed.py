"""Data parallel on torch.distributed (gloo, CPU, fp32, the tiny model): N ranks train as one.

Every test runs the real command line in subprocesses: ``tunesmith train --nproc 2`` starts
torchrun, which starts the ranks.
"""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import arithmetic, write_jsonl

COMMON = ["--learning-rate", "0.0001", "--warmup-steps", "1", "--device", "cpu", "--precision", "fp32", "--micro-batch-tokens", "256"]


def train(data: Path, output: Path, tiny_model: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "tunesmith", "train", str(data), "--model", str(tiny_model), "--output", str(output),
               *COMMON, *extra]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def losses(output: Path) -> list[float]:
    rows = list(csv.DictReader((output / "training_artifacts" / "step_wise_training_metrics.csv").open()))
    return [float(r["training_loss"]) for r in rows]


def adapter(output: Path) -> dict[str, torch.Tensor]:
    return load_file(str(output / "adapter" / "adapter_model.safetensors"))


def assert_close(a: list[float], b: list[float], rel: float = 1e-4) -> None:
    assert len(a) == len(b), (a, b)
    for x, y in zip(a, b):
        assert abs(x - y) <= rel * max(abs(x), abs(y)), (a, b)


@pytest.mark.parametrize("records", [160, 129])  # 129: the last step has one record, so one rank gets none
def test_two_ranks_train_exactly_like_one_process(tmp_path, tiny_model, records):
    data = write_jsonl(tmp_path / "t.jsonl", arithmetic(records))
    train(data, tmp_path / "one", tiny_model, "--epochs", "1")
    train(data, tmp_path / "two", tiny_model, "--epochs", "1", "--nproc", "2")
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(one) == -(-records // 16)  # a model folder trains with batch 16
    assert_close(one, two)
    a, b = adapter(tmp_path / "one"), adapter(tmp_path / "two")
    assert a.keys() == b.keys()
    for name in a:
        scale = a[name].abs().max().item()
        assert (a[name] - b[name]).abs().max().item() <= 1e-4 * scale, name
    import json

    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert manifest["worldSize"] == 2 and manifest["device"] == "cpu" and manifest["precision"] == "fp32"
    assert manifest["result"]["tokens"] == json.loads((tmp_path / "one" / "manifest.json").read_text())["result"]["tokens"]
    events = (tmp_path / "two" / "events.jsonl").read_text().splitlines()
    assert sum('"event": "start"' in e for e in events) == 1  # rank 0 alone writes


def test_resume_one_rank_to_two_equals_the_uninterrupted_run(tmp_path, tiny_model):
    data = write_jsonl(tmp_path / "t.jsonl", arithmetic(160))
    train(data, tmp_path / "whole", tiny_model, "--epochs", "2")
    train(data, tmp_path / "split", tiny_model, "--epochs", "1")  # stops at the epoch-end checkpoint (step 10)
    train(data, tmp_path / "split", tiny_model, "--epochs", "2", "--nproc", "2", "--resume")
    assert_close(losses(tmp_path / "whole"), losses(tmp_path / "split"))


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout.split()
    children = [int(p) for p in out]
    return children + [d for c in children for d in _descendants(c)]


def _rank_pid(root: int, rank: int) -> int | None:
    for pid in _descendants(root):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ and b"TORCHELASTIC_RUN_ID=" in b"\0".join(environ):
            return pid
    return None


def test_a_killed_rank_stops_the_run_clearly_and_two_to_one_resume_completes_it(tmp_path, tiny_model):
    data = write_jsonl(tmp_path / "t.jsonl", arithmetic(800))
    output = tmp_path / "run"
    command = [sys.executable, "-m", "tunesmith", "train", str(data), "--model", str(tiny_model), "--output", str(output),
               *COMMON, "--epochs", "1", "--save-every", "1", "--nproc", "2"]
    launcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 300
    while not (output / "checkpoints" / "step-000002").exists():
        assert time.monotonic() < deadline and launcher.poll() is None, launcher.stderr.read()[-3000:] if launcher.poll() else "slow"
        time.sleep(0.02)
    victim = _rank_pid(launcher.pid, 1)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    _, stderr = launcher.communicate(timeout=300)
    assert launcher.returncode != 0
    assert "a rank of the 2-rank run failed" in stderr and "the last checkpoint is" in stderr and "--resume" in stderr
    assert not (output / "manifest.json").exists()

    train(data, output, tiny_model, "--epochs", "1", "--save-every", "1", "--resume")  # 2 ranks -> 1
    train(data, tmp_path / "whole", tiny_model, "--epochs", "1")
    assert_close(losses(tmp_path / "whole"), losses(output))



def test_sharded_full_fine_tuning_equals_one_process_and_resumes(tmp_path, tiny_model):
    """--shard (FSDP over 2 gloo ranks) against plain full fine-tuning in one process: same
    per-step loss, same final weights; a sharded checkpoint resumes to the same curve."""
    from safetensors.torch import load_file as load_weights

    data = write_jsonl(tmp_path / "t.jsonl", arithmetic(129))
    train(data, tmp_path / "one", tiny_model, "--epochs", "2", "--method", "full")
    train(data, tmp_path / "two", tiny_model, "--epochs", "2", "--method", "full", "--nproc", "2", "--shard")
    assert_close(losses(tmp_path / "one"), losses(tmp_path / "two"))
    a, b = (load_weights(str(tmp_path / side / "model" / "model.safetensors")) for side in ("one", "two"))
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=1e-4, atol=1e-6), name
    train(data, tmp_path / "split", tiny_model, "--epochs", "1", "--method", "full", "--nproc", "2", "--shard")
    train(data, tmp_path / "split", tiny_model, "--epochs", "2", "--method", "full", "--nproc", "2", "--shard", "--resume")
    assert_close(losses(tmp_path / "one"), losses(tmp_path / "split"))


def test_shard_is_refused_where_it_cannot_work(tmp_path, tiny_model):
    data = write_jsonl(tmp_path / "t.jsonl", arithmetic(20))
    lora = train(data, tmp_path / "a", tiny_model, "--shard", "--nproc", "2", check=False)
    assert lora.returncode != 0 and "use --method full" in lora.stderr
    single = train(data, tmp_path / "b", tiny_model, "--shard", "--method", "full", check=False)
    assert single.returncode == 1 and "start 2 or more with --nproc N" in single.stderr and "Traceback" not in single.stderr

