"""SIGINT and SIGTERM as a stop request: the loop stops before its next micro-batch."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def stop_on_signals(request_stop: Callable[[], None], enabled: bool = True) -> Iterator[None]:
    """While inside, SIGINT/SIGTERM call ``request_stop`` instead of ending the process
    (the loop then stops before its next micro-batch; see ``loop.TrainingRun``).

    ``enabled=False`` under torchrun: its agent owns the ranks' signals (it SIGTERMs the
    survivors when one rank fails, and restarts them with ``--max-restarts``); a rank that
    turned SIGTERM into a graceful stop lingered in a dead collective and the restarted ranks
    could not connect. There the last checkpoint is what a signal leaves behind. Outside the
    main thread signals cannot be handled, and nothing changes.
    """
    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM) if enabled else ():
            previous[sig] = signal.signal(sig, lambda signum, frame: request_stop())
    except ValueError:  # not the main thread: no signal handling
        previous = {}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
