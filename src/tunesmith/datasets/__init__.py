"""Dataset formats, validation and quality lint."""

from tunesmith.datasets.problems import Problem, ProblemLog
from tunesmith.datasets.validate import DataError, DatasetKind, ValidationReport, validate_dataset

__all__ = ["DataError", "DatasetKind", "Problem", "ProblemLog", "ValidationReport", "validate_dataset"]
