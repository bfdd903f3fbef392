"""``benchmarks/gpu_vs_trainer.py`` as a CPU smoke run, so the GPU benchmark keeps working where
no GPU is: a tiny Llama (``conftest.build_tiny_model``), one optimizer step of 16 records,
the peer's sweep over micro-batches of 4 and 8 records, padded and flattened; then the JSON
it writes and the ratio line it prints."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import build_tiny_model

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import gpu_vs_trainer  # noqa: E402


def test_cpu_smoke_run_trains_both_sides_and_writes_the_ratios(tmp_path):
    model = build_tiny_model(tmp_path / "tiny")
    output = tmp_path / "tmp" / "latest.json"
    command = [
        sys.executable, str(BENCHMARKS / "gpu_vs_trainer.py"), "--device", "cpu", "--model", str(model), "--steps", "1",
        "--records", "16", "--data", "short", "--peer-batches", "4,8", "--output", str(output),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    report = json.loads(output.read_text())
    assert report["device"] and report["commit"] and report["memory"] == "peak RSS MB"
    [row] = report["rows"]
    assert (row["dataset"], row["model"], row["default_settings"]) == ("short", str(model), True)
    assert (row["records"], row["steps"], row["effective_batch"]) == (16, 1, 16)  # a plain folder's tier trains 16 a step
    ours, peer = row["tunesmith"], row["trainer"]
    assert ours["tokens_per_s"] > 0 and peer["tokens_per_s"] > 0
    assert row["speed_ratio"] == pytest.approx(ours["tokens_per_s"] / peer["tokens_per_s"])
    assert row["memory_ratio"] == pytest.approx(ours["peak_mb"] / peer["peak_mb"])
    assert ours["mfu"] is None and peer["mfu"] is None  # no GPU peak to divide by
    assert set(ours["settings"]) >= {"precision", "micro_batch_tokens", "micro_batch_reason", "batching", "attention", "attention_seconds"}

    sweep = row["trainer_sweep"]
    assert [(run["micro_batch"], run["collation"]) for run in sweep] == [(4, "padded"), (4, "flattened"), (8, "padded"), (8, "flattened")]
    assert all("error" not in run for run in sweep), sweep
    assert {run["tokens_counted"] for run in sweep} == {ours["tokens_counted"]} == {row["dataset_tokens"]}  # the same tokens
    assert [run["padded_tokens"] for run in sweep if run["collation"] == "flattened"] == [0, 0]
    best = max(sweep, key=lambda run: run["tokens_per_s"])
    assert peer["tokens_per_s"] == best["tokens_per_s"] and peer["peak_mb"] == best["peak_mb"]
    assert (peer["settings"]["micro_batch_records"], peer["settings"]["collation"]) == (best["micro_batch"], best["collation"])
    assert peer["settings"]["micro_batch_records"] * peer["settings"]["accumulation"] == 16

    assert f"speed ratio tunesmith/trainer: {row['speed_ratio']:.2f}x; memory ratio tunesmith/trainer: {row['memory_ratio']:.2f}" in done.stdout
    assert done.stdout.startswith("device: ")


def test_a_registered_folder_trains_with_micros_batch_and_keeps_the_users_models(tmp_path, tiny_model):
    Path(os.environ["TUNESMITH_CONFIG"]).write_text(f'[models.mine]\nsource = "{tiny_model}"\neffective_batch_size = 8\n')
    gpu_vs_trainer.register_model("0.5b-shape", tiny_model, 64, tmp_path)
    assert gpu_vs_trainer.effective_batch("0.5b-shape") == 64
    assert gpu_vs_trainer.effective_batch("mine") == 8
    assert gpu_vs_trainer.effective_batch(str(tiny_model)) == 16


def test_steps_records_and_peaks():
    assert gpu_vs_trainer.plan_steps(64, None, None) == 94
    assert gpu_vs_trainer.plan_steps(16, 1, 16) == 1
    assert gpu_vs_trainer.plan_steps(64, None, 128) == 2
    with pytest.raises(SystemExit):
        gpu_vs_trainer.plan_steps(64, None, 100)
    with pytest.raises(SystemExit):
        gpu_vs_trainer.plan_steps(64, 3, 128)
    assert gpu_vs_trainer.peak_flops("NVIDIA H200") == 989e12
    assert gpu_vs_trainer.peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert gpu_vs_trainer.peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert gpu_vs_trainer.peak_flops("NVIDIA GeForce RTX 4090") is None
    assert gpu_vs_trainer.mfu(1000.0, 4e9, 989e12) == pytest.approx(4e12 / 989e12)
    assert gpu_vs_trainer.mfu(1000.0, 4e9, None) is None


def test_rows_of_other_pairs_from_the_same_device_are_kept(tmp_path):
    output = tmp_path / "latest.json"
    earlier = [{"dataset": "short", "model": "micro", "commit": "a"}, {"dataset": "long-system", "model": "micro", "commit": "a"}]
    output.write_text(json.dumps({"device": "NVIDIA H200", "rows": earlier}))
    new = [{"dataset": "short", "model": "micro"}]
    assert gpu_vs_trainer.earlier_rows(output, "NVIDIA H200", new) == [earlier[1]]
    assert gpu_vs_trainer.earlier_rows(output, "NVIDIA A100-SXM4-80GB", new) == []
    assert gpu_vs_trainer.earlier_rows(tmp_path / "none.json", "NVIDIA H200", new) == []
