"""``tunesmith train``: fine-tune or continue pre-training a model under the guide's hyperparameters."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource
from rich.markup import escape

from tunesmith.cli.errors import user_errors
from tunesmith.cli.estimate import estimate_before_training, say_advised
from tunesmith.cli.options import (
    config_options,
    config_values,
    hyperparameter_flags,
    hyperparameter_options,
    json_option,
    track_option,
    validation_option,
)
from tunesmith.cli.progress import show_run_warnings, training_progress
from tunesmith.cli.render import console, err_console, fail, print_json, table
from tunesmith.hyperparameters import Hyperparameters
from tunesmith.training.advised import advise
from tunesmith.training.config import LoraSettings, TrainConfig
from tunesmith.training.tracking import Tracking, TrackTarget

if TYPE_CHECKING:  # importing the loop loads torch: only when the command runs
    from tunesmith.training import RunResult


@click.command()
@click.argument("data", type=click.Path(path_type=str))
@config_options(TrainConfig, ["model", "output"])
@validation_option
@hyperparameter_options
@click.option("--advised", is_flag=True, help="Use the advisor's hyperparameters and duplication for this dataset and tier.")
@config_options(TrainConfig, ["duplication", "method", "kind"], flags={"duplication": "--duplicate"})
@config_options(LoraSettings, ["rank", "alpha", "dropout"], prefix="lora")
@config_options(TrainConfig, ["max_length", "max_memory", "micro_batch_tokens", "share_prefixes", "packing", "seed", "save_every", "eval_every", "early_stopping_patience", "keep_checkpoints", "device",
                               "precision", "shard", "quantize", "resume", "private"])
@click.option("--nproc", type=click.IntRange(1, 1024), default=1, show_default=True,
              help="Data-parallel ranks on this machine, started by torchrun (gloo on CPU, NCCL on CUDA).")
@click.option("--max-restarts", type=click.IntRange(0), default=0, show_default=True,
              help="With --nproc: torchrun restarts all ranks this many times after a failure; they resume from the last checkpoint.")
@click.option("--estimate/--no-estimate", "with_estimate", default=True, show_default=True,
              help="Print the run's steps, tokens, time on this machine and peak memory before training, and write OUTPUT/estimate.json "
                   "(the first run of a model on a machine times a few steps first; see `tunesmith estimate`).")
@track_option
@json_option
@click.pass_context
def train(ctx: click.Context, data: str, validation: tuple[str, ...], advised: bool, as_json: bool, nproc: int,
          max_restarts: int, with_estimate: bool, track: list[TrackTarget], **options: Any) -> None:
    """Train on DATA (JSONL) and write checkpoints, metrics and the trained model to --output."""
    from tunesmith.training import finetune
    from tunesmith.training.distributed import world_from_environment

    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        if with_estimate:
            err_console.print("estimate: none with --nproc > 1 (the calibration times one process; `tunesmith estimate` gives its figures)")
        raise SystemExit(launch_ranks(nproc, max_restarts, options["output"]))
    world = world_from_environment()
    main = world.is_main
    sent = hyperparameter_flags(options)
    if advised and (sent or ctx.get_parameter_source("duplication") is not ParameterSource.DEFAULT):
        fail("--advised chooses the hyperparameters and duplication; drop --advised or the explicit values", 2)
    with user_errors():
        config = TrainConfig(
            data=data, validation=list(validation), hyperparameters=Hyperparameters.from_wire(sent), hyperparameters_sent=sent,
            lora=LoraSettings(**config_values(options, LoraSettings, prefix="lora")), **config_values(options, TrainConfig),
        )
        if advised:
            config, advice = advise(config)
            if main:
                say_advised(advice)
        if not main:  # ranks other than 0 train silently; rank 0 speaks for the run
            result = finetune(config)
            return
        tracking = Tracking(track, config)  # a missing tracking library fails here, before any model loads
        on_start = show_run_warnings
        if with_estimate and not config.resume and not world.distributed:
            on_start = estimate_before_training(config)
        with tracking, training_progress() as on_step:
            on_step, on_start = tracking.chain(on_step, on_start)
            result = finetune(config, on_step, on_start=on_start)
            tracking.finish("stopped" if result.stopped else "completed")
    if result.stopped:
        console.print(escape(stopped_message(result, f"tunesmith train {data} --output {config.output} ... --resume")))
        raise SystemExit(130)
    if as_json:
        print_json(result.manifest)
        return
    show_result(result)


def launch_ranks(nproc: int, max_restarts: int, output: str) -> int:
    """Run this same command as ``nproc`` ranks under torchrun (one machine); the exit code."""
    import subprocess
    import sys

    from tunesmith.training.checkpoints import latest_checkpoint

    args, skip = [], False
    for arg in sys.argv[1:]:  # this command line without --nproc/--max-restarts: torchrun's ranks run the rest
        if skip:
            skip = False
        elif arg in ("--nproc", "--max-restarts"):
            skip = True
        elif not arg.startswith(("--nproc=", "--max-restarts=")):
            args.append(arg)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               f"--max-restarts={max_restarts}", "-m", "tunesmith", *args]
    code = subprocess.call(command)
    if code != 0:
        from pathlib import Path

        checkpoint = latest_checkpoint(Path(output))
        kept = f"the last checkpoint is {checkpoint}" if checkpoint else "no checkpoint was written yet"
        err_console.print(escape(
            f"error: a rank of the {nproc}-rank run failed (exit code {code}; torchrun's report is above); {kept}. "
            f"Run the same command with --resume to continue{' from it' if checkpoint else ''}."
        ))
    return code


def stopped_message(result: RunResult, resume_command: str) -> str:
    """What a stopped run kept, and how to continue it."""
    step, total = result.state.step, result.plan.total_steps
    if step == 0:
        return "stopped before the first optimizer step completed; nothing was saved"
    return (
        f"stopped after step {step} of {total}; checkpoint saved in {result.output / 'checkpoints'}. "
        f"Continue with: {resume_command}"
    )


def show_result(result: RunResult) -> None:
    output, plan, summary = result.output, result.plan, result.manifest["result"]
    rows = [
        ["steps", f"{summary['steps']} ({plan.duplication_factor}x duplication, batch {plan.effective_batch_size})"],
        ["final training loss", summary["finalTrainingLoss"]],
        ["final validation loss", summary["finalValidationLoss"] if summary["finalValidationLoss"] is not None else "-"],
        ["tokens/s", summary["tokensPerSecond"]],
        ["padding", f"{summary['paddingFraction']:.1%}"],
        ["shared prefix", f"{summary['sharedPrefixFraction']:.1%} of tokens computed once per micro-batch"],
        ["peak memory", f"{summary['peakMemoryMB']:,.0f} MB"],
        ["wall time", f"{summary['wallSeconds']:.0f} s"],
        ["model", f"{output}/model (merged, HF safetensors)"],
        ["metrics", f"{output}/training_artifacts/step_wise_training_metrics.csv, {output}/loss_curve.png"],
    ]
    console.print(table("Training finished", ["", ""], rows))
