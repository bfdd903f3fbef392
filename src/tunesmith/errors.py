"""The base of every error a user can act on.

A :class:`TunesmithError`'s message says what is wrong and what to do, e.g.
``data.jsonl: is not a regular file (a FIFO)``; the command line prints it as one line,
without a traceback. Any other exception is a bug in tunesmith and keeps its traceback.

Errors that were ``ValueError``s before this base existed keep ``ValueError`` as a second
base, so ``except ValueError`` still catches them.
"""

from __future__ import annotations


class TunesmithError(Exception):
    """An error the user can act on; its message is shown without a traceback."""


class ConfigError(TunesmithError, ValueError):
    """A run's configuration (``TrainConfig``, ``DistillConfig``) holds a value it cannot use."""
