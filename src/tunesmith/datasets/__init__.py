"""Dataset formats, validation and quality lint."""

from tunesmith.datasets.problems import Problem, ProblemLog
from tunesmith.datasets.validate import DatasetKind, ValidationReport, validate_dataset

__all__ = ["DatasetKind", "Problem", "ProblemLog", "ValidationReport", "validate_dataset"]
