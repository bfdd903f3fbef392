"""The records a search scores its trials on: a ``--validation`` file, or a held-out split of DATA.

The split is a seeded shuffle of DATA's records (``random.Random(seed)``), so the same data
and seed give the same split on any machine and after a resume. Records are copied line for
line, unchanged, to ``OUTPUT/split/train.jsonl`` and ``OUTPUT/split/holdout.jsonl``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.files import atomic_write_text


class HoldoutError(TunesmithError, ValueError):
    """DATA cannot give up the records asked for."""


@dataclass(frozen=True)
class Split:
    """Where a search trains and where it scores."""

    train: Path
    holdout: Path
    held_out: int | None
    """Records held out of DATA; None when a ``--validation`` file is used."""
    train_records: int
    seed: int

    def describe(self) -> str:
        if self.held_out is None:
            return f"scoring on {self.holdout}; training on the {self.train_records} records of {self.train}"
        total = self.held_out + self.train_records
        return (f"held out {self.held_out} of {total} records (seed {self.seed}) to score the trials: {self.holdout}; "
                f"training on the other {self.train_records}")

    def as_dict(self) -> dict[str, Any]:
        return {"train": str(self.train), "holdout": str(self.holdout), "heldOut": self.held_out,
                "trainRecords": self.train_records, "seed": self.seed}


def record_lines(path: Path) -> list[str]:
    """The non-blank lines of a JSONL file (validated beforehand), each ending in a newline."""
    with path.open(encoding="utf-8") as handle:
        return [line if line.endswith("\n") else line + "\n" for line in handle if line.strip()]


def holdout_size(records: int, fraction: float, max_records: int | None = None) -> int:
    """How many of ``records`` a split holds out: ``fraction`` of them rounded up, at least one,
    at most ``max_records``. Raises :class:`HoldoutError` when none would be left to train."""
    if not 0 < fraction < 1:
        raise HoldoutError(f"the held-out fraction must be between 0 and 1, got {fraction:g}")
    size = max(1, math.ceil(records * fraction))
    size = size if max_records is None else min(size, max_records)
    if records - size < 1:
        raise HoldoutError(
            f"{records} record(s) are too few to hold out {fraction:.0%} and train on the rest: "
            "add records or pass --validation FILE"
        )
    return size


def hold_out(data: Path, folder: Path, fraction: float, seed: int, max_records: int | None = None) -> Split:
    """Write :func:`holdout_size` of ``data``'s records, drawn by a shuffle seeded with ``seed``,
    to ``folder/holdout.jsonl`` and the rest to ``folder/train.jsonl``."""
    lines = record_lines(data)
    size = holdout_size(len(lines), fraction, max_records)
    order = list(range(len(lines)))
    random.Random(seed).shuffle(order)
    held = set(order[:size])
    folder.mkdir(parents=True, exist_ok=True)
    train, holdout = folder / "train.jsonl", folder / "holdout.jsonl"
    atomic_write_text(train, "".join(line for i, line in enumerate(lines) if i not in held))
    atomic_write_text(holdout, "".join(line for i, line in enumerate(lines) if i in held))
    return Split(train, holdout, size, len(lines) - size, seed)


def given_validation(data: Path, validation: Path, seed: int) -> Split:
    """The split when the user gives the scoring records: DATA trains, ``validation`` scores."""
    return Split(data, validation, None, len(record_lines(data)), seed)
