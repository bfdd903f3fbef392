"""Hyperparameter search (``tunesmith tune``): Optuna over the guide's bounds, under a budget.

- ``space.py``: what is searched; the bounds come from the hyperparameter table.
- ``budget.py``: ``--budget`` in minutes or tokens, and when it stops the search.
- ``holdout.py``: the records trials are scored on.
- ``study.py``: the study in ``OUTPUT/study.db``, resumed after a crash.
- ``trial.py``: one training run under the pruner, then its exact match.
- ``table.py``: the trials table and the best trial.
- ``config.py``: :class:`TuneConfig`, what a search is given.
- ``bookkeeping.py``: a trial's side of the study: asked for, told how it ended, queued again.
- ``search.py``: :func:`tune`, the loop over trials.
- ``endpoint.py``, ``remote_trial.py``, ``remote_search.py``: with ``--endpoint``, trials as jobs
  on a tunesmith server, several at once.
"""

from tunesmith.tuning.bookkeeping import SearchInterrupted
from tunesmith.tuning.budget import Budget, BudgetError, parse_budget
from tunesmith.tuning.config import TuneConfig
from tunesmith.tuning.search import TuneResult, tune
from tunesmith.tuning.space import SearchSpace, TrialSettings
from tunesmith.tuning.study import TuneError

__all__ = [
    "Budget", "BudgetError", "SearchInterrupted", "SearchSpace", "TrialSettings", "TuneConfig", "TuneError", "TuneResult",
    "parse_budget", "tune",
]
