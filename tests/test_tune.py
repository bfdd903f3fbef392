"""`tunesmith tune`: the search space, the budget, the held-out split, pruning and resuming.

The searches train the tiny model, configured as the micro tier with a batch of 32, on CPU.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

from conftest import arithmetic, write_jsonl
from tunesmith.cli import cli
from tunesmith.datasets.duplicate import MAX_FACTOR
from tunesmith.hyperparameters import EPOCH_COUNT, LEARNING_RATE, TABLE, WARMUP_STEPS, Hyperparameters, parse_wire
from tunesmith.tuning import Budget, BudgetError, SearchSpace, TrialSettings, parse_budget
from tunesmith.tuning.budget import BudgetTracker
from tunesmith.tuning.holdout import HoldoutError, hold_out
from tunesmith.tuning.space import DUPLICATION_KEY
from tunesmith.tuning.table import TrialRow, best_row


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def assert_within_the_guide(chosen: TrialSettings, space: SearchSpace) -> None:
    wire = chosen.hyperparameters.to_wire()
    parsed, problems = parse_wire(wire)
    assert problems == []
    assert Hyperparameters(**parsed) == chosen.hyperparameters == Hyperparameters.from_wire(wire)
    assert 1 <= chosen.duplication <= space.max_duplication <= MAX_FACTOR


# -- the search space ----------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), max_duplication=st.integers(1, MAX_FACTOR))
def test_every_sampled_setting_is_within_the_guide(seed, max_duplication):
    space = SearchSpace(max_duplication)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(20):
        trial = study.ask()
        assert_within_the_guide(space.suggest(trial), space)
        study.tell(trial, 0.0)


@settings(max_examples=60, deadline=None)
@given(
    epochs=st.integers(EPOCH_COUNT.minimum, EPOCH_COUNT.maximum),
    rate=st.floats(LEARNING_RATE.minimum, LEARNING_RATE.maximum),
    warmup=st.integers(WARMUP_STEPS.minimum, WARMUP_STEPS.maximum),
    duplication=st.integers(1, 10),
)
def test_any_value_a_sampler_may_draw_trains_within_the_guide(epochs, rate, warmup, duplication):
    # The edges of every range included: rounding the learning rate never crosses a bound.
    space = SearchSpace(10)
    params = {"epochCount": epochs, "learningRate": rate, "learningRateWarmupSteps": warmup, DUPLICATION_KEY: duplication}
    chosen = space.suggest(optuna.trial.FixedTrial(params))
    assert_within_the_guide(chosen, space)
    assert chosen.hyperparameters.learning_rate == pytest.approx(rate, rel=5e-3)
    assert run("hyperparameters", "check", *(f"{k}={v}" for k, v in chosen.hyperparameters.to_wire().items())).exit_code == 0


def test_the_space_reads_its_bounds_from_the_hyperparameter_table():
    ranges = SearchSpace().as_dict()
    assert ranges == {**{spec.key: [spec.minimum, spec.maximum] for spec in TABLE}, DUPLICATION_KEY: [1, 10]}
    with pytest.raises(ValueError, match=f"max duplication must be between 1 and {MAX_FACTOR}, got 101"):
        SearchSpace(MAX_FACTOR + 1)


# -- the budget ----------------------------------------------------------------------------
@pytest.mark.parametrize("text, amount, unit", [
    ("15m", 900, "seconds"), ("15min", 900, "seconds"), ("15 minutes", 900, "seconds"), ("900s", 900, "seconds"),
    ("1.5h", 5400, "seconds"), ("2M tokens", 2_000_000, "tokens"), ("200000tokens", 200_000, "tokens"),
    ("500k tokens", 500_000, "tokens"),
])
def test_budgets(text, amount, unit):
    assert parse_budget(text) == Budget(amount, unit)


@pytest.mark.parametrize("text, message", [
    ("15", "--budget '15' is not a time such as 15m, 15min or 900s, or training tokens such as 2M tokens or 200000tokens"),
    ("10 ms", "--budget '10 ms': 'ms' is not a unit; give a time such as 15m"),
    ("0m", "--budget '0m' is nothing: give more than 0"),
    ("-5m", "--budget '-5m' is not a time"),
])
def test_bad_budgets_say_what_is_accepted(text, message):
    with pytest.raises(BudgetError) as caught:
        parse_budget(text)
    assert str(caught.value).startswith(message)


def test_a_trial_starts_only_when_an_average_trial_fits():
    tracker = BudgetTracker(Budget(100, "tokens"), [])
    assert tracker.allows_another()  # the first always starts
    tracker.add(30, 9.0)
    tracker.add(20, 1.0)
    assert tracker.allows_another()  # 50 spent + 25 expected <= 100
    tracker.add(40, 1.0)
    assert not tracker.allows_another()  # 90 + 30 > 100
    assert not tracker.exhausted_by(9, 99.0) and tracker.exhausted_by(10, 0.0)
    assert BudgetTracker(Budget(60, "seconds"), [(10**9, 59.0)]).exhausted_by(0, 1.0)


# -- the held-out split --------------------------------------------------------------------
def test_the_held_out_split_is_seeded(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", arithmetic(20))
    first = hold_out(data, tmp_path / "a", 0.2, seed=0)
    again = hold_out(data, tmp_path / "b", 0.2, seed=0)
    other = hold_out(data, tmp_path / "c", 0.2, seed=1)
    assert (first.held_out, first.train_records) == (4, 16)
    assert first.holdout.read_text() == again.holdout.read_text() != other.holdout.read_text()
    lines = sorted(first.train.read_text().splitlines() + first.holdout.read_text().splitlines())
    assert lines == sorted(data.read_text().splitlines())  # every record once, unchanged
    assert first.describe() == f"held out 4 of 20 records (seed 0) to score the trials: {first.holdout}; training on the other 16"
    with pytest.raises(HoldoutError, match="1 record\\(s\\) are too few to hold out 20% and train on the rest"):
        hold_out(write_jsonl(tmp_path / "one.jsonl", arithmetic(1)), tmp_path / "d", 0.2, seed=0)


def test_the_best_trial_has_the_highest_exact_match_then_the_lowest_loss():
    def row(number, state, exact, loss):
        return TrialRow(number, "search", {}, 1, state, None, 1, 1, 1, 1.0, loss, exact, None)

    rows = [row(0, "complete", 0.5, 2.0), row(1, "complete", 0.75, 3.0), row(2, "complete", 0.75, 2.5),
            row(3, "pruned", None, 1.0), row(4, "complete", 0.75, 2.5)]
    assert best_row(rows).number == 2
    assert best_row([rows[3]]) is None


# -- searches on the tiny model ------------------------------------------------------------
@pytest.fixture
def search(tmp_path, tiny_model, monkeypatch):
    """12 records (3 held out) for the tiny model as micro with a batch of 8: the defaults train
    4 steps; the advice (5 epochs, 10x duplication) 60, past the pruner's first rung (step 20).
    One CPU thread: a 16-wide model gains
    nothing from more, and on a busy machine extra threads slow every step many times over."""
    import torch

    (tmp_path / "models.toml").write_text(f'[tiers.micro]\nsource = "{tiny_model}"\neffective_batch_size = 8\n')
    data = write_jsonl(tmp_path / "data.jsonl", arithmetic(12))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # for a search run as a subprocess
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield ["tune", data, "--model", "micro", "--precision", "fp32", "--device", "cpu", "--budget", "10min"]
    torch.set_num_threads(threads)


def trials_csv(folder):
    with open(folder / "trials.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_search_tries_the_advice_and_defaults_first_prunes_and_reports_the_best(tmp_path, search):
    out = tmp_path / "search"
    result = run(*search, "--output", out, "--trials", 5, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    trials = report["trials"]
    assert [t["origin"] for t in trials[:2]] == ["advice", "defaults"]
    assert {k: trials[1][k] for k in ("epochCount", "learningRate", "learningRateWarmupSteps", DUPLICATION_KEY)} == {
        **Hyperparameters().to_wire(), DUPLICATION_KEY: 1}
    assert {k: trials[0][k] for k in ("epochCount", "learningRate", "learningRateWarmupSteps", DUPLICATION_KEY)} == {
        **report["advice"]["hyperParameters"], DUPLICATION_KEY: report["advice"]["duplicationFactor"]}
    assert report["advice"] == {"hyperParameters": {"epochCount": "5", "learningRate": "0.0001", "learningRateWarmupSteps": "1"},
                                "duplicationFactor": 10}
    assert report["split"]["heldOut"] == 3 and report["split"]["trainRecords"] == 9
    assert len(trials) == 5 and {t["state"] for t in trials} <= {"complete", "pruned"}
    pruned = [t for t in trials if t["state"] == "pruned"]
    assert pruned and all(t["stoppedBy"] == "pruner" and t["steps"] < t["plannedSteps"] for t in pruned)
    for t in trials:
        Hyperparameters.from_wire({spec.key: t[spec.key] for spec in TABLE})
        assert t["tokens"] > 0 and t["seconds"] > 0
        assert (t["exactMatch"] is not None) == (t["state"] == "complete")
    best = report["best"]
    assert Hyperparameters.from_wire(best["hyperParameters"]).to_wire() == best["hyperParameters"]
    assert best["trainCommand"].startswith(f"tunesmith train {tmp_path / 'data.jsonl'} --model micro --device cpu --precision fp32 ")
    assert f"--duplicate {best['duplicationFactor']} --output {out / 'best'}" in best["trainCommand"]
    assert json.loads((out / "best.json").read_text()) == best
    assert [row["state"] for row in trials_csv(out)] == [t["state"] for t in trials]
    assert not any((out / "trials" / f"{t['trial']:04d}" / "model").exists() for t in trials)  # weights are not kept

    # Run again: the finished trials are the study's; none is rerun, the table is printed.
    table = trials_csv(out)
    again = run(*search, "--output", out, "--trials", 5)
    assert again.exit_code == 0, again.output
    assert "Trials (" in again.stdout and '"epochCount": ' in again.stdout and "tunesmith train " in again.stdout
    assert trials_csv(out) == table

    changed = run(*search, "--output", out, "--trials", 5, "--seed", 1)
    assert changed.exit_code == 1
    assert "holds a search with other settings (seed was 0, now 1)" in changed.output


def test_the_budget_stops_a_running_trial(tmp_path, search):
    result = run(*search[:-2], "--budget", "100 tokens", "--output", tmp_path / "s")
    assert result.exit_code == 1
    assert "error: no trial finished within the budget (100 tokens): raise --budget" in result.output
    first, queued = trials_csv(tmp_path / "s")
    assert (first["origin"], first["state"], first["stoppedBy"], first["steps"]) == ("advice", "pruned", "budget", "1")
    assert (queued["origin"], queued["state"]) == ("defaults", "waiting")  # a larger budget on the same --output runs it


def test_the_defaults_start_while_budget_is_left_even_when_an_average_trial_no_longer_fits(tmp_path, search):
    out = tmp_path / "s"
    first = run(*search, "--output", out, "--trials", 1, "--json")
    assert first.exit_code == 0, first.output
    advice, waiting = json.loads(first.stdout)["trials"]
    assert (advice["origin"], advice["state"], waiting["origin"], waiting["state"]) == ("advice", "complete", "defaults", "waiting")
    # A budget 10% over what the advice spent: another average trial does not fit, but the
    # defaults are always among the trials, so they start (and, 4 steps long, finish).
    budget = f"{int(advice['tokens'] * 1.1)} tokens"
    result = run(*search[:-2], "--budget", budget, "--output", out, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [(t["origin"], t["state"]) for t in report["trials"]] == [("advice", "complete"), ("defaults", "complete")]
    assert report["endedBy"] == "budget"


def test_the_advice_must_fit_the_duplication_searched(tmp_path, search):
    result = run(*search, "--output", tmp_path / "s", "--max-duplication", 3)
    assert result.exit_code == 1
    assert "the advice duplicates the data 10x, above --max-duplication 3; the advice is always one of the trials" in result.output
    assert not (tmp_path / "s" / "study.db").exists()


def test_a_killed_search_resumes_keeping_its_finished_trials(tmp_path, search):
    out = tmp_path / "search"
    assert run(*search, "--output", out, "--trials", 2).exit_code == 0  # the advice and the defaults
    args = [sys.executable, "-m", "tunesmith", *map(str, search), "--output", str(out), "--trials", "3"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    events = out / "trials" / "0002" / "events.jsonl"
    deadline = time.monotonic() + 120
    while not (events.exists() and '"event": "step"' in events.read_text()):  # the first search trial is training
        assert process.poll() is None and time.monotonic() < deadline, "the search ended before it could be killed"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = trials_csv(out)
    assert [row["state"] for row in before] == ["complete", "complete", "running"]

    result = run(*search, "--output", out, "--trials", 3, "--json")
    assert result.exit_code == 0, result.output
    trials = json.loads(result.stdout)["trials"]
    assert json.loads(result.stdout)["retried"] == [2]
    assert trials_csv(out)[:2] == before[:2]  # kept, not rerun
    assert (trials[2]["origin"], trials[2]["state"]) == ("search", "failed")
    retry = next(t for t in trials if t["retryOf"] == 2)
    assert retry["origin"] == "search" and retry["state"] in ("complete", "pruned")
    assert {k: retry[k] for k in ("epochCount", "learningRate", DUPLICATION_KEY)} == {
        k: trials[2][k] for k in ("epochCount", "learningRate", DUPLICATION_KEY)}  # the same settings again
    assert sum(t["state"] in ("complete", "pruned") for t in trials) == 3


def test_a_study_file_removed_mid_search_gives_one_clear_line(tmp_path, search, monkeypatch):
    from tunesmith.tuning import trial as trial_module

    real = trial_module.run_trial

    def remove_study_then_run(*args, **kwargs):
        (tmp_path / "s" / "study.db").unlink()  # as a user cleaning up the folder while the search runs
        return real(*args, **kwargs)

    monkeypatch.setattr(trial_module, "run_trial", remove_study_then_run)
    result = run(*search, "--output", tmp_path / "s", "--trials", "1")
    assert result.exit_code == 1
    assert "cannot write the search's study" in result.output and "Traceback" not in result.output
