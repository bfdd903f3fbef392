"""The training entry point: one call from a config to a result folder (or a checkpoint)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.advisor import TrainingPlan
from tunesmith.training import distributed
from tunesmith.training.config import TrainConfig
from tunesmith.training.loop import RunState, StepInfo, TrainingRun
from tunesmith.training.results import write_results
from tunesmith.training.sharding import unsharded_copy


@dataclass
class RunResult:
    """How a :func:`finetune` call ended."""

    stopped: bool
    """``stop()`` or SIGINT/SIGTERM ended it early; a checkpoint holds the progress (none
    before the first step completes), and ``resume=True`` continues it exactly."""
    manifest: dict[str, Any] | None
    """The written ``manifest.json``; None when stopped."""
    plan: TrainingPlan
    """The step arithmetic the run followed, built once from the tokenized examples."""
    state: RunState
    """Steps, tokens, elapsed seconds and the metric history (``{"training", "validation"}`` rows)."""
    warnings: list[str]
    """The plan's warnings (a warmup that never finishes, ...) and notes on cut or skipped records."""
    output: Path


def finetune(
    config: TrainConfig,
    on_step: Callable[[StepInfo], None] | None = None,
    stop: Callable[[], bool] | None = None,
    on_start: Callable[[TrainingRun], None] | None = None,
) -> RunResult:
    """Validate, tokenize, plan, train and write the results of one run.

    ``on_start(run)`` is called once, after setup and before the first step: the plan, the
    warnings and the tokenized data are there to show. ``on_step`` gets a :class:`StepInfo`
    after every optimizer step. ``stop()`` is polled before every micro-batch; when it
    returns True the step in progress is thrown away and the run stops at a checkpoint of
    the last completed step (callers rate-limit ``stop`` themselves if it is costly).
    Raises ``DataError``, ``OutputError``, ``ModelUnavailableError`` ... before any model
    loads when the inputs are unusable. Under torchrun every rank calls it; rank 0 alone
    writes the results and holds the manifest (None on the other ranks).
    """
    run = TrainingRun(config, on_step, stop)
    try:
        run.setup()
        if on_start is not None:
            on_start(run)
        state = run.train()
        if run.config.shard and not state.stopped:  # the result folder needs the weights whole
            run.model = unsharded_copy(run.model, run.source, run.world)
        manifest = None if state.stopped or not run.world.is_main else write_results(run)  # rank 0 writes the results
        run.world.barrier()  # no rank leaves (and tears the group down) before the results are written
    finally:
        distributed.leave()
    return RunResult(state.stopped, manifest, run.plan, state, list(run.warnings), config.output)
