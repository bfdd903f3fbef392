"""``tunesmith tune``: search the guide's hyperparameters and duplication for DATA under a budget."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tunesmith.cli.errors import user_errors
from tunesmith.cli.options import config_options, config_values, json_option
from tunesmith.cli.render import console, err_console, fail, print_json, table
from tunesmith.hyperparameters import TABLE
from tunesmith.training.config import LoraSettings, TrainConfig
from tunesmith.tuning.bookkeeping import SearchInterrupted
from tunesmith.tuning.budget import EXAMPLES, BudgetError, parse_budget
from tunesmith.tuning.config import TuneConfig

if TYPE_CHECKING:
    from tunesmith.tuning import TuneResult


@click.command()
@click.argument("data", type=click.Path(path_type=str))
@config_options(TrainConfig, ["model"])
@click.option("--output", required=True, type=click.Path(path_type=str),
              help="Search folder: study.db (resumable), trials.csv, best.json, the split and one folder per trial.")
@click.option("--validation", type=click.Path(path_type=str), help="Records to score trials on. Default: a seeded held-out split of DATA.")
@click.option("--budget", "budget_text", required=True, metavar="BUDGET", help=f"Compute to spend: {EXAMPLES}.")
@config_options(TuneConfig, ["trials", "holdout", "max_duplication", "reduction_factor", "max_new_tokens", "endpoint", "parallel"])
@config_options(TrainConfig, ["method"])
@config_options(LoraSettings, ["rank", "alpha", "dropout"], prefix="lora")
@config_options(TrainConfig, ["max_length", "micro_batch_tokens", "max_memory", "share_prefixes", "packing", "device", "precision"])
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds the held-out split, the sampler and the runs (the same for every trial).")
@click.option("--eval-every", type=click.IntRange(1), metavar="STEPS",
              help="Validation loss, which the pruner compares, every STEPS optimizer steps. Default: half a pass over the training records.")
@json_option
def tune(data: str, output: str, validation: str | None, budget_text: str, as_json: bool, **options: Any) -> None:
    """Search epochs, learning rate, warmup and duplication for DATA within --budget; print the best hyperParameters.

    The guide's defaults and the advisor's settings run first, then Optuna's TPE sampler
    proposes settings within the guide's bounds; successive halving prunes trials whose
    validation loss falls behind. Finished trials are scored by greedy exact match on the
    held-out records. Everything is kept in --output: rerun the same command to resume a
    search that was stopped, or to extend it with a larger --budget or --trials.

    With --endpoint, each trial is a job on that tunesmith server, --parallel at once; the
    server must be started with --allow-path covering --output (and DATA with --validation).
    """
    import optuna
    import sqlalchemy.exc

    from tunesmith.tuning import tune as run_search

    try:
        budget = parse_budget(budget_text)
    except BudgetError as exc:
        fail(str(exc), 2)
    with user_errors():
        search = config_values(options, TuneConfig)
        training = TrainConfig(
            data=data, output=output, validation=[validation] if validation else [],
            lora=LoraSettings(**config_values(options, LoraSettings, prefix="lora")), **config_values(options, TrainConfig),
        )
        config = TuneConfig(training=training, budget=budget, **search)
        with trial_progress(bar=config.endpoint is None) as (say, on_step):
            try:
                result = run_search(config, say=say, on_step=on_step)
            except SearchInterrupted as exc:
                err_console.print(escape(str(exc)))
                raise SystemExit(130) from None
            except (sqlalchemy.exc.OperationalError, optuna.exceptions.StorageInternalError) as exc:
                # the study file went away or became unwritable mid-search
                cause = exc
                while cause.__cause__ is not None or getattr(cause, "orig", None) is not None:
                    cause = getattr(cause, "orig", None) or cause.__cause__
                fail(f"cannot write the search's study in {output}/study.db ({cause}); finished trials are kept "
                     "there if the file still exists: rerun the same command to continue", 1)
    if as_json:
        print_json(result.as_dict())
    else:
        show_result(result)
    if result.best is None:
        fail(f"no trial finished within the budget ({result.budget.describe()}): raise --budget and rerun the same command "
             "to continue the search")


@contextlib.contextmanager
def trial_progress(bar: bool = True) -> Iterator[tuple[Callable[[str], None], Callable[[Any], None]]]:
    """Yields ``(say, on_step)``: trial lines on stderr, and on a terminal a bar over the running trial's
    steps (not with ``bar=False``: trials on a server run side by side and report no steps here)."""
    if not bar or not err_console.is_terminal:
        yield (lambda line: err_console.print(escape(line))), (lambda info: None)
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task("running trial", total=None, loss="-")

        def say(line: str) -> None:
            progress.console.print(escape(line))

        def on_step(info: Any) -> None:
            if info.step == 1:  # a new trial
                progress.reset(task, total=info.total_steps)
            progress.update(task, total=info.total_steps, completed=info.step, loss=f"{info.loss:.4f}")

        yield say, on_step


HEADERS = {"epochCount": "epochs", "learningRate": "lr", "learningRateWarmupSteps": "warmup"}
"""Short column names for the table's hyperparameters (the hyperParameters map below it uses the wire keys)."""


def trial_table(result: TuneResult) -> Any:
    columns = ["#", "origin", *(HEADERS[spec.key] for spec in TABLE), "dup", "steps", "tokens", "seconds", "val loss", "exact", "status"]
    rows = []
    for row in result.rows:
        values = [row.hyperparameters.get(spec.key, "-") for spec in TABLE]
        rows.append([
            row.number, row.origin + (f", retry of {row.retry_of}" if row.retry_of is not None else ""), *values, f"{row.duplication}x" if row.duplication else "-",
            f"{row.steps}/{row.planned_steps}" if row.steps is not None else "-", f"{row.tokens:,}" if row.tokens is not None else "-",
            f"{row.seconds:.1f}" if row.seconds is not None else "-",
            f"{row.validation_loss:.4f}" if row.validation_loss is not None else "-",
            f"{row.exact_match:.1%}" if row.exact_match is not None else "-",
            row.status(),
        ])
    return table(f"Trials ({result.folder / 'study.db'})", columns, rows)


def show_result(result: TuneResult) -> None:
    console.print(trial_table(result))
    console.print(f"spent {escape(result.budget.describe(result.spent))} of {escape(result.budget.describe())}; "
                  f"ended by {'--trials' if result.ended_by == 'trials' else 'the budget'}")
    if result.best is None:
        return
    best = result.best
    console.print(f"best: trial {best.number} ({escape(best.origin)}), exact match {best.exact_match:.1%}, "
                  f"validation loss {best.validation_loss:.4f} (rule: highest exact match, then lowest loss)")
    console.print("hyperParameters for CreateModelCustomizationJob:")
    console.print(escape(json.dumps(best.hyperparameters)))
    hint = f" (hosted: `tunesmith duplicate DATA --factor {best.duplication} --out FILE` before uploading)" if best.duplication > 1 else ""
    console.print(escape(f"duplication factor: {best.duplication}{hint}"))
    console.print("train it:")
    console.print(escape(result.train_command or ""))
    console.print(f"written: {escape(str(result.folder / 'trials.csv'))}, {escape(str(result.folder / 'best.json'))}")
