"""Starts workers for queued jobs, watches them, and recovers jobs a crash or restart interrupted.

Workers are separate processes, so a job that crashes or is killed cannot take the API
down. Where they run is the executor's business (:mod:`tunesmith.jobs.executors`): on this
machine with the devices of ``--devices`` (the default), or as tasks on a Ray cluster. At
start-up, a job whose worker is gone is resumed from its last checkpoint (or failed with a
message saying why, when it has none); a job that was stopping is stopped. A worker whose
host went away under it (a Ray worker or node died) is resumed the same way, at most
``MAX_ATTEMPTS`` times in all. Every status change goes through :mod:`tunesmith.jobs.lifecycle`.

Several servers may share one PostgreSQL database (and a ``home`` on a shared filesystem).
Each claims queued jobs atomically and holds them under a lease it renews with its workers; a
pid is only checked by servers on the job's node (``node_name``). When a lease lapses (its
server and workers died, or lost the database), any server takes the job over as above.
Workers find the database URL in ``TUNESMITH_DATABASE_URL``, never on their command line.

Each event of a job's life it sees (started, completed, failed, stopped, worker died,
queued again) is logged on ``tunesmith.service.jobs``, one line each, in the server's log.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import secrets
import threading
import time

from sqlalchemy import or_, select

from tunesmith.jobs import lifecycle
from tunesmith.jobs.executors import Executor, WorkerHandle, make_executor
from tunesmith.jobs.layout import JobFolder
from tunesmith.jobs.settings import ServiceSettings
from tunesmith.jobs.store import Job, JobStore, utcnow
from tunesmith.kinds import CustomizationKind
from tunesmith.statuses import ACTIVE_JOB_STATUSES, JobStatus
from tunesmith.training.checkpoints import latest_checkpoint

log = logging.getLogger("tunesmith.service.jobs")
POLL_SECONDS = 0.5
NO_CHECKPOINT = ("the worker process stopped before the first checkpoint (server restart or crash); "
                 "nothing could be resumed: create the job again")
SHUTDOWN_WAIT_SECONDS = 60.0
"""How long a stopping server waits for the workers it asked to stop to give their jobs back."""
KILL_WAIT_SECONDS = 10.0
"""How long the supervisor waits for a worker it killed to end."""
QUEUE_SLACK = 8
"""Queued jobs read per round beyond the free slots (some may be skipped: bad device counts, being reaped)."""
MAX_ATTEMPTS = 4
"""A job whose worker's host went away is resumed from its checkpoint until it has started this many times."""
NO_CHECKPOINT_LAPSED = ("the server running the job stopped renewing its lease (it died or lost the database) before "
                        "the first checkpoint; nothing could be resumed: create the job again")


def first_line(message: str | None) -> str:
    lines = (message or "").strip().splitlines() or [""]
    return lines[0] + (f" (and {len(lines) - 1} more line(s) in the job's failureMessage)" if len(lines) > 1 else "")


def log_outcome(job: Job, pid: int | None, why: str = "") -> None:
    """One line for where a job stands after its worker ended (or vanished)."""
    if job.status == JobStatus.COMPLETED:
        log.info("job %s completed: model %s", job.name, job.output_model_arn)
    elif job.status == JobStatus.FAILED:
        log.info("job %s failed: %s", job.name, first_line(job.failure_message))
    elif job.status == JobStatus.STOPPED:
        log.info("job %s stopped%s", job.name, why)
    elif job.status in ACTIVE_JOB_STATUSES and job.worker_pid is None:
        log.info("job %s queued again to resume from its last checkpoint%s (worker pid %s ended)", job.name, why, pid)


def resumable(job: Job, home) -> bool:
    """A checkpoint to resume from: in the job's folder here, or on S3 (any node's worker can fetch it)."""
    return latest_checkpoint(JobFolder(home, job.id).run) is not None or any("s3Uri" in c for c in job.checkpoints or [])


def groupable(job: Job) -> bool:
    """A job that may train in a group: one device, and no teacher phase."""
    spec = job.spec
    return spec.devices == 1 and spec.customization_type != CustomizationKind.DISTILLATION


def held_devices(job: Job) -> list[str]:
    """The devices a claimed job holds (the supervisor notes them in its details)."""
    return list((job.details or {}).get("devices") or [])


class Supervisor:
    def __init__(self, store: JobStore, settings: ServiceSettings, executor: Executor | None = None):
        self.store, self.settings = store, settings
        self.executor = executor if executor is not None else make_executor(settings)
        self.children: dict[str, WorkerHandle] = {}
        self._attempts: dict[str, int] = {}
        self._groups: list[tuple[WorkerHandle, list[str], list[str]]] = []
        """Group workers still running: (handle, devices, job ids). A group holds its jobs' slots
        until its process ends, not until each job's row does: its memory stays taken."""
        """Each child's job's attempts when it was claimed: more once its worker began."""
        self._cancelled: set[str] = set()
        self.claimant = lifecycle.Claimant(settings.node_name, f"{os.getpid()}-{secrets.token_hex(6)}",
                                           dt.timedelta(seconds=settings.lease_seconds))
        self._renewed = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _claimed_here(self):
        """Active jobs a worker on this node holds (rows from before leases have no node: they are local)."""
        return select(Job).where(Job.status.in_(ACTIVE_JOB_STATUSES), Job.worker_pid.isnot(None),
                                 or_(Job.worker_node == self.settings.node_name, Job.worker_node.is_(None)))

    def recover(self) -> None:
        """At start: this node's jobs whose worker is gone are resumed, stopped or failed now (their lease need not lapse)."""
        with self.store.session() as session:
            for job in session.scalars(self._claimed_here()).all():
                if self.executor.alive(job):
                    continue  # an orphaned worker still running: it keeps its job
                has_checkpoint, pid = resumable(job, self.settings.home), job.worker_pid
                lifecycle.interrupted(job, has_checkpoint, NO_CHECKPOINT)
                log.warning("job %s: its worker (pid %s) is gone after a restart", job.name, pid)
                log_outcome(job, pid)
            session.commit()

    def start(self) -> None:
        self.recover()
        self._thread = threading.Thread(target=self._loop, name="tunesmith-supervisor", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)  # a round in progress ends first
        if self.executor.shutdown(list(self.children.values())):
            self._wait_for_workers_to_let_go(time.monotonic() + SHUTDOWN_WAIT_SECONDS)
        self.executor.close()
        with self.store.session() as session:  # jobs whose worker never began go back to the queue, for any server
            for job_id, attempts in self._attempts.items():
                if lifecycle.release_unbegun(session, job_id, self.claimant.server_id, attempts):
                    log.info("job %s: queued again (its worker had not begun when the server stopped)", job_id)

    def _wait_for_workers_to_let_go(self, deadline: float) -> None:
        """After asking its workers to stop: until each job a worker took up has left this server
        (queued again with its checkpoint, or ended), or ``deadline``."""
        while time.monotonic() < deadline:
            with self.store.session() as session:
                held = session.scalars(select(Job).where(Job.id.in_(list(self.children)), Job.server_id == self.claimant.server_id,
                                                         Job.status.in_(ACTIVE_JOB_STATUSES))).all()
                if all((job.attempts or 0) == self._attempts.get(job.id) for job in held):  # only never-begun ones are left
                    return
            time.sleep(POLL_SECONDS)
        log.warning("server stopping: some workers had not given their jobs back after %.0f s; their jobs resume from "
                    "their last checkpoint once their lease lapses", SHUTDOWN_WAIT_SECONDS)

    def _loop(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self.tick()
            except Exception:  # keep supervising; report in the server's log
                log.exception("supervisor: a round of job starts and checks failed; retrying")

    def tick(self) -> None:
        self._reap()
        self._renew()
        self._check_orphans()
        self._take_over_lapsed()
        self._cancel_unstarted_stops()
        with self.store.session() as session:
            running = session.scalars(self._claimed_here()).all()  # the devices and slots of this node
            busy = [device for job in running for device in held_devices(job)]
            self._groups = [group for group in self._groups if group[0].poll() is None]
            running_ids = {job.id for job in running}
            for _, devices, job_ids in self._groups:  # members that ended still hold their slots
                busy.extend(devices * sum(job_id not in running_ids for job_id in job_ids))
            started = len(running)
            room = self.settings.concurrency - started
            if room <= 0:
                return
            queued = session.scalars(select(Job).where(Job.status == JobStatus.IN_PROGRESS, Job.worker_pid.is_(None))
                                     .order_by(Job.created, Job.id).limit(room + len(self.children) + QUEUE_SLACK)).all()
            taken: set[str] = set()
            for n, job in enumerate(queued):
                if started >= self.settings.concurrency:
                    break
                if job.id in self.children or job.id in taken:
                    continue  # its worker queued it again and has not been reaped yet, or it joined a group
                wanted = job.spec.devices
                problem = self.executor.problem(wanted)
                if problem:  # e.g. the server restarted with fewer devices than when the job was created
                    lifecycle.failed(job, problem)
                    session.commit()
                    log_outcome(job, None)
                    continue
                devices = self.executor.take(wanted, busy)
                if devices is None:
                    break  # first come, first served: the jobs behind wait too
                # Room for more than one job on its device: jobs that can train together with it (Ray's tasks take no device here).
                room = min(self.settings.concurrency - started, self.executor.room(devices[0], busy)) if wanted == 1 and devices else 1
                group = [job, *self._companions(job, queued[n + 1:], room - 1, taken)]
                taken.update(j.id for j in group)
                begun = self._start(session, job, devices, wanted) if len(group) == 1 else self._start_group(session, group, devices)
                busy.extend(devices * begun)
                started += begun

    def _start(self, session, job: Job, devices: list[str], wanted: int) -> bool:
        """Claim the job, then start its worker: a claim another server won (or a stop) costs no worker."""
        attempts, name, job_id = job.attempts or 0, job.name, job.id
        details = {**(job.details or {}), "devices": devices, "node": self.settings.node_name, "executor": self.executor.name}
        if not lifecycle.claim(session, job, lifecycle.LAUNCHING_PID, details, self.claimant):
            return False  # stopped, or claimed by another server, since it was read
        try:
            handle = self.executor.launch(job_id, devices, wanted)
        except Exception as exc:
            self._not_started(session, job_id, name, exc)
            return False
        self.children[job_id], self._attempts[job_id] = handle, attempts  # first: watched even if the next write fails
        log.info("job %s started: %s", name, self.executor.describe(handle, devices))
        try:
            lifecycle.launched(session, job_id, handle.pid)
        except Exception:  # the database blinked: the worker records its own pid when it starts
            session.rollback()
            log.warning("job %s: could not record its worker's pid; the worker will", name, exc_info=True)
        return True

    def _companions(self, job: Job, behind: list[Job], room: int, taken: set[str]) -> list[Job]:
        """Queued jobs that train together with ``job`` (``jobs/group_worker.py``): with room
        for more than one job on its device, the next queued jobs on the same base model, of one
        device each and not distillations (their teacher runs first, alone)."""
        if room <= 0 or not groupable(job) or not hasattr(self.executor, "launch_group"):
            return []
        chosen = []
        for other in behind:
            if len(chosen) >= room:
                break
            if other.id not in self.children and other.id not in taken and groupable(other) and other.spec.tier == job.spec.tier:
                chosen.append(other)
        return chosen

    def _start_group(self, session, jobs: list[Job], devices: list[str]) -> int:
        """Claim the jobs, then start one worker that trains them together; how many started."""
        claimed = []
        for job in jobs:
            details = {**(job.details or {}), "devices": devices, "node": self.settings.node_name, "executor": self.executor.name,
                       "trainedWith": [j.id for j in jobs if j.id != job.id]}
            attempts, name, job_id = job.attempts or 0, job.name, job.id
            if lifecycle.claim(session, job, lifecycle.LAUNCHING_PID, details, self.claimant):
                claimed.append((job_id, name, attempts))
        if not claimed:
            return 0
        try:
            handle = self.executor.launch_group([job_id for job_id, _, _ in claimed], devices)
        except Exception as exc:
            for job_id, name, _ in claimed:
                self._not_started(session, job_id, name, exc)
            return 0
        self._groups.append((handle, devices, [job_id for job_id, _, _ in claimed]))
        for job_id, name, attempts in claimed:
            self.children[job_id], self._attempts[job_id] = handle, attempts
            log.info("job %s started: %s, with %d other job(s) on the same base model", name,
                     self.executor.describe(handle, devices), len(claimed) - 1)
        try:
            for job_id, _, _ in claimed:
                lifecycle.launched(session, job_id, handle.pid)
        except Exception:  # the database blinked: each job's worker records its pid when it starts
            session.rollback()
            log.warning("jobs %s: could not record their worker's pid; the worker will", [c[0] for c in claimed], exc_info=True)
        return len(claimed)

    def _not_started(self, session, job_id: str, name: str, exc: Exception) -> None:
        """The worker of a claimed job could not be started: queued again when the cause may pass
        (the machine's resources: OSError), else failed with the reason (e.g. Ray refused the task)."""
        log.error("job %s: its worker could not be started: %s: %s", name, type(exc).__name__, exc)
        job = session.get(Job, job_id, populate_existing=True)  # the claim was an UPDATE: read what it wrote
        if job is None or job.status not in ACTIVE_JOB_STATUSES:
            return
        if job.status == JobStatus.STOPPING:
            lifecycle.stopped(job)
        elif isinstance(exc, OSError):
            lifecycle.requeued(job)
        else:
            lifecycle.failed(job, f"its worker could not be started: {type(exc).__name__}: {exc}")
        session.commit()
        log_outcome(job, None)

    def _check_orphans(self) -> None:
        """Workers this supervisor did not start (they outlived an earlier server) are watched
        by their pid: when one dies, its job is resumed, stopped or failed as at start-up."""
        with self.store.session() as session:
            for job in session.scalars(self._claimed_here()).all():
                if job.id not in self.children and not self.executor.alive(job):
                    has_checkpoint, pid = resumable(job, self.settings.home), job.worker_pid
                    lifecycle.interrupted(job, has_checkpoint, NO_CHECKPOINT)
                    log.warning("job %s: worker pid %s (started by an earlier server) died", job.name, pid)
                    log_outcome(job, pid)
            session.commit()

    def _cancel_unstarted_stops(self) -> None:
        """A stop reaches a running worker through the database; a worker that has not begun
        (a Ray task waiting for resources) is cancelled instead, and its job stops when reaped."""
        waiting = [job_id for job_id in self.children if job_id not in self._cancelled]
        if not waiting:
            return
        with self.store.session() as session:
            for job in session.scalars(select(Job).where(Job.id.in_(waiting), Job.status == JobStatus.STOPPING)).all():
                if (job.attempts or 0) == self._attempts.get(job.id):
                    handle = self.children[job.id]
                    if sum(other is handle for other in self.children.values()) > 1:
                        continue  # a group's worker, which other jobs share: it sees the stop when it begins the job
                    log.info("job %s: stopped before its worker began; cancelling it", job.name)
                    handle.kill()
                    self._cancelled.add(job.id)

    def _renew(self) -> None:
        """Every third of the lease, renew this server's jobs; a worker whose job another server
        took over meanwhile (this server stalled past its lease) is killed: the job runs there now."""
        if time.monotonic() - self._renewed < self.settings.lease_seconds / 3:
            return
        self._renewed = time.monotonic()
        with self.store.session() as session:
            if lifecycle.renew(session, self.children.keys(), self.claimant.server_id, self.claimant.lease) == len(self.children):
                return
            for job_id, process in list(self.children.items()):
                job = session.get(Job, job_id)
                if job is not None and job.status in ACTIVE_JOB_STATUSES and job.server_id != self.claimant.server_id:
                    process.kill()  # not terminate: a worker stopped by SIGTERM would queue the job again
                    with contextlib.suppress(Exception):  # a Ray node that is gone may not answer: reaped later if so
                        process.wait(timeout=KILL_WAIT_SECONDS)
                    self._forget(job_id)
                    holder = f"{job.worker_node} took it over" if job.server_id else "it was queued again"
                    log.warning("job %s: no longer this server's (%s); its worker (%s) was killed", job.name, holder,
                                self.executor.describe(process, held_devices(job)))

    def _take_over_lapsed(self) -> None:
        """Jobs whose lease lapsed (on any node) are resumed, stopped or failed as after a restart.
        On PostgreSQL each row is locked (SKIP LOCKED), so two servers never take over one job."""
        with self.store.session() as session:
            lapsed = session.scalars(select(Job).where(Job.status.in_(ACTIVE_JOB_STATUSES), Job.worker_pid.isnot(None),
                                                       Job.lease_expires < utcnow()).with_for_update(skip_locked=True)).all()
            for job in lapsed:
                if job.id in self.children:
                    continue  # still running here: _renew settles it
                has_checkpoint = resumable(job, self.settings.home)
                pid, node = job.worker_pid, job.worker_node
                lifecycle.interrupted(job, has_checkpoint, NO_CHECKPOINT_LAPSED)
                log.warning("job %s: the lease of its worker (pid %s on %s) lapsed", job.name, pid, node)
                log_outcome(job, pid)
            session.commit()

    def _forget(self, job_id: str) -> None:
        self.children.pop(job_id, None)
        self._attempts.pop(job_id, None)
        self._cancelled.discard(job_id)

    def _reap(self) -> None:
        for job_id, process in list(self.children.items()):
            code = process.poll()
            if code is None:
                continue
            self._forget(job_id)
            with self.store.session() as session:
                job = session.get(Job, job_id)
                if job is not None and job.status in ACTIVE_JOB_STATUSES and job.server_id == self.claimant.server_id:
                    self._settle(job, process, code)
                    session.commit()
                if job is not None:
                    log_outcome(job, process.pid)

    def _settle(self, job: Job, process: WorkerHandle, code: int) -> None:
        """A worker of this server ended and left its job active: stopped, resumed or failed."""
        if job.status == JobStatus.STOPPING:
            lifecycle.stopped(job)
            return
        worker_log = JobFolder(self.settings.home, job.id).log
        lost = self.executor.lost(process)
        if lost is None:
            log.warning("job %s: its worker (%s) died (exit code %d); see %s", job.name,
                        self.executor.describe(process, held_devices(job)), code, worker_log)
            why = self.executor.error(process) or f"the worker process exited unexpectedly (exit code {code})"
            lifecycle.failed(job, f"{why}; see {worker_log}")
            return
        log.warning("job %s: %s", job.name, lost)
        if (job.attempts or 0) >= MAX_ATTEMPTS:
            lifecycle.failed(job, f"{lost}; the job started {job.attempts} times, the most allowed; see {worker_log}")
        else:
            lifecycle.interrupted(job, resumable(job, self.settings.home),
                                  f"{lost} before the first checkpoint; nothing could be resumed: create the job again")
