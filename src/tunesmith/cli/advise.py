"""``tunesmith advise``: the guide's advice for a dataset and a model tier."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.markup import escape

from tunesmith.advisor import Advice, advise_dataset, recommend
from tunesmith.cli.errors import user_errors
from tunesmith.cli.estimate import NO_OUTPUT, print_estimate, say_calibrating
from tunesmith.cli.options import (
    TierParam,
    hyperparameter_flags,
    hyperparameter_options,
    json_option,
    kind_option,
    validation_option,
)
from tunesmith.cli.render import console, fail, print_json, print_problems, table
from tunesmith.cli.validate import run_validation
from tunesmith.datasets.duplicate import MAX_FACTOR
from tunesmith.datasets.problems import DEFAULT_MAX_LISTED
from tunesmith.hyperparameters import HyperparameterError
from tunesmith.tiers import ModelTier
from tunesmith.training.config import TrainConfig

if TYPE_CHECKING:  # the engine imports torch: only with --estimate
    from tunesmith.training.estimate import Estimate


def print_advice(advice: Advice, file: str | None, explain: bool = False) -> None:
    tier, plan = advice.tier, advice.plan
    console.print(
        f"[bold]Advice for {plan.records:,} training records on {tier.name}[/] "
        f"({tier.nova_name} stand-in, effective batch {tier.effective_batch_size})\n"
    )
    values = {**advice.hyperparameters.to_wire(), "duplicationFactor": str(plan.duplication_factor)}
    rows = []
    for key, reason in advice.reasons.items():
        rule = f"[{reason.rule.title}] " if reason.rule else ""
        departs = " (tunesmith departs from the guide here, measured: see --explain)" if reason.deviation and not explain else ""
        rows.append([key, values[key], escape(rule + reason.text + departs)])
    console.print(table(None, ["Setting", "Value", "Why"], rows))
    hp = advice.hyperparameters
    console.print(
        f"\nPlan: {plan.records_after_duplication:,} records after {plan.duplication_factor}x duplication -> "
        f"{plan.steps_per_epoch:,} steps per epoch x {hp.epoch_count} epoch(s) = {plan.total_steps:,} optimizer steps; "
        f"warmup {hp.learning_rate_warmup_steps} step(s) ({plan.warmup_fraction:.1%} of training); "
        f"effective epochs {plan.effective_epochs}."
    )
    console.print(f"API hyperParameters: {escape(json.dumps(hp.to_wire()))}")
    if plan.duplication_factor > 1 and file:
        stem = Path(file)
        out = stem.with_name(f"{stem.stem}.x{plan.duplication_factor}{stem.suffix or '.jsonl'}")
        console.print(f"Duplicate with: tunesmith duplicate {escape(file)} --factor {plan.duplication_factor} --out {escape(str(out))}")
    for warning in advice.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    if explain:
        print_explanation(advice)


def print_explanation(advice: Advice) -> None:
    """Each rule the advice applied, in the guide's words, and where tunesmith departs from it."""
    console.print("\n[bold]The rules behind this advice[/]")
    for key, reason in advice.reasons.items():
        if reason.rule is None:
            console.print(f"- {key}: set by you")
            continue
        console.print(f"- {key}: the guide, \"{escape(reason.rule.title)}\": {escape(reason.rule.says)}")
        if reason.deviation:
            console.print(
                f"  [bold]tunesmith departs from it[/] (rule {reason.deviation.id}): {escape(reason.deviation.rule)}\n"
                f"  The guide's rule as written gives {key} = {reason.as_written}; `--as-written` applies it.\n"
                f"  Measured: {escape(reason.deviation.evidence)}"
            )


@click.command()
@click.argument("file", required=False, type=click.Path(path_type=str))
@click.option("--model", "tier", required=True, type=TierParam(), help="Tier (micro, lite, pro) or hosted model id.")
@click.option("--records", type=click.IntRange(min=1), help="Advise for this many training records instead of a file.")
@validation_option
@kind_option
@click.option("--duplicate", "duplication_factor", type=click.IntRange(1, MAX_FACTOR), help="Use this duplication factor instead of the advised one.")
@hyperparameter_options
@click.option("--estimate", "with_estimate", is_flag=True,
              help="Also estimate the advised run on this machine (steps, tokens, time, peak memory; see `tunesmith estimate`). "
                   "Loads the model, and times a few steps the first time for a model and machine.")
@click.option("--explain", is_flag=True, help="Show each guide rule applied, in the guide's words, and where tunesmith's measured rules depart from it.")
@click.option("--as-written", is_flag=True, help="Apply the guide's rules exactly as written, without tunesmith's measured deviations.")
@json_option
def advise(
    file: str | None, tier: ModelTier, records: int | None, validation: tuple[str, ...], kind: str,
    duplication_factor: int | None, with_estimate: bool, explain: bool, as_written: bool, as_json: bool, **flags: str,
) -> None:
    """Recommend epochs, duplication, warmup and learning rate for FILE (or --records N).

    Hyperparameter flags fix a value; the plan and warnings then describe your choice.
    --estimate adds the run's time and memory on this machine (it needs a FILE).
    """
    if (file is None) == (records is None):
        fail("give either a FILE or --records N (not both)", 2)
    if with_estimate and file is None:
        fail("--estimate needs a FILE: the estimate tokenizes the records", 2)
    overrides = hyperparameter_flags(flags)
    try:
        if file is None:
            advice = recommend(records, tier, overrides=overrides, duplication_factor=duplication_factor, as_written=as_written)
        else:
            report = run_validation(file, validation, kind, DEFAULT_MAX_LISTED)
            if not report.valid:
                print_problems(report.log)
                fail(f"{file} is not valid: fix the errors above (or see `tunesmith validate {file}`)")
            if report.training.records == 0:
                fail(f"{file} has no records")
            advice = advise_dataset(report, tier, overrides=overrides, duplication_factor=duplication_factor, as_written=as_written)
    except HyperparameterError as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem.message}", err=True)
        raise SystemExit(1) from None
    estimate = advised_estimate(file, validation, kind, advice) if with_estimate else None
    if as_json:
        print_json({**advice.as_dict(), **({"estimate": estimate.as_dict()} if estimate else {})})
        return
    print_advice(advice, file, explain)
    if estimate is not None:
        console.print()
        print_estimate(estimate)


def advised_estimate(file: str, validation: tuple[str, ...], kind: str, advice: Advice) -> Estimate:
    """The estimate of a run of ``file`` with the advised (or fixed) hyperparameters and duplication."""
    from tunesmith.training.estimate import estimate_run

    with user_errors():
        config = TrainConfig(
            data=file, output=NO_OUTPUT, model=advice.tier.name, validation=list(validation), kind=kind,
            hyperparameters=advice.hyperparameters, duplication=advice.plan.duplication_factor,
        )
        return estimate_run(config, on_measure=say_calibrating)
