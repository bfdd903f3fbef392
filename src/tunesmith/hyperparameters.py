"""The guide's three hyperparameters, defined once.

Everything that names, parses, checks or prints a hyperparameter reads :data:`TABLE`:
the CLI flags (``tunesmith.cli.options``), the advisor's bounds, the API's validation
and ``tunesmith hyperparameters``.

The hosted API sends values as strings (``{"epochCount": "2", "learningRate": "1e-05"}``);
:meth:`Hyperparameters.from_wire` parses them strictly and reports every problem at once.
Bounds are inclusive.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from tunesmith.datasets.jsonl import json_kind
from tunesmith.errors import TunesmithError

# A plain decimal literal: "2", "-3", "0.00001", "1e-05", ".5", "5.". Deliberately narrower
# than float(): no "nan", "inf", "1_000", hex or surrounding words.
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class HyperparameterSpec:
    """One row of the guide's hyperparameter table."""

    key: str
    """Wire name in the hosted API (``epochCount``)."""
    attribute: str
    """Python attribute name on :class:`Hyperparameters` (``epoch_count``)."""
    label: str
    """Name the guide uses (``Epochs``)."""
    type: type
    """``int`` or ``float``."""
    minimum: int | float
    maximum: int | float
    default: int | float
    flag: str
    """Command-line flag (``--epochs``)."""
    help: str
    """One line for ``--help`` and the table."""

    @property
    def type_name(self) -> str:
        return "integer" if self.type is int else "float"

    def range_text(self) -> str:
        return f"must be between {format_value(self.minimum)} and {format_value(self.maximum)}"

    def parse(self, raw: Any) -> tuple[int | float | None, str | None]:
        """Parse one value (a wire string or a Python number).

        Returns ``(value, None)`` or ``(None, message)``; the message names the key, the value
        and the allowed range, e.g. ``learningRate=0.5 is out of range: must be between 1e-06
        and 0.0001``.
        """
        shown = raw if isinstance(raw, str) else format_value(raw) if _is_number(raw) else repr(raw)
        prefix = f"{self.key}={shown}"
        expected = f"{'an integer' if self.type is int else 'a number'} that {self.range_text()}"
        if isinstance(raw, bool) or not (isinstance(raw, str) or _is_number(raw)):
            return None, f"{prefix} is not {expected} (got {type(raw).__name__})"
        if isinstance(raw, str):
            text = raw.strip()
            if not text:
                return None, f"{self.key} is empty: it {self.range_text()}"
            lowered = text.lower().lstrip("+-")
            if lowered in ("nan",):
                return None, f"{prefix} is not a number: it {self.range_text()}"
            if lowered in ("inf", "infinity"):
                return None, f"{prefix} is infinite: it {self.range_text()}"
            if not _DECIMAL.fullmatch(text):
                return None, f"{prefix} is not a number: it {self.range_text()}"
            if self.type is int and not _INTEGER.fullmatch(text):
                return None, f"{prefix} is not an integer: {self.label.lower()} {self.range_text()}"
            value: int | float = int(text) if self.type is int else float(text)
        else:
            if isinstance(raw, float) and math.isnan(raw):
                return None, f"{prefix} is not a number: it {self.range_text()}"
            if isinstance(raw, float) and math.isinf(raw):
                return None, f"{prefix} is infinite: it {self.range_text()}"
            if self.type is int and not isinstance(raw, int):
                return None, f"{prefix} is not an integer: {self.label.lower()} {self.range_text()}"
            value = raw if self.type is int else float(raw)
        if math.isinf(value):  # "1e999" parses to inf
            return None, f"{prefix} is infinite: it {self.range_text()}"
        if not self.minimum <= value <= self.maximum:
            return None, f"{prefix} is out of range: {self.range_text()}"
        return value, None

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.label,
            "type": self.type_name,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "default": self.default,
            "flag": self.flag,
            "description": self.help,
        }


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def format_value(value: int | float) -> str:
    """The wire form of a value: ``2``, ``1e-05``, ``0.0001`` (Python's shortest round-trip)."""
    return str(value) if isinstance(value, int) else repr(float(value))


EPOCH_COUNT = HyperparameterSpec(
    key="epochCount",
    attribute="epoch_count",
    label="Epochs",
    type=int,
    minimum=1,
    maximum=5,
    default=2,
    flag="--epochs",
    help="Passes over the (duplicated) training data.",
)
LEARNING_RATE = HyperparameterSpec(
    key="learningRate",
    attribute="learning_rate",
    label="Learning rate",
    type=float,
    minimum=1e-6,
    maximum=1e-4,
    default=1e-5,
    flag="--learning-rate",
    help="Peak learning rate, reached at the end of warmup.",
)
WARMUP_STEPS = HyperparameterSpec(
    key="learningRateWarmupSteps",
    attribute="learning_rate_warmup_steps",
    label="Learning rate warmup steps",
    type=int,
    minimum=0,
    maximum=20,
    default=10,
    flag="--warmup-steps",
    help="Optimizer steps over which the learning rate rises linearly to its set value.",
)

TABLE: tuple[HyperparameterSpec, ...] = (EPOCH_COUNT, LEARNING_RATE, WARMUP_STEPS)
BY_KEY: dict[str, HyperparameterSpec] = {spec.key: spec for spec in TABLE}


@dataclass(frozen=True)
class HyperparameterProblem:
    """One reason a hyperparameter set was refused."""

    key: str
    value: Any
    message: str


class HyperparameterError(TunesmithError, ValueError):
    """Raised with every problem found, not just the first."""

    def __init__(self, problems: list[HyperparameterProblem]):
        self.problems = problems
        super().__init__("; ".join(p.message for p in problems))


@dataclass(frozen=True)
class Hyperparameters:
    """A complete, valid hyperparameter set. Construction checks every bound."""

    epoch_count: int = field(default=EPOCH_COUNT.default)
    """Passes over the (duplicated) training data, 1..5."""
    learning_rate: float = field(default=LEARNING_RATE.default)
    """Peak learning rate, 1e-6..1e-4."""
    learning_rate_warmup_steps: int = field(default=WARMUP_STEPS.default)
    """Optimizer steps of linear warmup, 0..20."""

    def __post_init__(self) -> None:
        problems = []
        for spec in TABLE:
            value, message = spec.parse(getattr(self, spec.attribute))
            if message:
                problems.append(HyperparameterProblem(spec.key, getattr(self, spec.attribute), message))
            else:
                object.__setattr__(self, spec.attribute, value)
        if problems:
            raise HyperparameterError(problems)

    @classmethod
    def from_wire(cls, values: Mapping[str, str] | None) -> Hyperparameters:
        """Parse the API's string map; missing keys (or ``None``) take their defaults.

        Raises :class:`HyperparameterError` listing unknown keys and every bad value, or
        saying that ``values`` is not a map of strings.
        """
        parsed, problems = parse_wire({} if values is None else values)
        if problems:
            raise HyperparameterError(problems)
        return cls(**parsed)

    def to_wire(self) -> dict[str, str]:
        """The API's string map, e.g. ``{"epochCount": "2", "learningRate": "1e-05", ...}``."""
        return {spec.key: format_value(getattr(self, spec.attribute)) for spec in TABLE}

    def replace(self, **changes: Any) -> Hyperparameters:
        current = {f.name: getattr(self, f.name) for f in fields(self)}
        current.update(changes)
        return Hyperparameters(**current)


def parse_wire(values: Mapping[str, str]) -> tuple[dict[str, Any], list[HyperparameterProblem]]:
    """Parse what was given (no defaults filled in); returns attribute values and problems.

    The wire is strict: ``values`` must be a map and every value a string (``"2"``, not ``2``),
    as the hosted API requires.
    """
    if not isinstance(values, Mapping):
        message = f'hyperParameters must be a map of strings such as {{"epochCount": "2"}}, got {json_kind(values)}'
        return {}, [HyperparameterProblem("hyperParameters", values, message)]
    parsed: dict[str, Any] = {}
    problems: list[HyperparameterProblem] = []
    known = ", ".join(BY_KEY)
    for key, raw in values.items():
        spec = BY_KEY.get(key)
        if spec is None:
            problems.append(
                HyperparameterProblem(
                    key, raw, f"{key} is not a hyperparameter of these models: the known keys are {known}"
                )
            )
            continue
        if not isinstance(raw, str):
            example = format_value(spec.default)
            problems.append(HyperparameterProblem(key, raw, f'{key} must be a string such as "{example}", got {json_kind(raw)}'))
            continue
        value, message = spec.parse(raw)
        if message:
            problems.append(HyperparameterProblem(key, raw, message))
        else:
            parsed[spec.attribute] = value
    return parsed, problems


def parse_assignments(items: list[str]) -> tuple[dict[str, str], list[HyperparameterProblem]]:
    """Turn ``["epochCount=3", ...]`` into a wire map, reporting malformed or repeated items."""
    values: dict[str, str] = {}
    problems: list[HyperparameterProblem] = []
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.append(HyperparameterProblem(item, None, f"{item!r} is not KEY=VALUE (e.g. epochCount=2)"))
        elif key in values:
            problems.append(HyperparameterProblem(key, raw, f"{key} is given more than once"))
        else:
            values[key] = raw
    return values, problems
