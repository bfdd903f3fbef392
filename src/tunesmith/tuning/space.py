"""The search space of ``tunesmith tune``: the guide's three hyperparameters and the duplication factor.

Every bound comes from where it is defined: the hyperparameter table
(:data:`tunesmith.hyperparameters.TABLE`) and the duplication limits (the advisor's
``guide.MAX_DUPLICATION_FACTOR`` by default, never above ``datasets.duplicate.MAX_FACTOR``).
Whatever a sampler proposes is passed through :class:`~tunesmith.hyperparameters.Hyperparameters`,
whose construction checks the same bounds, so a trial can never train outside them.

The learning rate is searched on a log scale and kept to three significant figures, so the
``hyperParameters`` map reads ``"3.47e-05"`` rather than ``"3.4712093e-05"``; the bounds
have one significant figure, so the rounding never crosses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunesmith import guide
from tunesmith.datasets.duplicate import MAX_FACTOR
from tunesmith.errors import ConfigError
from tunesmith.hyperparameters import EPOCH_COUNT, LEARNING_RATE, TABLE, WARMUP_STEPS, Hyperparameters

if TYPE_CHECKING:  # optuna is imported only by the code that searches
    import optuna

DUPLICATION_KEY = "duplicationFactor"
"""The duplication factor's name among a trial's parameters (the advisor's name for it)."""


@dataclass(frozen=True)
class TrialSettings:
    """What one trial trains with."""

    hyperparameters: Hyperparameters
    duplication: int
    """Virtual duplication factor of the training records (``TrainConfig.duplication``)."""

    def params(self) -> dict[str, Any]:
        """Optuna's parameter map (wire keys, numbers), as :meth:`SearchSpace.suggest` names them."""
        values: dict[str, Any] = {spec.key: getattr(self.hyperparameters, spec.attribute) for spec in TABLE}
        return {**values, DUPLICATION_KEY: self.duplication}

    def describe(self) -> str:
        wire = " ".join(f"{key}={value}" for key, value in self.hyperparameters.to_wire().items())
        return f"{wire} duplication {self.duplication}x"


@dataclass(frozen=True)
class SearchSpace:
    """The ranges a search draws from: the table's bounds, and duplication 1..``max_duplication``."""

    max_duplication: int = guide.MAX_DUPLICATION_FACTOR
    """The largest duplication factor tried; at most ``MAX_FACTOR`` (the duplicate command's limit)."""

    def __post_init__(self) -> None:
        if not 1 <= self.max_duplication <= MAX_FACTOR:
            raise ConfigError(f"max duplication must be between 1 and {MAX_FACTOR}, got {self.max_duplication}")

    def suggest(self, trial: optuna.Trial) -> TrialSettings:
        """Draw (or, for an enqueued trial, read) one setting of every parameter."""
        epochs = trial.suggest_int(EPOCH_COUNT.key, EPOCH_COUNT.minimum, EPOCH_COUNT.maximum)
        rate = trial.suggest_float(LEARNING_RATE.key, LEARNING_RATE.minimum, LEARNING_RATE.maximum, log=True)
        warmup = trial.suggest_int(WARMUP_STEPS.key, WARMUP_STEPS.minimum, WARMUP_STEPS.maximum)
        duplication = trial.suggest_int(DUPLICATION_KEY, 1, self.max_duplication, log=True)
        return TrialSettings(Hyperparameters(epochs, float(f"{rate:.3g}"), warmup), duplication)

    def check_contains(self, settings: TrialSettings, name: str) -> None:
        """Raise :class:`ConfigError` when ``settings`` (a starting point) lies outside the space."""
        if settings.duplication > self.max_duplication:
            raise ConfigError(
                f"the {name} duplicates the data {settings.duplication}x, above --max-duplication {self.max_duplication}; "
                f"the {name} is always one of the trials: raise --max-duplication to {settings.duplication} or more"
            )

    def as_dict(self) -> dict[str, Any]:
        ranges: dict[str, Any] = {spec.key: [spec.minimum, spec.maximum] for spec in TABLE}
        return {**ranges, DUPLICATION_KEY: [1, self.max_duplication]}
