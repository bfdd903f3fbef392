"""Per-file statistics: records, messages and characters per record."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

from tunesmith.datasets.record_view import RecordView


def quantile(sorted_values: list[int] | array, q: float) -> float:
    """Linear-interpolated quantile of already sorted values (numpy's default method)."""
    if not sorted_values:
        raise ValueError("no values")
    position = (len(sorted_values) - 1) * q
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def distribution(values: array) -> dict[str, float] | None:
    """min / median / p95 / max of a column, or None when it is empty."""
    if not values:
        return None
    ordered = sorted(values)
    return {
        "min": ordered[0],
        "median": quantile(ordered, 0.5),
        "p95": quantile(ordered, 0.95),
        "max": ordered[-1],
    }


@dataclass
class FileStats:
    """Accumulates one file's numbers in compact arrays (4 bytes a record and column)."""

    file: str
    lines: array = field(default_factory=lambda: array("I"))
    characters: array = field(default_factory=lambda: array("I"))
    messages: array = field(default_factory=lambda: array("I"))
    labelled: int = 0
    prompt_only: int = 0

    def add(self, line: int, view: RecordView) -> None:
        self.lines.append(line)
        self.characters.append(view.characters)
        self.messages.append(view.messages)
        if view.messages:
            if view.labelled:
                self.labelled += 1
            else:
                self.prompt_only += 1

    @property
    def records(self) -> int:
        return len(self.lines)

    def summary(self) -> dict[str, object]:
        out: dict[str, object] = {
            "file": self.file,
            "records": self.records,
            "charactersPerRecord": distribution(self.characters),
        }
        if any(self.messages):
            out["messagesPerRecord"] = distribution(self.messages)
            out["labelled"] = self.labelled
            out["promptOnly"] = self.prompt_only
        return out
