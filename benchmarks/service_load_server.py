"""The server side of ``service_load.py``: a no-op executor standing in for training, and the
``service_load.py --serve`` entry that runs the real app and supervisor with it.

Each "worker" is a thread in the server that does to the job's row what
:mod:`tunesmith.jobs.worker` does (started, the three phases, a training loss, a registered
custom model, Completed), and appends every launch, cancel before start, and start to a file the
benchmark reads afterwards to count duplicate runs.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import traceback
from pathlib import Path

from tunesmith.jobs import arns, lifecycle
from tunesmith.jobs.device_pool import DevicePool
from tunesmith.jobs.layout import JobFolder
from tunesmith.jobs.lifecycle import Phase, TransitionError
from tunesmith.jobs.settings import DATABASE_URL_VARIABLE, ServiceSettings
from tunesmith.jobs.store import CustomModel, Job, JobStore, new_id

LOSS = 0.5
"""The training loss every no-op job reports."""


class NoopWorker:
    """A job's simulated worker (:class:`~tunesmith.jobs.executors.WorkerHandle`): a thread."""

    def __init__(self, pid: int):
        self.pid, self.code = pid, None
        self.ended, self.cancelled = threading.Event(), threading.Event()

    def poll(self) -> int | None:
        return self.code if self.ended.is_set() else None

    def terminate(self) -> None:
        self.cancelled.set()

    kill = terminate

    def wait(self, timeout: float | None = None) -> int | None:
        self.ended.wait(timeout)
        return self.poll()


class NoopExecutor:
    """Runs each job as a thread that moves its row along as the real worker does, without training.
    Every launch, cancel before start, and start is appended to ``runs`` (one file per server)."""

    name = "noop"

    def __init__(self, settings: ServiceSettings, startup_seconds: float, simulated_seconds: float, runs: Path):
        self.settings, self.startup, self.seconds = settings, startup_seconds, simulated_seconds
        self.pool = DevicePool(settings.devices)
        self.store = JobStore(settings.database_url, migrate=False)  # its own connections, as a worker process has
        self.runs, self.lock = runs.open("a"), threading.Lock()

    def problem(self, wanted: int) -> str | None:
        return self.pool.problem(wanted)

    def take(self, wanted: int, busy) -> list[str] | None:
        return self.pool.take(wanted, busy)

    def room(self, device: str, busy) -> int:
        return 1  # one job per simulated worker: no groups

    def launch(self, job_id: str, devices: list[str], ranks: int) -> NoopWorker:
        handle = NoopWorker(os.getpid())
        threading.Thread(target=self._run, args=(job_id, handle), name=f"noop-{job_id}", daemon=True).start()
        return handle

    def alive(self, job: Job) -> bool:
        return False  # its threads die with the server

    def lost(self, handle) -> str | None:
        return None

    def error(self, handle) -> str | None:
        return None

    def describe(self, handle, devices: list[str]) -> str:
        return f"no-op worker thread in pid {handle.pid}"

    def shutdown(self, handles) -> bool:
        for handle in handles:
            handle.terminate()
        return False  # its threads die with the server

    def close(self) -> None:
        pass

    def _record(self, event: str, job_id: str) -> None:
        with self.lock:
            self.runs.write(f"{event} {job_id}\n")
            self.runs.flush()

    def _change(self, job_id: str, apply) -> Job:
        with self.store.session() as session:
            job = session.get(Job, job_id)
            apply(job)
            session.commit()
            return job

    def _run(self, job_id: str, handle: NoopWorker) -> None:
        try:
            handle.code = self._work(job_id, handle)
        except TransitionError:  # the job ended under it (stopped): as the real worker, leave it
            handle.code = 0
        except Exception:
            traceback.print_exc()
            handle.code = 1
        handle.ended.set()

    def _work(self, job_id: str, handle: NoopWorker) -> int:
        self._record("launched", job_id)
        if handle.cancelled.wait(self.startup):  # the server stopped before the worker began
            self._record("lost", job_id)
            return -signal.SIGTERM
        claimed = []

        def start(job: Job) -> None:
            claimed.append(job.worker_pid in (handle.pid, lifecycle.LAUNCHING_PID) and job.worker_node == self.settings.node_name)
            lifecycle.worker_started(job, handle.pid)

        self._change(job_id, start)
        self._record("started" if claimed[0] else "started-unclaimed", job_id)
        self._change(job_id, lambda job: lifecycle.enter_phase(job, Phase.VALIDATION))
        self._change(job_id, lambda job: lifecycle.enter_phase(job, Phase.DATA_PROCESSING))

        def training(job: Job) -> None:
            job.details = {**(job.details or {}), "plan": {"simulatedSeconds": self.seconds}}
            lifecycle.enter_phase(job, Phase.TRAINING)

        self._change(job_id, training)
        if handle.cancelled.wait(self.seconds):  # the server stops: queued again, as a worker's SIGTERM does
            self._change(job_id, lifecycle.requeued)
            return -signal.SIGTERM
        self._change(job_id, lambda job: setattr(job, "training_loss", LOSS))
        self._complete(job_id)
        self._record("completed", job_id)
        return 0

    def _complete(self, job_id: str) -> None:
        """Register the custom model and complete the job in one commit, as the worker does."""
        with self.store.session() as session:
            job = session.get(Job, job_id)
            model_id = new_id()
            arn = arns.model_arn(job.spec.base_model_id, model_id)
            session.add(CustomModel(
                id=model_id, arn=arn, name=job.output_model_name, job_arn=job.arn, job_name=job.name,
                base_model_arn=job.base_model_arn, customization_type=job.customization_type, status="Active",
                folder=str(JobFolder(self.settings.home, job_id).run), details={"result": {"finalTrainingLoss": LOSS}},
            ))
            lifecycle.completed(job, arn)
            session.commit()


def serve(arguments: argparse.Namespace) -> None:
    """One server (``--serve``): the real app and supervisor, the no-op executor, uvicorn."""
    import uvicorn

    from tunesmith.server import create_app

    settings = ServiceSettings(home=arguments.home, database_url=os.environ[DATABASE_URL_VARIABLE], allowed_roots=[arguments.allow],
                               concurrency=arguments.concurrency, devices=["cpu"], device="cpu", node_name=arguments.node_name,
                               log_level="warning")
    executor = NoopExecutor(settings, arguments.startup_seconds, arguments.simulated_seconds, Path(arguments.runs))
    uvicorn.run(create_app(settings, executor), host="127.0.0.1", port=arguments.port, log_level="warning", access_log=False)
