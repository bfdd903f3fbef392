"""Experiment tracking: ``tunesmith train --track tensorboard:DIR --track mlflow:URI``.

Each target gets, through its own library, the run's hyperparameters and, at every
optimizer step, ``train/loss``, ``train/learning_rate``, ``train/tokens_per_s`` and (when
computed after that step) ``validation/loss``. It hooks on :func:`~tunesmith.training.finetune`'s
``on_start``/``on_step`` callbacks, so the loop knows nothing of it; the libraries are
imported only when a target asks for them, and are optional extras:

- ``tensorboard:DIR``: ``torch.utils.tensorboard.SummaryWriter`` event files in DIR (needs
  ``pip install 'tunesmith[tensorboard]'``); the hyperparameters as a text summary at the
  start and in the HParams tab with the final losses at the end. View: ``tensorboard --logdir DIR``.
- ``mlflow:URI``: one MLflow run per training run on the tracking server or store at URI
  (``http://host:5000``, ``sqlite:///mlflow.db``, ...) in the experiment
  ``$MLFLOW_EXPERIMENT_NAME`` (default ``tunesmith``), through ``MlflowClient`` (needs
  ``pip install 'tunesmith[mlflow]'``). The run ends FINISHED, KILLED (stopped) or FAILED.

Trade-off: metrics are sent synchronously after each step; a slow remote MLflow server
slows training by one request per step (TensorBoard writes are buffered locally).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tunesmith.errors import TunesmithError

if TYPE_CHECKING:
    from tunesmith.training.config import TrainConfig
    from tunesmith.training.loop import TrainingRun
    from tunesmith.training.state import StepInfo

KINDS = {"tensorboard": "DIR", "mlflow": "URI"}
"""What ``--track`` accepts: ``KIND:WHERE``."""
TRACK_HELP = ("Also log the hyperparameters and each step's loss, learning rate, tokens/s and validation loss to "
              "tensorboard:DIR or mlflow:URI (repeatable; needs pip install 'tunesmith[tensorboard]' or 'tunesmith[mlflow]').")
DEFAULT_EXPERIMENT = "tunesmith"
log = logging.getLogger("tunesmith.training.tracking")


class TrackingError(TunesmithError, ValueError):
    """A ``--track`` target that is malformed, or whose library is not installed."""


@dataclass(frozen=True)
class TrackTarget:
    kind: str
    """``tensorboard`` or ``mlflow``."""
    where: str
    """The folder (tensorboard) or tracking URI (mlflow)."""


def parse_target(text: str) -> TrackTarget:
    """``tensorboard:runs/a`` -> ``TrackTarget("tensorboard", "runs/a")``; a clear error otherwise."""
    kind, sep, where = text.partition(":")
    if not sep or kind not in KINDS or not where.strip():
        forms = " or ".join(f"{k}:{v}" for k, v in KINDS.items())
        raise TrackingError(f"--track '{text}': expected {forms}")
    return TrackTarget(kind, where.strip())


def _missing(library: str, extra: str) -> TrackingError:
    return TrackingError(f"--track {extra} needs the {library} package, which is not installed: pip install 'tunesmith[{extra}]'")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]


def hyperparameters_of(config: TrainConfig) -> dict[str, Any]:
    """What the trackers record as the run's parameters (scalars and strings only)."""
    hp = config.hyperparameters
    values: dict[str, Any] = {
        "model": config.model, "method": config.method, "kind": config.kind.value, "epochs": hp.epoch_count,
        "learning_rate": hp.learning_rate, "warmup_steps": hp.learning_rate_warmup_steps, "duplication": config.duplication,
        "max_length": config.max_length, "seed": config.seed, "precision": config.precision, "quantize": config.quantize,
    }
    if config.method == "lora":
        values.update(lora_rank=config.lora.rank, lora_alpha=config.lora.alpha, lora_dropout=config.lora.dropout)
    return values


def step_metrics(info: StepInfo) -> dict[str, float]:
    """One step's numbers, by the name every tracker logs them under."""
    metrics = {"train/loss": info.loss, "train/learning_rate": info.lr, "train/tokens_per_s": info.tokens_per_s}
    if info.validation_loss is not None:
        metrics["validation/loss"] = info.validation_loss
    return metrics


class Tracker(Protocol):
    def start(self, hyperparameters: dict[str, Any]) -> None: ...
    def step(self, info: StepInfo) -> None: ...
    def finish(self, status: str, final: dict[str, float]) -> None:
        """``status``: completed, stopped or failed; ``final``: the last losses."""


class TensorBoardTracker:
    def __init__(self, folder: str):
        try:
            import tensorboard  # noqa: F401  (torch.utils.tensorboard imports it only when a writer is made)
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise _missing("tensorboard", "tensorboard") from exc
        self.folder, self._writer_class, self.writer = Path(folder), SummaryWriter, None
        self.hyperparameters: dict[str, Any] = {}

    def start(self, hyperparameters: dict[str, Any]) -> None:
        self.writer = self._writer_class(log_dir=str(self.folder))
        self.hyperparameters = {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in hyperparameters.items()}
        rows = "\n".join(f"| {k} | {v} |" for k, v in self.hyperparameters.items())
        self.writer.add_text("hyperparameters", "| parameter | value |\n|---|---|\n" + rows)

    def step(self, info: StepInfo) -> None:
        for name, value in step_metrics(info).items():
            self.writer.add_scalar(name, value, info.step)

    def finish(self, status: str, final: dict[str, float]) -> None:
        if self.writer is None:
            return
        # run_name=".": the HParams entry goes in DIR itself, not a timestamped folder under it
        self.writer.add_hparams(self.hyperparameters, {f"hparam/{k}": v for k, v in final.items()}, run_name=".")
        self.writer.close()


class MlflowTracker:
    STATUSES = {"completed": "FINISHED", "stopped": "KILLED", "failed": "FAILED"}

    def __init__(self, uri: str, run_name: str):
        try:
            from mlflow import MlflowClient
        except ImportError as exc:
            raise _missing("mlflow", "mlflow") from exc
        self.run_name, self.run_id = run_name, None
        try:  # reach the store now: a wrong URI or a server that is down fails before any model loads
            self.client = MlflowClient(tracking_uri=uri)
            name = os.environ.get("MLFLOW_EXPERIMENT_NAME", DEFAULT_EXPERIMENT)
            experiment = self.client.get_experiment_by_name(name)
            self.experiment_id = experiment.experiment_id if experiment is not None else self.client.create_experiment(name)
        except Exception as exc:  # MLflow raises many kinds; the message is what the user needs
            raise TrackingError(f"--track mlflow:{uri}: {_first_line(exc)}") from exc

    def start(self, hyperparameters: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self.run_id = self.client.create_run(self.experiment_id, run_name=self.run_name).info.run_id
        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in hyperparameters.items()])

    def step(self, info: StepInfo) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, info.step) for k, v in step_metrics(info).items()])

    def finish(self, status: str, final: dict[str, float]) -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, self.STATUSES[status])


class Tracking:
    """Every ``--track`` target of one run. Made before training (a missing library fails
    before any model loads); :meth:`chain` adds it to the run's callbacks; :meth:`finish`
    (or leaving the ``with`` block, ``failed`` on an exception) closes the targets."""

    def __init__(self, targets: list[TrackTarget], config: TrainConfig):
        self.hyperparameters = hyperparameters_of(config)
        self.trackers: list[Tracker] = [
            TensorBoardTracker(t.where) if t.kind == "tensorboard" else MlflowTracker(t.where, config.output.name) for t in targets
        ]
        self.final: dict[str, float] = {}
        self._started = self._finished = False

    def __enter__(self) -> Tracking:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self.finish("failed" if error is not None else "completed")

    def on_start(self, run: TrainingRun) -> None:
        plan = run.plan
        values = {**self.hyperparameters, "total_steps": plan.total_steps, "steps_per_epoch": plan.steps_per_epoch,
                  "effective_batch_size": plan.effective_batch_size, "training_records": len(run.train_data.examples)}
        for tracker in self.trackers:
            tracker.start(values)
        self._started = True

    def on_step(self, info: StepInfo) -> None:
        self.final["final_training_loss"] = info.loss
        if info.validation_loss is not None:
            self.final["final_validation_loss"] = info.validation_loss
        for tracker in list(self.trackers):
            try:
                tracker.step(info)
            except Exception as exc:  # a tracking server that went away must not end the training run
                log.warning("--track: %s stopped logging at step %d: %s", type(tracker).__name__, info.step, _first_line(exc))
                self.trackers.remove(tracker)

    def chain(self, on_step: Callable[[StepInfo], None], on_start: Callable[[TrainingRun], None] | None = None):
        """``(on_step, on_start)`` for ``finetune`` that call the given ones, then the trackers."""
        if not self.trackers:
            return on_step, on_start

        def step(info: StepInfo) -> None:
            on_step(info)
            self.on_step(info)

        def start(run: TrainingRun) -> None:
            if on_start is not None:
                on_start(run)
            self.on_start(run)

        return step, start

    def finish(self, status: str) -> None:
        """Close every target once; ``status`` is completed, stopped or failed."""
        if self._finished:
            return
        self._finished = True
        if self._started:
            for tracker in self.trackers:
                tracker.finish(status, dict(self.final))
