"""Problems found in a dataset, reported as ``FILE:LINE: field: message``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["error", "warning"]

DEFAULT_MAX_LISTED = 100
"""How many problems of each severity are kept and listed; the rest are only counted."""


@dataclass(frozen=True)
class Problem:
    """One error or warning, located as precisely as the input allows."""

    file: str
    """The path as the user gave it."""
    line: int | None
    """1-based line number; None for a problem with the whole file or dataset."""
    field: str
    """Where in the record: ``messages[2].role``; ``record`` for the line as a whole;
    ``file`` or ``dataset`` above that."""
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.field}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "field": self.field, "message": self.message}


@dataclass
class ProblemLog:
    """Collects problems in bounded memory: keeps the first ``max_listed`` of each severity
    and counts the rest, so a 100 MB file full of mistakes cannot exhaust memory."""

    max_listed: int = DEFAULT_MAX_LISTED
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    error_count: int = 0
    warning_count: int = 0

    def add(self, problem: Problem) -> None:
        if problem.severity == "error":
            self.error_count += 1
            if len(self.errors) < self.max_listed:
                self.errors.append(problem)
        else:
            self.warning_count += 1
            if len(self.warnings) < self.max_listed:
                self.warnings.append(problem)

    def error(self, file: str, line: int | None, where: str, message: str) -> None:
        self.add(Problem(file, line, where, message, "error"))

    def warning(self, file: str, line: int | None, where: str, message: str) -> None:
        self.add(Problem(file, line, where, message, "warning"))

    @property
    def errors_omitted(self) -> int:
        return self.error_count - len(self.errors)

    @property
    def warnings_omitted(self) -> int:
        return self.warning_count - len(self.warnings)
