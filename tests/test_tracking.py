"""``tunesmith train --track``: TensorBoard event files read back with TensorBoard's own
reader, an MLflow run read back with MLflow's client, and the errors when a target is
malformed or its library missing."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from conftest import arithmetic, write_jsonl
from tunesmith.cli import cli
from tunesmith.training.tracking import TrackingError, TrackTarget, parse_target

LRS = [1e-4 / 3, 2e-4 / 3, 1e-4, 1e-4, 1e-4, 1e-4]  # warmup 3 over 6 steps, as in test_training


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def train(folder, tiny_model, *track):
    """40 records, batch 16, 2 epochs: 6 steps, validation after steps 3 and 6."""
    write_jsonl(folder / "t.jsonl", arithmetic(40))
    write_jsonl(folder / "v.jsonl", arithmetic(8, start=100))
    flags = [arg for target in track for arg in ("--track", target)]
    return run("train", folder / "t.jsonl", "--validation", folder / "v.jsonl", "--model", tiny_model, "--output", folder / "out",
               "--epochs", 2, "--learning-rate", "1e-4", "--warmup-steps", 3, "--precision", "fp32", "--no-estimate", *flags)


def step_events(output):
    return [e for e in map(json.loads, (output / "events.jsonl").read_text().splitlines()) if e["event"] == "step"]


def test_tensorboard_gets_every_step_and_the_hyperparameters(tmp_path, tiny_model):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = train(tmp_path, tiny_model, f"tensorboard:{tmp_path / 'tb'}")
    assert result.exit_code == 0, result.output
    board = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0, "tensors": 0})
    board.Reload()
    scalars = board.Tags()["scalars"]
    assert {"train/loss", "train/learning_rate", "train/tokens_per_s", "validation/loss"} <= set(scalars)
    events = step_events(tmp_path / "out")
    loss = board.Scalars("train/loss")
    assert [s.step for s in loss] == [1, 2, 3, 4, 5, 6]
    assert [s.value for s in loss] == pytest.approx([e["loss"] for e in events], rel=1e-5)
    assert [s.value for s in board.Scalars("train/learning_rate")] == pytest.approx(LRS, rel=1e-6)
    assert all(s.value > 0 for s in board.Scalars("train/tokens_per_s"))
    validation = board.Scalars("validation/loss")
    assert [s.step for s in validation] == [3, 6]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert validation[-1].value == pytest.approx(manifest["result"]["finalValidationLoss"], rel=1e-5)
    text = board.Tensors("hyperparameters/text_summary")[0].tensor_proto.string_val[0].decode()
    for row in ("| learning_rate | 0.0001 |", "| epochs | 2 |", "| warmup_steps | 3 |", "| method | lora |", "| total_steps | 6 |"):
        assert row in text, text
    hparams = board.PluginTagToContent("hparams")
    assert "_hparams_/session_start_info" in hparams and b"learning_rate" in hparams["_hparams_/session_start_info"]


def test_mlflow_gets_a_finished_run_with_params_and_metrics(tmp_path, tiny_model, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "tracking-test")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = train(tmp_path, tiny_model, f"mlflow:{uri}")
    assert result.exit_code == 0, result.output
    client = MlflowClient(tracking_uri=uri)
    (found,) = client.search_runs([client.get_experiment_by_name("tracking-test").experiment_id])
    assert found.info.status == "FINISHED" and found.info.run_name == "out"
    assert found.data.params["learning_rate"] == "0.0001" and found.data.params["total_steps"] == "6"
    history = client.get_metric_history(found.info.run_id, "train/loss")
    assert sorted(m.step for m in history) == [1, 2, 3, 4, 5, 6]
    by_step = {m.step: m.value for m in history}
    assert [by_step[e["step"]] for e in step_events(tmp_path / "out")] == pytest.approx([e["loss"] for e in step_events(tmp_path / "out")], rel=1e-5)
    assert sorted(m.step for m in client.get_metric_history(found.info.run_id, "validation/loss")) == [3, 6]
    lrs = sorted((m.step, m.value) for m in client.get_metric_history(found.info.run_id, "train/learning_rate"))
    assert [v for _, v in lrs] == pytest.approx(LRS, rel=1e-9)


@pytest.mark.parametrize("kind,modules", [("tensorboard", ["tensorboard", "torch.utils.tensorboard"]), ("mlflow", ["mlflow"])])
def test_a_missing_library_names_the_pip_command_before_anything_trains(tmp_path, tiny_model, monkeypatch, kind, modules):
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    result = train(tmp_path, tiny_model, f"{kind}:{tmp_path / 'where'}")
    assert result.exit_code == 1
    assert f"--track {kind} needs the {kind} package, which is not installed: pip install 'tunesmith[{kind}]'" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out" / "checkpoints").exists()


def test_a_malformed_target_is_refused_with_the_forms_it_takes(tmp_path, tiny_model):
    result = train(tmp_path, tiny_model, "wandb:project")
    assert result.exit_code == 2 and "--track 'wandb:project': expected tensorboard:DIR or mlflow:URI" in result.output
    assert parse_target("mlflow:http://localhost:5000") == TrackTarget("mlflow", "http://localhost:5000")
    for text in ("tensorboard", "tensorboard:", "mlflow: "):
        with pytest.raises(TrackingError, match="expected tensorboard:DIR or mlflow:URI"):
            parse_target(text)


def test_training_without_tracking_imports_no_tracking_library():
    code = ("import sys; import tunesmith.cli.train, tunesmith.training.loop, tunesmith.training.tracking; "
            "print(sorted(m for m in ('tensorboard', 'torch.utils.tensorboard', 'mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_an_unusable_mlflow_uri_fails_before_anything_trains(tmp_path, tiny_model):
    pytest.importorskip("mlflow")
    result = train(tmp_path, tiny_model, "mlflow:bogus://nowhere")
    assert result.exit_code == 1 and "--track mlflow:bogus://nowhere: " in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out" / "checkpoints").exists()
