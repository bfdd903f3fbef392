"""Starts worker processes for queued jobs and recovers jobs a crash or restart interrupted.

Workers are separate processes, so a job that crashes or is killed cannot take the API
down. At start-up, a job whose worker is gone is resumed from its last checkpoint (or
failed with a message saying why, when it has none); a job that was stopping is stopped.
Every status change goes through :mod:`tunesmith.service.lifecycle`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from sqlalchemy import select

from tunesmith.service import lifecycle
from tunesmith.service.layout import JobFolder
from tunesmith.service.lifecycle import JobStatus
from tunesmith.service.settings import ServiceSettings
from tunesmith.service.store import Job, JobStore
from tunesmith.training.checkpoints import latest_checkpoint

POLL_SECONDS = 0.5
NO_CHECKPOINT = ("the worker process stopped before the first checkpoint (server restart or crash); "
                 "nothing could be resumed: create the job again")


def pid_alive(pid: int | None) -> bool:
    if not pid:
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


def worker_command(settings: ServiceSettings, job_id: str) -> list[str]:
    command = [sys.executable, "-m", "tunesmith.service.worker", "--home", str(settings.home),
               "--database", settings.database_url, "--job", job_id]
    if settings.save_every:
        command += ["--save-every", str(settings.save_every)]
    return command


class Supervisor:
    def __init__(self, store: JobStore, settings: ServiceSettings):
        self.store, self.settings = store, settings
        self.children: dict[str, subprocess.Popen] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def recover(self) -> None:
        with self.store.session() as session:
            for job in session.query(Job).filter(Job.status.in_(lifecycle.ACTIVE), Job.worker_pid.isnot(None)):
                if pid_alive(job.worker_pid):
                    continue  # an orphaned worker still running: it keeps its job
                has_checkpoint = latest_checkpoint(JobFolder(self.settings.home, job.id).run) is not None
                lifecycle.interrupted(job, has_checkpoint, NO_CHECKPOINT)
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
            except Exception as exc:  # keep supervising; report on stderr
                print(f"tunesmith supervisor: {exc}", file=sys.stderr)

    def tick(self) -> None:
        self._reap()
        with self.store.session() as session:
            running = session.query(Job).filter(Job.status.in_(lifecycle.ACTIVE), Job.worker_pid.isnot(None)).count()
            queued = session.scalars(select(Job).where(Job.status == JobStatus.IN_PROGRESS.value, Job.worker_pid.is_(None))
                                     .order_by(Job.created, Job.id)).all()
            for job in queued:
                if running >= self.settings.concurrency:
                    break
                folder = JobFolder(self.settings.home, job.id)
                folder.log.parent.mkdir(parents=True, exist_ok=True)
                with open(folder.log, "ab") as log:
                    process = subprocess.Popen(
                        worker_command(self.settings, job.id),
                        stdout=log, stderr=log,  # same process group: killing the server kills its workers
                    )
                lifecycle.claimed(job, process.pid)
                session.commit()
                self.children[job.id] = process
                running += 1

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
                        log = JobFolder(self.settings.home, job_id).log
                        lifecycle.failed(job, f"the worker process exited unexpectedly (exit code {code}); see {log}")
                    session.commit()
