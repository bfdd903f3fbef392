"""Starts worker processes for queued jobs and recovers jobs a crash or restart interrupted.

Workers are separate processes, so a job that crashes or is killed cannot take the API
down. At start-up, a job whose worker is gone is resumed from its last checkpoint (or
failed with a message saying why, when it has none); a job that was stopping is stopped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from tunesmith.service.store import Job, JobStore, utcnow
from tunesmith.training.checkpoints import latest_checkpoint

POLL_SECONDS = 0.5


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


class Supervisor:
    def __init__(self, store: JobStore, home: Path, concurrency: int = 1):
        self.store, self.home, self.concurrency = store, home, concurrency
        self.children: dict[str, subprocess.Popen] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def recover(self) -> None:
        with self.store.session() as session:
            for job in session.query(Job).filter(Job.status.in_(("InProgress", "Stopping")), Job.worker_pid.isnot(None)):
                if pid_alive(job.worker_pid):
                    continue  # an orphaned worker still running: it keeps its job
                self._interrupted(job)
            session.commit()

    def _interrupted(self, job: Job) -> None:
        """Decide the fate of a job whose worker vanished (the caller commits)."""
        now = utcnow()
        if job.status == "Stopping" or job.stop_requested:
            job.status, job.ended = "Stopped", now
        elif latest_checkpoint(self.home / "jobs" / job.id / "run") is not None:
            pass  # queued again (worker_pid cleared below): the next worker resumes from the checkpoint
        else:
            job.status, job.ended = "Failed", now
            job.failure_message = (
                "the worker process stopped before the first checkpoint (server restart or crash); "
                "nothing could be resumed: create the job again"
            )
            job.phases = {k: {**v, "status": "Failed" if v["status"] == "InProgress" else v["status"]} for k, v in job.phases.items()}
        job.worker_pid = None
        job.modified = now

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
            running = session.query(Job).filter(Job.status.in_(("InProgress", "Stopping")), Job.worker_pid.isnot(None)).count()
            for job in self.store.jobs_to_run(session):
                if running >= self.concurrency:
                    break
                logs = self.home / "jobs"
                logs.mkdir(parents=True, exist_ok=True)
                with open(logs / f"{job.id}.log", "ab") as log:
                    process = subprocess.Popen(
                        [sys.executable, "-m", "tunesmith.service.worker", "--home", str(self.home),
                         "--database", self.store.url, "--job", job.id],
                        stdout=log, stderr=log,  # same process group: killing the server kills its workers
                    )
                job.worker_pid = process.pid
                job.modified = utcnow()
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
                if job is not None and job.status in ("InProgress", "Stopping") and job.worker_pid == process.pid:
                    now = utcnow()
                    if job.status == "Stopping":
                        job.status, job.ended = "Stopped", now
                    else:
                        job.status, job.ended = "Failed", now
                        job.failure_message = f"the worker process exited unexpectedly (exit code {code}); see {self.home / 'jobs' / (job_id + '.log')}"
                    job.worker_pid, job.modified = None, now
                    session.commit()
