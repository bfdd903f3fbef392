"""The learning-rate schedule: the guide's warmup, then the set value.

Contract: optimizer step ``s`` (1-based) uses ``lr * s / W`` while ``s < W`` and exactly
``lr`` from step ``W`` on, where ``W`` is ``learningRateWarmupSteps``. The rate thus rises
linearly from near 0 (``lr / W`` at the first step) and reaches the set value after ``W``
steps. After warmup it stays constant: the guide describes warmup to "the set value" and
nothing after it, so the value you set is the value that trains.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WarmupSchedule:
    peak: float
    """The learning rate you set."""
    warmup_steps: int

    def __call__(self, step: int) -> float:
        """Learning rate of optimizer step ``step`` (1-based)."""
        if step < 1:
            raise ValueError(f"optimizer steps count from 1, got {step}")
        if self.warmup_steps and step < self.warmup_steps:
            return self.peak * step / self.warmup_steps
        return self.peak
