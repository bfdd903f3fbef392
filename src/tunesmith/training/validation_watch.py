"""What the loop does with each validation loss: early stopping and the learning-curve check.

The loop computes a validation loss at every epoch end (and every ``eval_every`` steps) and
hands it to :class:`ValidationWatch`, which feeds the early-stopping tracker (when
``early_stopping_patience`` is set) and, at epoch ends, the next-epoch prediction. Its state
travels in checkpoints so that a resumed run goes on with the same best step and predictions.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from tunesmith.training.early_stopping import EarlyStopping
from tunesmith.training.learning_curve import EpochPrediction, predict_next_epoch, record_outcome


class ValidationWatch:
    def __init__(self, patience: int | None, saved: dict[str, Any] | None = None):
        saved = saved or {}
        self.early = EarlyStopping.from_state(saved.get("early_stopping"), patience) if patience else None
        self.points: list[tuple[int, float]] = [tuple(p) for p in saved.get("points", [])]
        self.predictions = [EpochPrediction(**p) for p in saved.get("predictions", [])]

    def observe(self, step: int, epoch: int, loss: float, epoch_end: bool, steps_per_epoch: int) -> EpochPrediction | None:
        """Count one validation; at an epoch end, the prediction for the next epoch."""
        self.points.append((step, loss))
        if self.early is not None:
            self.early.observe(step, loss)
        if not epoch_end:
            return None
        record_outcome(self.predictions, loss)
        prediction = predict_next_epoch(self.points, steps_per_epoch, epoch)
        self.predictions.append(prediction)
        return prediction

    def is_best(self, step: int) -> bool:
        """Early stopping is on and ``step`` holds the best validation so far: checkpoint it."""
        return self.early is not None and self.early.best_step == step

    @property
    def should_stop(self) -> bool:
        return self.early is not None and self.early.should_stop

    @property
    def best_step(self) -> int | None:
        return self.early.best_step if self.early is not None else None

    def to_state(self) -> dict[str, Any]:
        return {
            "early_stopping": self.early.to_state() if self.early is not None else None,
            "points": [list(p) for p in self.points],
            "predictions": [asdict(p) for p in self.predictions],
        }

    def manifest(self, last_step: int) -> dict[str, Any]:
        """The manifest's ``selectedCheckpoint`` (None without early stopping) and ``learningCurve``."""
        return {
            "selectedCheckpoint": self.early.selection(last_step) if self.early is not None else None,
            "learningCurve": [p.as_dict() for p in self.predictions],
        }
