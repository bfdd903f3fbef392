"""What a run reports after each step, and the counters it checkpoints."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StepInfo:
    """What one optimizer step reports to progress displays."""

    step: int
    """The step just completed, from 1 to ``total_steps``."""
    total_steps: int
    epoch: int
    loss: float
    lr: float
    tokens_per_s: float
    elapsed_s: float
    eta_s: float
    """The plan's tokens still to train at the run's measured tokens/s so far."""
    validation_loss: float | None = None
    """Computed after this step (epoch ends and ``eval_every``), on the main rank; else None."""


@dataclass
class RunState:
    step: int = 0
    """Optimizer steps completed (the last completed step's number)."""
    tokens: int = 0
    """Non-padding tokens processed."""
    padded_tokens: int = 0
    """Padding positions processed."""
    shared_tokens: int = 0
    """Token positions not recomputed: prefixes shared within a micro-batch, computed once."""
    elapsed_s: float = 0.0
    stopped: bool = False
    last_validation_loss: float | None = None
    history: dict[str, list] = field(default_factory=lambda: {"training": [], "validation": []})
    """The metric CSV rows so far (``metrics.py``), restored on resume."""
