"""Processes that die with their parent: a worker (and each of its torchrun ranks) must not
outlive the Ray worker that started it, or its job would run twice once resumed elsewhere.

Linux only (``prctl(PR_SET_PDEATHSIG)``); elsewhere these do nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

VARIABLE = "TUNESMITH_DIE_WITH_PARENT"
"""Set to ``1`` in a worker's environment: the worker, and every rank torchrun starts for it
(they inherit it), asks for SIGKILL when its parent dies."""
PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
"""Loaded in the parent: a forked child must not load libraries (other threads may hold the loader's locks)."""


def die_with_parent() -> None:
    """SIGKILL this process when its parent dies (and now, if the parent already has). Safe
    between fork and exec: one system call, then a check of the parent."""
    if _LIBC is None:
        return
    parent = os.getppid()
    if _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        return  # not honoured: the job's lease still ends a worker that outlives its task (more slowly)
    if os.getppid() != parent or parent == 1:  # the parent died before the request took effect
        os._exit(1)


def die_with_parent_if_asked() -> None:
    """At a worker's start: :func:`die_with_parent` when :data:`VARIABLE` says so."""
    if os.environ.get(VARIABLE) == "1":
        die_with_parent()
