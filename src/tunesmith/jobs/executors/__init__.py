"""Where a job's worker runs: ``tunesmith serve --executor local`` (the default) or ``ray``.

The supervisor (:mod:`tunesmith.jobs.supervisor`) decides *which* jobs run, claims them and
watches them; an executor decides *where* and *how* their worker starts:

- :mod:`~tunesmith.jobs.executors.local`: a worker process on this machine, holding CUDA
  devices from ``--devices`` (torchrun when a job has several). No other service needed.
- :mod:`~tunesmith.jobs.executors.ray_tasks`: a Ray task on a Ray cluster, with the job's
  GPUs and CPUs as its resource request; the same worker runs inside it.

Either way the worker is the same program (:mod:`tunesmith.jobs.worker`): it reads and
writes the job's row in the shared database and its folder under ``home``, so stop requests,
phases, live metrics and events work the same with both.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from tunesmith.jobs.store import Job

EXECUTORS = ("local", "ray")


class WorkerHandle(Protocol):
    """A started worker, as the supervisor sees it (``subprocess.Popen`` is one)."""

    pid: int
    """Recorded on the job once started (:func:`~tunesmith.jobs.lifecycle.launched`): a local
    worker's process, checked after a restart; a Ray task's server, until its worker records its own."""

    def poll(self) -> int | None:
        """None while it runs, then its exit code."""

    def terminate(self) -> None:
        """Ask it to stop now (a worker then queues its job again, to resume from the checkpoint)."""

    def kill(self) -> None:
        """End it at once."""

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for it to end; its exit code."""


class Executor(Protocol):
    name: str

    def problem(self, wanted: int) -> str | None:
        """Why a job asking for ``wanted`` devices can never run here, or None."""

    def take(self, wanted: int, busy: Collection[str]) -> list[str] | None:
        """The devices a job gets, given those ``busy`` in other jobs of this server (a device
        once per job holding it); None: wait."""

    def room(self, device: str, busy: Collection[str]) -> int:
        """How many more one-device jobs ``device`` takes now (those beyond one may train in a group)."""

    def launch(self, job_id: str, devices: list[str], ranks: int) -> WorkerHandle:
        """Start the worker of job ``job_id``, which this server has just claimed."""

    def alive(self, job: Job) -> bool:
        """Whether the worker of ``job``, claimed on this node but not started by this server
        (it outlived an earlier one, or another server on this node started it), still runs."""

    def lost(self, handle: WorkerHandle) -> str | None:
        """Why an ended worker's host went away under it (not the worker's own failure: its job
        may resume from its checkpoint), or None."""

    def error(self, handle: WorkerHandle) -> str | None:
        """What went wrong, when an ended worker's exit code does not say it (None: it does)."""

    def describe(self, handle: WorkerHandle, devices: list[str]) -> str:
        """The worker, for the server's log: ``worker pid 123 on cuda:0``."""

    def shutdown(self, handles: list[WorkerHandle]) -> bool:
        """The server is stopping: what becomes of the workers it started. True when they were
        asked to stop (the supervisor then waits, a while, for them to give their jobs back)."""

    def close(self) -> None:
        """Last, once the workers are settled: let go of what the executor holds (a Ray connection)."""


def make_executor(settings) -> Executor:
    """The executor ``settings.executor`` names (a Ray one connects to its cluster now)."""
    if settings.executor == "ray":
        from tunesmith.jobs.executors.ray_tasks import RayExecutor

        return RayExecutor(settings)
    from tunesmith.jobs.executors.local import LocalExecutor

    return LocalExecutor(settings)
