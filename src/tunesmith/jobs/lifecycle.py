"""Every transition between a job's statuses (:mod:`tunesmith.statuses`), in one place.

    InProgress --(stop requested, not started)----------------> Stopped
    InProgress --(stop requested, worker running)--> Stopping --> Stopped
    InProgress --(worker finished)----------------------------> Completed
    InProgress --(bad data, crash, no checkpoint to resume)---> Failed
    InProgress --(worker interrupted, checkpoint exists)------> InProgress (queued again)

Each job also has three phases (``statusDetails``), run in order:
validationDetails -> dataProcessingDetails -> trainingDetails, each NotStarted ->
InProgress -> Completed (or Stopped / Failed with the job).

The functions change a :class:`~tunesmith.jobs.store.Job` row in memory; the caller
commits (:func:`claim` and :func:`renew` are atomic UPDATEs and commit themselves). A job that
has ended never changes again: its functions raise :class:`TransitionError`. The routes, the
worker and the supervisor all go through them.

Several servers may share one database. A claim records the node, the server and a lease; the
server and the job's worker renew it every third of its length, and once it lapses (the server
and its workers died, or lost the database) any server takes the job over: it resumes from
the last checkpoint, as after a restart.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import func, update
from sqlalchemy.orm import Session

from tunesmith.jobs.store import Job, utcnow
from tunesmith.statuses import ACTIVE_JOB_STATUSES, JobStatus, PhaseStatus

MAX_FAILURE_MESSAGE = 2048


class Phase(str, enum.Enum):
    VALIDATION = "validationDetails"
    DATA_PROCESSING = "dataProcessingDetails"
    TRAINING = "trainingDetails"


@dataclass(frozen=True)
class Claimant:
    """A server claiming jobs: ``server_id`` on machine ``node``, holding each job for ``lease`` unless renewed."""

    node: str
    server_id: str
    lease: dt.timedelta


class TransitionError(Exception):
    """A transition the job's status does not allow (a caller's mistake or a lost race)."""


def timestamp() -> str:
    from tunesmith.jobs.arns import timestamp as wire_timestamp

    return wire_timestamp(utcnow())


def new_phases() -> dict[str, dict[str, str]]:
    stamp = timestamp()
    return {p.value: {"status": PhaseStatus.NOT_STARTED.value, "creationTime": stamp, "lastModifiedTime": stamp} for p in Phase}


def _set_phases(job: Job, changes: dict[Phase, PhaseStatus]) -> None:
    stamp = timestamp()
    phases = {k: dict(v) for k, v in job.phases.items()}
    for phase, status in changes.items():
        phases[phase.value] = {**phases[phase.value], "status": status.value, "lastModifiedTime": stamp}
    job.phases = phases


def _finish_open_phases(job: Job, status: PhaseStatus, include_not_started: bool = True) -> None:
    open_ = (PhaseStatus.IN_PROGRESS, PhaseStatus.NOT_STARTED) if include_not_started else (PhaseStatus.IN_PROGRESS,)
    _set_phases(job, {Phase(k): status for k, v in job.phases.items() if v["status"] in open_})


def _touch(job: Job) -> None:
    job.modified = utcnow()


def _release(job: Job) -> None:
    """No worker holds the job any more (a server may claim it again while it is active)."""
    job.worker_pid = job.worker_node = job.server_id = job.lease_expires = None


def _require_active(job: Job, what: str) -> None:
    """A job that already ended (Completed, Failed, Stopped) never changes again."""
    if job.status not in ACTIVE_JOB_STATUSES:
        raise TransitionError(f"job {job.name} is {job.status}: it cannot {what}")


def enter_phase(job: Job, phase: Phase) -> None:
    """``phase`` starts; the phases before it are complete."""
    _require_active(job, f"enter {phase.value}")
    order = list(Phase)
    changes = {p: PhaseStatus.COMPLETED for p in order[: order.index(phase)]}
    changes[phase] = PhaseStatus.IN_PROGRESS
    _set_phases(job, changes)
    _touch(job)


def request_stop(job: Job) -> None:
    """StopModelCustomizationJob: a job nobody runs stops now; a running one is asked to."""
    if job.status != JobStatus.IN_PROGRESS:
        raise TransitionError(f"job {job.name} is {job.status}; only an {JobStatus.IN_PROGRESS} job can be stopped")
    job.stop_requested = True
    if job.worker_pid is None:
        stopped(job)
    else:
        job.status = JobStatus.STOPPING
        _touch(job)


def stopped(job: Job) -> None:
    _require_active(job, "stop")
    job.status, job.ended = JobStatus.STOPPED, utcnow()
    _release(job)
    _finish_open_phases(job, PhaseStatus.STOPPED)
    _touch(job)


def failed(job: Job, message: str) -> None:
    _require_active(job, "fail")
    job.status, job.ended = JobStatus.FAILED, utcnow()
    _release(job)
    job.failure_message = message[:MAX_FAILURE_MESSAGE]
    _finish_open_phases(job, PhaseStatus.FAILED, include_not_started=False)  # phases never reached stay NotStarted
    _touch(job)


def completed(job: Job, model_arn: str) -> None:
    _require_active(job, "complete")
    job.status, job.output_model_arn, job.ended = JobStatus.COMPLETED, model_arn, utcnow()
    _release(job)
    _set_phases(job, {p: PhaseStatus.COMPLETED for p in Phase})
    _touch(job)


def claim(session: Session, job: Job, pid: int, details: dict, by: Claimant) -> bool:
    """Give a queued job to the worker process ``pid`` of ``by``, atomically: False (nothing
    changed) when the job stopped, or another claim (any server's) won, since it was read."""
    now = utcnow()
    claimed = session.execute(
        update(Job).where(Job.id == job.id, Job.status == JobStatus.IN_PROGRESS, Job.worker_pid.is_(None))
        .values(worker_pid=pid, worker_node=by.node, server_id=by.server_id, lease_expires=now + by.lease, details=details,
                modified=now).execution_options(synchronize_session=False)
    ).rowcount == 1
    session.commit()
    return claimed


LAUNCHING_PID = 0
"""The ``worker_pid`` of a job claimed while its worker starts (no process has that pid)."""


def launched(session: Session, job_id: str, pid: int) -> None:
    """Record the pid of the worker just started for a job claimed with :data:`LAUNCHING_PID`
    (unless the worker already recorded its own, or the job ended meanwhile)."""
    session.execute(update(Job).where(Job.id == job_id, Job.worker_pid == LAUNCHING_PID).values(worker_pid=pid)
                    .execution_options(synchronize_session=False))
    session.commit()


def renew(session: Session, job_ids: Collection[str], server_id: str, lease: dt.timedelta) -> int:
    """Extend the leases ``server_id`` holds on ``job_ids``; returns how many it still holds
    (fewer: a job ended, or another server took it over after the lease lapsed)."""
    if not job_ids:
        return 0
    held = session.execute(
        update(Job).where(Job.id.in_(list(job_ids)), Job.server_id == server_id, Job.status.in_(ACTIVE_JOB_STATUSES))
        .values(lease_expires=utcnow() + lease).execution_options(synchronize_session=False)
    ).rowcount
    session.commit()
    return held


def worker_started(job: Job, pid: int | None) -> None:
    """The worker process began (``pid`` None: a rank under torchrun, whose agent the supervisor watches)."""
    _require_active(job, "start a worker")
    if pid is not None:
        job.worker_pid = pid
    job.attempts = (job.attempts or 0) + 1
    _touch(job)


def requeued(job: Job) -> None:
    """The worker went away with a checkpoint behind it: the next worker resumes from it."""
    _require_active(job, "be queued again")
    _release(job)
    _touch(job)


def began(job: Job) -> bool:
    """Whether a worker ever took the job up (a phase left NotStarted)."""
    return any(phase["status"] != PhaseStatus.NOT_STARTED for phase in (job.phases or {}).values())


def interrupted(job: Job, has_checkpoint: bool, reason: str) -> None:
    """The worker vanished (crash, kill, restart): stop, resume or fail, whichever fits. A job
    no worker took up yet (its server died between claim and start) loses nothing: queued again."""
    if job.status == JobStatus.STOPPING or job.stop_requested:
        stopped(job)
    elif has_checkpoint or not began(job):
        requeued(job)
    else:
        failed(job, reason)


def release_unbegun(session: Session, job_id: str, server_id: str, attempts: int) -> bool:
    """A stopping server gives back a job it claimed whose worker never began (``attempts``
    unchanged since the claim); False when the worker began, or the job is no longer its own."""
    released = session.execute(
        update(Job).where(Job.id == job_id, Job.server_id == server_id, Job.status == JobStatus.IN_PROGRESS,
                          func.coalesce(Job.attempts, 0) == attempts)
        .values(worker_pid=None, worker_node=None, server_id=None, lease_expires=None, modified=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount == 1
    session.commit()
    return released
