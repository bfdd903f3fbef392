"""Before training: a run's optimizer steps, tokens, time on this machine and peak memory.

Steps, tokens, micro-batches and computed token positions are exact, not estimated: they come
from a :class:`TrainingRun` set up on the same config (its tokenization, its plan, its
micro-batch size and packing, epoch by epoch), so the estimate's steps are the steps the loop
runs. Time is those counts at the rates of a short calibration (``calibration.py``, cached per
model and machine); it covers the optimizer steps, as the manifest's ``wallSeconds`` does, plus
the validation passes (forward only), and leaves out loading the model, checkpoints and writing
the results. Peak memory is the loop's own model of it (``memory.fit_micro_batch``): resident
memory on a CPU, GPU memory on CUDA.

``tunesmith train`` writes the estimate to ``OUTPUT/estimate.json`` before the first step;
:func:`estimate_vs_actual` sets it beside the manifest's measured figures.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.devices import place
from tunesmith.files import atomic_write_text
from tunesmith.models.registry import resolve_model
from tunesmith.training import batches
from tunesmith.training.calibration import (
    Calibration,
    calibrate,
    calibration_key,
    head_share,
    load_calibration,
    measure,
    micro_batch_work,
    save_calibration,
    with_throwaway_run,
)
from tunesmith.training.config import TrainConfig
from tunesmith.training.loop import TrainingRun

ESTIMATE_FILE = "estimate.json"
FORWARD_SHARE = {"lora": 1 / 2, "full": 1 / 3}
"""A forward pass's share of a training micro-batch: the backward pass of a frozen base computes
input gradients only (about one forward), a fully trained one weight gradients too (two)."""


@dataclass(frozen=True)
class Estimate:
    """What a run will do and take, before it starts."""

    model: str
    device: str
    precision: str
    records: int
    """Training records that train (those with target tokens left after ``max_length``)."""
    dataset_tokens: int
    tokens: int
    """Tokens trained on: dataset tokens x duplication x epochs (the manifest's ``result.tokens``)."""
    computed_positions: int
    """Token positions the decoder runs over in the whole run: padding in, shared prefixes once."""
    micro_batches: int
    steps: int
    micro_batch_tokens: int
    micro_batch_reason: str
    """Why that size (device memory, --max-memory, the peer's footprint, or the flag)."""
    batching: str
    """How records share a micro-batch: packed (and with which attention), shared prefixes, or padded."""
    training_seconds: float
    """The optimizer steps, as the manifest's ``wallSeconds`` counts them."""
    validation_seconds: float
    peak_memory_mb: float
    calibration: Calibration
    cached: bool
    """The calibration came from the cache (nothing was measured)."""

    @property
    def seconds(self) -> float:
        return self.training_seconds + self.validation_seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "device": self.device, "precision": self.precision, "records": self.records,
            "datasetTokens": self.dataset_tokens, "tokens": self.tokens, "computedPositions": self.computed_positions,
            "microBatches": self.micro_batches, "microBatchTokens": self.micro_batch_tokens,
            "microBatchReason": self.micro_batch_reason, "batching": self.batching, "steps": self.steps,
            "trainingSeconds": round(self.training_seconds, 3), "validationSeconds": round(self.validation_seconds, 3),
            "seconds": round(self.seconds, 3), "peakMemoryMB": self.peak_memory_mb,
            "calibration": {**self.calibration.as_dict(), "cached": self.cached},
        }


def validation_passes(total_steps: int, steps_per_epoch: int, eval_every: int | None) -> int:
    """How often the loop computes the validation loss: every epoch end and every ``eval_every`` steps."""
    return sum(1 for s in range(1, total_steps + 1) if s % steps_per_epoch == 0 or (eval_every and s % eval_every == 0))


def estimate_from_run(run: TrainingRun, calibration: Calibration, cached: bool) -> Estimate:
    """The estimate for ``run`` (set up, not yet trained) at ``calibration``'s rates."""
    config, plan, examples = run.config, run.plan, run.train_data.examples
    share = head_share(run.model)
    micro_batches = positions = targets = 0
    for epoch in range(plan.hyperparameters.epoch_count):  # the loop's own step lists and packing
        for indices in batches.step_batches(len(examples), config.duplication, plan.effective_batch_size, epoch, config.seed):
            for group in run.micro_batches_of(indices):
                computed, learned = micro_batch_work(run, group)
                micro_batches, positions, targets = micro_batches + 1, positions + computed, targets + learned
    training = calibration.seconds(plan.total_steps, micro_batches, positions + share * targets)
    validation = 0.0
    if run.valid_data and run.valid_data.examples:
        valid = run.valid_data.examples
        groups = batches.micro_batches(list(range(len(valid))), valid, run.micro_batch.tokens)
        work = sum(batches.padded_positions(valid, g) + share * sum(valid[i].target_count for i in g) for g in groups)
        one_pass = calibration.seconds(0, len(groups), work) * FORWARD_SHARE[config.method]
        validation = one_pass * validation_passes(plan.total_steps, plan.steps_per_epoch, config.eval_every)
    return Estimate(
        model=run.source.name, device=str(run.placement.device), precision=run.placement.precision, records=len(examples),
        dataset_tokens=run.train_data.tokens, tokens=run.train_data.tokens * config.duplication * plan.hyperparameters.epoch_count,
        computed_positions=positions, micro_batches=micro_batches, steps=plan.total_steps, micro_batch_tokens=run.micro_batch.tokens,
        micro_batch_reason=run.micro_batch.reason, batching=run.batching,
        training_seconds=training, validation_seconds=validation, peak_memory_mb=float(run.micro_batch.estimated_peak_mb),
        calibration=calibration, cached=cached,
    )


def estimate_run(config: TrainConfig, recalibrate: bool = False, on_measure: Callable[[str], None] | None = None) -> Estimate:
    """Set up a run of ``config`` (its ``output`` is neither read nor written: a temporary folder
    stands in), measure this machine unless a calibration is cached (or ``recalibrate``), and
    estimate. ``on_measure(model name)`` is called before measuring (it takes seconds). Raises
    what ``TrainingRun.setup`` raises for unusable data, model or settings."""
    def estimate(run: TrainingRun) -> Estimate:
        key = calibration_key(run.config, run.placement, run.source)
        calibration = None if recalibrate else load_calibration(key)
        cached = calibration is not None
        if calibration is None:
            if on_measure is not None:
                on_measure(run.source.name)
            calibration = measure(run)  # changes the run's weights, not its data, plan or packing
            save_calibration(key, calibration)
        return estimate_from_run(run, calibration, cached)

    return with_throwaway_run(config, estimate)


def calibration_for(
    config: TrainConfig, recalibrate: bool = False, on_measure: Callable[[str], None] | None = None
) -> tuple[Calibration, bool]:
    """The calibration a run of ``config`` would use, and whether it was cached; on a miss it is
    measured on a sample of the data (``calibration.calibrate``, after ``on_measure(model name)``)
    and stored. For a caller that then estimates from its own run (``estimate_from_run``): the
    model loads one extra time only on a miss."""
    source = resolve_model(config.model)
    key = calibration_key(config, place(config.device, config.precision), source)
    cached = None if recalibrate else load_calibration(key)
    if cached is not None:
        return cached, True
    if on_measure is not None:
        on_measure(source.name)
    calibration = calibrate(config)
    save_calibration(key, calibration)
    return calibration, False


def estimate_at_start(config: TrainConfig, on_measure: Callable[[str], None] | None = None) -> Callable[[TrainingRun], Estimate]:
    """For ``tunesmith train``: the calibration is found (or measured, on a sample of the data) now,
    before the run loads its model; the function returned makes the estimate from the run's own
    plan and packing once it is set up, writes ``OUTPUT/estimate.json`` and returns it, so nothing
    is tokenized or loaded twice."""
    calibration, cached = calibration_for(config, on_measure=on_measure)

    def estimate(run: TrainingRun) -> Estimate:
        made = estimate_from_run(run, calibration, cached)
        write_estimate(run.config.output, made)
        return made

    return estimate


def write_estimate(output: Path, estimate: Estimate) -> Path:
    """``OUTPUT/estimate.json``, for :func:`estimate_vs_actual` after the run."""
    path = Path(output) / ESTIMATE_FILE
    atomic_write_text(path, json.dumps(estimate.as_dict(), indent=2))
    return path


COMPARED = {"steps": ("steps", "steps"), "seconds": ("trainingSeconds", "wallSeconds"),
            "peakMemoryMB": ("peakMemoryMB", "peakMemoryMB"), "tokens": ("tokens", "tokens")}
"""Manifest field: (estimate.json key, manifest ``result`` key). Seconds are the optimizer
steps' on both sides (validation, checkpoints and loading are not in ``wallSeconds``)."""


def estimate_vs_actual(output: Path, result: dict[str, Any]) -> dict[str, Any] | None:
    """The estimate written before the run in ``output`` beside the manifest's ``result``
    (``steps``, ``tokens``, ``wallSeconds``, ``peakMemoryMB``); None without a readable estimate."""
    try:
        saved = json.loads((Path(output) / ESTIMATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict):
        return None
    return {name: {"estimated": saved.get(mine), "actual": result.get(theirs)} for name, (mine, theirs) in COMPARED.items()}
