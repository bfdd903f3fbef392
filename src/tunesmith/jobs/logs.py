"""Where tunesmith's server and workers log: ``tunesmith serve --log-level``.

Everything tunesmith logs goes through stdlib ``logging`` under the ``tunesmith`` logger
(``tunesmith.access`` for requests, ``tunesmith.service.jobs`` for job lifecycle events),
written to stderr by :func:`configure_logging`. Database URLs reach a log only through
:func:`safe_database_url`, their password masked.
"""

from __future__ import annotations

import logging
import sys

LOG_LEVELS = ("debug", "info", "warning", "error")
"""The values of ``--log-level``."""
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

def configure_logging(level: str = "info") -> None:
    """Send the ``tunesmith`` loggers to stderr at ``level`` (one of :data:`LOG_LEVELS`).
    Calling it again changes the level and keeps a single handler."""
    if level not in LOG_LEVELS:
        raise ValueError(f"log level '{level}' is not one of {', '.join(LOG_LEVELS)}")
    logger = logging.getLogger("tunesmith")
    logger.setLevel(level.upper())
    logger.propagate = False  # uvicorn or a host application may configure the root logger too: one line each
    if not any(getattr(h, "tunesmith", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.tunesmith = True  # type: ignore[attr-defined]
        logger.addHandler(handler)


def safe_database_url(url: str | None) -> str:
    """A database URL fit for a log line: the password masked (``postgresql://u:***@h/db``)."""
    from sqlalchemy.engine import make_url

    if not url:
        return ""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy reads: show only its scheme
        return url.split(":", 1)[0] + ":..."
