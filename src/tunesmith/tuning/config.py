"""What ``tunesmith tune`` is given: :class:`TuneConfig`, its settings declared once with their bounds and help."""

from __future__ import annotations

from dataclasses import dataclass

from tunesmith import guide
from tunesmith.datasets.duplicate import MAX_FACTOR
from tunesmith.errors import ConfigError
from tunesmith.training.config import TrainConfig, check_settings, setting
from tunesmith.tuning.budget import Budget
from tunesmith.tuning.endpoint import check_sendable

HOLDOUT_MAX_RECORDS = 200
"""The held-out split stops growing here: each complete trial generates an answer for every held-out record."""
DEFAULT_PARALLEL = 2
"""Trials in flight at once on a server (``--endpoint``) when ``--parallel`` is not given."""


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
            check_sendable(self.training)

    @property
    def trials_at_once(self) -> int:
        return (self.parallel or DEFAULT_PARALLEL) if self.endpoint else 1
