"""The quickstart's pieces: its task, the defaults against the advice, and training until the
task is learned (the validation check and the run it ends), on the tiny Llama of conftest."""

from __future__ import annotations

import json
import re

import pytest
import torch

from conftest import arithmetic, write_jsonl
from tunesmith.hyperparameters import Hyperparameters
from tunesmith.quickstart import target as target_module
from tunesmith.quickstart.target import Check, Target, TrainUntilLearned, answers_reproduced, through_first_end
from tunesmith.training import LoraSettings, TrainConfig, finetune
from tunesmith.training.examples import Example


# -- the task -----------------------------------------------------------------------------------
def test_splits_are_disjoint_and_every_answer_follows_from_its_message() -> None:
    from tunesmith.quickstart.task import ISSUES, SYSTEM, make_splits

    train, validation, test = make_splits(1000, 32, 50)
    assert (len(train), len(validation), len(test)) == (1000, 32, 50)
    messages = [r["messages"][0]["content"][0]["text"] for r in train + validation + test]
    assert len(set(messages)) == len(messages)  # no message in two splits, nor twice in one
    for record, message in zip(train + validation + test, messages):
        assert record["system"] == [{"text": SYSTEM}]
        answer = record["messages"][1]["content"][0]["text"]
        ticket = json.loads(answer)
        assert answer == json.dumps(ticket, indent=2) and set(ticket) == {"order", "issue"}
        assert re.search(rf"\b[Oo]rder {ticket['order']}\b", message)
        assert [issue for issue in ISSUES if re.search(rf"\b{issue}\b", message)] == [ticket["issue"]]
    assert make_splits(1000, 32, 50) == [train, validation, test]  # the same data every run


# -- the guide's defaults against the advice -------------------------------------------------------
def test_the_defaults_stand_next_to_the_advice_with_the_rule_behind_each() -> None:
    from tunesmith.advisor import recommend
    from tunesmith.quickstart.advice import against_defaults, plan_line
    from tunesmith.tiers import MICRO

    compared = against_defaults(recommend(1000, MICRO))
    values = {s.key: (s.default, s.advised) for s in compared.settings}
    assert values == {"epochCount": ("2", "5"), "learningRate": ("1e-05", "0.0001"),
                      "learningRateWarmupSteps": ("10", "2"), "duplicationFactor": ("1", "1")}
    why = {s.key: s.why for s in compared.settings}
    assert "departs from the guide" in why["epochCount"] and "gives 2" in why["epochCount"]
    assert "1,000 records / 640" in why["learningRateWarmupSteps"]
    assert [s.key for s in compared.settings if s.changed] == ["epochCount", "learningRate", "learningRateWarmupSteps"]
    assert (compared.default_plan.total_steps, compared.advised_plan.total_steps) == (32, 80)
    assert plan_line(compared.default_plan) == (
        "32 optimizer steps of 64 records (2 epochs), warmup 10 steps (31.2%) to a learning rate of 1e-05")


# -- the check: exact match without generating ------------------------------------------------------
def test_targets_end_with_the_first_end_token() -> None:
    example = Example([5, 6, 7, 2, 9, 2], [False, True, True, True, True, True])
    assert through_first_end(example, end_id=2).targets == [False, True, True, True, False, False]
    untouched = Example([5, 2, 7], [False, False, True])  # an end token in the prompt ends nothing
    assert through_first_end(untouched, end_id=2).targets == [False, False, True]


def test_target_bounds_and_allowed_misses() -> None:
    assert Target(1.0).misses_allowed(32) == 0
    assert Target(0.95).misses_allowed(32) == 1
    assert Target(0.9).misses_allowed(50) == 5
    assert Target(0.75).misses_allowed(8) == 2
    for bad in (dict(exact_match=0), dict(exact_match=1.01), dict(records_per_pass=0)):
        with pytest.raises(ValueError):
            Target(**bad)


def test_an_answer_is_reproduced_exactly_when_greedy_decoding_gives_it(taught_model) -> None:
    """The taught model answers the sums it learned and misses the others: the one-pass check
    and real greedy generation agree record by record."""
    from tunesmith.evaluation.evaluate import score_predictions
    from tunesmith.evaluation.generation import GenerationSettings, generate
    from tunesmith.models.loading import load_model, load_tokenizer
    from tunesmith.models.registry import resolve_model
    from tunesmith.training.examples import chat_messages

    source = resolve_model(str(taught_model))
    model, tokenizer = load_model(source), load_tokenizer(source)
    records = arithmetic(12) + arithmetic(8, start=60)
    rule = TrainUntilLearned.of_records(records, tokenizer)
    model.train()
    reproduced = answers_reproduced(model, rule.examples, tokenizer.pad_token_id)
    assert model.training  # the mode it was in
    completions = generate(model, tokenizer, [chat_messages(r)[:-1] for r in records], GenerationSettings(max_new_tokens=24))
    _, _, items = score_predictions([chat_messages(r)[-1]["content"] for r in records], [c.text for c in completions])
    generated = [exact for exact, _ in items]
    assert reproduced == generated
    assert sum(generated) >= 10 and not all(generated)  # both kinds of record occur


# -- training until the target is reached -------------------------------------------------------------
def tiny_config(tmp_path, tiny_model, **overrides) -> TrainConfig:
    tmp_path.mkdir(parents=True, exist_ok=True)
    write_jsonl(tmp_path / "t.jsonl", arithmetic(40))
    settings = dict(data=tmp_path / "t.jsonl", output=tmp_path / "out", model=str(tiny_model),
                    hyperparameters=Hyperparameters(3, 1e-4, 0), precision="fp32", method="lora")
    settings.update(overrides)
    return TrainConfig(**settings)


def test_training_ends_as_a_finished_run_at_the_step_the_target_is_reached(tmp_path, tiny_model, monkeypatch) -> None:
    """Scripted answers: 8 validation records, 2 per pass, target 75% (2 misses allowed)."""
    scripted = iter([
        [False, False], [False, True],  # step 1: 3 misses after 4 records: the check ends there
        [True, True], [True, False], [True, False], [False, True],  # step 2: all scored, 5 of 8: short of the target
        [True, True], [True, False], [True, True], [False, True],  # step 3: 6 of 8: reached
    ])

    def answers(model, examples, pad_id, placement=None):
        result = next(scripted)
        assert len(examples) == len(result) == 2 and model is until.run.model
        return result

    monkeypatch.setattr(target_module, "answers_reproduced", answers)
    from tunesmith.models.loading import load_tokenizer
    from tunesmith.models.registry import resolve_model

    tokenizer = load_tokenizer(resolve_model(str(tiny_model)))
    until = TrainUntilLearned.of_records(arithmetic(8, start=100), tokenizer, target=Target(0.75, records_per_pass=2))
    config = tiny_config(tmp_path, tiny_model)
    result = finetune(config, until.on_step, on_start=until.on_start)

    assert [(c.step, c.correct, c.scored, c.complete) for c in until.checks] == [
        (1, 1, 4, False), (2, 5, 8, True), (3, 6, 8, True)]
    assert until.reached is until.checks[-1] and next(scripted, None) is None  # no check after the target
    assert result.state.step == 3 < result.plan.total_steps == 9 and not result.stopped
    summary = result.manifest["result"]
    assert summary["steps"] == 3 and summary["totalSteps"] == 9 and not summary["stopped"]
    assert summary["finishedEarly"] == until.reason(until.checks[-1], 9)
    assert summary["finishedEarly"].startswith("stopped at step 3 of 9: validation exact match 75% (6 of 8 ")
    assert (config.output / "model" / "model.safetensors").is_file() and (config.output / "adapter").is_dir()
    rows = (config.output / "training_artifacts" / "step_wise_training_metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 3


def test_checks_change_nothing_in_training(tmp_path, tiny_model) -> None:
    """With LoRA dropout drawing random numbers every step, a run checked after every step (the
    untrained model never reaches the target) trains exactly as the same run unchecked."""
    from safetensors.torch import load_file

    from tunesmith.models.loading import load_tokenizer
    from tunesmith.models.registry import resolve_model

    lora = LoraSettings(dropout=0.1)
    plain = finetune(tiny_config(tmp_path / "a", tiny_model, output=tmp_path / "a" / "out", lora=lora))
    tokenizer = load_tokenizer(resolve_model(str(tiny_model)))
    until = TrainUntilLearned.of_records(arithmetic(12, start=100), tokenizer, target=Target(1.0, records_per_pass=4))
    checked = finetune(tiny_config(tmp_path / "b", tiny_model, output=tmp_path / "b" / "out", lora=lora),
                       until.on_step, on_start=until.on_start)

    assert checked.state.step == plain.state.step == checked.plan.total_steps
    assert checked.manifest["result"]["finishedEarly"] is None and until.reached is None
    assert len(until.checks) == checked.plan.total_steps and all(c.scored == 4 and not c.complete for c in until.checks)
    assert [r[:3] for r in checked.state.history["training"]] == [r[:3] for r in plain.state.history["training"]]
    weights = [load_file(str(r.output / "adapter" / "adapter_model.safetensors")) for r in (plain, checked)]
    assert weights[0].keys() == weights[1].keys() and all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_the_rule_needs_the_run_and_a_check_reports_its_records() -> None:
    until = TrainUntilLearned([Example([1, 2], [False, True])])
    with pytest.raises(RuntimeError, match="on_start"):
        until.on_step(None)
    check = Check(step=4, correct=31, scored=32, records=32, seconds=0.5)
    assert check.complete and check.exact_match == pytest.approx(31 / 32)
    assert Check(step=4, correct=0, scored=8, records=32, seconds=0.1).exact_match == 0.0


# -- the report -------------------------------------------------------------------------------------
def test_the_report_says_where_and_why_training_ended(tmp_path) -> None:
    from tunesmith.advisor import recommend
    from tunesmith.evaluation.evaluate import Evaluation
    from tunesmith.quickstart.advice import against_defaults
    from tunesmith.quickstart.run import QuickstartResult, write_report
    from tunesmith.tiers import MICRO

    advice = recommend(1000, MICRO)
    (tmp_path / "micro-lora").mkdir()
    (tmp_path / "micro-lora" / "loss_curve.png").write_bytes(b"png")
    checks = [Check(1, 0, 8, 32, 0.6), Check(2, 31, 32, 32, 2.5)]
    ending = "stopped at step 2 of 80: validation exact match 97% (31 of 32 held-out validation records) reached the target of 95%"
    result = QuickstartResult(
        tmp_path, advice, against_defaults(advice), advice.plan, Evaluation("micro", 50, 0.9, 0.0, 0.29),
        Evaluation("micro-lora", 50, 0.03, 0.98, 0.995), 2, checks, checks[-1], ending, 14.0, 3.1, 60.0,
    )
    report = write_report(result, tmp_path / "micro-lora").read_text()
    assert f"Trained with exactly the advised hyperparameters; {ending}." in report
    assert "| 1 | 0 of the first 8: target out of reach |" in report and "| 2 | 31 of 32 (97%) |" in report
    assert "| learningRate | 1e-05 | 0.0001 |" in report
    assert "| fine-tuned micro (step 2) | 98% |" in report and "Exact match gained +98 points" in report
    assert (tmp_path / "loss_curve.png").read_bytes() == b"png"


# -- on the real micro model ------------------------------------------------------------------------------
@pytest.mark.real_model
def test_base_micro_answers_no_validation_record_and_the_check_agrees_with_generation() -> None:
    from tunesmith.devices import place
    from tunesmith.evaluation.evaluate import score_predictions
    from tunesmith.evaluation.generation import generate
    from tunesmith.models.loading import load_model, load_tokenizer
    from tunesmith.models.registry import resolve_model
    from tunesmith.quickstart.run import GENERATION, VALIDATION_RECORDS
    from tunesmith.quickstart.task import make_splits
    from tunesmith.training.examples import chat_messages

    _, validation, _ = make_splits(1000, VALIDATION_RECORDS, 50)  # the quickstart's own validation split
    records = validation[:16]
    source = resolve_model("micro")
    model, tokenizer = load_model(source), load_tokenizer(source)
    placement = place("cpu", "auto")
    rule = TrainUntilLearned.of_records(records, tokenizer)
    assert max(e.targets.count(True) for e in rule.examples) < GENERATION.max_new_tokens  # ticket and end token fit
    reproduced = answers_reproduced(model, rule.examples, tokenizer.pad_token_id, placement)
    completions = generate(model, tokenizer, [chat_messages(r)[:-1] for r in records], GENERATION, placement=placement)
    exact, _, items = score_predictions([chat_messages(r)[-1]["content"] for r in records], [c.text for c in completions])
    assert reproduced == [e for e, _ in items] and exact == 0
