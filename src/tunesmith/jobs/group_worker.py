"""Several jobs on one base model, run in one process as a group trained together.

``python -m tunesmith.jobs.group_worker --home H --job ID --job ID2 ... [--allow-path DIR ...] [--device D]``
is started by the supervisor (``serve --jobs-per-device``) for queued LoRA jobs that name the
same base model and land on the same device. Each job keeps its own :class:`JobWorker`: its row,
phases, lease, data checks, stop requests, metrics, checkpoints, published files and custom
model are exactly as if it ran alone (``multi_adapter/trainer.py`` trains each job as it would
train alone). Only the training shares a process and a base model:

- a job whose data is bad fails in its validation phase and never joins; the others go on;
- a job that finishes, stops or fails leaves the group at a step boundary and is published
  (or recorded as stopped or failed) at once, not when the last job ends;
- SIGTERM or SIGINT (the server stopping) stops every job at the end of the step in progress,
  each keeping a checkpoint, and each is queued again to resume, as a worker of its own would.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
from pathlib import Path

from tunesmith.errors import TunesmithError
from tunesmith.jobs import parent_death
from tunesmith.jobs.heartbeat import LeaseHeartbeat
from tunesmith.jobs.logs import LOG_LEVELS, configure_logging
from tunesmith.jobs.settings import DATABASE_URL_VARIABLE
from tunesmith.jobs.store import JobStore
from tunesmith.jobs.worker import JobFailed, JobWorker
from tunesmith.multi_adapter import JobOutcome, JobsTogether
from tunesmith.training.stopping import stop_on_signals

log = logging.getLogger("tunesmith.service.jobs")


class GroupWorker:
    """The jobs ``job_ids``, each through its :class:`JobWorker`, trained in one :class:`JobsTogether`."""

    def __init__(self, store: JobStore, home: Path, job_ids: list[str], save_every: int | None = None, device: str = "auto",
                 allowed_roots: tuple[str, ...] = (), max_memory_gb: float | None = None):
        """``max_memory_gb``: the group's budget on its GPU (the slots its jobs hold)."""
        self.workers = {job_id: JobWorker(store, home, job_id, save_every, device, allowed_roots, max_memory_gb)
                        for job_id in job_ids}
        self.group = JobsTogether()

    def execute(self) -> None:
        # Every job begins at once (its row says this process runs it), so the supervisor never
        # takes one for a worker that has not begun while the others validate.
        specs = {job_id: worker.start() for job_id, worker in self.workers.items()}
        for job_id, worker in self.workers.items():
            if specs[job_id] is not None:
                self._join(job_id, worker, specs[job_id])
        if not self.group.jobs:
            return
        log.info("jobs %s train together on one base model (pid %d)", ", ".join(self.group.jobs), os.getpid())
        try:
            with stop_on_signals(self._stop_all):
                self.group.run()
        except Exception as exc:  # the shared forward or backward failed (out of memory...): every job left fails, saying why
            message = f"{type(exc).__name__} while training together with {len(self.group.jobs) - 1} other job(s): {exc}"
            for job_id in list(self.group.jobs):
                self.workers[job_id].fail(message)
            raise

    def _stop_all(self) -> None:
        for name in list(self.group.jobs):
            self.group.stop(name)

    def _join(self, job_id: str, worker: JobWorker, spec) -> None:
        """Validation and data processing of one job, then its adapter joins the group (or it fails alone)."""
        try:
            config = worker.prepare_training(spec)
            if config is None:  # stopped during data processing
                return
            self.group.add(config, on_step=worker._on_step, stop=worker.stop_requested, name=job_id,
                           on_start=worker._on_start, on_leave=lambda outcome: self._left(worker, spec, outcome))
        except JobFailed as exc:
            worker.fail(str(exc))
        except TunesmithError as exc:
            worker.fail(str(exc))
        except Exception as exc:  # anything else: a clear, bounded message, and the others go on
            worker.fail(f"{type(exc).__name__}: {exc}")

    def _left(self, worker: JobWorker, spec, outcome: JobOutcome) -> None:
        if outcome.error is not None:
            error = outcome.error
            worker.fail(str(error) if isinstance(error, (JobFailed, TunesmithError)) else f"{type(error).__name__}: {error}")
            return
        try:
            worker.finish_training(spec, outcome.result)
        except JobFailed as exc:
            worker.fail(str(exc))
        except Exception as exc:  # publishing one job's outputs fails that job alone
            worker.fail(f"{type(exc).__name__}: {exc}")


def main() -> None:
    parent_death.die_with_parent_if_asked()
    parser = argparse.ArgumentParser(description="Run several tunesmith customization jobs on one base model together.")
    parser.add_argument("--home", required=True)
    parser.add_argument("--job", action="append", required=True, help="A job's id (repeat for each job of the group).")
    parser.add_argument("--allow-path", action="append", default=[], help="A folder the jobs' data and outputs may be in (repeatable).")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--save-every", type=int, default=None)
    parser.add_argument("--max-memory", type=float, default=None, help="The group's memory budget in GB (its slots of a GPU).")
    parser.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    parser.add_argument("--lease-seconds", type=float, default=None)
    args = parser.parse_args()
    url = os.environ.get(DATABASE_URL_VARIABLE)
    if not url:
        parser.error(f"{DATABASE_URL_VARIABLE} is not set: the supervisor passes the database URL there")
    configure_logging(args.log_level)
    store = JobStore(url, migrate=False)
    with contextlib.ExitStack() as leases:
        if args.lease_seconds:
            for job_id in args.job:
                leases.enter_context(LeaseHeartbeat(store, job_id, args.lease_seconds))
        GroupWorker(store, Path(args.home), args.job, args.save_every, args.device, tuple(args.allow_path), args.max_memory).execute()


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()
