"""Validate a training set (and its validation sets) before any compute is spent.

One streaming pass per file: format errors, record rules for the dataset kind, the hosted
service's size limits, and the quality lint. Everything is collected, nothing stops early
except a file that cannot be JSON Lines at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from tunesmith import guide
from tunesmith.datasets.conversation import check_conversation
from tunesmith.datasets.jsonl import read_jsonl
from tunesmith.datasets.lint import QualityLint
from tunesmith.datasets.pretraining import check_text_record
from tunesmith.datasets.problems import DEFAULT_MAX_LISTED, ProblemLog
from tunesmith.datasets.record_view import RecordView
from tunesmith.datasets.stats import FileStats
from tunesmith.errors import TunesmithError


class DatasetKind(str, Enum):
    """What the records are for, which decides the record rules."""

    FINE_TUNING = "fine-tuning"
    """Conversations ending with the assistant's answer."""
    PRETRAINING = "pretraining"
    """Continued pre-training: ``{"text": ...}``."""
    DISTILLATION = "distillation"
    """Conversations that may stop after the user turn (prompts for a teacher)."""


ProgressCallback = Callable[[int], None]
"""Called with the number of bytes read since the last call."""


@dataclass
class ValidationReport:
    """Everything ``tunesmith validate`` prints."""

    kind: DatasetKind
    training: FileStats
    validation: list[FileStats]
    log: ProblemLog
    comparison: dict[str, object] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.log.error_count == 0

    @property
    def records(self) -> int:
        """Valid records in training plus validation files."""
        return self.training.records + sum(s.records for s in self.validation)

    def as_dict(self) -> dict[str, object]:
        return {
            "valid": self.valid,
            "kind": self.kind.value,
            "records": self.records,
            "errors": [p.as_dict() for p in self.log.errors],
            "warnings": [p.as_dict() for p in self.log.warnings],
            "errorCount": self.log.error_count,
            "warningCount": self.log.warning_count,
            "stats": {
                "records": self.records,
                "training": self.training.summary(),
                "validation": [s.summary() for s in self.validation],
                "comparison": self.comparison,
            },
        }


class DataError(TunesmithError, ValueError):
    """The data failed validation; ``report`` holds every problem."""

    def __init__(self, report: ValidationReport):
        self.report = report
        super().__init__(f"{report.log.error_count} error(s) in the data")


def _check_record(kind: DatasetKind, record: dict, file: str, line: int, log: ProblemLog) -> RecordView | None:
    if kind is DatasetKind.PRETRAINING:
        return check_text_record(record, file, line, log)
    return check_conversation(record, file, line, log, allow_prompt_only=kind is DatasetKind.DISTILLATION)


def _read_file(
    path: Path, kind: DatasetKind, log: ProblemLog, add: Callable[[RecordView, str, int], None],
    on_progress: ProgressCallback | None,
) -> tuple[FileStats, int]:
    name = str(path)
    stats = FileStats(name)
    parsed = 0
    for item in read_jsonl(path, name, log, on_progress):
        parsed += 1
        view = _check_record(kind, item.value, name, item.line, log)
        if view is not None:
            stats.add(item.line, view)
            add(view, name, item.line)
    return stats, parsed


def _check_limits(kind: DatasetKind, training: Path, parsed: int, prompts: int, log: ProblemLog) -> None:
    where = str(training)
    if parsed < guide.MIN_RECORDS:
        log.error(where, None, "dataset", f"{parsed} records in training plus validation; at least {guide.MIN_RECORDS} are required")
    elif parsed > guide.MAX_RECORDS:
        log.error(where, None, "dataset", f"{parsed:,} records in training plus validation; at most {guide.MAX_RECORDS:,} are allowed")
    elif parsed < guide.RECOMMENDED_MIN_RECORDS:
        log.warning(where, None, "dataset", f"{parsed} records: {guide.RECOMMENDED_MIN_RECORDS}+ recommended")
    if kind is DatasetKind.DISTILLATION and prompts > guide.MAX_DISTILLATION_PROMPTS:
        log.error(where, None, "dataset", f"{prompts:,} prompts; distillation takes at most {guide.MAX_DISTILLATION_PROMPTS:,}")


def validate_dataset(
    training: str | Path,
    validation: Sequence[str | Path] = (),
    kind: DatasetKind | str = DatasetKind.FINE_TUNING,
    *,
    max_listed: int = DEFAULT_MAX_LISTED,
    on_progress: ProgressCallback | None = None,
    check_limits: bool = True,
) -> ValidationReport:
    """Validate ``training`` and any ``validation`` files; never raises for bad data.

    ``check_limits=False`` skips the hosted service's record counts (for evaluation or
    generation data, which is not a training set).
    """
    kind = DatasetKind(kind)
    log = ProblemLog(max_listed=max_listed)
    lint = QualityLint(log)
    training_path = Path(training)
    train_stats, parsed = _read_file(training_path, kind, log, lint.add_training, on_progress)
    valid_stats = []
    if len(validation) > guide.MAX_VALIDATION_FILES:
        log.error(str(training_path), None, "dataset", f"{len(validation)} validation files; at most {guide.MAX_VALIDATION_FILES} are allowed")
    for path in validation:
        stats, count = _read_file(Path(path), kind, log, lint.add_validation, on_progress)
        valid_stats.append(stats)
        parsed += count
    prompts = train_stats.prompt_only + sum(s.prompt_only for s in valid_stats)
    if check_limits and (parsed or not log.error_count):  # a missing file needs no "0 records" on top
        _check_limits(kind, training_path, parsed, prompts, log)
    comparison = lint.finish([train_stats], valid_stats)
    return ValidationReport(kind, train_stats, valid_stats, log, comparison)
