"""Command-line options shared by several commands, built from the domain's definitions."""

from __future__ import annotations

from typing import Any, Callable

import click

from tunesmith.datasets import DatasetKind
from tunesmith.hyperparameters import TABLE, format_value
from tunesmith.tiers import ModelTier, UnknownModelError, resolve_tier


def hyperparameter_options(command: Callable) -> Callable:
    """Add ``--epochs``, ``--learning-rate`` and ``--warmup-steps`` from the hyperparameter table.

    Values stay strings here so they go through the same parser, and the same messages, as
    the API's string map; read them back with :func:`hyperparameter_flags`.
    """
    for spec in reversed(TABLE):
        help_text = (
            f"{spec.help} {spec.type_name.capitalize()} {format_value(spec.minimum)}..{format_value(spec.maximum)}, "
            f"default {format_value(spec.default)} (wire name {spec.key})."
        )
        command = click.option(spec.flag, spec.attribute, metavar=spec.type_name.upper(), default=None, help=help_text)(command)
    return command


def hyperparameter_flags(kwargs: dict[str, Any]) -> dict[str, str]:
    """Remove the table's flags from a command's kwargs; return those given, by wire key."""
    given = {}
    for spec in TABLE:
        value = kwargs.pop(spec.attribute, None)
        if value is not None:
            given[spec.key] = value
    return given


class TierParam(click.ParamType):
    """A tier name or hosted model id, resolved to its :class:`ModelTier`."""

    name = "MODEL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> ModelTier:
        if isinstance(value, ModelTier):
            return value
        try:
            return resolve_tier(str(value))
        except UnknownModelError as exc:
            self.fail(str(exc), param, ctx)


def kind_option(command: Callable) -> Callable:
    return click.option(
        "--kind",
        type=click.Choice([k.value for k in DatasetKind]),
        default=DatasetKind.FINE_TUNING.value,
        show_default=True,
        help="What the records are for: conversations to fine-tune on, plain text to continue "
        "pre-training on, or prompts for distillation.",
    )(command)


def validation_option(command: Callable) -> Callable:
    return click.option(
        "--validation",
        "validation",
        multiple=True,
        type=click.Path(path_type=str),
        help="A validation file (repeat for up to 10).",
    )(command)


def json_option(command: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(command)
