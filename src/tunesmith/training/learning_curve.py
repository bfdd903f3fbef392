"""Would another epoch help? A fit of the validation-loss curve, checked against what happened.

After each epoch with validation data the loop fits the validation losses so far with a
power law in the step, ``loss(s) = a + b * s**-c`` (b >= 0, c from a grid, a and b by least
squares), the usual shape of a learning curve, and predicts the loss one epoch later. Another
epoch is predicted to help when that prediction is at least :data:`MIN_GAIN` below the last
loss. A loss that rose at the last validation is read as the start of overfitting: no fit is
trusted then, and the prediction is that another epoch will not help. With one validation
there is nothing to fit. When the next epoch's validation arrives, the record gets the loss
that happened, so the manifest shows every prediction next to its outcome.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

MIN_GAIN = 0.01
"""Relative drop in validation loss that counts as help (1%)."""

_EXPONENTS = np.linspace(0.05, 3.0, 60)


@dataclass
class EpochPrediction:
    """One epoch end's prediction for the next epoch, and (later) what happened."""

    after_epoch: int
    """Epochs count from 0: the prediction was made at the end of this one."""
    step: int
    loss: float
    """The validation loss at ``step``."""
    predicted_next_loss: float | None
    predicted_to_help: bool | None
    """None when nothing could be fitted (a single validation)."""
    basis: str
    actual_next_loss: float | None = None
    helped: bool | None = None
    """Filled in when the next epoch's validation arrives; None after the last epoch."""

    def as_dict(self) -> dict:
        return {_camel(k): v for k, v in asdict(self).items()}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def fit_power_law(steps: list[int], losses: list[float]) -> tuple[float, float, float]:
    """(a, b, c) of ``a + b * s**-c`` with the least squared error over the points."""
    s, y = np.asarray(steps, dtype=float), np.asarray(losses, dtype=float)
    best = (float(y[-1]), 0.0, 1.0, np.inf)
    for c in _EXPONENTS:
        x = s ** -c
        design = np.stack([np.ones_like(x), x], axis=1)
        (a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
        if b < 0:  # a rising curve is not a learning curve: the flat line instead
            a, b = float(y.mean()), 0.0
        error = float(((a + b * x - y) ** 2).sum())
        if error < best[3]:
            best = (float(a), float(b), float(c), error)
    return best[:3]


def predict_next_epoch(points: list[tuple[int, float]], steps_per_epoch: int, epoch: int) -> EpochPrediction:
    """The prediction made at the end of ``epoch`` from every validation so far, ``points``
    as (step, loss) with the last at this epoch's end."""
    step, loss = points[-1]
    if len(points) < 2:
        return EpochPrediction(epoch, step, loss, None, None, "one validation: nothing to fit yet")
    if loss > points[-2][1]:
        return EpochPrediction(epoch, step, loss, None, False,
                               "validation loss rose at the last validation: overfitting has begun")
    steps, losses = zip(*points)
    a, b, c = fit_power_law(list(steps), list(losses))
    predicted = a + b * (step + steps_per_epoch) ** -c
    helps = predicted <= loss * (1 - MIN_GAIN)
    basis = f"power-law fit of {len(points)} validations: loss = {a:.4f} + {b:.4f} * step^-{c:.2f}"
    return EpochPrediction(epoch, step, loss, round(predicted, 6), bool(helps), basis)


def record_outcome(predictions: list[EpochPrediction], loss: float) -> None:
    """The next epoch's validation loss, written into the previous epoch's prediction."""
    if predictions and predictions[-1].actual_next_loss is None:
        last = predictions[-1]
        last.actual_next_loss = round(loss, 6)
        last.helped = loss <= last.loss * (1 - MIN_GAIN)
