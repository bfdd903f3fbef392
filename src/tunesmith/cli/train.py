"""``tunesmith train``: fine-tune or continue pre-training a model under the guide's hyperparameters."""

from __future__ import annotations

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
from tunesmith.cli.progress import show_run_warnings, training_progress
from tunesmith.cli.render import console, err_console, fail, print_json, table
from tunesmith.hyperparameters import Hyperparameters
from tunesmith.training.config import LoraSettings, TrainConfig, advised_config

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
@config_options(TrainConfig, ["max_length", "micro_batch_tokens", "seed", "save_every", "eval_every", "keep_checkpoints", "precision", "resume"])
@json_option
@click.pass_context
def train(ctx: click.Context, data: str, validation: tuple[str, ...], advised: bool, as_json: bool, **options: Any) -> None:
    """Train on DATA (JSONL) and write checkpoints, metrics and the trained model to --output."""
    from tunesmith.training import finetune

    sent = hyperparameter_flags(options)
    if advised and (sent or ctx.get_parameter_source("duplication") is not ParameterSource.DEFAULT):
        fail("--advised chooses the hyperparameters and duplication; drop --advised or the explicit values", 2)
    with user_errors():
        config = TrainConfig(
            data=data, validation=list(validation), hyperparameters=Hyperparameters.from_wire(sent), hyperparameters_sent=sent,
            lora=LoraSettings(**config_values(options, LoraSettings, prefix="lora")), **config_values(options, TrainConfig),
        )
        if advised:
            config = advise(config)
        with training_progress() as on_step:
            result = finetune(config, on_step, on_start=show_run_warnings)
    if result.stopped:
        console.print(escape(stopped_message(result, f"tunesmith train {data} --output {config.output} ... --resume")))
        raise SystemExit(130)
    if as_json:
        print_json(result.manifest)
        return
    show_result(result)


def advise(config: TrainConfig) -> TrainConfig:
    """``config`` with the advisor's values for its data and model (the data is validated first)."""
    from tunesmith.datasets import DataError, validate_dataset
    from tunesmith.models.registry import resolve_model

    report = validate_dataset(config.data, config.validation, config.kind)
    if not report.valid:
        raise DataError(report)
    config, advice = advised_config(config, report.training.records, resolve_model(config.model).tier)
    err_console.print(f"advised: {escape(str(advice.hyperparameters.to_wire()))} duplication {advice.plan.duplication_factor}x")
    return config


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
        ["wall time", f"{summary['wallSeconds']:.0f} s"],
        ["model", f"{output}/model (merged, HF safetensors)"],
        ["metrics", f"{output}/training_artifacts/step_wise_training_metrics.csv, {output}/loss_curve.png"],
    ]
    console.print(table("Training finished", ["", ""], rows))
