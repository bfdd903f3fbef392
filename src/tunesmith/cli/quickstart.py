"""``tunesmith quickstart``: see tunesmith work end to end in a few minutes, on a laptop CPU too."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.markup import escape

from tunesmith.cli.errors import user_errors
from tunesmith.cli.options import device_option
from tunesmith.cli.progress import training_progress
from tunesmith.cli.render import console, fail, table

if TYPE_CHECKING:  # the quickstart's modules load torch: only when the command runs
    from tunesmith.quickstart.advice import AgainstDefaults


def print_against_defaults(compared: AgainstDefaults) -> None:
    """The guide's default hyperparameters next to the advised ones, the rule behind each, and both plans."""
    from tunesmith.quickstart.advice import plan_line

    console.print(f"[bold]The guide's defaults against the advice[/] for {compared.advised_plan.records:,} records on micro")
    rows = [[s.key, s.default, s.advised, s.why] for s in compared.settings]
    console.print(table(None, ["Setting", "Default", "Advised", "Why"], rows))
    console.print(f"defaults: {escape(plan_line(compared.default_plan))}")
    console.print(f"advice:   {escape(plan_line(compared.advised_plan))}")


@click.command()
@click.option("--output", default="tunesmith-quickstart", show_default=True, type=click.Path(path_type=str), help="Where to write data, model and report.")
@device_option
def quickstart(output: str, device: str) -> None:
    """Build a small task, fine-tune micro with the advised hyperparameters, compare with the base model.

    Training ends once the model has learned the task (95% of 32 validation answers exactly
    right), at the latest after the advised plan's last step."""
    from tunesmith.cli.evaluate import comparison_table  # these load torch: only when the command runs
    from tunesmith.quickstart.run import run_quickstart

    try:
        with user_errors(), training_progress("fine-tuning micro") as on_step:
            result = run_quickstart(
                Path(output), say=lambda text: console.print(f"[bold]>[/] {escape(text)}"), on_step=on_step,
                show_advice=print_against_defaults, device=device,
            )
    except InterruptedError as exc:  # SIGINT/SIGTERM during the fine-tune: the half-trained model is not evaluated
        fail(str(exc), 130)
    console.print(comparison_table([result.base, result.tuned]))
    console.print(
        f"exact match {result.base.exact_match:.0%} -> {result.tuned.exact_match:.0%} "
        f"({result.gain_points:+.0f} points) after {result.steps} of {result.plan.total_steps} planned steps; "
        f"training {result.train_seconds:.0f} s, checks {result.check_seconds:.0f} s, total {result.total_seconds:.0f} s"
    )
    console.print(f"report: {result.folder / 'report.md'}")
