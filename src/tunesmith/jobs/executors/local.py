"""Workers as processes on this machine (``tunesmith serve --executor local``, the default).

Each worker gets the devices its job holds through ``CUDA_VISIBLE_DEVICES``
(:mod:`tunesmith.jobs.device_pool`); a job with several devices runs its worker under
torchrun, one rank per device. Workers stay in the server's process group (killing the server
kills them); a worker that outlived its server is found again by its pid.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tunesmith.jobs.device_pool import DevicePool, memory_share_gb, visible_devices
from tunesmith.jobs.layout import JobFolder
from tunesmith.jobs.lifecycle import LAUNCHING_PID
from tunesmith.jobs.settings import DATABASE_URL_VARIABLE, ServiceSettings
from tunesmith.jobs.store import Job, utcnow


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


def worker_arguments(settings: ServiceSettings, job_id: str, device: str = "auto", ranks: int = 1,
                     max_memory_gb: float | None = None) -> list[str]:
    """The worker's arguments to Python: one process, or ``ranks`` ranks under torchrun (its agent
    is the process the supervisor watches; ``--standalone`` picks a free rendezvous port).
    The database URL is not among them: workers read it from ``TUNESMITH_DATABASE_URL``."""
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"] if ranks > 1 else []
    allowed = [part for root in settings.allowed_roots for part in ("--allow-path", root)]  # it checks the job's paths again
    arguments = [*launcher, "-m", "tunesmith.jobs.worker", "--home", str(settings.home), "--job", job_id, *allowed,
                 "--log-level", settings.log_level, "--lease-seconds", str(settings.lease_seconds), "--device", device]
    if settings.save_every:
        arguments += ["--save-every", str(settings.save_every)]
    if max_memory_gb:
        arguments += ["--max-memory", str(max_memory_gb)]
    return arguments


def worker_command(settings: ServiceSettings, job_id: str, device: str = "auto", ranks: int = 1,
                   max_memory_gb: float | None = None) -> list[str]:
    return [sys.executable, *worker_arguments(settings, job_id, device, ranks, max_memory_gb)]


def group_command(settings: ServiceSettings, job_ids: list[str], device: str = "auto", max_memory_gb: float | None = None) -> list[str]:
    """One process for jobs trained together (``jobs/group_worker.py``)."""
    allowed = [part for root in settings.allowed_roots for part in ("--allow-path", root)]
    jobs = [part for job_id in job_ids for part in ("--job", job_id)]
    arguments = ["-m", "tunesmith.jobs.group_worker", "--home", str(settings.home), *jobs, *allowed,
                 "--log-level", settings.log_level, "--lease-seconds", str(settings.lease_seconds), "--device", device]
    if settings.save_every:
        arguments += ["--save-every", str(settings.save_every)]
    if max_memory_gb:
        arguments += ["--max-memory", str(max_memory_gb)]
    return [sys.executable, *arguments]


class LocalExecutor:
    name = "local"

    def __init__(self, settings: ServiceSettings):
        self.settings = settings
        self.pool = DevicePool(settings.devices, settings.jobs_per_device)

    def problem(self, wanted: int) -> str | None:
        return self.pool.problem(wanted)

    def take(self, wanted: int, busy) -> list[str] | None:
        return self.pool.take(wanted, busy)

    def room(self, device: str, busy) -> int:
        return self.pool.room(device, busy)

    def launch(self, job_id: str, devices: list[str], ranks: int) -> subprocess.Popen:
        folder = JobFolder(self.settings.home, job_id)
        folder.log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": visible_devices(devices), DATABASE_URL_VARIABLE: self.settings.database_url}
        with open(folder.log, "ab") as log:
            share = memory_share_gb(devices[0], self.pool.per_device) if ranks == 1 else None  # slots of a shared GPU
            return subprocess.Popen(
                worker_command(self.settings, job_id, self.pool.worker_device, ranks, share), env=env,
                stdout=log, stderr=log,  # same process group: killing the server kills its workers
            )

    def launch_group(self, job_ids: list[str], devices: list[str]) -> subprocess.Popen:
        """One worker for ``job_ids`` (one device each, the same base model), trained together.
        Its output goes to the first job's log, and each other job's log says where to look."""
        folders = [JobFolder(self.settings.home, job_id) for job_id in job_ids]
        for folder in folders:
            folder.log.parent.mkdir(parents=True, exist_ok=True)
        for folder in folders[1:]:
            with open(folder.log, "a", encoding="utf-8") as note:
                note.write(f"trained together with jobs {', '.join(job_ids)} in one process: its log is {folders[0].log}\n")
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": visible_devices(devices), DATABASE_URL_VARIABLE: self.settings.database_url}
        with open(folders[0].log, "ab") as log:
            share = memory_share_gb(devices[0], self.pool.per_device)
            budget = round(share * len(job_ids), 2) if share else None  # the group holds that many slots
            return subprocess.Popen(group_command(self.settings, job_ids, self.pool.worker_device, budget), env=env,
                                    stdout=log, stderr=log)

    def alive(self, job: Job) -> bool:
        if job.worker_pid == LAUNCHING_PID:  # another server on this node is starting its worker: its lease says
            return job.lease_expires is not None and job.lease_expires > utcnow()
        return pid_alive(job.worker_pid)

    def lost(self, handle) -> str | None:
        return None  # this machine is still here: a worker that died failed by itself

    def error(self, handle) -> str | None:
        return None  # the worker's log says why

    def describe(self, handle, devices: list[str]) -> str:
        return f"worker pid {handle.pid} on {', '.join(devices)}"

    def shutdown(self, handles) -> bool:
        return False  # workers outliving the server keep their jobs; the next server finds them by pid

    def close(self) -> None:
        pass
