"""Turn the errors a user can act on into a message and an exit code, never a traceback."""

from __future__ import annotations

import contextlib
from typing import Iterator

from tunesmith.cli.render import fail, print_problems
from tunesmith.hyperparameters import HyperparameterError
from tunesmith.models.config import ModelConfigError
from tunesmith.models.gguf_cache import ModelUnavailableError
from tunesmith.training.checkpoints import CheckpointError
from tunesmith.training.examples import TemplateError
from tunesmith.training.loop import DataError, OutputError


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except DataError as exc:
        print_problems(exc.report.log)
        fail(f"the data is not valid ({exc.report.log.error_count} error(s)); nothing was done")
    except HyperparameterError as exc:
        fail("\n".join(p.message for p in exc.problems))
    except (ModelUnavailableError, ModelConfigError, OutputError, CheckpointError, TemplateError) as exc:
        fail(str(exc))
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        fail(f"{exc.strerror or exc}{where}")
    except ValueError as exc:
        fail(str(exc))
