"""Jobs trained together over one base model train as they would alone."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import arithmetic, write_jsonl
from tunesmith.hyperparameters import Hyperparameters
from tunesmith.training import TrainConfig, finetune
from tunesmith.multi_adapter.segments import Segments, adapter_segments, install_segmented_forward
from tunesmith.multi_adapter.trainer import JobsTogether

TOLERANCE = 1e-4

JOBS = {  # different data, learning rates, warmup, epochs and seeds
    "a": dict(records=(40, 0), hyperparameters=Hyperparameters(2, 1e-4, 3), seed=0),
    "b": dict(records=(32, 200), hyperparameters=Hyperparameters(1, 5e-5, 0), seed=1),
    "c": dict(records=(48, 400), hyperparameters=Hyperparameters(2, 2e-5, 1), seed=2, duplication=2),
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
    group.stop("a")  # between steps: it leaves before the next
    outcomes = group.run()
    assert outcomes["a"].result.stopped and len(curve(alone / "stopping" / "a")) == 2
    assert curve(alone / "stopping" / "a") == pytest.approx(curve(alone / "alone" / "a")[:2], abs=TOLERANCE)
    assert (alone / "stopping" / "a" / "checkpoints").is_dir() and not (alone / "stopping" / "a" / "manifest.json").exists()
    for name in ("b", "c"):
        assert_same_run(alone / "stopping" / name, alone / "alone" / name)


def test_a_job_joining_at_step_2_matches_its_run_alone(tmp_path, tiny_model, alone):
    group = JobsTogether()
    group.add(job_config(alone, tiny_model, "a", "joining"), name="a")
    group.add(job_config(alone, tiny_model, "b", "joining"), name="b")
    group.step()
    group.add(job_config(alone, tiny_model, "c", "joining"), name="c")
    group.run()
    for name in JOBS:
        assert_same_run(alone / "joining" / name, alone / "alone" / name)


def test_bad_data_keeps_a_job_out_and_its_neighbours_train_on(tmp_path, tiny_model, alone):
    from tunesmith.datasets import DataError

    group = JobsTogether()
    group.add(job_config(alone, tiny_model, "a", "bad"), name="a")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"schemaVersion": "bedrock-conversation-2024", "messages": [}\n')
    with pytest.raises(DataError):
        group.add(TrainConfig(data=broken, output=tmp_path / "broken", model=str(tiny_model), precision="fp32", device="cpu"))
    group.run()
    assert_same_run(alone / "bad" / "a", alone / "alone" / "a")


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
