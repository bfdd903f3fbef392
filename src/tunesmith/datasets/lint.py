"""Quality lint: warnings about data that is valid but likely to hurt training or evaluation.

Checks exact duplicates, conflicting labels (one prompt, different answers), leakage of
validation records into training, length outliers, and whether the validation data looks
like the training data (the guide: evaluation data should match the real traffic).
Memory is a fingerprint per record plus a capped training vocabulary.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

from tunesmith.datasets.problems import Problem, ProblemLog
from tunesmith.datasets.record_view import RecordView
from tunesmith.datasets.stats import FileStats, quantile

LISTED_PER_CHECK = 20
"""Individual warnings per check and file; the rest are summed up in one line."""
OUTLIER_IQR_FENCE = 3.0
"""A record is a length outlier above Q3 + 3 x IQR (Tukey's 'far out' fence) ..."""
OUTLIER_MEDIAN_FACTOR = 4.0
"""... and above 4 x the median, so tight distributions do not flag ordinary records."""
OUTLIER_MIN_RECORDS = 10
MIN_VOCABULARY_COVERAGE = 0.6
"""Warn when less of the validation text's words occur in the training text."""
MAX_LENGTH_RATIO = 2.0
"""Warn when the median record lengths of the two sets differ by more than this factor."""
MAX_VOCABULARY = 200_000
"""Training words kept for the coverage check (bounded memory on huge files)."""
MAX_TRACKED_RECORDS = 50_000
"""Records fingerprinted for duplicate, conflict and leakage checks. Far above the 20,000
records a valid dataset may hold, it bounds memory (~200 bytes a record) on huge files."""

_WORD = re.compile(r"[^\W\d_]+")  # words of letters: numbers and ids say little about the domain


@dataclass(slots=True)
class _Seen:
    """Where a fingerprint was first seen."""

    file: str
    line: int
    training: bool
    answer_key: bytes | None = None
    copies: int = 1
    """Occurrences in its own file."""

    def where(self, file: str) -> str:
        return f"line {self.line}" if self.file == file else f"{self.file}:{self.line}"


@dataclass
class QualityLint:
    """Feed training records, then validation records, then call :meth:`finish`."""

    log: ProblemLog
    records: dict[bytes, _Seen] = field(default_factory=dict)
    prompts: dict[bytes, _Seen] = field(default_factory=dict)
    vocabulary: set[str] = field(default_factory=set)
    validation_words: int = 0
    validation_words_known: int = 0
    untracked: int = 0
    """Records past MAX_TRACKED_RECORDS, left out of the repeat checks."""
    _counts: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    _pending: dict[tuple[str, str], list[Problem]] = field(default_factory=lambda: defaultdict(list))
    """Warnings held back until :meth:`finish`, so a pattern can replace a flood of lines."""

    def _warn(self, check: str, file: str, line: int | None, where: str, message: str) -> None:
        self._counts[(check, file)] += 1
        if self._counts[(check, file)] <= LISTED_PER_CHECK:
            self._pending[(check, file)].append(Problem(file, line, where, message, "warning"))

    def add_training(self, view: RecordView, file: str, line: int) -> None:
        self._check(view, file, line, training=True)
        if len(self.vocabulary) < MAX_VOCABULARY:
            self.vocabulary.update(w.lower() for w in _WORD.findall(view.text))

    def add_validation(self, view: RecordView, file: str, line: int) -> None:
        self._check(view, file, line, training=False)
        for word in _WORD.findall(view.text):
            self.validation_words += 1
            self.validation_words_known += word.lower() in self.vocabulary

    def _check(self, view: RecordView, file: str, line: int, training: bool) -> None:
        if len(self.records) >= MAX_TRACKED_RECORDS and view.record_key not in self.records:
            self.untracked += 1
            return
        first = self.records.setdefault(view.record_key, _Seen(file, line, training))
        if first.line != line or first.file != file:
            if first.training and not training:
                self._warn(
                    "leakage", file, line, "record",
                    f"also in the training data ({first.where(file)}): validation loss will look better than it is",
                )
            else:
                first.copies += first.file == file
                self._warn("duplicate", file, line, "record", f"exact duplicate of {first.where(file)}")
            return
        if not view.labelled:
            return
        prompt = self.prompts.setdefault(view.prompt_key, _Seen(file, line, training, view.answer_key))
        if prompt.line == line and prompt.file == file:
            return
        if prompt.training and not training:
            self._warn(
                "leakage", file, line, "messages",
                f"its prompt is also in the training data ({prompt.where(file)}) with a different answer",
            )
        else:
            self._warn(
                "conflict", file, line, "messages",
                f"same prompt as {prompt.where(file)} but a different answer (conflicting labels)",
            )

    def finish(self, training: list[FileStats], validation: list[FileStats]) -> dict[str, object]:
        """Log the per-file summaries and dataset-level checks; return comparison numbers."""
        for stats in [*training, *validation]:
            self._length_outliers(stats)
        repeated = self._whole_file_repeats()
        for (check, file), problems in self._pending.items():
            if check == "duplicate" and file in repeated:
                copies, unique = repeated[file]
                self.log.warning(
                    file, None, "dataset",
                    f"every record appears {copies} times ({unique:,} unique records): a duplicated dataset; "
                    "validate the original to check it for accidental duplicates",
                )
                continue
            for problem in problems:
                self.log.add(problem)
            count = self._counts[(check, file)]
            if count > LISTED_PER_CHECK:
                self.log.warning(file, None, "dataset", f"... and {count - LISTED_PER_CHECK} more {check} warnings")
        if self.untracked:
            self.log.warning(
                training[0].file, None, "dataset",
                f"duplicate, conflict and leakage checks covered the first {MAX_TRACKED_RECORDS:,} records only "
                f"({self.untracked:,} more were not checked)",
            )
        return self._compare(training, validation)

    def _whole_file_repeats(self) -> dict[str, tuple[int, int]]:
        """Files in which every record occurs the same number (> 1) of times: ``{file: (copies, unique)}``."""
        copies: dict[str, set[int]] = defaultdict(set)
        unique: dict[str, int] = defaultdict(int)
        for seen in self.records.values():
            copies[seen.file].add(seen.copies)
            unique[seen.file] += 1
        return {
            file: (next(iter(counts)), unique[file])
            for file, counts in copies.items()
            if len(counts) == 1 and next(iter(counts)) > 1 and not self.untracked
        }

    def _length_outliers(self, stats: FileStats) -> None:
        if stats.records < OUTLIER_MIN_RECORDS:
            return
        ordered = sorted(stats.characters)
        q1, median, q3 = (quantile(ordered, q) for q in (0.25, 0.5, 0.75))
        limit = max(q3 + OUTLIER_IQR_FENCE * (q3 - q1), OUTLIER_MEDIAN_FACTOR * median)
        for line, chars in zip(stats.lines, stats.characters):
            if chars > limit:
                self._warn(
                    "length outlier", stats.file, line, "record",
                    f"unusually long: {chars:,} characters against a median of {median:,.0f} (length outlier)",
                )

    def _compare(self, training: list[FileStats], validation: list[FileStats]) -> dict[str, object]:
        train_chars = sorted(c for s in training for c in s.characters)
        valid_chars = sorted(c for s in validation for c in s.characters)
        if not train_chars or not valid_chars:
            return {}
        ratio = quantile(valid_chars, 0.5) / max(quantile(train_chars, 0.5), 1)
        coverage = self.validation_words_known / self.validation_words if self.validation_words else 1.0
        where = validation[0].file
        if not 1 / MAX_LENGTH_RATIO <= ratio <= MAX_LENGTH_RATIO:
            self.log.warning(
                where, None, "dataset",
                f"validation data looks unlike training data: its median record is {ratio:.1f}x as long "
                "(fine-tuning and evaluation data should match the real traffic)",
            )
        if coverage < MIN_VOCABULARY_COVERAGE:
            self.log.warning(
                where, None, "dataset",
                f"validation data looks unlike training data: only {coverage:.0%} of its words occur in the "
                "training data (fine-tuning and evaluation data should match the real traffic)",
            )
        return {"medianLengthRatio": round(ratio, 3), "vocabularyCoverage": round(coverage, 3)}
