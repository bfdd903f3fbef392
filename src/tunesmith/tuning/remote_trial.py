"""One trial of a search as a job on a tunesmith server (``tunesmith tune --endpoint``).

The job trains what an in-process trial (``trial.py``) trains: the trial's hyperparameters and
duplication on the search's training split, with the held-out split as validation data every
``eval_every`` steps (both sent in ``tunesmithConfig``), on the server's device with the
defaults. Its events are followed: each validation loss is reported to Optuna at its step, and
when the pruner or the budget says stop, StopModelCustomizationJob stops the job and the trial
is PRUNED, as the in-process trial stops its run.

A completed job is scored by greedy exact match on the held-out records through the runtime API
(Converse at temperature 0 on the job's custom model), not by loading its model here: the
weights stay on the server, which may be another machine, and the server answers with the code
:func:`tunesmith.evaluation.evaluate.evaluate` uses (``generate``, greedy, the model's chat
template, the same token limit), on the weights and in the precision the job trained with;
answers are compared by the same :func:`~tunesmith.evaluation.evaluate.score_predictions`. One
difference remains: the server answers one record at a time where ``evaluate`` pads batches of
16, so an answer can differ only where two tokens' scores tie to rounding. The custom model is
then deleted from the server (as an in-process trial deletes its weights).

Cost: the events carry no token counts. A completed job's tokens are its ``end`` event's; a
stopped job's are the search's training tokens x duplication x epochs, scaled by the share of its
planned steps it ran. Its time runs from the create request to its score, waiting for a free
worker included (keep ``--parallel`` at most the server's ``--concurrency``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from tunesmith.statuses import ACTIVE_JOB_STATUSES, JobStatus
from tunesmith.tuning.budget import Budget
from tunesmith.tuning.endpoint import Endpoint
from tunesmith.tuning.space import TrialSettings
from tunesmith.tuning.trial import StoppedBy, TrialOutcome


@dataclass(frozen=True)
class HeldOut:
    """The records a completed trial is scored on, as Converse chats and reference answers."""

    chats: list[list[dict[str, str]]]
    references: list[str]
    max_new_tokens: int

    @classmethod
    def read(cls, path: Path, max_new_tokens: int) -> HeldOut:
        from tunesmith.training.examples import chat_messages, read_records

        conversations = [chat_messages(record) for record in read_records(path)]
        return cls([c[:-1] for c in conversations], [c[-1]["content"] for c in conversations], max_new_tokens)


@dataclass(frozen=True)
class JobFailure:
    """A job that failed (or was stopped by someone else): the trial fails, the search goes on."""

    message: str
    seconds: float


class RemoteTrial:
    """One Optuna trial and the job that trains it."""

    def __init__(self, endpoint: Endpoint, trial: optuna.Trial, settings: TrialSettings, name: str,
                 planned_steps: int, planned_tokens: int):
        """``planned_steps`` and ``planned_tokens``: the run's plan as this process works it out (the
        job's ``start`` event replaces the steps)."""
        self.endpoint, self.trial, self.settings, self.name = endpoint, trial, settings, name
        self.planned_steps, self.planned_tokens = planned_steps, planned_tokens
        self.arn: str | None = None
        self.started = time.perf_counter()
        self.events_read = 0
        self.steps = 0
        self.reported_step = 0
        self.validation_loss: float | None = None
        self.final_tokens: int | None = None
        self.verdict: StoppedBy | None = None

    def start(self, eval_every: int, training: Path, validation: Path, output: Path) -> None:
        self.arn = self.endpoint.create_job(self.name, self.settings, eval_every, training, validation, output)
        self.trial.set_user_attr("jobArn", self.arn)

    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def tokens(self) -> int:
        if self.final_tokens is not None:
            return self.final_tokens
        return round(self.planned_tokens * min(self.steps / max(self.planned_steps, 1), 1.0))

    def cost(self, budget: Budget) -> float:
        """What the trial has cost so far, in the budget's unit."""
        return budget.cost(self.tokens(), self.seconds())

    def stop(self, verdict: StoppedBy) -> None:
        if self.verdict is None:
            self.verdict = verdict
            if self.arn is not None:
                self.endpoint.stop(self.arn)

    def poll(self, over_budget: bool, held_out: HeldOut) -> TrialOutcome | JobFailure | None:
        """Follow the job: None while it runs, else how the trial ended (a completed job is scored first)."""
        self._read_events()
        if over_budget:
            self.stop("budget")
        job = self.endpoint.job(self.arn)
        status = job["status"]
        if status in ACTIVE_JOB_STATUSES:
            return None
        self._read_events()  # the lines written before it ended
        if status == JobStatus.COMPLETED:  # also when a stop came too late: the run finished, as in-process
            return self._scored(job["outputModelArn"], held_out)
        if status == JobStatus.STOPPED and self.verdict is not None:
            return self._outcome(TrialState.PRUNED, self.verdict, None)
        if status == JobStatus.STOPPED:
            return JobFailure(f"job {self.name} was stopped on the server, not by the search", self.seconds())
        return JobFailure(f"job {self.name}: {job.get('failureMessage') or 'failed without a message'}", self.seconds())

    def _read_events(self) -> None:
        events = self.endpoint.events(self.name, self.events_read)
        self.events_read += len(events)
        for event in events:
            kind = event.get("event")
            if kind == "start":
                self.planned_steps = event["total_steps"]
            elif kind in ("step", "stopped"):
                self.steps = max(self.steps, event["step"])
            elif kind == "end":
                self.steps, self.final_tokens = event["steps"], event["tokens"]
            elif kind == "validation" and event["step"] > self.reported_step:  # a resumed job repeats no report
                self._report(event["step"], event["loss"])

    def _report(self, step: int, loss: float) -> None:
        self.reported_step, self.validation_loss = step, loss
        self.trial.report(loss, step)
        if self.verdict is None and self.trial.should_prune():
            self.stop("pruner")

    def _scored(self, model_arn: str, held_out: HeldOut) -> TrialOutcome:
        from tunesmith.evaluation.evaluate import score_predictions

        answers = self.endpoint.answers(model_arn, held_out.chats, held_out.max_new_tokens)
        exact_match, _, _ = score_predictions(held_out.references, answers)
        self.endpoint.delete_model(model_arn)
        return self._outcome(TrialState.COMPLETE, None, exact_match)

    def _outcome(self, state: TrialState, stopped_by: StoppedBy | None, exact_match: float | None) -> TrialOutcome:
        return TrialOutcome(state, stopped_by, self.steps, self.planned_steps, self.tokens(), self.seconds(),
                            self.validation_loss, exact_match)
