"""Hyperparameter search (``tunesmith tune``): Optuna over the guide's bounds, under a budget.

- ``space.py``: what is searched; the bounds come from the hyperparameter table.
- ``budget.py``: ``--budget`` in minutes or tokens, and when it stops the search.
- ``holdout.py``: the records trials are scored on.
- ``study.py``: the study in ``OUTPUT/study.db``, resumed after a crash.
- ``trial.py``: one training run under the pruner, then its exact match.
- ``table.py``: the trials table and the best trial.
- ``search.py``: :func:`tune`, the loop over trials.
- ``endpoint.py``, ``remote_trial.py``, ``remote_search.py``: with ``--endpoint``, trials as jobs
  on a tunesmith server, several at once.
"""

from tunesmith.tuning.budget import Budget, BudgetError, parse_budget
from tunesmith.tuning.search import SearchInterrupted, TuneConfig, TuneResult, tune
from tunesmith.tuning.space import SearchSpace, TrialSettings
from tunesmith.tuning.study import TuneError

__all__ = [
    "Budget", "BudgetError", "SearchInterrupted", "SearchSpace", "TrialSettings", "TuneConfig", "TuneError", "TuneResult",
    "parse_budget", "tune",
]
