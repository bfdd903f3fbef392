"""``tunesmith hyperparameters``: the guide's table, and a checker for a set of values."""

from __future__ import annotations

import click

from tunesmith.cli.options import hyperparameter_flags, hyperparameter_options, json_option
from tunesmith.cli.render import console, print_json, table
from tunesmith.hyperparameters import (
    TABLE,
    HyperparameterProblem,
    Hyperparameters,
    format_value,
    parse_assignments,
    parse_wire,
)


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def hyperparameters(ctx: click.Context, as_json: bool) -> None:
    """Show the hyperparameters you can set, with their types, bounds and defaults."""
    if ctx.invoked_subcommand is not None:
        return
    if as_json:
        print_json([spec.as_dict() for spec in TABLE])
        return
    rows = [
        [spec.key, spec.flag, spec.type_name, format_value(spec.minimum), format_value(spec.maximum), format_value(spec.default), spec.label]
        for spec in TABLE
    ]
    console.print(table(None, ["API key", "CLI flag", "Type", "Min", "Max", "Default", "Name"], rows))
    console.print("\nBounds are inclusive. Check a set with: tunesmith hyperparameters check epochCount=3 learningRate=5e-5")


@hyperparameters.command("check")
@click.argument("assignments", nargs=-1, metavar="[KEY=VALUE]...")
@hyperparameter_options
@json_option
def check(assignments: tuple[str, ...], as_json: bool, **flags: str) -> None:
    """Check hyperparameters given as KEY=VALUE (API names) or flags; print every problem.

    Exits 0 and prints the resolved values (defaults filled in) when all are valid, 1 otherwise.
    """
    given, problems = parse_assignments(list(assignments))
    for key, value in hyperparameter_flags(flags).items():
        if key in given:
            problems.append(HyperparameterProblem(key, value, f"{key} is given more than once"))
        given[key] = value
    parsed, value_problems = parse_wire(given)
    problems += value_problems
    if problems:
        if as_json:
            print_json({"valid": False, "errors": [{"key": p.key, "message": p.message} for p in problems]})
        else:
            for problem in problems:
                click.echo(f"error: {problem.message}")
            click.echo(f"{len(problems)} problem(s); see `tunesmith hyperparameters` for the allowed values")
        raise SystemExit(1)
    resolved = Hyperparameters(**parsed)
    if as_json:
        print_json({"valid": True, "hyperParameters": resolved.to_wire()})
        return
    rows = [
        [spec.key, format_value(getattr(resolved, spec.attribute)), "given" if spec.key in given else "default"]
        for spec in TABLE
    ]
    console.print(table("Valid. Resolved hyperparameters:", ["Key", "Value", "Source"], rows))

