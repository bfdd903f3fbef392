"""``tunesmith tune``'s search: trials of the guide's hyperparameters and duplication, under a budget.

1. DATA is validated; the scoring records are ``--validation`` or a seeded held-out split.
2. The study in ``OUTPUT/study.db`` is created or resumed (``study.py``); trials a dead
   process left running are queued again.
3. The guide's defaults (``Hyperparameters()``, no duplication) and the advisor's settings
   for this data and tier (:func:`tunesmith.advisor.recommend`) are queued first.
4. Trials run until ``--trials`` have finished or the budget allows no more (``budget.py``):
   one after another in this process (``trial.py``), or with ``--endpoint`` as jobs on a
   tunesmith server, ``--parallel`` at a time (``remote_search.py``, ``remote_trial.py``).
   After each, ``OUTPUT/trials.csv`` is rewritten.
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

from tunesmith import guide
from tunesmith.advisor import Advice, recommend
from tunesmith.datasets import DataError, validate_dataset
from tunesmith.datasets.duplicate import MAX_FACTOR
from tunesmith.errors import ConfigError
from tunesmith.files import atomic_write_text, file_sha256
from tunesmith.hyperparameters import TABLE, Hyperparameters
from tunesmith.models.registry import ModelSource, resolve_model
from tunesmith.training.config import LoraSettings, TrainConfig, check_settings, setting
from tunesmith.tuning.budget import Budget, BudgetTracker
from tunesmith.tuning.holdout import Split, given_validation, hold_out, holdout_size, record_lines
from tunesmith.tuning.space import SearchSpace, TrialSettings
from tunesmith.tuning.study import (
    ORIGIN,
    STUDY_FILE,
    TuneError,
    enqueue_starting_points,
    finished_trials,
    open_study,
    reference_waiting,
    requeue,
    requeue_interrupted,
    study_lock,
)
from tunesmith.tuning.table import TrialRow, best_row, csv_text, trial_rows

HOLDOUT_MAX_RECORDS = 200
"""The held-out split stops growing here: each complete trial generates an answer for every held-out record."""
PASSED_ON = ("model", "method", "max_length", "micro_batch_tokens", "max_memory", "share_prefixes", "seed", "device", "precision")
"""TrainConfig settings a search passes to every trial, and to the ``tunesmith train`` command it prints."""
DEFAULT_PARALLEL = 2
"""Trials in flight at once on a server (``--endpoint``) when ``--parallel`` is not given."""


class SearchInterrupted(TuneError):
    """SIGINT or SIGTERM stopped a trial; the study keeps every finished trial."""


@dataclass
class TuneConfig:
    """Everything ``tunesmith tune`` needs; checks live in ``__post_init__``."""

    training: TrainConfig
    """What every trial shares: ``data`` is DATA, ``output`` the search folder, ``validation`` the
    scoring records (at most one file; empty: a split is held out), ``eval_every`` the validation
    interval the pruner sees (None: half a pass over the training records), and model, method,
    LoRA, seed (split, sampler and runs), device and precision."""
    budget: Budget
    trials: int | None = setting(None, minimum=1, help="Stop after this many finished trials (complete or pruned), counting earlier runs of the search.")
    holdout: float = setting(0.2, minimum=0.01, maximum=0.5, help=f"Without --validation: the share of DATA held out to score trials (at most {HOLDOUT_MAX_RECORDS} records).")
    max_duplication: int = setting(guide.MAX_DUPLICATION_FACTOR, minimum=1, maximum=MAX_FACTOR,
                                   help="The largest duplication factor searched (the advisor's largest by default).")
    reduction_factor: int = setting(3, minimum=2, help="Successive halving: a trial passes a rung when its loss is in the best 1/N there.")
    max_new_tokens: int | None = setting(None, minimum=1, help="Tokens generated per held-out answer. Default: the longest reference answer plus 8.")
    endpoint: str | None = setting(None, help="Run each trial as a job on this tunesmith server, started with --allow-path covering "
                                              "--output (and DATA with --validation); jobs train with the server's device and the "
                                              "defaults (seed 0). Default: trials run in this process.")
    parallel: int | None = setting(None, minimum=1, help=f"With --endpoint: trials in flight at once. Default: {DEFAULT_PARALLEL}.")

    def __post_init__(self) -> None:
        if len(self.training.validation) > 1:
            raise ConfigError(f"tune scores on one --validation file, got {len(self.training.validation)}")
        if self.training.resume:
            raise ConfigError("a search resumes by itself: rerun it with the same --output, without --resume")
        if self.parallel is not None and not self.endpoint:
            raise ConfigError("--parallel runs trials side by side on a server's workers: give --endpoint too")
        check_settings(self)
        if self.endpoint:
            from tunesmith.tuning.endpoint import check_sendable

            check_sendable(self.training)

    @property
    def trials_at_once(self) -> int:
        return (self.parallel or DEFAULT_PARALLEL) if self.endpoint else 1


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
        from tunesmith.tuning.endpoint import Endpoint

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
            from tunesmith.tuning.remote_search import run_remote_trials

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


def why_no_more(study, config: TuneConfig, tracker: BudgetTracker, in_flight: list[float] | None = None) -> str | None:
    """``trials`` or ``budget`` when no other trial may start beside the ``in_flight`` ones (what
    each has cost so far); None when one may."""
    in_flight = in_flight or []
    if config.trials is not None and len(finished_trials(study)) + len(in_flight) >= config.trials:
        return "trials"
    if not tracker.allows_another(in_flight) and not (tracker.left(in_flight) > 0 and reference_waiting(study)):
        return "budget"  # the defaults and the advice start while any budget is left: they are always among the trials
    return None


def begin_trial(study, space: SearchSpace, say: Callable[[str], None]) -> tuple[Any, TrialSettings]:
    """The next trial (queued settings first) and what it trains with, announced."""
    trial = study.ask()
    settings = space.suggest(trial)
    if ORIGIN not in trial.user_attrs:
        trial.set_user_attr(ORIGIN, "search")
    trial.set_user_attr("hyperParameters", settings.hyperparameters.to_wire())
    say(f"trial {trial.number} ({trial.user_attrs[ORIGIN]}): {settings.describe()}")
    return trial, settings


def record_outcome(study, trial, outcome: Any, tracker: BudgetTracker, budget: Budget, say: Callable[[str], None]) -> None:
    """Store a finished trial's :class:`~tunesmith.tuning.trial.TrialOutcome`, count its cost and tell the study."""
    from optuna.trial import TrialState

    for key, value in outcome.user_attrs().items():
        trial.set_user_attr(key, value)
    tracker.add(outcome.tokens, outcome.seconds)
    if outcome.state == TrialState.COMPLETE:
        study.tell(trial, outcome.validation_loss if outcome.validation_loss is not None else float("inf"))
    else:
        study.tell(trial, state=TrialState.PRUNED)
    row = trial_rows(study)[trial.number]
    score = f", exact match {row.exact_match:.1%}" if row.exact_match is not None else ""
    loss = f"validation loss {row.validation_loss:.4f}" if row.validation_loss is not None else "no validation loss yet"
    ended = "stopped by the budget" if row.status() == "budget" else row.status()
    say(f"trial {trial.number} {ended} after {row.steps} of {row.planned_steps} steps: {loss}{score}; "
        f"{row.tokens:,} tokens, {row.seconds:.1f} s ({budget.describe(tracker.spent)} of {budget.describe()} spent)")


def write_table(study, folder: Path) -> None:
    atomic_write_text(folder / "trials.csv", csv_text(trial_rows(study)))


def interrupted(numbers: list[int], folder: Path) -> SearchInterrupted:
    """The error for SIGINT/SIGTERM during the trials ``numbers`` (their settings queued again)."""
    kept = f"finished trials are kept in {folder / STUDY_FILE}: rerun the same command to continue"
    if not numbers:
        return SearchInterrupted(f"stopped between trials; {kept}")
    which = f"trial {numbers[0]}; its" if len(numbers) == 1 else f"trials {', '.join(map(str, numbers))}; their"
    return SearchInterrupted(f"stopped during {which} settings are queued again and {kept}")


def fail_and_requeue(study, number: int) -> None:
    from optuna.trial import TrialState

    study.tell(number, state=TrialState.FAIL)
    requeue(study, study.get_trials(deepcopy=False)[number])


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
