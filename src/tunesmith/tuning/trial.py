"""One trial of a search: a training run under the pruner and the budget, then its score.

The run is an ordinary :func:`tunesmith.training.finetune` call. Each validation loss it
computes (every ``eval_every`` steps and at epoch ends) is reported to Optuna; when the
pruner or the budget says stop, ``stop()`` ends the run before its next micro-batch. A run
that finishes is scored on the held-out records by greedy exact match
(:func:`tunesmith.evaluation.evaluate.evaluate`). The trial folder then keeps its metrics,
events and manifest; weights and checkpoints are deleted (retrain the best settings with
``tunesmith train``).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.trial import TrialState

from tunesmith.evaluation.evaluate import evaluate
from tunesmith.evaluation.generation import GenerationSettings
from tunesmith.training import StepInfo, TrainConfig, TrainingRun, finetune
from tunesmith.tuning.budget import BudgetTracker
from tunesmith.tuning.space import TrialSettings

StoppedBy = Literal["pruner", "budget", "signal"]
WEIGHTS = ("model", "adapter", "checkpoints")
"""What a trial folder loses once the trial is scored: the bulk of its disk."""


@dataclass
class TrialOutcome:
    """How a trial ended and what it cost; stored on the trial as user attributes."""

    state: TrialState
    """COMPLETE, or PRUNED when the pruner or the budget stopped it."""
    stopped_by: StoppedBy | None
    steps: int
    planned_steps: int
    tokens: int
    seconds: float
    validation_loss: float | None
    """The last validation loss the run computed."""
    exact_match: float | None
    """Greedy exact match on the held-out records; None unless COMPLETE."""

    def user_attrs(self) -> dict[str, Any]:
        return {"stoppedBy": self.stopped_by, "steps": self.steps, "plannedSteps": self.planned_steps, "tokens": self.tokens,
                "seconds": round(self.seconds, 3), "validationLoss": self.validation_loss, "exactMatch": self.exact_match}


def run_trial(
    trial: optuna.Trial, settings: TrialSettings, config: TrainConfig, holdout: Path, generation: GenerationSettings,
    budget: BudgetTracker, on_step: Callable[[StepInfo], None] | None = None,
    on_start: Callable[[TrainingRun], None] | None = None,
) -> TrialOutcome:
    """Train ``config`` (its output, hyperparameters and duplication replaced by the trial's),
    pruning on validation loss, and score it if it finishes.

    ``stopped_by == "signal"`` means SIGINT/SIGTERM ended the run: the caller decides what
    becomes of the trial. Raises what ``finetune`` raises for unusable inputs.
    """
    started = time.perf_counter()
    output = config.output / f"{trial.number:04d}"
    shutil.rmtree(output, ignore_errors=True)  # a leftover of an interrupted trial with this number
    config = dataclasses.replace(config, output=output, hyperparameters=settings.hyperparameters,
                                 hyperparameters_sent=settings.hyperparameters.to_wire(), duplication=settings.duplication)
    runs: list[TrainingRun] = []
    verdict: list[StoppedBy] = []

    def started_run(run: TrainingRun) -> None:
        runs.append(run)
        if on_start is not None:
            on_start(run)

    def report(info: StepInfo) -> None:
        if info.validation_loss is not None:
            trial.report(info.validation_loss, info.step)
            if not verdict and trial.should_prune():
                verdict.append("pruner")
        if on_step is not None:
            on_step(info)

    def stop() -> bool:
        if not verdict and runs and budget.exhausted_by(runs[0].state.tokens, time.perf_counter() - started):
            verdict.append("budget")
        return bool(verdict)

    result = finetune(config, report, stop, started_run)
    state, loss = result.state, result.state.last_validation_loss
    exact_match = None
    if result.stopped:
        stopped_by: StoppedBy | None = verdict[0] if verdict else "signal"
        outcome_state = TrialState.PRUNED
    else:
        stopped_by, outcome_state = None, TrialState.COMPLETE
        exact_match = evaluate(str(output), holdout, generation, config.device, config.precision).exact_match
    for name in WEIGHTS:
        shutil.rmtree(output / name, ignore_errors=True)
    return TrialOutcome(outcome_state, stopped_by, state.step, result.plan.total_steps, state.tokens,
                        time.perf_counter() - started, loss, exact_match)
