"""``tunesmith tune --endpoint``: the search's trials as jobs on a tunesmith server, ``--parallel`` at once.

The study, budget, table and best trial are the in-process search's (``search.py``), and so is
each trial's bookkeeping (``bookkeeping.py``); only where a trial runs differs
(``remote_trial.py``). Optuna's ask/tell interface keeps several trials RUNNING:
``study.ask()`` hands out the queued starting points (the advice, the defaults, retries)
first, then TPE's proposals. Every ``POLL_SECONDS`` each trial in flight reads its job's new
events; when one ends, another starts if ``--trials`` and the budget, counting the trials still
in flight (``budget.py``), allow it.

A job that fails is a failed trial (its message is printed and kept as the trial's
``failureMessage``); the search goes on, unless ``MAX_FAILURES_IN_A_ROW`` fail one after another.
SIGINT/SIGTERM, or an error such as losing the server, stops every job in flight
(StopModelCustomizationJob); their trials are marked failed and their settings queued again, as
the in-process search does with its one trial, so the same command continues the search.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable
from typing import Any

from optuna.trial import TrialState

from tunesmith.advisor import plan_training
from tunesmith.models.registry import resolve_model
from tunesmith.training.config import TrainConfig
from tunesmith.tuning.bookkeeping import begin_trial, fail_and_requeue, interrupted, record_outcome, why_no_more, write_table
from tunesmith.tuning.budget import BudgetTracker
from tunesmith.tuning.config import TuneConfig
from tunesmith.tuning.endpoint import Endpoint
from tunesmith.tuning.holdout import Split
from tunesmith.tuning.remote_trial import HeldOut, JobFailure, RemoteTrial
from tunesmith.tuning.space import SearchSpace, TrialSettings
from tunesmith.tuning.study import TuneError

POLL_SECONDS = 0.25
"""How often the trials in flight read their events: a pruned job stops sooner (its worker checks every second)."""
MAX_FAILURES_IN_A_ROW = 3
"""A server that fails every job (a wrong tier, a full disk) ends the search instead of burning through proposals."""


def run_remote_trials(endpoint: Endpoint, study, config: TuneConfig, space: SearchSpace, template: TrainConfig, split: Split,
                      generation: Any, tracker: BudgetTracker, say: Callable[[str], None]) -> str:
    """Trials as jobs, ``config.trials_at_once`` in flight, until ``--trials`` have finished or the
    budget allows no more; which of the two ended it."""
    from tunesmith.training.stopping import stop_on_signals

    folder = template.output.parent
    plan = _Plan(resolve_model(template.model), split, template.max_length)
    held_out = HeldOut.read(split.holdout, generation.max_new_tokens)
    prefix = f"tune-{uuid.uuid4().hex[:8]}"  # job and model names are unique on a server, over all searches
    running: list[RemoteTrial] = []
    signalled: list[int] = []
    failures = 0
    with stop_on_signals(lambda: signalled.append(1)):
        try:
            while True:
                if signalled:
                    raise interrupted([remote.trial.number for remote in running], folder)
                ended_by = why_no_more(study, config, tracker, [r.cost(config.budget) for r in running])
                while ended_by is None and len(running) < config.trials_at_once:
                    trial, settings = begin_trial(study, space, say)
                    output = template.output / f"{trial.number:04d}"
                    shutil.rmtree(output, ignore_errors=True)  # a leftover of an interrupted trial with this number
                    output.mkdir(parents=True)
                    remote = RemoteTrial(endpoint, trial, settings, f"{prefix}-{trial.number:04d}",
                                         plan.steps(settings), plan.tokens(settings))
                    running.append(remote)
                    write_table(study, folder)  # the running trials show in the table too
                    remote.start(template.eval_every, split.train, split.holdout, output)
                    ended_by = why_no_more(study, config, tracker, [r.cost(config.budget) for r in running])
                if not running:
                    return ended_by or "trials"
                over_budget = tracker.exhausted([r.cost(config.budget) for r in running])
                for remote in list(running):
                    result = remote.poll(over_budget, held_out)
                    if result is None:
                        continue
                    running.remove(remote)
                    if isinstance(result, JobFailure):
                        failures += 1
                        _record_failure(study, remote, result, say)
                    else:
                        failures = 0
                        record_outcome(study, remote.trial, result, tracker, config.budget, say)
                    write_table(study, folder)
                    if failures >= MAX_FAILURES_IN_A_ROW:
                        raise TuneError(f"{failures} trials in a row failed on the server at {endpoint.url} (the last: "
                                        f"{result.message}); fix the server and rerun the same command to continue")
                time.sleep(POLL_SECONDS)
        except BaseException:
            _abandon(endpoint, study, running)
            write_table(study, folder)
            raise


def _record_failure(study, remote: RemoteTrial, failure: JobFailure, say: Callable[[str], None]) -> None:
    remote.trial.set_user_attr("failureMessage", failure.message)
    remote.trial.set_user_attr("seconds", round(failure.seconds, 3))
    study.tell(remote.trial, state=TrialState.FAIL)
    say(f"trial {remote.trial.number} failed: {failure.message}")


def _abandon(endpoint: Endpoint, study, running: list[RemoteTrial]) -> None:
    """Stop the jobs in flight and queue their trials' settings again."""
    for remote in running:
        if remote.arn is not None:
            try:
                endpoint.stop(remote.arn)
            except TuneError:  # the server is gone: its jobs end with it
                pass
        fail_and_requeue(study, remote.trial.number)


class _Plan:
    """A trial's steps and tokens as this process works them out (for the budget while its job runs)."""

    def __init__(self, source: Any, split: Split, max_length: int):
        from tunesmith.datasets import DatasetKind
        from tunesmith.models.loading import load_tokenizer
        from tunesmith.training.examples import read_records, tokenize_records

        self.tier, self.records = source.tier, split.train_records
        self.training_tokens = tokenize_records(read_records(split.train), load_tokenizer(source), DatasetKind.FINE_TUNING,
                                                max_length).tokens

    def steps(self, settings: TrialSettings) -> int:
        return plan_training(self.records, self.tier, settings.hyperparameters, settings.duplication).total_steps

    def tokens(self, settings: TrialSettings) -> int:
        return self.training_tokens * settings.duplication * settings.hyperparameters.epoch_count
