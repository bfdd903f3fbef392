"""Starts worker processes for queued jobs and recovers jobs a crash or restart interrupted.

Workers are separate processes, so a job that crashes or is killed cannot take the API
down. Each worker gets the devices its job holds through ``CUDA_VISIBLE_DEVICES``
(:mod:`tunesmith.service.device_pool`); a job with several devices runs its worker under
torchrun, one rank per device. At start-up, a job whose worker is gone is resumed from its
last checkpoint (or failed with a message saying why, when it has none); a job that was
stopping is stopped. Every status change goes through :mod:`tunesmith.service.lifecycle`.

Several servers may share one PostgreSQL database (and a ``home`` on a shared filesystem).
Each claims queued jobs atomically and holds them under a lease it renews with its workers; a
pid is only checked by servers on the job's node (``node_name``). When a lease lapses (its
server and workers died, or lost the database), any server takes the job over as above.
Workers find the database URL in ``TUNESMITH_DATABASE_URL``, never on their command line.

Each event of a job's life it sees (started, completed, failed, stopped, worker died,
queued again) is logged on ``tunesmith.service.jobs``, one line each, in the server's log.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import subprocess
import sys
import threading
import time

from sqlalchemy import or_, select

from tunesmith.service import lifecycle
from tunesmith.service.device_pool import DevicePool, visible_devices
from tunesmith.service.layout import JobFolder
from tunesmith.service.lifecycle import JobStatus
from tunesmith.service.settings import DATABASE_URL_VARIABLE, ServiceSettings
from tunesmith.service.store import Job, JobStore, utcnow
from tunesmith.training.checkpoints import latest_checkpoint

log = logging.getLogger("tunesmith.service.jobs")
POLL_SECONDS = 0.5
NO_CHECKPOINT = ("the worker process stopped before the first checkpoint (server restart or crash); "
                 "nothing could be resumed: create the job again")
NO_CHECKPOINT_LAPSED = ("the server running the job stopped renewing its lease (it died or lost the database) before "
                        "the first checkpoint; nothing could be resumed: create the job again")


def pid_alive(pid: int | None) -> bool:
    if not pid or pid <= 0:  # os.kill(-1, 0) would ask about every process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child is not alive
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def worker_command(settings: ServiceSettings, job_id: str, device: str = "auto", ranks: int = 1) -> list[str]:
    """The worker's command line: one process, or ``ranks`` ranks under torchrun (its agent
    is the process the supervisor watches; ``--standalone`` picks a free rendezvous port)."""
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"] if ranks > 1 else []
    command = [sys.executable, *launcher, "-m", "tunesmith.service.worker", "--home", str(settings.home), "--job", job_id,
               "--log-level", settings.log_level, "--lease-seconds", str(settings.lease_seconds), "--device", device]
    if settings.save_every:
        command += ["--save-every", str(settings.save_every)]
    return command


def first_line(message: str | None) -> str:
    lines = (message or "").strip().splitlines() or [""]
    return lines[0] + (f" (and {len(lines) - 1} more line(s) in the job's failureMessage)" if len(lines) > 1 else "")


def log_outcome(job: Job, pid: int | None, why: str = "") -> None:
    """One line for where a job stands after its worker ended (or vanished)."""
    if job.status == JobStatus.COMPLETED.value:
        log.info("job %s completed: model %s", job.name, job.output_model_arn)
    elif job.status == JobStatus.FAILED.value:
        log.info("job %s failed: %s", job.name, first_line(job.failure_message))
    elif job.status == JobStatus.STOPPED.value:
        log.info("job %s stopped%s", job.name, why)
    elif job.status in lifecycle.ACTIVE and job.worker_pid is None:
        log.info("job %s queued again to resume from its last checkpoint%s (worker pid %s ended)", job.name, why, pid)


def resumable(job: Job, home) -> bool:
    """A checkpoint to resume from: in the job's folder here, or on S3 (any node's worker can fetch it)."""
    return latest_checkpoint(JobFolder(home, job.id).run) is not None or any("s3Uri" in c for c in job.checkpoints or [])


def held_devices(job: Job) -> list[str]:
    """The devices a claimed job holds (the supervisor notes them in its details)."""
    return list((job.details or {}).get("devices") or [])


class Supervisor:
    def __init__(self, store: JobStore, settings: ServiceSettings):
        self.store, self.settings = store, settings
        self.pool = DevicePool(settings.devices)
        self.children: dict[str, subprocess.Popen] = {}
        self.claimant = lifecycle.Claimant(settings.node_name, f"{os.getpid()}-{secrets.token_hex(6)}",
                                           dt.timedelta(seconds=settings.lease_seconds))
        self._renewed = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _claimed_here(self):
        """Active jobs a worker on this node holds (rows from before leases have no node: they are local)."""
        return select(Job).where(Job.status.in_(lifecycle.ACTIVE), Job.worker_pid.isnot(None),
                                 or_(Job.worker_node == self.settings.node_name, Job.worker_node.is_(None)))

    def recover(self) -> None:
        """At start: this node's jobs whose worker is gone are resumed, stopped or failed now (their lease need not lapse)."""
        with self.store.session() as session:
            for job in session.scalars(self._claimed_here()).all():
                if pid_alive(job.worker_pid):
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
            self._thread.join(timeout=5)

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
        with self.store.session() as session:
            running = session.scalars(self._claimed_here()).all()  # the devices and slots of this node
            busy = {device for job in running for device in held_devices(job)}
            started = len(running)
            queued = session.scalars(select(Job).where(Job.status == JobStatus.IN_PROGRESS.value, Job.worker_pid.is_(None))
                                     .order_by(Job.created, Job.id)).all()
            for job in queued:
                if started >= self.settings.concurrency:
                    break
                wanted = job.spec.devices
                problem = self.pool.problem(wanted)
                if problem:  # e.g. the server restarted with fewer devices than when the job was created
                    lifecycle.failed(job, problem)
                    session.commit()
                    log_outcome(job, None)
                    continue
                devices = self.pool.take(wanted, busy)
                if devices is None:
                    break  # first come, first served: the jobs behind wait too
                process = self._start_worker(job.id, devices, wanted)
                details = {**(job.details or {}), "devices": devices, "node": self.settings.node_name}
                if not lifecycle.claim(session, job, process.pid, details, self.claimant):
                    process.terminate()  # stopped (or claimed elsewhere) since it was read: not ours to run
                    process.wait()
                    continue
                self.children[job.id] = process
                log.info("job %s started: worker pid %d on %s", job.name, process.pid, ", ".join(devices))
                busy.update(devices)
                started += 1

    def _start_worker(self, job_id: str, devices: list[str], ranks: int) -> subprocess.Popen:
        folder = JobFolder(self.settings.home, job_id)
        folder.log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": visible_devices(devices), DATABASE_URL_VARIABLE: self.settings.database_url}
        with open(folder.log, "ab") as log:
            return subprocess.Popen(
                worker_command(self.settings, job_id, self.pool.worker_device, ranks), env=env,
                stdout=log, stderr=log,  # same process group: killing the server kills its workers
            )

    def _check_orphans(self) -> None:
        """Workers this supervisor did not start (they outlived an earlier server) are watched
        by their pid: when one dies, its job is resumed, stopped or failed as at start-up."""
        with self.store.session() as session:
            for job in session.scalars(self._claimed_here()).all():
                if job.id not in self.children and not pid_alive(job.worker_pid):
                    has_checkpoint, pid = resumable(job, self.settings.home), job.worker_pid
                    lifecycle.interrupted(job, has_checkpoint, NO_CHECKPOINT)
                    log.warning("job %s: worker pid %s (started by an earlier server) died", job.name, pid)
                    log_outcome(job, pid)
            session.commit()

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
                if job is not None and job.status in lifecycle.ACTIVE and job.server_id != self.claimant.server_id:
                    process.kill()  # not terminate: a worker stopped by SIGTERM would queue the job again
                    process.wait()
                    del self.children[job_id]
                    log.warning("job %s: its lease lapsed and %s took it over; worker pid %d killed", job.name,
                                job.worker_node or "another server", process.pid)

    def _take_over_lapsed(self) -> None:
        """Jobs whose lease lapsed (on any node) are resumed, stopped or failed as after a restart.
        On PostgreSQL each row is locked (SKIP LOCKED), so two servers never take over one job."""
        with self.store.session() as session:
            lapsed = session.scalars(select(Job).where(Job.status.in_(lifecycle.ACTIVE), Job.worker_pid.isnot(None),
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

    def _reap(self) -> None:
        for job_id, process in list(self.children.items()):
            code = process.poll()
            if code is None:
                continue
            del self.children[job_id]
            with self.store.session() as session:
                job = session.get(Job, job_id)
                if job is not None and job.status in lifecycle.ACTIVE and job.worker_pid == process.pid:
                    if job.status == JobStatus.STOPPING.value:
                        lifecycle.stopped(job)
                    else:
                        worker_log = JobFolder(self.settings.home, job_id).log
                        log.warning("job %s: worker pid %d died (exit code %d); see %s", job.name, process.pid, code, worker_log)
                        lifecycle.failed(job, f"the worker process exited unexpectedly (exit code {code}); see {worker_log}")
                    session.commit()
                if job is not None:
                    log_outcome(job, process.pid)
