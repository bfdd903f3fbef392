"""The quickstart: a task of our own, the advice, a real fine-tune of micro, and the proof.

Builds the ticket-extraction task (``task.py``; 1,000 training and 100 held-out test
records, answers computed by code), shows the advisor's hyperparameters for it, evaluates
the base model, fine-tunes micro with exactly those hyperparameters (LoRA), evaluates again
and writes ``report.md`` with the table and the loss curve.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tunesmith.advisor import Advice, TrainingPlan, recommend
from tunesmith.devices import resolve_device
from tunesmith.evaluation.evaluate import Evaluation, evaluate, write_predictions
from tunesmith.evaluation.generation import GenerationSettings
from tunesmith.models.loading import load_model, load_tokenizer
from tunesmith.models.registry import resolve_model
from tunesmith.quickstart.task import make_splits
from tunesmith.training import StepInfo, TrainConfig, TrainingRun, finetune

TRAIN_RECORDS = 1_000
"""At 1,000 records the advisor gives 5 epochs and no duplication: 80 steps of 64 (the guide's rule as
written gives 2 epochs; ``tunesmith advise --records 1000 --model micro --explain`` says why)."""
TEST_RECORDS = 100
GENERATION = GenerationSettings(max_new_tokens=32, batch_size=25)


@dataclass
class QuickstartResult:
    folder: Path
    advice: Advice
    plan: TrainingPlan
    """The plan the fine-tune followed."""
    base: Evaluation
    tuned: Evaluation
    train_seconds: float
    total_seconds: float

    @property
    def gain_points(self) -> float:
        return 100 * (self.tuned.exact_match - self.base.exact_match)


def write_dataset(folder: Path) -> tuple[Path, Path]:
    train, test = make_splits(TRAIN_RECORDS, TEST_RECORDS)
    paths = folder / "train.jsonl", folder / "test.jsonl"
    for path, records in zip(paths, (train, test)):
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return paths


def run_quickstart(
    folder: Path,
    say: Callable[[str], None] = print,
    on_step: Callable[[StepInfo], None] | None = None,
    show_advice: Callable[[Advice], None] | None = None,
    stop: Callable[[], bool] | None = None,
    device: str = "auto",
) -> QuickstartResult:
    """Everything runs on ``device`` (DeviceError when it is not there).

    Raises ``InterruptedError`` when ``stop()`` (or SIGINT/SIGTERM) ends the fine-tune early:
    a half-trained model is not evaluated. The quickstart always starts afresh."""
    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    run_folder = folder / "micro-lora"
    if run_folder.exists():
        shutil.rmtree(run_folder)  # the quickstart always starts afresh
    train_path, test_path = write_dataset(folder)
    say(f"dataset: {TRAIN_RECORDS} training and {TEST_RECORDS} held-out test records in {folder}")
    source = resolve_model("micro")
    advice = recommend(TRAIN_RECORDS, source.tier)
    (show_advice or (lambda a: say(json.dumps(a.as_dict()["hyperParameters"]))))(advice)

    say("preparing the micro model (converted once, then cached)")
    model, tokenizer = load_model(source, device=resolve_device(device)), load_tokenizer(source)
    say("evaluating the base model on the held-out split")
    base = evaluate("micro", test_path, GENERATION, device, loaded=(model, tokenizer))
    del model

    config = TrainConfig(
        data=train_path, output=run_folder, model="micro", hyperparameters=advice.hyperparameters,
        hyperparameters_sent=advice.hyperparameters.to_wire(), duplication=advice.plan.duplication_factor, method="lora",
        device=device,
    )

    def announce(run: TrainingRun) -> None:
        say(f"fine-tuning micro (LoRA) for {run.plan.total_steps} optimizer steps")
        for warning in run.warnings:
            say(f"warning: {warning}")

    trained = finetune(config, on_step, stop=stop, on_start=announce)
    if trained.stopped:
        raise InterruptedError(f"the fine-tune stopped at step {trained.state.step} of {trained.plan.total_steps}; run the quickstart again")
    train_seconds = trained.state.elapsed_s

    say("evaluating the fine-tuned model on the held-out split")
    tuned = evaluate(str(run_folder), test_path, GENERATION, device)
    write_predictions([base, tuned], folder / "predictions.jsonl")
    result = QuickstartResult(folder, advice, trained.plan, base, tuned, train_seconds, time.perf_counter() - started)
    write_report(result, run_folder)
    return result


def write_report(result: QuickstartResult, run_folder: Path) -> Path:
    shutil.copy(run_folder / "loss_curve.png", result.folder / "loss_curve.png")
    hp = result.advice.hyperparameters.to_wire()
    lines = [
        "# tunesmith quickstart",
        "",
        f"Task: turn a customer message into a JSON ticket; {TRAIN_RECORDS} training and {TEST_RECORDS} held-out test records.",
        f"Model: micro (SmolLM2-135M-Instruct), LoRA, advised hyperparameters {json.dumps(hp)}, "
        f"{result.plan.total_steps} optimizer steps of {result.plan.effective_batch_size} records.",
        "",
        "| model | exact match | ROUGE-L | answer loss |",
        "|---|---|---|---|",
    ]
    for name, e in (("base micro", result.base), ("fine-tuned micro", result.tuned)):
        lines.append(f"| {name} | {e.exact_match:.0%} | {e.rouge_l:.3f} | {e.loss:.3f} |")
    lines += [
        "",
        f"Exact match gained {result.gain_points:+.0f} points. Training took {result.train_seconds:.0f} s; "
        f"the whole quickstart {result.total_seconds:.0f} s.",
        "",
        "![loss curve](loss_curve.png)",
        "",
        "Predictions of both models: `predictions.jsonl`. The trained model: `micro-lora/model`.",
    ]
    path = result.folder / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
