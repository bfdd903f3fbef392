"""Early stopping with the best validation checkpoint, and the learning-curve check."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from conftest import arithmetic, write_jsonl
from tunesmith.errors import ConfigError
from tunesmith.hyperparameters import Hyperparameters
from tunesmith.training import TrainConfig, finetune
from tunesmith.training.checkpoints import checkpoint_path, list_checkpoints
from tunesmith.training.early_stopping import EarlyStopping
from tunesmith.training.learning_curve import MIN_GAIN, fit_power_law, predict_next_epoch, record_outcome


# -- the rules, without a model ---------------------------------------------------------------
def test_patience_counts_validations_without_a_new_best() -> None:
    tracker = EarlyStopping(patience=2)
    assert tracker.observe(1, 2.0) and tracker.observe(2, 1.5)
    assert not tracker.observe(3, 1.5)  # equal is not better
    assert not tracker.should_stop
    assert not tracker.observe(4, 1.7)
    assert tracker.should_stop and tracker.stopped_at == 4 and tracker.best_step == 2
    selection = tracker.selection(last_step=4)
    assert selection["step"] == 2 and selection["earlyStopped"] and selection["stoppedAtStep"] == 4
    assert "lowest validation loss of 4 evaluation(s), at step 2" in selection["reason"]
    restored = EarlyStopping.from_state(tracker.to_state(), patience=2)
    assert restored == tracker


def test_power_law_fit_recovers_a_learning_curve() -> None:
    steps = [10, 20, 30, 40]
    losses = [0.5 + 3.0 * s ** -0.7 for s in steps]
    a, b, c = fit_power_law(steps, losses)
    assert a == pytest.approx(0.5, abs=0.05) and c == pytest.approx(0.7, abs=0.1)


def test_prediction_says_whether_another_epoch_helps() -> None:
    still_learning = [(s, 0.2 + 4.0 * s ** -0.8) for s in (10, 20)]
    prediction = predict_next_epoch(still_learning, steps_per_epoch=10, epoch=1)
    assert prediction.predicted_to_help is True
    assert prediction.predicted_next_loss < still_learning[-1][1] * (1 - MIN_GAIN)

    flat = [(10, 1.0), (20, 0.999), (30, 0.9985)]
    assert predict_next_epoch(flat, 10, 2).predicted_to_help is False

    rising = [(10, 1.0), (20, 1.1)]
    overfit = predict_next_epoch(rising, 10, 1)
    assert overfit.predicted_to_help is False and "overfitting" in overfit.basis

    first = predict_next_epoch([(10, 1.0)], 10, 0)
    assert first.predicted_to_help is None and first.predicted_next_loss is None

    record_outcome([prediction], 0.1)
    assert prediction.actual_next_loss == 0.1 and prediction.helped is True


# -- in a real run ----------------------------------------------------------------------------
def make_config(tmp_path, tiny_model, **overrides) -> TrainConfig:
    write_jsonl(tmp_path / "t.jsonl", arithmetic(40))
    write_jsonl(tmp_path / "v.jsonl", arithmetic(8, start=100))
    settings = dict(
        data=tmp_path / "t.jsonl", validation=[tmp_path / "v.jsonl"], output=tmp_path / "out", model=str(tiny_model),
        hyperparameters=Hyperparameters(3, 1e-4, 0), precision="fp32", method="full", eval_every=1, keep_checkpoints=1,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def events(output, kind):
    return [e for e in map(json.loads, (output / "events.jsonl").read_text().splitlines()) if e["event"] == kind]


def test_early_stopping_keeps_the_best_validation_checkpoint(tmp_path, tiny_model, monkeypatch) -> None:
    """The tiny model learns too little in 9 steps for its validation loss to turn, so the
    losses are scripted: best at step 2, then two validations without a new best."""
    from tunesmith.training.loop import TrainingRun

    scripted = iter([3.0, 2.0, 2.5, 2.4, 1.0, 1.0, 1.0, 1.0, 1.0])
    monkeypatch.setattr(TrainingRun, "validation_loss", lambda self: next(scripted))
    config = make_config(tmp_path, tiny_model, early_stopping_patience=2)
    result = finetune(config)
    losses = {e["step"]: e["loss"] for e in events(config.output, "validation")}
    best = min(losses, key=losses.get)
    assert losses == {1: 3.0, 2: 2.0, 3: 2.5, 4: 2.4} and best == 2
    selected = result.manifest["selectedCheckpoint"]
    assert selected["step"] == best and selected["validationLoss"] == pytest.approx(losses[best], abs=1e-6)
    assert selected["earlyStopped"] and result.manifest["result"]["earlyStopped"]
    assert result.state.step == best + 2 < result.plan.total_steps  # two validations without a new best, then stop
    assert not result.stopped and (config.output / "model").is_dir()

    # keep_checkpoints=1 kept the newest and, besides it, the best one; the model holds the best one's weights
    assert checkpoint_path(config.output, best) in list_checkpoints(config.output)
    saved = load_file(str(checkpoint_path(config.output, best) / "trainable.safetensors"))
    model = load_file(str(config.output / "model" / "model.safetensors"))
    name = "model.layers.0.mlp.down_proj.weight"
    assert name in model and saved[name].equal(model[name])
    assert events(config.output, "selected")[0]["step"] == best


def test_without_early_stopping_every_step_trains_and_predictions_meet_outcomes(tmp_path, tiny_model) -> None:
    config = make_config(tmp_path, tiny_model, eval_every=None, keep_checkpoints=2)
    result = finetune(config)
    assert result.state.step == result.plan.total_steps
    assert result.manifest["selectedCheckpoint"] is None and not result.manifest["result"]["earlyStopped"]
    curve = result.manifest["learningCurve"]
    assert [p["afterEpoch"] for p in curve] == [0, 1, 2]
    assert curve[0]["predictedToHelp"] is None  # one validation: nothing to fit
    assert curve[1]["actualNextLoss"] == pytest.approx(curve[2]["loss"], abs=1e-6)  # the outcome next to the prediction
    assert curve[2]["actualNextLoss"] is None  # no epoch after the last
    assert len(events(config.output, "learning_curve")) == 3


def test_early_stopping_needs_validation_data(tmp_path, tiny_model) -> None:
    with pytest.raises(ConfigError, match="needs validation data"):
        make_config(tmp_path, tiny_model, validation=[], early_stopping_patience=2)


# -- through the job API ----------------------------------------------------------------------
def test_job_api_takes_early_stopping_in_tunesmith_config(tmp_path) -> None:
    from service_harness import ApiOnlyServer
    from test_service_devices import post, request_body

    write_jsonl(tmp_path / "t.jsonl", arithmetic(20))
    write_jsonl(tmp_path / "v.jsonl", arithmetic(4, start=50))
    validation = {"validationDataConfig": {"validators": [{"s3Uri": f"file://{tmp_path}/v.jsonl"}]}}
    with ApiOnlyServer(tmp_path / "home", tmp_path) as server:
        extra = {"earlyStoppingPatience": 3, "evalEvery": 5}
        status, _ = post(server.url, request_body(tmp_path, "early", tunesmithConfig=extra, **validation))
        assert status == 201
        store = server.app.state.store
        with store.session() as session:
            spec = store.job(session, "early").spec
        assert (spec.early_stopping_patience, spec.eval_every) == (3, 5)

        status, body = post(server.url, request_body(tmp_path, "blind", tunesmithConfig={"earlyStoppingPatience": 3}))
        assert status == 400 and "earlyStoppingPatience needs validationDataConfig" in body["message"]
        status, body = post(server.url, request_body(tmp_path, "zero", tunesmithConfig={"earlyStoppingPatience": 0}, **validation))
        assert status == 400 and "tunesmithConfig.earlyStoppingPatience" in body["message"]


def test_train_command_takes_the_flag_and_explains_a_missing_validation_file(in_tmp, tiny_model) -> None:
    from click.testing import CliRunner

    from tunesmith.cli import cli

    write_jsonl(in_tmp / "t.jsonl", arithmetic(40))
    write_jsonl(in_tmp / "v.jsonl", arithmetic(8, start=100))
    common = ["train", "t.jsonl", "--model", str(tiny_model), "--precision", "fp32", "--epochs", "2", "--no-estimate"]
    blind = CliRunner().invoke(cli, [*common, "--output", "a", "--early-stopping-patience", "2"])
    assert blind.exit_code != 0 and "needs validation data" in blind.output and "Traceback" not in blind.output
    done = CliRunner().invoke(cli, [*common, "--output", "b", "--validation", "v.jsonl", "--early-stopping-patience", "5",
                                    "--eval-every", "1", "--json"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    manifest = json.loads((in_tmp / "b" / "manifest.json").read_text())
    assert manifest["selectedCheckpoint"]["patience"] == 5 and manifest["selectedCheckpoint"]["evaluations"] == 6
