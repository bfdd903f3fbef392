"""Estimates before training (``training/estimate.py``, ``training/calibration.py``) on the tiny model."""

import json

import pytest
from click.testing import CliRunner

from conftest import arithmetic, conversation, write_jsonl
from tunesmith.cli import cli
from tunesmith.hyperparameters import Hyperparameters
from tunesmith.training import TrainConfig, finetune
from tunesmith.training.calibration import Calibration, _fit, cache_path
from tunesmith.training.estimate import estimate_run, estimate_vs_actual, validation_passes

SYSTEM = "You are a careful calculator. Add the two numbers and say the sum in words and digits."


def records(n: int) -> list[dict]:
    """Chat records of varied length that share a system prompt (so CPU runs share prefixes)."""
    return [conversation(f"What is {i} plus {i}?" + " Show it." * (i % 9), f"{i} plus {i} is {2 * i}.", system=SYSTEM)
            for i in range(n)]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def json_of(output: str) -> dict:
    return json.loads(output[output.index("{"):])


@pytest.fixture
def one_thread():
    """One torch thread: on a machine other processes share, two threads wait on each other at
    every barrier and a run's time swings by 2x; one slows down only by the share it loses."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_estimate_matches_a_real_run(tmp_path, tiny_model, one_thread):
    """Steps, tokens and computed positions exactly; training time within 30%. Records whose answer
    falls past max_length are dropped (the plan counts the rest), duplication 2, 2 epochs, validation."""
    too_long = [conversation("Tell me everything. " * 60, "Nothing.") for _ in range(5)]
    data = write_jsonl(tmp_path / "t.jsonl", records(300) + too_long)
    valid = write_jsonl(tmp_path / "v.jsonl", records(20))
    config = TrainConfig(data=data, validation=[valid], output=tmp_path / "out", model=str(tiny_model), max_length=200,
                         hyperparameters=Hyperparameters(2, 1e-4, 3), duplication=2, precision="fp32")
    for attempt in range(2):  # time on a shared machine: one retry when another process took the CPU meanwhile
        estimate = estimate_run(config, recalibrate=attempt > 0)
        result = finetune(config)
        state = result.state
        assert estimate.steps == state.step == result.plan.total_steps == 76  # ceil(300 x 2 / 16) x 2
        assert estimate.records == 300 and result.manifest["data"]["droppedRecords"] == 5
        assert estimate.tokens == state.tokens == result.manifest["result"]["tokens"]
        assert estimate.computed_positions == state.tokens + state.padded_tokens - state.shared_tokens
        assert estimate.validation_seconds > 0 and not estimate.cached
        ratio = estimate.training_seconds / state.elapsed_s
        print(f"attempt {attempt}: estimated {estimate.training_seconds:.2f} s, trained {state.elapsed_s:.2f} s")
        if abs(ratio - 1) <= 0.3:
            break
        config = TrainConfig(**{**vars(config), "output": tmp_path / f"again-{attempt}"})
    assert abs(ratio - 1) <= 0.3, f"estimated {estimate.training_seconds:.2f} s, trained {state.elapsed_s:.2f} s"


@pytest.fixture
def small(tmp_path, tiny_model):
    data = write_jsonl(tmp_path / "t.jsonl", arithmetic(40))
    return TrainConfig(data=data, output=tmp_path / "unused", model=str(tiny_model), hyperparameters=Hyperparameters(2, 1e-4, 1),
                       precision="fp32")


@pytest.fixture
def measured(monkeypatch):
    """Calibrations stand-in (the real one is timed in the first test): records each call."""
    calls = []

    def fake(run):
        calls.append(run.source.name)
        return Calibration(0.001, 0.002, 1e-6, 6, 0.1)

    monkeypatch.setattr("tunesmith.training.estimate.measure", fake)
    return calls


def test_the_calibration_is_cached_per_model_and_machine(small, measured):
    first = estimate_run(small)
    second = estimate_run(small)
    assert len(measured) == 1 and not first.cached and second.cached
    assert second.calibration == first.calibration and second.training_seconds == pytest.approx(first.training_seconds)
    (entry,) = json.loads(cache_path().read_text())["entries"].values()
    assert entry["key"]["device"].startswith("cpu: ") and entry["key"]["precision"] == "fp32" and entry["key"]["method"] == "lora"
    full = estimate_run(TrainConfig(**{**vars(small), "method": "full"}))
    assert len(measured) == 2 and not full.cached  # another method is another calibration
    assert estimate_run(small, recalibrate=True).cached is False and len(measured) == 3


@pytest.mark.parametrize("content", ["{not json", '{"version": 1, "entries": []}', '{"version": 1, "entries": {"x": 3}}', "[]"])
def test_an_unreadable_cache_is_measured_again_and_rewritten(small, measured, content):
    cache_path().parent.mkdir(parents=True, exist_ok=True)
    cache_path().write_text(content)
    assert estimate_run(small).cached is False and len(measured) == 1
    assert json.loads(cache_path().read_text())["version"] == 1
    assert estimate_run(small).cached is True


def test_fit_recovers_known_rates():
    # seconds = 0.01 per step + 0.002 per micro-batch + 1e-5 per unit of work
    truth = lambda n, w: 0.01 + 0.002 * n + 1e-5 * w  # noqa: E731
    samples = {"small": (truth(1, 100), 1, 100), "full": (truth(1, 2000), 1, 2000), "split": (truth(4, 2100), 4, 2100)}
    fitted = _fit(samples, 9, 1.0)
    assert (fitted.per_step, fitted.per_micro_batch, fitted.per_position) == pytest.approx((0.01, 0.002, 1e-5))
    noisy = _fit({"small": (0.05, 1, 100), "full": (0.04, 1, 2000)}, 6, 1.0)  # the small step took longer: noise
    assert noisy.per_position == pytest.approx(0.25 * 0.04 / 2000) and noisy.per_micro_batch == pytest.approx(0.03)
    assert noisy.seconds(1, 1, 2000) == pytest.approx(0.04)  # the full micro-batch's own time is kept


def test_validation_passes_count_epoch_ends_and_eval_every():
    assert validation_passes(6, 3, None) == 2
    assert validation_passes(6, 3, 2) == 4  # steps 2, 3, 4, 6


def test_estimate_vs_actual(tmp_path):
    assert estimate_vs_actual(tmp_path, {"steps": 3}) is None
    (tmp_path / "estimate.json").write_text("{broken")
    assert estimate_vs_actual(tmp_path, {"steps": 3}) is None
    saved = {"steps": 6, "trainingSeconds": 2.5, "seconds": 3.0, "peakMemoryMB": 1100.0, "tokens": 900}
    (tmp_path / "estimate.json").write_text(json.dumps(saved))
    result = {"steps": 6, "tokens": 900, "wallSeconds": 2.9, "peakMemoryMB": 1000.5, "finalTrainingLoss": 1.0}
    assert estimate_vs_actual(tmp_path, result) == {
        "steps": {"estimated": 6, "actual": 6}, "seconds": {"estimated": 2.5, "actual": 2.9},
        "peakMemoryMB": {"estimated": 1100.0, "actual": 1000.5}, "tokens": {"estimated": 900, "actual": 900},
    }


def test_estimate_command(in_tmp, tiny_model):
    write_jsonl(in_tmp / "t.jsonl", arithmetic(40))
    write_jsonl(in_tmp / "v.jsonl", arithmetic(8, start=100))
    result = run("estimate", "t.jsonl", "--validation", "v.jsonl", "--model", tiny_model, "--epochs", 2, "--precision", "fp32", "--json")
    assert result.exit_code == 0, result.output
    assert "calibrating" in result.output
    out = json_of(result.output)
    assert out["steps"] == 6 and out["records"] == 40 and out["validationSeconds"] > 0  # 40 records, batch 16: 3 steps x 2 epochs
    assert set(out["calibration"]) >= {"secondsPerPosition", "secondsPerMicroBatch", "secondsPerStep", "cached"}
    table = run("estimate", "t.jsonl", "--model", tiny_model, "--advised", "--precision", "fp32")
    assert table.exit_code == 0, table.output
    assert "optimizer steps" in table.output and "calibration" in table.output and "calibrating" not in table.output
    missing = run("estimate", "nope.jsonl", "--model", tiny_model)
    assert missing.exit_code == 1 and "nope.jsonl: file: no such file" in missing.output


def test_train_prints_and_writes_the_estimate(in_tmp, tiny_model):
    write_jsonl(in_tmp / "t.jsonl", arithmetic(40))
    result = run("train", "t.jsonl", "--model", tiny_model, "--output", "out", "--epochs", 1, "--warmup-steps", 1,
                 "--learning-rate", "1e-4", "--precision", "fp32", "--json")
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("estimate: "))
    assert line.startswith("estimate: 3 optimizer steps, ") and "on this machine, peak about " in line
    manifest = json_of(result.output)  # stdout stays one JSON document after the stderr lines
    saved = json.loads((in_tmp / "out" / "estimate.json").read_text())
    assert saved["steps"] == manifest["result"]["steps"] == 3 and saved["tokens"] == manifest["result"]["tokens"]
    compared = estimate_vs_actual(in_tmp / "out", manifest["result"])
    assert compared["steps"] == {"estimated": 3, "actual": 3}
    quiet = run("train", "t.jsonl", "--model", tiny_model, "--output", "out2", "--epochs", 1, "--precision", "fp32", "--no-estimate")
    assert quiet.exit_code == 0 and "estimate: 3" not in quiet.output and not (in_tmp / "out2" / "estimate.json").exists()


def test_advise_estimate(in_tmp, tiny_model, monkeypatch):
    monkeypatch.setenv("TUNESMITH_CONFIG", str(in_tmp / "models.toml"))
    (in_tmp / "models.toml").write_text(f'[tiers.micro]\nsource = "{tiny_model}"\n')
    write_jsonl(in_tmp / "t.jsonl", arithmetic(40))
    result = run("advise", "t.jsonl", "--model", "micro", "--epochs", 1, "--estimate", "--json")
    assert result.exit_code == 0, result.output
    out = json_of(result.output)
    assert out["estimate"]["steps"] == out["plan"]["totalSteps"]
    assert run("advise", "--records", 40, "--model", "micro", "--estimate").exit_code == 2


def test_jobs_create_estimate_never_stops_the_job(tmp_path, tiny_model, capsys):
    from tunesmith.cli.estimate import estimate_before_job

    data = write_jsonl(tmp_path / "t.jsonl", arithmetic(40))
    estimate_before_job(str(tiny_model), "s3://bucket/t.jsonl", (), "fine-tuning", {})
    assert "no estimate: s3://bucket/t.jsonl is not a readable local file" in capsys.readouterr().err
    estimate_before_job(str(tiny_model), str(data), (), "fine-tuning", {"epochCount": "9"})
    assert "no estimate: " in capsys.readouterr().err
    estimate_before_job(str(tiny_model), f"file://{data}", (), "fine-tuning", {"epochCount": "1"})
    assert "estimate: 3 optimizer steps" in capsys.readouterr().err


def test_calibration_round_trips():
    calibration = Calibration(0.01, 0.002, 1e-5, 9, 1.5)
    assert Calibration.from_dict(calibration.as_dict()) == Calibration(0.01, 0.002, 1e-5, 9, 1.5)
    with pytest.raises(ValueError):
        Calibration.from_dict({**calibration.as_dict(), "secondsPerPosition": 0})
