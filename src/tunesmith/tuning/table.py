"""The trials table, and which trial is best.

The best trial is chosen among those that finished (COMPLETE): the highest greedy exact
match on the held-out records, then the lowest validation loss, then the earliest trial.
Exact match is what a user of the model sees; the loss breaks ties, which are common on
small held-out sets, and is also what the pruner compares while trials run.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from tunesmith.hyperparameters import TABLE, Hyperparameters
from tunesmith.tuning.space import DUPLICATION_KEY
from tunesmith.tuning.study import ORIGIN, RETRY_OF

COLUMNS = ["trial", "origin", *(spec.key for spec in TABLE), DUPLICATION_KEY, "steps", "plannedSteps", "tokens",
           "seconds", "validationLoss", "exactMatch", "state", "stoppedBy", "retryOf"]
"""The CSV's columns, in order."""


@dataclass(frozen=True)
class TrialRow:
    """One trial as the table shows it."""

    number: int
    origin: str
    hyperparameters: dict[str, str]
    """Wire strings, as ``Hyperparameters.to_wire()`` gives them (empty before the trial drew them)."""
    duplication: int | None
    state: str
    """``complete``, ``pruned``, ``failed``, ``running`` or ``waiting``."""
    stopped_by: str | None
    steps: int | None
    planned_steps: int | None
    tokens: int | None
    seconds: float | None
    validation_loss: float | None
    exact_match: float | None
    retry_of: int | None

    def status(self) -> str:
        """The state in a word or two: ``complete``, ``pruned``, ``budget`` (stopped by it), ``failed``
        (interrupted or raised; an interrupted trial is queued again as a retry)."""
        return "budget" if self.state == "pruned" and self.stopped_by == "budget" else self.state

    def as_dict(self) -> dict[str, Any]:
        values = {spec.key: self.hyperparameters.get(spec.key) for spec in TABLE}
        return {
            "trial": self.number, "origin": self.origin, **values, DUPLICATION_KEY: self.duplication, "steps": self.steps,
            "plannedSteps": self.planned_steps, "tokens": self.tokens, "seconds": self.seconds,
            "validationLoss": self.validation_loss, "exactMatch": self.exact_match, "state": self.state,
            "stoppedBy": self.stopped_by, "retryOf": self.retry_of,
        }


_STATES = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
           TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}


def trial_row(trial: optuna.trial.FrozenTrial) -> TrialRow:
    attrs = trial.user_attrs
    params = trial.params or trial.system_attrs.get("fixed_params", {})
    wire = attrs.get("hyperParameters") or _wire(params)
    return TrialRow(
        trial.number, attrs.get(ORIGIN, "search"), wire, params.get(DUPLICATION_KEY), _STATES[trial.state],
        attrs.get("stoppedBy"), attrs.get("steps"), attrs.get("plannedSteps"), attrs.get("tokens"), attrs.get("seconds"),
        attrs.get("validationLoss"), attrs.get("exactMatch"), attrs.get(RETRY_OF),
    )


def _wire(params: dict[str, Any]) -> dict[str, str]:
    """The wire map of a trial that has not recorded one yet (waiting: its queued values)."""
    try:
        return Hyperparameters(**{spec.attribute: params[spec.key] for spec in TABLE}).to_wire()
    except (KeyError, ValueError):
        return {}


def trial_rows(study: optuna.Study) -> list[TrialRow]:
    return [trial_row(trial) for trial in study.get_trials(deepcopy=False)]


def best_row(rows: list[TrialRow]) -> TrialRow | None:
    """The best complete trial by the rule in the module docstring; None when none completed."""
    complete = [row for row in rows if row.state == "complete" and row.exact_match is not None]
    if not complete:
        return None
    return min(complete, key=lambda row: (-row.exact_match, row.validation_loss if row.validation_loss is not None else float("inf"),
                                          row.number))


def csv_text(rows: list[TrialRow]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if value is None else value for key, value in row.as_dict().items()})
    return out.getvalue()
