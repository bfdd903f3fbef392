"""The hosted service's metric files, plus a live events stream another process can tail.

- ``training_artifacts/step_wise_training_metrics.csv``: step_number, epoch_number,
  training_loss, perplexity (one row per optimizer step).
- ``validation_artifacts/post_fine_tuning_validation/validation_metrics.csv``: step_number,
  epoch_number, validation_loss, perplexity (at each epoch end, and every N steps if asked).
- ``events.jsonl``: one JSON object per line, flushed as it happens.

Step numbers. Everywhere in tunesmith optimizer steps count from 1: step N is the N-th
step (``StepInfo.step``, ``step`` in events, ``checkpoints/step-N``, the schedule). The two
CSVs alone count from 0, because the hosted service's files do and tools written for them
read these: their ``step_number`` is N - 1. The conversion happens here and nowhere else;
callers pass N. Epochs count from 0 everywhere.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

TRAINING_CSV = Path("training_artifacts") / "step_wise_training_metrics.csv"
VALIDATION_CSV = Path("validation_artifacts") / "post_fine_tuning_validation" / "validation_metrics.csv"
EVENTS = Path("events.jsonl")
TRAINING_COLUMNS = ["step_number", "epoch_number", "training_loss", "perplexity"]
VALIDATION_COLUMNS = ["step_number", "epoch_number", "validation_loss", "perplexity"]


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))  # exp(50) is already meaningless; avoid overflow


@dataclass
class MetricsWriter:
    """Writes the metric files under ``folder``; rows already recorded are kept on resume.

    With ``enabled=False`` (ranks other than 0 of a data-parallel run) the rows are kept in
    memory and nothing is written: one process owns the files."""

    folder: Path
    enabled: bool = True
    training_rows: list[list] = field(default_factory=list)
    validation_rows: list[list] = field(default_factory=list)

    def start(self, training_rows: list[list] | None = None, validation_rows: list[list] | None = None) -> None:
        """(Re)write both CSVs from the given history (a resumed run restores its rows)."""
        self.training_rows = [list(r) for r in training_rows or []]
        self.validation_rows = [list(r) for r in validation_rows or []]
        self._rewrite(TRAINING_CSV, TRAINING_COLUMNS, self.training_rows)
        self._rewrite(VALIDATION_CSV, VALIDATION_COLUMNS, self.validation_rows)

    def _rewrite(self, relative: Path, columns: list[str], rows: list[list]) -> None:
        if not self.enabled:
            return
        path = self.folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            writer.writerows(rows)

    def _append(self, relative: Path, row: list) -> None:
        if not self.enabled:
            return
        with (self.folder / relative).open("a", newline="") as handle:
            csv.writer(handle).writerow(row)

    def training(self, step: int, epoch: int, loss: float) -> None:
        """Record optimizer step ``step`` (from 1) as row ``step - 1``."""
        row = [step - 1, epoch, round(loss, 6), round(perplexity(loss), 6)]
        self.training_rows.append(row)
        self._append(TRAINING_CSV, row)

    def validation(self, step: int, epoch: int, loss: float) -> None:
        """The validation loss after optimizer step ``step`` (from 1), as row ``step - 1``."""
        row = [step - 1, epoch, round(loss, 6), round(perplexity(loss), 6)]
        self.validation_rows.append(row)
        self._append(VALIDATION_CSV, row)

    def event(self, kind: str, **fields) -> None:
        if not self.enabled:
            return
        record = {"event": kind, "time": round(time.time(), 3), **fields}
        with (self.folder / EVENTS).open("a") as handle:
            handle.write(json.dumps(record) + "\n")
