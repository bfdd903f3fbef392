"""``tunesmith train``: fine-tune or continue pre-training a model under the guide's hyperparameters."""

from __future__ import annotations

import click

from tunesmith.advisor import recommend
from tunesmith.cli.options import hyperparameter_flags, hyperparameter_options, json_option, validation_option
from tunesmith.cli.progress import training_progress
from tunesmith.cli.render import console, fail, print_json, table
from tunesmith.cli.errors import user_errors
from tunesmith.datasets import DatasetKind
from tunesmith.hyperparameters import Hyperparameters
from tunesmith.training import LoraSettings, TrainConfig, TrainingRun, write_results


@click.command()
@click.argument("data", type=click.Path(path_type=str))
@click.option("--model", default="micro", show_default=True, help="Tier, hosted id, configured name, result folder, HF folder or .gguf file.")
@click.option("--output", required=True, type=click.Path(path_type=str), help="Result folder.")
@validation_option
@hyperparameter_options
@click.option("--advised", is_flag=True, help="Use the advisor's hyperparameters and duplication for this dataset and tier.")
@click.option("--duplicate", "duplication", type=click.IntRange(1, 100), help="Virtual duplication factor (default 1, or the advised one).")
@click.option("--method", type=click.Choice(["lora", "full"]), default="lora", show_default=True)
@click.option("--kind", type=click.Choice([DatasetKind.FINE_TUNING.value, DatasetKind.PRETRAINING.value]), default="fine-tuning", show_default=True)
@click.option("--lora-rank", default=16, show_default=True, type=click.IntRange(1))
@click.option("--lora-alpha", default=32, show_default=True, type=click.IntRange(1))
@click.option("--lora-dropout", default=0.0, show_default=True, type=click.FloatRange(0, 1, max_open=True))
@click.option("--max-length", default=1024, show_default=True, type=click.IntRange(8), help="Longer records are cut (and counted).")
@click.option("--micro-batch-tokens", default=2048, show_default=True, type=click.IntRange(64), help="Padded tokens per forward pass.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--save-every", type=click.IntRange(1), help="Also checkpoint every N optimizer steps.")
@click.option("--eval-every", type=click.IntRange(1), help="Also compute validation loss every N steps.")
@click.option("--keep-checkpoints", default=2, show_default=True, type=click.IntRange(1))
@click.option("--precision", type=click.Choice(["auto", "bf16", "fp32"]), default="auto", show_default=True)
@click.option("--resume", is_flag=True, help="Continue the run in --output from its last checkpoint.")
@json_option
def train(data: str, model: str, output: str, validation: tuple[str, ...], advised: bool, duplication: int | None,
          method: str, kind: str, lora_rank: int, lora_alpha: int, lora_dropout: float, max_length: int,
          micro_batch_tokens: int, seed: int, save_every: int | None, eval_every: int | None, keep_checkpoints: int,
          precision: str, resume: bool, as_json: bool, **flags: str) -> None:
    """Train on DATA (JSONL) and write checkpoints, metrics and the trained model to --output."""
    sent = hyperparameter_flags(flags)
    if advised and (sent or duplication):
        fail("--advised chooses the hyperparameters and duplication; drop --advised or the explicit values", 2)
    with user_errors():
        hyperparameters = Hyperparameters.from_wire(sent)
        config = TrainConfig(
            data=data, output=output, model=model, validation=list(validation), kind=kind,
            hyperparameters=hyperparameters, hyperparameters_sent=sent, duplication=duplication or 1, method=method,
            lora=LoraSettings(lora_rank, lora_alpha, lora_dropout), max_length=max_length,
            micro_batch_tokens=micro_batch_tokens, seed=seed, save_every=save_every, eval_every=eval_every,
            keep_checkpoints=keep_checkpoints, precision=precision, resume=resume,
        )
        if advised:
            run = TrainingRun(config)
            report, source, _ = run.check_inputs()
            advice = recommend(report.training.records, source.tier)
            config.hyperparameters, config.duplication = advice.hyperparameters, advice.plan.duplication_factor
            console.print(f"advised: {advice.hyperparameters.to_wire()} duplication {advice.plan.duplication_factor}x")
        with training_progress() as on_step:
            run = TrainingRun(config, on_step)
            run.setup()
            if run.train_data.truncated:
                console.print(f"[yellow]warning:[/] {run.train_data.truncated} record(s) longer than --max-length {max_length} were cut")
            if run.train_data.dropped:
                console.print(f"[yellow]warning:[/] {run.train_data.dropped} record(s) had no answer tokens left after cutting and are skipped")
            state = run.train()
        if state.stopped:
            console.print(f"stopped after step {state.step}; checkpoint saved. Continue with: tunesmith train {data} --output {output} --resume ...")
            raise SystemExit(130)
        manifest = write_results(run)
    if as_json:
        print_json(manifest)
        return
    result = manifest["result"]
    rows = [
        ["steps", f"{result['steps']} ({run.plan.duplication_factor}x duplication, batch {run.plan.effective_batch_size})"],
        ["final training loss", result["finalTrainingLoss"]],
        ["final validation loss", result["finalValidationLoss"] if result["finalValidationLoss"] is not None else "-"],
        ["tokens/s", result["tokensPerSecond"]],
        ["padding", f"{result['paddingFraction']:.1%}"],
        ["wall time", f"{result['wallSeconds']:.0f} s"],
        ["model", f"{output}/model (merged, HF safetensors)"],
        ["metrics", f"{output}/training_artifacts/step_wise_training_metrics.csv, {output}/loss_curve.png"],
    ]
    console.print(table("Training finished", ["", ""], rows))
