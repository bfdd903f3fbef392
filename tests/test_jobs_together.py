"""Jobs trained together over one base model train as they would alone."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import arithmetic, write_jsonl
from tunesmith.hyperparameters import Hyperparameters
from tunesmith.multi_adapter.segments import Segments, adapter_segments, install_segmented_forward
from tunesmith.multi_adapter.trainer import JobsTogether
from tunesmith.training import TrainConfig, finetune

TOLERANCE = 1e-4

JOBS = {  # different data, learning rates, warmup, epochs and seeds
    "alpha": dict(records=(40, 0), hyperparameters=Hyperparameters(2, 1e-4, 3), seed=0),
    "beta": dict(records=(32, 200), hyperparameters=Hyperparameters(1, 5e-5, 0), seed=1),
    "gamma": dict(records=(48, 400), hyperparameters=Hyperparameters(2, 2e-5, 1), seed=2, duplication=2),
}


def job_config(tmp_path, tiny_model, name: str, where: str) -> TrainConfig:
    spec = dict(JOBS[name])
    count, start = spec.pop("records")
    data = tmp_path / f"{name}.jsonl"
    if not data.exists():
        write_jsonl(data, arithmetic(count, start=start))
    return TrainConfig(data=data, output=tmp_path / where / name, model=str(tiny_model), precision="fp32", device="cpu",
                       micro_batch_tokens=256, **spec)


def curve(output) -> list[float]:
    lines = (output / "events.jsonl").read_text().splitlines()
    return [e["loss"] for e in map(json.loads, lines) if e["event"] == "step"]


def adapter(output) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(output / "adapter" / "adapter_model.safetensors")


def assert_same_run(together, alone) -> None:
    assert len(curve(together)) == len(curve(alone)) > 0
    assert curve(together) == pytest.approx(curve(alone), abs=TOLERANCE)
    mine, theirs = adapter(together), adapter(alone)
    assert mine.keys() == theirs.keys()
    for key, weight in theirs.items():
        torch.testing.assert_close(mine[key], weight, rtol=0, atol=TOLERANCE, msg=key)


@pytest.fixture(scope="module")
def alone(tmp_path_factory, tiny_model):
    folder = tmp_path_factory.mktemp("alone")
    for name in JOBS:
        finetune(job_config(folder, tiny_model, name, "alone"))
    return folder


@pytest.mark.parametrize("stacked", [False, True], ids=["loop", "stacked"])
@pytest.mark.parametrize("packing", [False, True], ids=["padded", "packed"])
def test_three_jobs_together_train_as_each_alone(tmp_path, tiny_model, alone, stacked, packing):
    group = JobsTogether(stacked=stacked, packing=packing)
    for name in JOBS:
        group.add(job_config(alone, tiny_model, name, f"together-{stacked}-{packing}"), name=name)
    outcomes = group.run()
    assert {n: o.result.stopped for n, o in outcomes.items()} == dict.fromkeys(JOBS, False)
    assert group.steps == 12  # c: 48 records twice over, 2 epochs, batch 16
    for name in JOBS:
        assert_same_run(alone / f"together-{stacked}-{packing}" / name, alone / "alone" / name)
        manifest = json.loads((alone / f"together-{stacked}-{packing}" / name / "manifest.json").read_text())
        assert manifest["result"]["steps"] == len(curve(alone / "alone" / name))
        assert (alone / f"together-{stacked}-{packing}" / name / "model" / "model.safetensors").exists()


def test_a_job_stopped_midway_leaves_the_others_unchanged(tmp_path, tiny_model, alone):
    group = JobsTogether()
    for name in JOBS:
        group.add(job_config(alone, tiny_model, name, "stopping"), name=name)
    group.step()
    group.step()
    group.stop("alpha")  # between steps: it leaves before the next
    outcomes = group.run()
    assert outcomes["alpha"].result.stopped and len(curve(alone / "stopping" / "alpha")) == 2
    assert curve(alone / "stopping" / "alpha") == pytest.approx(curve(alone / "alone" / "alpha")[:2], abs=TOLERANCE)
    assert (alone / "stopping" / "alpha" / "checkpoints").is_dir() and not (alone / "stopping" / "alpha" / "manifest.json").exists()
    for name in ("beta", "gamma"):
        assert_same_run(alone / "stopping" / name, alone / "alone" / name)


def test_a_job_joining_at_step_2_matches_its_run_alone(tmp_path, tiny_model, alone):
    group = JobsTogether()
    group.add(job_config(alone, tiny_model, "alpha", "joining"), name="alpha")
    group.add(job_config(alone, tiny_model, "beta", "joining"), name="beta")
    group.step()
    group.add(job_config(alone, tiny_model, "gamma", "joining"), name="gamma")
    group.run()
    for name in JOBS:
        assert_same_run(alone / "joining" / name, alone / "alone" / name)


def test_bad_data_keeps_a_job_out_and_its_neighbours_train_on(tmp_path, tiny_model, alone):
    from tunesmith.datasets import DataError

    group = JobsTogether()
    group.add(job_config(alone, tiny_model, "alpha", "bad"), name="alpha")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"schemaVersion": "bedrock-conversation-2024", "messages": [}\n')
    with pytest.raises(DataError):
        group.add(TrainConfig(data=broken, output=tmp_path / "broken", model=str(tiny_model), precision="fp32", device="cpu"))
    group.run()
    assert_same_run(alone / "bad" / "alpha", alone / "alone" / "alpha")


def test_segments_give_each_row_its_own_adapter():
    """A layer's output per segment equals PEFT's with that adapter alone active, both ways."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(torch.nn.Sequential(torch.nn.Linear(8, 6)), LoraConfig(r=2, target_modules=["0"]), adapter_name="x")
    model.add_adapter("y", LoraConfig(r=3, lora_alpha=5, target_modules=["0"]))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p)
    x = torch.randn(5, 4, 8)
    expected = []
    for name, rows in (("x", slice(0, 2)), ("y", slice(2, 5))):
        model.set_adapter(name)
        expected.append(model(x[rows]))
    expected = torch.cat(expected)
    install_segmented_forward(model)
    for stacked in (False, True):
        with adapter_segments(Segments.of([("x", 2), ("y", 3)], dim=0, stacked=stacked)):
            torch.testing.assert_close(model(x), expected)
        with adapter_segments(Segments.of([("x", 6), ("y", 14)], dim=1, stacked=stacked)):  # token ranges of rows
            packed = model(x.reshape(1, 20, 8))
        model.set_adapter("x")
        first = model(x.reshape(1, 20, 8)[:, :6])
        torch.testing.assert_close(packed[:, :6], first)
    with pytest.raises(ValueError, match="tile the batch"):
        Segments(("x", "y"), (0, 3), dim=0)
    with pytest.raises(ValueError, match="cover 4 of 5"), adapter_segments(Segments.of([("x", 2), ("y", 2)], dim=0)):
        model(x)


def test_the_benchmark_runs_three_ways_and_ends_with_the_difference(tmp_path, tiny_model):
    """benchmarks/multi_job.py on the CPU with a tiny model: its last line, exit status and JSON."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "multi_job.py"
    output = tmp_path / "multi_job.json"
    done = subprocess.run([sys.executable, str(script), "--device", "cpu", "--jobs", "3", "--steps", "2", "--model", str(tiny_model),
                           "--output", str(output)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[-1].startswith("max loss difference vs alone: ")
    assert float(lines[-1].rsplit(" ", 1)[1]) <= 1e-4
    report = json.loads(output.read_text())
    assert report["jobs"] == 3 and report["precision"] == "fp32" and report["max_loss_difference"] <= 1e-4
    assert set(report["ways"]) == {"together", "one_at_a_time", "separate_processes"}
    assert all(way["tokens"] == report["ways"]["together"]["tokens"] > 0 for way in report["ways"].values())
    assert report["vs_one_at_a_time"] > 0 and report["vs_separate_processes"] > 0


def test_serve_trains_four_jobs_on_one_base_together_as_it_would_one_at_a_time(tmp_path, tiny_model):
    """serve --jobs-per-device 4: four boto3-created jobs on the same base train in one group
    worker, complete, and end with the adapters the same jobs get one at a time."""
    from safetensors.torch import load_file

    from service_harness import ApiOnlyServer, Server, wait_for
    from tunesmith.jobs.layout import JobFolder

    (tmp_path / "models.toml").write_text(f'[tiers.micro]\nsource = "{tiny_model}"\neffective_batch_size = 16\n')
    for k in range(4):
        write_jsonl(tmp_path / f"d{k}.jsonl", arithmetic(32 + 8 * k, start=100 * k))

    def run_jobs(home, *options):
        home.mkdir()
        with ApiOnlyServer(home, tmp_path, devices=["cpu"]) as api:  # all four queued before any worker starts
            client = api.client()
            for k in range(4):
                client.create_model_customization_job(
                    jobName=f"job{k}", customModelName=f"model{k}", roleArn="arn:aws:iam::123456789012:role/t",
                    baseModelIdentifier="amazon.nova-micro-v1:0:128k", trainingDataConfig={"s3Uri": str(tmp_path / f"d{k}.jsonl")},
                    outputDataConfig={"s3Uri": str(tmp_path / f"out-{home.name}")},
                    hyperParameters={"epochCount": "2", "learningRate": ["0.0001", "0.00005", "0.00002", "0.00008"][k],
                                     "learningRateWarmupSteps": str(k)},
                )
        server = Server(home, tmp_path, tmp_path / "models.toml", options=["--devices", "cpu", *options]).start()
        try:
            client = server.client()
            arns = [j["jobArn"] for j in client.list_model_customization_jobs()["modelCustomizationJobSummaries"]]
            jobs = {j["jobName"]: j for j in (wait_for(client, arn, {"Completed", "Failed", "Stopped"}, timeout=300) for arn in arns)}
        finally:
            server.kill()
        assert {name: job["status"] for name, job in jobs.items()} == {f"job{k}": "Completed" for k in range(4)}, jobs
        return {name: load_file(JobFolder(home, job["jobArn"].rsplit("/", 1)[1]).run / "adapter" / "adapter_model.safetensors")
                for name, job in jobs.items()}, home

    together, home = run_jobs(tmp_path / "together", "--jobs-per-device", "4")
    log = (tmp_path / "server.log").read_text()
    assert "with 3 other job(s) on the same base model" in log
    alone, _ = run_jobs(tmp_path / "alone", "--jobs-per-device", "1")
    for name, weights in alone.items():
        for key, weight in weights.items():
            torch.testing.assert_close(together[name][key], weight, rtol=0, atol=TOLERANCE, msg=f"{name} {key}")


def test_a_job_on_another_base_or_with_a_bad_name_is_refused(tmp_path, tiny_model):
    from conftest import build_tiny_model
    from tunesmith.errors import ConfigError

    other = build_tiny_model(tmp_path / "other", seed=1)
    write_jsonl(tmp_path / "t.jsonl", arithmetic(32))
    group = JobsTogether()
    group.add(TrainConfig(data=tmp_path / "t.jsonl", output=tmp_path / "alpha", model=str(tiny_model), precision="fp32", device="cpu"))
    with pytest.raises(ConfigError, match="is not this group's base"):
        group.add(TrainConfig(data=tmp_path / "t.jsonl", output=tmp_path / "beta", model=str(other), precision="fp32", device="cpu"))
    with pytest.raises(ConfigError, match="letters, digits"):
        group.add(TrainConfig(data=tmp_path / "t.jsonl", output=tmp_path / "gamma", model=str(tiny_model), precision="fp32", device="cpu"),
                  name="a.b")
    with pytest.raises(ConfigError, match="only LoRA"):
        group.add(TrainConfig(data=tmp_path / "t.jsonl", output=tmp_path / "d", model=str(tiny_model), precision="fp32", device="cpu",
                              method="full"))
    assert list(group.jobs) == ["job0"]
    group.add(TrainConfig(data=tmp_path / "t.jsonl", output=tmp_path / "e", model=str(tiny_model), precision="fp32", device="cpu"),
              name="mlp")  # a name that is also a module's: its adapter's weights only
    weights = group.jobs["mlp"].named_trainable
    assert weights and all(".lora_A.default." in n or ".lora_B.default." in n for n in weights)
    assert len(weights) == len(group.jobs["job0"].named_trainable)


def test_packed_rows_with_a_boundary_kernel_train_as_each_alone(tmp_path, tiny_model, alone):
    """The varlen kernel (here the CPU reference of torch's) reads each packed row's record boundaries."""
    from test_packing import reference_varlen
    from tunesmith.training.packed_attention import VARLEN, register_varlen

    register_varlen(kernel=reference_varlen)
    group = JobsTogether(stacked=True, packing=True, attention=VARLEN)
    for name in JOBS:
        group.add(job_config(alone, tiny_model, name, "varlen"), name=name)
    assert group.attention == VARLEN
    group.run()
    for name in JOBS:
        assert_same_run(alone / "varlen" / name, alone / "alone" / name)
