"""How much compute a search may spend: minutes of trial time, or training tokens.

``--budget`` reads ``15m``, ``15min``, ``90 minutes``, ``900s`` or ``2h`` as time, and
``2M tokens``, ``200000tokens`` or ``500k tokens`` as training tokens (the non-padding tokens
the training loop processes, ``RunState.tokens``).

What is spent is summed over the study's finished trials, in this run and any earlier run it
resumes, so rerunning an interrupted search spends only what is left. Time counts each trial
whole: loading, training, validation and scoring.

Two rules apply it. A new trial starts only when what is spent plus what a trial costs on
average (over the trials so far) fits; the first trial always starts. A running trial is
stopped (as the pruner stops one) when the budget runs out under it.

With trials running side by side (``--endpoint --parallel N``) both rules count the trials
in flight: each as at least an average trial when deciding whether another starts, and at
what it has used so far when deciding whether the budget has run out (then all of them stop).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from tunesmith.errors import TunesmithError

Unit = Literal["seconds", "tokens"]

_BUDGET = re.compile(r"\s*(?P<amount>\d+(?:\.\d+)?|\.\d+)\s*(?P<scale>[kKmMbBgG]?)\s*(?P<unit>[a-zA-Z]+)\s*")
_TIME_UNITS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600),
}
_TOKEN_UNITS = ("token", "tokens")
_TOKEN_SCALES = {"": 1, "k": 1_000, "m": 1_000_000, "b": 1_000_000_000, "g": 1_000_000_000}
EXAMPLES = "a time such as 15m, 15min or 900s, or training tokens such as 2M tokens or 200000tokens"


class BudgetError(TunesmithError, ValueError):
    """A ``--budget`` that cannot be read."""


@dataclass(frozen=True)
class Budget:
    """A limit on the compute a search spends."""

    amount: float
    """Seconds or tokens; above 0."""
    unit: Unit

    def __post_init__(self) -> None:
        if self.unit not in ("seconds", "tokens"):
            raise BudgetError(f"a budget is in seconds or tokens, got {self.unit!r}")
        if not self.amount > 0:
            raise BudgetError(f"a budget must be more than 0 {self.unit}, got {self.amount:g}")

    def cost(self, tokens: int, seconds: float) -> float:
        """What ``tokens`` and ``seconds`` of work cost in this budget's unit."""
        return float(tokens) if self.unit == "tokens" else seconds

    def describe(self, amount: float | None = None) -> str:
        """``15 min`` / ``200,000 tokens``: the budget, or another amount in its unit."""
        value = self.amount if amount is None else amount
        if self.unit == "tokens":
            return f"{value:,.0f} tokens"
        return f"{value / 60:.1f} min" if value >= 60 else f"{value:.0f} s"

    def as_dict(self) -> dict[str, float | str]:
        return {"amount": self.amount, "unit": self.unit}


def parse_budget(text: str) -> Budget:
    """Read ``--budget``; raises :class:`BudgetError` naming the text and what is accepted."""
    match = _BUDGET.fullmatch(text or "")
    if not match:
        raise BudgetError(f"--budget {text!r} is not {EXAMPLES}")
    amount, scale, unit = float(match["amount"]), match["scale"], match["unit"].lower()
    joined = (scale + unit).lower()  # "15min": the scale letter began the unit
    if unit in _TOKEN_UNITS:
        unit_, value = "tokens", round(amount * _TOKEN_SCALES[scale.lower()])
    elif not scale and unit in _TIME_UNITS:
        unit_, value = "seconds", amount * _TIME_UNITS[unit]
    elif joined in _TIME_UNITS:
        unit_, value = "seconds", amount * _TIME_UNITS[joined]
    else:
        raise BudgetError(f"--budget {text!r}: {match['scale'] + match['unit']!r} is not a unit; give {EXAMPLES}")
    if value <= 0:
        raise BudgetError(f"--budget {text!r} is nothing: give more than 0, e.g. {EXAMPLES}")
    budget = Budget(value, unit_)
    return budget


class BudgetTracker:
    """What a search has spent, and whether it may go on."""

    def __init__(self, budget: Budget, costs: list[tuple[int, float]]):
        """``costs`` are the ``(tokens, seconds)`` of the study's finished trials so far."""
        self.budget = budget
        self.costs = [budget.cost(tokens, seconds) for tokens, seconds in costs]

    @property
    def spent(self) -> float:
        return sum(self.costs)

    def expected_trial_cost(self) -> float:
        """The mean cost of the trials so far (0 before the first)."""
        return self.spent / len(self.costs) if self.costs else 0.0

    def allows_another(self, in_flight: Sequence[float] = ()) -> bool:
        """Whether a new trial fits: what is spent, plus the trials in flight (``in_flight``: what
        each has cost so far, counted as at least an average trial), plus an average trial stays
        within the budget."""
        if not self.costs:
            return True
        expected = self.expected_trial_cost()
        committed = self.spent + sum(max(cost, expected) for cost in in_flight)
        return committed < self.budget.amount and committed + expected <= self.budget.amount

    def left(self, in_flight: Sequence[float] = ()) -> float:
        """Budget not yet spent, by the finished trials or so far by those in flight (0 when it is all spent)."""
        return max(self.budget.amount - self.spent - sum(in_flight), 0.0)

    def exhausted_by(self, tokens: int, seconds: float) -> bool:
        """Whether a running trial that has used ``tokens`` and ``seconds`` so far must stop."""
        return self.exhausted([self.budget.cost(tokens, seconds)])

    def exhausted(self, in_flight: Sequence[float]) -> bool:
        """Whether the trials in flight, having cost ``in_flight`` so far, must stop."""
        return self.spent + sum(in_flight) >= self.budget.amount

    def add(self, tokens: int, seconds: float) -> None:
        self.costs.append(self.budget.cost(tokens, seconds))
