"""Early stopping on validation loss, and the record of which checkpoint became the model.

Opt-in (``--early-stopping-patience N``): the hosted service trains every epoch it is asked
for, and default runs do the same. When it is on, every validation (each epoch end, and
every ``--eval-every`` steps) is compared with the best so far. A new best is checkpointed
and that checkpoint is kept whatever ``--keep-checkpoints`` says; after ``patience``
validations in a row without a new best, training ends. Either way, the model written at the
end is the best validation checkpoint's, and the manifest says which one it was and why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class EarlyStopping:
    """The best validation so far and how many validations since; saved in checkpoints."""

    patience: int
    """Validations in a row without a lower loss that end training."""
    best_step: int | None = None
    best_loss: float | None = None
    evaluations: int = 0
    since_best: int = 0
    stopped_at: int | None = None
    """The step after which patience ran out; None while training goes on or when it never did."""

    def observe(self, step: int, loss: float) -> bool:
        """Count one validation; True when it is a new best (strictly lower loss)."""
        self.evaluations += 1
        if self.best_loss is None or loss < self.best_loss:
            self.best_step, self.best_loss, self.since_best = step, loss, 0
            return True
        self.since_best += 1
        if self.since_best >= self.patience:
            self.stopped_at = step
        return False

    @property
    def should_stop(self) -> bool:
        return self.stopped_at is not None

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any] | None, patience: int) -> EarlyStopping:
        """The tracker saved in a checkpoint (a fresh one if none was); ``patience`` is this run's."""
        if not state:
            return cls(patience)
        return cls(**{**state, "patience": patience})

    def selection(self, last_step: int) -> dict[str, Any]:
        """The manifest's ``selectedCheckpoint``: which step's weights the model holds, and why."""
        if self.best_step is None:
            return {"step": last_step, "validationLoss": None, "earlyStopped": False, "patience": self.patience,
                    "evaluations": 0, "reason": "no validation loss was computed: the last step's weights"}
        why = f"the lowest validation loss of {self.evaluations} evaluation(s), at step {self.best_step}"
        if self.should_stop:
            why += f"; none of the {self.patience} after it was lower, so training stopped after step {self.stopped_at}"
        else:
            why += "; training ran every planned step"
        return {"step": self.best_step, "validationLoss": round(self.best_loss, 6), "earlyStopped": self.should_stop,
                "stoppedAtStep": self.stopped_at if self.should_stop else last_step, "patience": self.patience,
                "evaluations": self.evaluations, "reason": why}
