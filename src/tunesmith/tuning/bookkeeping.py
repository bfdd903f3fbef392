"""The study's side of a trial, the same for the in-process search (``search.py``) and the one on a
server (``remote_search.py``): whether another may start, asking for it, telling the study how it
ended, the trials table, and queueing a trial's settings again when a signal stops it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from tunesmith.files import atomic_write_text
from tunesmith.tuning.budget import Budget, BudgetTracker
from tunesmith.tuning.config import TuneConfig
from tunesmith.tuning.space import SearchSpace, TrialSettings
from tunesmith.tuning.study import ORIGIN, STUDY_FILE, TuneError, finished_trials, reference_waiting, requeue
from tunesmith.tuning.table import csv_text, trial_rows


class SearchInterrupted(TuneError):
    """SIGINT or SIGTERM stopped a trial; the study keeps every finished trial."""


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
    study.tell(number, state=TrialState.FAIL)
    requeue(study, study.get_trials(deepcopy=False)[number])
