"""Turn the errors a user can act on into a message and an exit code, never a traceback.

Only :class:`~tunesmith.errors.TunesmithError` and ``OSError`` (a file that cannot be read
or written) are caught; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tunesmith.cli.render import fail, print_problems
from tunesmith.datasets import DataError
from tunesmith.errors import TunesmithError
from tunesmith.hyperparameters import HyperparameterError


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except DataError as exc:
        print_problems(exc.report.log)
        fail(f"the data is not valid ({exc.report.log.error_count} error(s)); nothing was done")
    except HyperparameterError as exc:
        fail("\n".join(p.message for p in exc.problems))
    except TunesmithError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(os_error_message(exc))


def os_error_message(exc: OSError) -> str:
    """``FILE: reason``, e.g. ``out/model: Permission denied``; the bare message when no file is named."""
    reason = exc.strerror or str(exc)
    return f"{exc.filename}: {reason}" if exc.filename else reason
