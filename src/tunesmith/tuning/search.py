"""``tunesmith tune``'s search: trials of the guide's hyperparameters and duplication, under a budget.

1. DATA is validated; the scoring records are ``--validation`` or a seeded held-out split.
2. The study in ``OUTPUT/study.db`` is created or resumed (``study.py``); trials a dead
   process left running are queued again.
3. The guide's defaults (``Hyperparameters()``, no duplication) and the advisor's settings
   for this data and tier (:func:`tunesmith.advisor.recommend`) are queued first.
4. Trials run until ``--trials`` have finished or the budget allows no more (``budget.py``):
   one after another in this process (``trial.py``), or with ``--endpoint`` as jobs on a
   tunesmith server, ``--parallel`` at a time (``remote_search.py``, ``remote_trial.py``).
   Both ask for trials and tell the study how they ended through ``bookkeeping.py``; after
   each, ``OUTPUT/trials.csv`` is rewritten.
5. The best complete trial (``table.py``) gives the ``hyperParameters`` map, the duplication
   factor and the ``tunesmith train`` command, also written to ``OUTPUT/best.json``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.advisor import Advice, recommend
from tunesmith.datasets import DataError, validate_dataset
from tunesmith.files import atomic_write_text, file_sha256
from tunesmith.hyperparameters import TABLE, Hyperparameters
from tunesmith.models.registry import ModelSource, resolve_model
from tunesmith.training.config import LoraSettings, TrainConfig
from tunesmith.tuning.bookkeeping import begin_trial, fail_and_requeue, interrupted, record_outcome, why_no_more, write_table
from tunesmith.tuning.budget import Budget, BudgetTracker
from tunesmith.tuning.config import HOLDOUT_MAX_RECORDS, TuneConfig
from tunesmith.tuning.endpoint import Endpoint
from tunesmith.tuning.holdout import Split, given_validation, hold_out, holdout_size, record_lines
from tunesmith.tuning.space import SearchSpace, TrialSettings
from tunesmith.tuning.study import (
    STUDY_FILE,
    enqueue_starting_points,
    finished_trials,
    open_study,
    requeue_interrupted,
    study_lock,
)
from tunesmith.tuning.table import TrialRow, best_row, csv_text, trial_rows

PASSED_ON = ("model", "method", "max_length", "micro_batch_tokens", "max_memory", "share_prefixes", "packing", "seed", "device", "precision")
"""TrainConfig settings a search passes to every trial, and to the ``tunesmith train`` command it prints."""


@dataclass
class TuneResult:
    """What a search found, and where it wrote it."""

    folder: Path
    split: Split
    advice: Advice
    space: SearchSpace
    eval_every: int
    rows: list[TrialRow]
    best: TrialRow | None
    ended_by: str
    """``trials`` (--trials reached) or ``budget``."""
    spent: float
    budget: Budget
    retried: list[int] = field(default_factory=list)
    """Trials a dead process left running, marked failed and queued again by this run."""
    train_command: str | None = None

    def as_dict(self) -> dict[str, Any]:
        best = None
        if self.best is not None:
            best = {"trial": self.best.number, "hyperParameters": self.best.hyperparameters, "duplicationFactor": self.best.duplication,
                    "validationLoss": self.best.validation_loss, "exactMatch": self.best.exact_match, "trainCommand": self.train_command}
        return {
            "study": str(self.folder / STUDY_FILE), "split": self.split.as_dict(), "space": self.space.as_dict(),
            "evalEvery": self.eval_every, "budget": {**self.budget.as_dict(), "spent": round(self.spent, 3)}, "endedBy": self.ended_by,
            "advice": {"hyperParameters": self.advice.hyperparameters.to_wire(), "duplicationFactor": self.advice.plan.duplication_factor},
            "retried": self.retried, "trials": [row.as_dict() for row in self.rows], "best": best,
        }


def tune(
    config: TuneConfig, say: Callable[[str], None] = print, on_step: Callable[[Any], None] | None = None,
) -> TuneResult:
    """Run (or resume) the search in ``config.training.output``.

    ``say`` gets a line as each trial starts and ends; ``on_step`` gets every in-process trial's
    :class:`~tunesmith.training.StepInfo`. Raises ``DataError``, ``ModelUnavailableError`` or
    :class:`TuneError` before any trial runs when the inputs are unusable, and
    :class:`SearchInterrupted` when SIGINT/SIGTERM stops a trial (run it again to continue).
    With ``config.endpoint``, also :class:`TuneError` when the server cannot be reached or refuses the
    search's files.
    """
    from tunesmith.evaluation.generation import GenerationSettings  # imports torch

    training = config.training
    folder = training.output
    report = validate_dataset(training.data, training.validation, training.kind)
    if not report.valid:
        raise DataError(report)
    source = resolve_model(training.model)
    endpoint = None
    if config.endpoint:
        endpoint = Endpoint.connect(config.endpoint, training.model)  # before the study: an unreachable server changes nothing
    records = len(record_lines(training.data))
    train_records = records if training.validation else records - holdout_size(records, config.holdout, HOLDOUT_MAX_RECORDS)
    advice = recommend(train_records, source.tier)
    space = SearchSpace(config.max_duplication)
    # The advice first: it is the expected best, so successive halving can cut the defaults (and
    # weaker search trials) at the first rung instead of letting them run to the end.
    starting_points = [("advice", TrialSettings(advice.hyperparameters, advice.plan.duplication_factor)),
                       ("defaults", TrialSettings(Hyperparameters(), 1))]
    space.check_contains(starting_points[0][1], "advice")
    eval_every = training.eval_every or max(1, math.ceil(train_records / source.tier.effective_batch_size / 2))
    with study_lock(folder):
        study = open_study(folder, _signature(config, space, eval_every), training.seed, eval_every, config.reduction_factor)
        split = _split(config)  # after the signature check: a refused resume leaves the study's split as it was
        say(split.describe())
        retried = requeue_interrupted(study)
        if retried:
            say(f"resuming: trial(s) {', '.join(map(str, retried))} were interrupted and are queued again")
        enqueue_starting_points(study, starting_points)
        finished = finished_trials(study)
        tracker = BudgetTracker(config.budget, [(t.user_attrs.get("tokens", 0), t.user_attrs.get("seconds", 0.0)) for t in finished])
        template = dataclasses.replace(training, data=split.train, validation=[split.holdout], output=folder / "trials",
                                       eval_every=eval_every, resume=False)
        generation = GenerationSettings(max_new_tokens=config.max_new_tokens or _answer_tokens(split.holdout, source) + 8)
        if endpoint is not None:
            from tunesmith.tuning.remote_search import run_remote_trials  # imports torch (the trials' outcomes)

            ended_by = run_remote_trials(endpoint, study, config, space, template, split, generation, tracker, say)
        else:
            ended_by = _run_trials(study, config, space, template, split, generation, tracker, say, on_step)
        rows = trial_rows(study)
        best = best_row(rows)
        result = TuneResult(folder, split, advice, space, eval_every, rows, best, ended_by, tracker.spent, config.budget, retried)
        result.train_command = train_command(config, best) if best else None
        _write(result)
    return result


def _run_trials(study, config: TuneConfig, space: SearchSpace, template: TrainConfig, split: Split,
                generation: Any, tracker: BudgetTracker, say: Callable[[str], None], on_step) -> str:
    """Trials until ``--trials`` have finished or the budget allows no more; which of the two ended it."""
    from optuna.trial import TrialState

    from tunesmith.tuning.trial import run_trial  # imports torch

    while True:
        ended_by = why_no_more(study, config, tracker)
        if ended_by:
            return ended_by
        trial, settings = begin_trial(study, space, say)
        write_table(study, template.output.parent)  # the running trial shows in the table too
        try:
            outcome = run_trial(trial, settings, template, split.holdout, generation, tracker, on_step)
        except KeyboardInterrupt:
            fail_and_requeue(study, trial.number)
            raise
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        if outcome.stopped_by == "signal":
            fail_and_requeue(study, trial.number)
            raise interrupted([trial.number], template.output.parent)
        record_outcome(study, trial, outcome, tracker, config.budget, say)
        write_table(study, template.output.parent)


def _split(config: TuneConfig) -> Split:
    training = config.training
    if training.validation:
        return given_validation(training.data, training.validation[0], training.seed)
    return hold_out(training.data, training.output / "split", config.holdout, training.seed, HOLDOUT_MAX_RECORDS)


def _signature(config: TuneConfig, space: SearchSpace, eval_every: int) -> dict[str, Any]:
    """What makes two runs the same search (compared on resume)."""
    training = config.training
    scoring = {"validation": file_sha256(training.validation[0])} if training.validation else {"holdout": config.holdout}
    return {
        "data": file_sha256(training.data), **scoring, "model": training.model, "method": training.method, "seed": training.seed,
        "space": space.as_dict(), "evalEvery": eval_every, "reductionFactor": config.reduction_factor,
    }


def _answer_tokens(holdout: Path, source: ModelSource) -> int:
    """The longest reference answer of the held-out records, in the model's tokens."""
    from tunesmith.models.loading import load_tokenizer
    from tunesmith.training.examples import chat_messages, read_records

    tokenizer = load_tokenizer(source)
    answers = [chat_messages(record)[-1]["content"] for record in read_records(holdout)]
    return max((len(tokenizer(answer, add_special_tokens=False).input_ids) for answer in answers), default=0)


def train_command(config: TuneConfig, best: TrialRow) -> str:
    """The ``tunesmith train`` command line that trains ``best``'s settings on all of DATA."""
    training = config.training
    words = ["tunesmith", "train", str(training.data)]
    for path in training.validation:
        words += ["--validation", str(path)]
    defaults = TrainConfig(data=training.data, output=training.output)
    for name in PASSED_ON:
        value = getattr(training, name)
        if value != getattr(defaults, name) or name == "model":
            words += _flag(name, value)
    for item in dataclasses.fields(LoraSettings):
        if getattr(training.lora, item.name) != item.default:
            words += _flag(f"lora_{item.name}", getattr(training.lora, item.name))
    for spec in TABLE:
        words += [spec.flag, best.hyperparameters[spec.key]]
    words += ["--duplicate", str(best.duplication), "--output", str(training.output / "best")]
    return shlex.join(words)


def _flag(name: str, value: Any) -> list[str]:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return [flag if value else f"--no-{flag[2:]}"]
    return [flag, str(value)]


def _write(result: TuneResult) -> None:
    atomic_write_text(result.folder / "trials.csv", csv_text(result.rows))
    best = result.as_dict()["best"]
    if best is not None:
        atomic_write_text(result.folder / "best.json", json.dumps(best, indent=2) + "\n")
