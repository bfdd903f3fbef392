"""The advisor: the guide's advice applied to a dataset size and a model tier.

:func:`recommend` picks epochs, a duplication factor, warmup steps and a learning rate, each
with a :class:`Reason` that names the guide rule (:mod:`tunesmith.guide`) it applied.
:func:`plan_training` turns any hyperparameter set into the optimizer-step arithmetic a
training run will follow, and warns where that arithmetic defeats the settings (a warmup
that never finishes). The training loop runs on a plan from this same function, built from
the records it tokenized (``training.loop.TrainingRun.setup``), so its steps, the manifest's
totals and the advice agree; they differ only when records lose every answer token to
``max_length`` and are skipped, which the run reports as a warning.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tunesmith import guide
from tunesmith.datasets import ValidationReport
from tunesmith.deviations import MIN_RECORD_PASSES, NO_EPOCH_CLIFF_AT_1K, Deviation
from tunesmith.guide import GuideRule
from tunesmith.hyperparameters import (
    EPOCH_COUNT,
    LEARNING_RATE,
    WARMUP_STEPS,
    HyperparameterError,
    Hyperparameters,
    parse_wire,
)
from tunesmith.tiers import ModelTier


def round_half_up(value: float) -> int:
    """The guide's "rounding": 2.5 -> 3 (Python's round() would give 2)."""
    return math.floor(value + 0.5)


@dataclass(frozen=True)
class TrainingPlan:
    """The step arithmetic of one run: what the hyperparameters mean for this dataset."""

    records: int
    """Training records before duplication (in a run: those left with target tokens)."""
    duplication_factor: int
    effective_batch_size: int
    hyperparameters: Hyperparameters

    @property
    def records_after_duplication(self) -> int:
        return self.records * self.duplication_factor

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per pass over the duplicated data (a last partial batch counts)."""
        return math.ceil(self.records_after_duplication / self.effective_batch_size)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.hyperparameters.epoch_count

    @property
    def effective_epochs(self) -> int:
        """Passes over the original records: epochs x duplication."""
        return self.hyperparameters.epoch_count * self.duplication_factor

    @property
    def warmup_fraction(self) -> float:
        if not self.total_steps:
            return 0.0
        return min(self.hyperparameters.learning_rate_warmup_steps / self.total_steps, 1.0)

    def warnings(self) -> list[str]:
        """What in this plan works against the settings."""
        out = []
        warmup, total = self.hyperparameters.learning_rate_warmup_steps, self.total_steps
        if warmup and warmup >= total:
            out.append(
                f"warmup ({warmup} steps) is not shorter than training ({total} steps): the learning rate "
                f"never reaches the value you set ({guide.WARMUP_FOR_SMALL_SAMPLES.title})"
            )
        elif warmup and warmup / total > guide.WARMUP_TOO_LONG_FRACTION:
            out.append(
                f"warmup takes {warmup / total:.0%} of training ({warmup} of {total} steps): most steps run "
                f"below the learning rate you set ({guide.WARMUP_FOR_SMALL_SAMPLES.title})"
            )
        if self.records_after_duplication > guide.MAX_RECORDS:
            out.append(
                f"{self.records_after_duplication:,} records after duplication: the hosted service accepts at "
                f"most {guide.MAX_RECORDS:,}"
            )
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "recordsAfterDuplication": self.records_after_duplication,
            "effectiveBatchSize": self.effective_batch_size,
            "stepsPerEpoch": self.steps_per_epoch,
            "totalSteps": self.total_steps,
            "warmupFraction": round(self.warmup_fraction, 4),
        }


def plan_training(
    records: int, tier: ModelTier, hyperparameters: Hyperparameters, duplication_factor: int = 1
) -> TrainingPlan:
    if records < 1:
        raise ValueError(f"a training plan needs at least 1 record, got {records}")
    if duplication_factor < 1:
        raise ValueError(f"duplication factor must be at least 1, got {duplication_factor}")
    return TrainingPlan(records, duplication_factor, tier.effective_batch_size, hyperparameters)


@dataclass(frozen=True)
class Reason:
    """Why a value was chosen, and which guide rule chose it (None when the user set it)."""

    rule: GuideRule | None
    text: str
    deviation: Deviation | None = None
    """Where the advisor departs from ``rule`` (:mod:`tunesmith.deviations`), and why."""
    as_written: str | None = None
    """With a deviation: the value the guide's rule as written gives, e.g. ``2``."""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule": self.rule.id if self.rule else "set-by-you",
            "guide": self.rule.title if self.rule else None,
            "reason": self.text,
        }
        if self.deviation:
            out["deviation"] = {**self.deviation.as_dict(), "guideValue": self.as_written}
        return out


@dataclass(frozen=True)
class Advice:
    """A complete, valid hyperparameter set plus the data plan, with reasons and warnings."""

    tier: ModelTier
    plan: TrainingPlan
    reasons: dict[str, Reason]
    warnings: list[str] = field(default_factory=list)

    @property
    def hyperparameters(self) -> Hyperparameters:
        return self.plan.hyperparameters

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.tier.name,
            "records": self.plan.records,
            "duplicationFactor": self.plan.duplication_factor,
            "effectiveEpochs": self.plan.effective_epochs,
            "hyperParameters": self.hyperparameters.to_wire(),
            "plan": self.plan.as_dict(),
            "reasons": {key: reason.as_dict() for key, reason in self.reasons.items()},
            "warnings": list(self.warnings),
        }


def advise_epochs(records: int, *, as_written: bool = False) -> tuple[int, Reason, int, Reason]:
    """Epochs and duplication factor by dataset size, each with its reason.

    ``as_written`` applies the guide's rule unchanged; otherwise medium sets follow
    :data:`~tunesmith.deviations.NO_EPOCH_CLIFF_AT_1K`."""
    small, medium = guide.SMALL_DATASET_BELOW, guide.MEDIUM_DATASET_UP_TO
    if records < small:
        epochs = guide.SMALL_DATASET_EPOCHS
        factor = math.ceil(guide.DUPLICATION_TARGET_RECORDS / records)
        factor = min(max(factor, guide.MIN_DUPLICATION_FACTOR), guide.MAX_DUPLICATION_FACTOR)
        epoch_text = (
            f"{records:,} records is under {small:,}: small datasets need more epochs to converge, "
            f"so use {epochs}, the most allowed"
        )
        if records * factor < guide.DUPLICATION_TARGET_RECORDS:
            how = f"the most tunesmith advises, since more repeats memorise rather than learn; an epoch holds {records * factor:,} records"
        else:
            how = (
                f"so an epoch holds {records * factor:,} records, at least the {guide.DUPLICATION_TARGET_RECORDS:,} "
                "at which the guide stops duplicating"
            )
        duplication_text = (
            f"{epochs} epochs still under-train {records:,} records: duplicate {factor}x, {how}; "
            f"effective epochs {epochs} x {factor} = {epochs * factor}"
        )
        return epochs, Reason(guide.EPOCHS_BY_SIZE, epoch_text), factor, Reason(guide.EFFECTIVE_EPOCHS, duplication_text)
    no_duplication = Reason(guide.EFFECTIVE_EPOCHS, f"{records:,} records is at least {small:,}: no duplication needed")
    if records <= medium:
        epochs = guide.MEDIUM_DATASET_EPOCHS
        epoch_text = f"{records:,} records is between {small:,} and {medium:,}: {epochs} epochs"
        floor = min(math.ceil(MIN_RECORD_PASSES / records), guide.SMALL_DATASET_EPOCHS)
        if not as_written and floor > epochs:
            text = (
                f"{records:,} records x {epochs} epochs (the guide's rule) is only {records * epochs:,} record passes; "
                f"tunesmith trains at least {MIN_RECORD_PASSES:,}: {floor} epochs, {records * floor:,} passes"
            )
            reason = Reason(guide.EFFECTIVE_EPOCHS, text, NO_EPOCH_CLIFF_AT_1K, str(epochs))
            return floor, reason, 1, no_duplication
    else:
        epochs = guide.LARGE_DATASET_EPOCHS
        epoch_text = f"{records:,} records is over {medium:,}: {epochs} epoch, for faster convergence"
    return epochs, Reason(guide.EFFECTIVE_EPOCHS, epoch_text), 1, no_duplication


def advise_warmup(records_after_duplication: int, tier: ModelTier) -> tuple[int, Reason]:
    """Warmup = records / divisor, rounded, clamped to the table's bounds."""
    divisor = tier.warmup_divisor
    exact = records_after_duplication / divisor
    steps = round_half_up(exact)
    text = f"{records_after_duplication:,} records / {divisor} ({tier.name}) = {exact:.2f}, rounded to {steps}"
    if steps > WARMUP_STEPS.maximum:
        text += f", clamped to the maximum of {WARMUP_STEPS.maximum}"
        steps = WARMUP_STEPS.maximum
    else:
        text += ": about a tenth of an epoch"
    return steps, Reason(guide.WARMUP_FOR_SMALL_SAMPLES, text)


def recommend(
    records: int,
    tier: ModelTier,
    *,
    overrides: Mapping[str, Any] | None = None,
    duplication_factor: int | None = None,
    total_records: int | None = None,
    as_written: bool = False,
) -> Advice:
    """Advise on ``records`` training records for ``tier``.

    ``overrides`` (wire keys, e.g. ``{"epochCount": "3"}``) and ``duplication_factor`` replace
    the advised values; the plan and warnings then describe the values actually chosen.
    ``total_records`` (training plus validation) is checked against the service's limits.
    ``as_written`` applies the guide's rules without tunesmith's measured deviations.
    Raises :class:`HyperparameterError` for bad overrides.
    """
    if records < 1:
        raise ValueError(f"advice needs at least 1 training record, got {records}")
    chosen, problems = parse_wire(dict(overrides or {}))
    if problems:
        raise HyperparameterError(problems)
    by_you = Reason(None, "set by you")

    epochs, epoch_reason, factor, duplication_reason = advise_epochs(records, as_written=as_written)
    reasons: dict[str, Reason] = {"epochCount": epoch_reason, "duplicationFactor": duplication_reason}
    if duplication_factor is not None:
        factor, reasons["duplicationFactor"] = duplication_factor, by_you
    if EPOCH_COUNT.attribute in chosen:
        reasons["epochCount"] = by_you
    else:
        chosen[EPOCH_COUNT.attribute] = epochs

    if WARMUP_STEPS.attribute in chosen:
        reasons["learningRateWarmupSteps"] = by_you
    else:
        chosen[WARMUP_STEPS.attribute], reasons["learningRateWarmupSteps"] = advise_warmup(records * factor, tier)

    if LEARNING_RATE.attribute in chosen:
        reasons["learningRate"] = by_you
    else:
        chosen[LEARNING_RATE.attribute] = tier.learning_rate
        reasons["learningRate"] = Reason(
            guide.LARGER_RATE_FOR_SMALLER_MODELS, f"{tier.learning_rate:g} for {tier.name}: {tier.learning_rate_reason}"
        )

    order = ("epochCount", "duplicationFactor", "learningRateWarmupSteps", "learningRate")
    reasons = {key: reasons[key] for key in order}
    plan = plan_training(records, tier, Hyperparameters(**chosen), factor)
    warnings = plan.warnings()
    if records < guide.RECOMMENDED_MIN_RECORDS:
        warnings.append(
            f"{records} training records: {guide.RECOMMENDED_MIN_RECORDS}+ recommended; "
            f"start small but make every example right ({guide.QUALITY_OVER_QUANTITY.title})"
        )
    total = records if total_records is None else total_records
    if not guide.MIN_RECORDS <= total <= guide.MAX_RECORDS:
        warnings.append(
            f"{total:,} records (training plus validation) is outside the "
            f"{guide.MIN_RECORDS}..{guide.MAX_RECORDS:,} the hosted service accepts"
        )
    return Advice(tier, plan, reasons, warnings)


def advise_dataset(report: ValidationReport, tier: ModelTier, **options: Any) -> Advice:
    """Advice for a validated dataset: counts come from the report, and its comparison of
    training and validation data adds a warning when they look unlike each other."""
    advice = recommend(report.training.records, tier, total_records=report.records, **options)
    unlike = [str(p.message) for p in report.log.warnings if "looks unlike" in p.message]
    for message in unlike:
        advice.warnings.append(f"{message} ({guide.MATCH_REAL_TRAFFIC.title})")
    return advice
