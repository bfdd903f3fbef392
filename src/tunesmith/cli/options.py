"""Command-line options shared by several commands, built from the domain's definitions."""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from tunesmith.datasets import DatasetKind
from tunesmith.hyperparameters import TABLE, format_value
from tunesmith.tiers import ModelTier, UnknownModelError, resolve_tier
from tunesmith.training.tracking import TRACK_HELP, TrackingError, TrackTarget, parse_target


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


def config_options(settings: type, names: list[str], prefix: str = "", flags: Mapping[str, str] | None = None) -> Callable:
    """Add one option per named field of the dataclass ``settings``, in the order given.

    The flag is the field's name with dashes (``max_length`` -> ``--max-length``; with
    ``prefix="lora"``, ``rank`` -> ``--lora-rank``) unless ``flags`` renames it; the keyword
    is the flag's. Help, default, type, bounds and choices come from the field's
    ``training.config.setting``, so a default lives only in the dataclass. Read the values
    back with :func:`config_values`.
    """
    hints = typing.get_type_hints(settings)
    by_name = {f.name: f for f in dataclasses.fields(settings)}

    def decorate(command: Callable) -> Callable:
        for name in reversed(names):
            keyword = f"{prefix}_{name}" if prefix else name
            flag = (flags or {}).get(name, "--" + keyword.replace("_", "-"))
            if _is_bool(hints[name]) and by_name[name].default is not False:
                flag = f"{flag}/--no-{flag[2:]}"  # on, or decided by the engine, by default: both ways can be asked
            command = click.option(flag, keyword, **_option_settings(by_name[name], hints[name]))(command)
        return command

    return decorate


def config_values(kwargs: dict[str, Any], settings: type, prefix: str = "") -> dict[str, Any]:
    """Remove the options :func:`config_options` added for ``settings`` from a command's
    kwargs; return their values by field name."""
    values = {}
    for item in dataclasses.fields(settings):
        keyword = f"{prefix}_{item.name}" if prefix else item.name
        if keyword in kwargs:
            values[item.name] = kwargs.pop(keyword)
    return values


def _is_bool(hint: Any) -> bool:
    return hint is bool or (typing.get_origin(hint) in (typing.Union, types.UnionType) and bool in typing.get_args(hint))


def _option_settings(item: dataclasses.Field, hint: Any) -> dict[str, Any]:
    meta = item.metadata
    if "help" not in meta:
        raise TypeError(f"{item.name} has no help text: declare it with training.config.setting")
    required = item.default is dataclasses.MISSING
    default = None if required else item.default
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None: optional
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    if hint is bool:
        return {"is_flag": True, "default": default, "help": meta["help"]}
    if isinstance(default, enum.Enum):
        default = default.value
    if typing.get_origin(hint) is typing.Literal:
        kind = click.Choice(list(typing.get_args(hint)))
    elif isinstance(hint, type) and issubclass(hint, enum.Enum):
        kind = click.Choice(list(meta["choices"] or [member.value for member in hint]))
    elif hint in (int, float):
        limits = {"min": meta["minimum"], "max": meta["below"] if meta["below"] is not None else meta["maximum"]}
        if all(v is None for v in limits.values()):
            kind = hint
        elif hint is int:
            kind = click.IntRange(**limits)
        else:
            kind = click.FloatRange(**limits, max_open=meta["below"] is not None)
    elif hint is Path:
        kind = click.Path(path_type=str)
    else:
        kind = hint
    return {"type": kind, "default": default, "required": required, "show_default": default is not None, "help": meta["help"]}


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


def _track_targets(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[TrackTarget]:
    try:
        return [parse_target(value) for value in values]
    except TrackingError as exc:
        raise click.BadParameter(str(exc), ctx, param) from exc


def track_option(command: Callable) -> Callable:
    """``--track KIND:WHERE`` (repeatable), read back as a list of :class:`TrackTarget`."""
    return click.option("--track", "track", multiple=True, metavar="KIND:WHERE", callback=_track_targets, help=TRACK_HELP)(command)


def json_option(command: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(command)


DEVICE_HELP = "Where the model runs: auto, cpu, cuda, cuda:N or mps (auto picks CUDA, then MPS, then the CPU)."


def device_option(command: Callable) -> Callable:
    """``--device``, checked when the command places its model (``tunesmith.devices.place``)."""
    return click.option("--device", default="auto", show_default=True, metavar="DEVICE", help=DEVICE_HELP)(command)
