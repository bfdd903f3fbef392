"""The guide's point, in the quickstart: its default hyperparameters against the advice.

The hosted service trains with default hyperparameters when none are sent; the guide's rules
change them by dataset size and model. The quickstart trains with the advice; this module
puts each advised value next to the default it replaces and the rule that replaced it, and
the step plan each set would give, for the console and ``report.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunesmith.advisor import Advice, TrainingPlan, plan_training
from tunesmith.hyperparameters import TABLE, Hyperparameters, format_value


@dataclass(frozen=True)
class Setting:
    """One setting: the guide's default, the advised value, and why they differ."""

    key: str
    """Wire name (``epochCount``), or ``duplicationFactor``."""
    default: str
    advised: str
    why: str
    """The rule the advisor applied, in its words (and where tunesmith departs from the guide)."""

    @property
    def changed(self) -> bool:
        return self.default != self.advised


@dataclass(frozen=True)
class AgainstDefaults:
    settings: list[Setting]
    default_plan: TrainingPlan
    """What the same records on the same model would train with the defaults."""
    advised_plan: TrainingPlan


def plan_line(plan: TrainingPlan) -> str:
    """``80 optimizer steps of 64 records (5 epochs), warmup 2 steps (2.5%) to a learning rate of 0.0001``."""
    hp = plan.hyperparameters
    return (f"{plan.total_steps} optimizer steps of {plan.effective_batch_size} records ({hp.epoch_count} epochs), "
            f"warmup {hp.learning_rate_warmup_steps} steps ({plan.warmup_fraction:.1%}) to a learning rate of "
            f"{format_value(hp.learning_rate)}")


def against_defaults(advice: Advice) -> AgainstDefaults:
    """Each advised setting next to its default (the API's, and no duplication), with the advisor's reason."""
    defaults = Hyperparameters()
    default_values = {**defaults.to_wire(), "duplicationFactor": "1"}
    advised_values = {**advice.hyperparameters.to_wire(), "duplicationFactor": str(advice.plan.duplication_factor)}
    order = [spec.key for spec in TABLE] + ["duplicationFactor"]
    settings = []
    for key in order:
        reason = advice.reasons[key]
        why = f"{reason.rule.title}: {reason.text}" if reason.rule else reason.text
        if reason.deviation:
            why += f" (tunesmith departs from the guide here, whose rule as written gives {reason.as_written})"
        settings.append(Setting(key, default_values[key], advised_values[key], why))
    default_plan = plan_training(advice.plan.records, advice.tier, defaults)
    return AgainstDefaults(settings, default_plan, advice.plan)
