"""The search's Optuna study: kept in ``OUTPUT/study.db`` (SQLite), resumed after a crash.

- One process at a time works on a folder (an ``fcntl`` lock on ``OUTPUT/.tune.lock``,
  released by the OS however the process ends). So a trial still RUNNING when the lock is
  taken belongs to a process that died: it is marked FAIL and its settings are queued again
  (:func:`requeue_interrupted`); finished trials are kept and never rerun.
- The study remembers what it searches (data fingerprint, model, scoring records, seed,
  space, validation interval): resuming with other settings is refused, since the trials
  would no longer be comparable.
- Sampling: TPE, seeded with ``--seed`` plus the number of trials already in the study, so a
  resumed search does not propose again what it proposed before.
- Pruning: successive halving on the validation loss reported every ``eval_every`` optimizer
  steps. Every optimizer step trains on the tier's effective batch, so the step is a fair
  measure of the compute a trial has had. Rungs fall at ``first x reduction_factor^k`` steps,
  ``first`` being ``eval_every`` but at least the longest warmup the guide allows (20 steps):
  judged earlier, a trial would lose for warming up, not for learning worse. A trial goes on
  past a rung only while its loss there is in the best ``1/reduction_factor`` of the trials
  that reached it. Trials shorter than the first rung are never pruned; they cost little.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from tunesmith.errors import TunesmithError
from tunesmith.hyperparameters import WARMUP_STEPS
from tunesmith.tuning.space import TrialSettings

STUDY_NAME = "tunesmith-tune"
STUDY_FILE = "study.db"
ORIGIN = "origin"
"""User attribute: why a trial has its settings (``defaults``, ``advice``, ``search``)."""
RETRY_OF = "retryOf"
"""User attribute: the number of the interrupted trial whose settings this one repeats."""


class TuneError(TunesmithError, ValueError):
    """A search that cannot start or go on as asked."""


@contextlib.contextmanager
def study_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder`` for this process; raises :class:`TuneError` when another search holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".tune.lock"
    with path.open("a+") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; one search per folder is then up to the user
            yield
            return
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise TuneError(f"{folder} is in use by another `tunesmith tune` (pid {holder}): "
                            "wait for it to finish or choose another --output") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def first_rung(eval_every: int) -> int:
    """The step of the pruner's first decision (see the module docstring)."""
    return max(eval_every, WARMUP_STEPS.maximum)


def open_study(folder: Path, signature: dict[str, Any], seed: int, eval_every: int, reduction_factor: int) -> optuna.Study:
    """Create the study in ``folder/study.db``, or load it when its signature matches ``signature``."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # tunesmith reports each trial itself
    storage = optuna.storages.RDBStorage(f"sqlite:///{(folder / STUDY_FILE).resolve()}",
                                         engine_kwargs={"connect_args": {"timeout": 60}})
    study = optuna.create_study(
        storage=storage, study_name=STUDY_NAME, direction="minimize", load_if_exists=True,
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=first_rung(eval_every), reduction_factor=reduction_factor),
    )
    saved = study.user_attrs.get("signature")
    if saved is None:
        study.set_user_attr("signature", signature)
    elif saved != signature:
        changed = [key for key in signature if saved.get(key) != signature[key]]
        details = "; ".join(f"{key} was {saved.get(key)!r}, now {signature[key]!r}" for key in changed)
        raise TuneError(f"{folder / STUDY_FILE} holds a search with other settings ({details}): run it with the "
                        "settings it was started with to resume it, or choose another --output")
    # A resumed sampler seeded as before would propose the trials it proposed before: shift its seed.
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    return study


def requeue_interrupted(study: optuna.Study) -> list[int]:
    """Mark trials left RUNNING by a process that died as FAIL and queue their settings again
    (same origin); returns their numbers. Call it only while holding :func:`study_lock`."""
    interrupted = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in interrupted:
        study.tell(trial.number, state=TrialState.FAIL)
        requeue(study, trial)
    return [trial.number for trial in interrupted]


def requeue(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Queue ``trial``'s settings again, keeping its origin; the new trial names it in ``retryOf``."""
    params = trial.params or trial.system_attrs.get("fixed_params", {})
    study.enqueue_trial(dict(params), user_attrs={ORIGIN: trial.user_attrs.get(ORIGIN, "search"), RETRY_OF: trial.number})


def enqueue_starting_points(study: optuna.Study, points: list[tuple[str, TrialSettings]]) -> None:
    """Queue the named settings first (once per study; identical settings are merged into one
    trial whose origin names both)."""
    if study.user_attrs.get("startingPointsQueued"):
        return
    merged: dict[tuple, tuple[list[str], TrialSettings]] = {}
    for name, settings in points:
        key = tuple(sorted(settings.params().items()))
        merged.setdefault(key, ([], settings))[0].append(name)
    for names, settings in merged.values():
        study.enqueue_trial(settings.params(), user_attrs={ORIGIN: ", ".join(names)}, skip_if_exists=True)
    study.set_user_attr("startingPointsQueued", True)


def reference_waiting(study: optuna.Study) -> bool:
    """Whether a starting point (the defaults or the advice) is queued and has not run yet."""
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    return any(trial.user_attrs.get(ORIGIN, "search") != "search" for trial in waiting)


def finished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that ran to an end: complete, or pruned (by the pruner or the budget)."""
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
