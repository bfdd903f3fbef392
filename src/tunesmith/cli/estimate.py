"""``tunesmith estimate``: a training run's steps, tokens, time on this machine and peak memory, before it starts.

The same estimate is printed by ``tunesmith train`` before its first step (:func:`estimate_before_training`),
by ``tunesmith advise --estimate`` and by ``tunesmith jobs create --estimate``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource
from rich.markup import escape

from tunesmith.cli.errors import user_errors
from tunesmith.cli.options import (
    config_options,
    config_values,
    hyperparameter_flags,
    hyperparameter_options,
    json_option,
    validation_option,
)
from tunesmith.cli.progress import duration, show_run_warnings
from tunesmith.cli.render import console, err_console, fail, print_json, table
from tunesmith.hyperparameters import Hyperparameters
from tunesmith.training.advised import advise
from tunesmith.training.config import LoraSettings, TrainConfig

if TYPE_CHECKING:  # the engine imports torch: only when a command runs
    from tunesmith.advisor import Advice
    from tunesmith.training import TrainingRun
    from tunesmith.training.estimate import Estimate

NO_OUTPUT = Path(".")
"""An estimate writes nothing: ``TrainConfig.output`` is required, so it gets this (unused)."""


@click.command()
@click.argument("data", type=click.Path(path_type=str))
@config_options(TrainConfig, ["model"])
@validation_option
@hyperparameter_options
@click.option("--advised", is_flag=True, help="Use the advisor's hyperparameters and duplication for this dataset and tier.")
@config_options(TrainConfig, ["duplication", "method", "kind"], flags={"duplication": "--duplicate"})
@config_options(LoraSettings, ["rank", "alpha", "dropout"], prefix="lora")
@config_options(TrainConfig, ["max_length", "max_memory", "micro_batch_tokens", "share_prefixes", "packing", "seed", "eval_every", "device",
                               "precision", "quantize"])
@click.option("--recalibrate", is_flag=True, help="Measure this machine again instead of using the cached calibration.")
@json_option
@click.pass_context
def estimate(ctx: click.Context, data: str, validation: tuple[str, ...], advised: bool, recalibrate: bool, as_json: bool,
             **options: Any) -> None:
    """Estimate a training run of DATA before it starts: optimizer steps, tokens, time on this machine, peak memory.

    Takes the flags of `tunesmith train`. Steps and tokens are exact (the run's own tokenization
    and plan); time comes from a few training steps measured once per model and machine and
    cached in TUNESMITH_HOME/calibration.json (delete it, or pass --recalibrate, to measure again).
    """
    from tunesmith.training.estimate import estimate_run

    sent = hyperparameter_flags(options)
    if advised and (sent or ctx.get_parameter_source("duplication") is not ParameterSource.DEFAULT):
        fail("--advised chooses the hyperparameters and duplication; drop --advised or the explicit values", 2)
    with user_errors():
        config = TrainConfig(
            data=data, output=NO_OUTPUT, validation=list(validation), hyperparameters=Hyperparameters.from_wire(sent),
            hyperparameters_sent=sent, lora=LoraSettings(**config_values(options, LoraSettings, prefix="lora")),
            **config_values(options, TrainConfig),
        )
        if advised:
            config, advice = advise(config)
            if not as_json:
                say_advised(advice)
        result = estimate_run(config, recalibrate, on_measure=say_calibrating)
    if as_json:
        print_json(result.as_dict())
    else:
        print_estimate(result)


def say_advised(advice: Advice) -> None:
    """The ``--advised`` values, on stderr, before the run or the estimate."""
    err_console.print(f"advised: {escape(str(advice.hyperparameters.to_wire()))} duplication {advice.plan.duplication_factor}x")


def say_calibrating(model: str) -> None:
    err_console.print(f"calibrating: timing a few training steps of {escape(model)} (once per model and machine) ...")


def _count(n: float) -> str:
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def summary_line(estimate: Estimate) -> str:
    """One line: ``estimate: 412 optimizer steps, 1.2M tokens, about 14 min 05 s on this machine, peak about 3.4 GB``."""
    validation = f" (+{duration(estimate.validation_seconds)} validation)" if estimate.validation_seconds >= 1 else ""
    return (f"estimate: {estimate.steps:,} optimizer steps, {_count(estimate.tokens)} tokens, about "
            f"{duration(estimate.training_seconds)} of training{validation} on this machine, "
            f"peak about {estimate.peak_memory_mb / 1024:.1f} GB")


def print_estimate(estimate: Estimate) -> None:
    calibration = estimate.calibration
    source = "cached" if estimate.cached else f"measured just now ({calibration.measured_steps} steps)"
    memory = "GPU memory" if estimate.device.startswith("cuda") else "resident memory"
    rows = [
        ["optimizer steps", f"{estimate.steps:,}"],
        ["tokens", f"{estimate.tokens:,} trained ({estimate.dataset_tokens:,} in {estimate.records:,} records)"],
        ["token positions", f"{estimate.computed_positions:,} computed in {estimate.micro_batches:,} micro-batches of up to "
                            f"{estimate.micro_batch_tokens:,}"],
        ["micro-batch size", estimate.micro_batch_reason],
        ["batching", estimate.batching],
        ["training time", f"about {duration(estimate.training_seconds)}"],
        ["validation time", f"about {duration(estimate.validation_seconds)}" if estimate.validation_seconds else "-"],
        ["peak memory", f"about {estimate.peak_memory_mb:,.0f} MB ({memory})"],
        ["calibration", f"{source}: {calibration.per_position * 1e6:.3g} µs per token position, "
                        f"{calibration.per_micro_batch * 1e3:.3g} ms per micro-batch, {calibration.per_step * 1e3:.3g} ms per step"],
    ]
    console.print(table(f"Estimate on this machine ({estimate.device}, {estimate.precision}) for {escape(estimate.model)}",
                        ["", ""], rows))


def estimate_before_training(config: TrainConfig) -> Callable[[TrainingRun], None]:
    """``finetune``'s ``on_start`` for ``tunesmith train``: the plan's warnings, then the estimate
    (one line on stderr; :func:`~tunesmith.training.estimate.estimate_at_start` finds the
    calibration now and writes ``OUTPUT/estimate.json`` once the run is set up)."""
    from tunesmith.training.estimate import estimate_at_start

    estimate = estimate_at_start(config, on_measure=say_calibrating)

    def on_start(run: TrainingRun) -> None:
        show_run_warnings(run)
        err_console.print(escape(summary_line(estimate(run))))

    return on_start


def estimate_before_job(base: str, data: str, validation: tuple[str, ...], kind: str, sent: dict[str, str]) -> None:
    """``tunesmith jobs create --estimate``: the estimate on this machine, on stderr, when the data is
    a readable local file; otherwise why there is none. Never raises: the job is sent either way."""
    from tunesmith.training.estimate import estimate_run

    local = lambda uri: uri.removeprefix("file://") if "://" not in uri.removeprefix("file://") else None  # noqa: E731
    path = local(data)
    if path is None or not Path(path).is_file():
        err_console.print(f"no estimate: {escape(data)} is not a readable local file (the server reads it, this machine cannot)")
        return
    try:
        config = TrainConfig(
            data=path, output=NO_OUTPUT, model=base, kind=kind, hyperparameters=Hyperparameters.from_wire(sent),
            validation=[p for p in map(local, validation) if p is not None and Path(p).is_file()],
        )
        err_console.print(escape(summary_line(estimate_run(config, on_measure=say_calibrating))))
    except Exception as exc:  # noqa: BLE001 - an estimate never stops a job from being sent
        err_console.print(f"no estimate: {escape(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)}")
