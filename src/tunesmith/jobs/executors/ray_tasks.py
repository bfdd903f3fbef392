"""Workers as Ray tasks (``tunesmith serve --executor ray --ray-address ADDR``).

Each job becomes one Ray task whose resource request is the job's: ``tunesmithConfig.devices``
GPUs when the cluster has GPUs (one node's worth: its ranks run there under torchrun, as on
a local server), and ``--ray-cpus-per-job`` CPUs. Ray queues the task until a node has them
free, and sets the task's ``CUDA_VISIBLE_DEVICES`` and ``OMP_NUM_THREADS``.

Inside the task runs the same worker program as with the local executor, as a child process
that dies with the Ray worker (``PR_SET_PDEATHSIG``): it reads and writes the job's row in the
shared database and the job's folder under ``home``, so every node of the cluster needs the
database and ``home`` (a shared filesystem) or S3 for outputs, and tunesmith installed. The
server's ``TUNESMITH_*``, ``AWS_*`` and ``HF_*`` variables and the database URL travel as a
task argument into the child's environment (never onto a command line): a Ray worker's own
environment is its node's, not the server's.

- **Stop**: the worker sees the request in the database, as always; a task still waiting for
  resources is cancelled.
- **A Ray worker or node lost** (killed, out of memory, node gone): the task fails with a Ray
  system error and the supervisor resumes the job from its last checkpoint, or fails it saying
  so when there is none (:data:`tunesmith.jobs.supervisor.MAX_ATTEMPTS` bounds the retries;
  Ray's own task retries are off, so one job never runs twice at once).
- **The server stops**: its tasks are cancelled (their workers queue the jobs again, as on a
  local server's shutdown). Tasks belong to the server's Ray driver: when the server dies, Ray
  ends them, and the next server resumes their jobs.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from tunesmith.errors import TunesmithError
from tunesmith.jobs import parent_death
from tunesmith.jobs.executors.local import worker_arguments
from tunesmith.jobs.layout import JobFolder
from tunesmith.jobs.settings import DATABASE_URL_VARIABLE, ServiceSettings
from tunesmith.jobs.store import Job, utcnow

log = logging.getLogger("tunesmith.service.jobs")
FORWARDED_PREFIXES = ("TUNESMITH_", "AWS_", "HF_")
"""The server's environment variables its workers get on Ray nodes too (a Ray worker's own
environment is its node's): tunesmith's (models, home), S3's endpoint and credentials, Hugging Face's."""
NODES_TTL_SECONDS = 5.0
"""How long the cluster's node resources are taken as known."""
WAIT_SLICE_SECONDS = 0.5
"""How often a task's wait for its worker lets a cancel (a KeyboardInterrupt) in."""
SHUTDOWN_WAIT_SECONDS = 30.0
"""How long a stopping server waits for its tasks' workers to queue their jobs again."""


class RayUnavailable(TunesmithError):
    """Ray is not installed, or its cluster cannot be reached."""


def run_worker(arguments: list[str], log_path: str, environment: dict[str, str]) -> int:
    """The Ray task: run the tunesmith worker with this node's Python; its exit code.

    A cancel (``ray.cancel``: a KeyboardInterrupt here, raised between the short waits below,
    since Ray interrupts the main thread without a signal that would end a blocking wait)
    asks the worker to stop (SIGTERM: it queues its job again); a killed Ray worker takes the
    worker with it, and the worker its torchrun ranks (:mod:`tunesmith.jobs.parent_death`)."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    # ray.cancel's interrupt is a simulated SIGINT, which Python drops where SIGINT is ignored (a Ray
    # started in the background by a non-interactive shell inherits that): handle it for this task.
    interruptible = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler) if interruptible else None
    try:
        return _run_child(arguments, log_path, environment)
    finally:
        if interruptible:
            signal.signal(signal.SIGINT, previous)


def _run_child(arguments: list[str], log_path: str, environment: dict[str, str]) -> int:
    with open(log_path, "ab") as log_file:
        child = subprocess.Popen([sys.executable, *arguments], env={**os.environ, **environment, parent_death.VARIABLE: "1"},
                                 stdout=log_file, stderr=log_file, preexec_fn=parent_death.die_with_parent)
        try:
            while True:
                try:
                    return child.wait(timeout=WAIT_SLICE_SECONDS)
                except subprocess.TimeoutExpired:
                    continue
        except BaseException:
            child.terminate()
            try:
                child.wait(timeout=SHUTDOWN_WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                child.kill()
            raise


class RayWorker:
    """A job's Ray task, seen as a worker (:class:`~tunesmith.jobs.executors.WorkerHandle`)."""

    def __init__(self, ref, pid: int, resources: str):
        self.ref, self.pid, self.resources = ref, pid, resources
        self.code: int | None = None
        self.lost: str | None = None
        """Why Ray lost the task's worker or node (a system failure), once it ended so."""
        self.error: str | None = None
        """What the task itself raised, once it ended so."""

    def poll(self) -> int | None:
        import ray
        from ray import exceptions

        if self.code is not None:
            return self.code
        ready, _ = ray.wait([self.ref], timeout=0)
        if not ready:
            return None
        try:
            self.code = int(ray.get(self.ref))
        except exceptions.TaskCancelledError:
            self.code = -signal.SIGTERM
        except exceptions.RayTaskError as exc:  # run_worker itself failed (e.g. home is not reachable on that node)
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            where = f" on {exc.ip}" if getattr(exc, "ip", None) else ""
            self.code, self.error = 1, f"the Ray task failed{where}: {type(cause).__name__}: {_first_line(cause)}"
        except exceptions.RayError as exc:  # the worker process or its node died, ran out of memory...
            self.code, self.lost = -signal.SIGKILL, f"Ray lost the job's worker ({type(exc).__name__}: {_first_line(exc)})"
        return self.code

    def terminate(self) -> None:
        import ray

        ray.cancel(self.ref)  # a KeyboardInterrupt in run_worker: the worker gets SIGTERM; a waiting task is dropped

    def kill(self) -> None:
        import ray

        ray.cancel(self.ref, force=True)

    def wait(self, timeout: float | None = None) -> int | None:
        import ray

        ray.wait([self.ref], timeout=timeout)
        return self.poll()


def reachable(address: str, timeout: float = 5.0) -> None:
    """RayUnavailable unless ``HOST:PORT`` (or ``ray://HOST:PORT``) accepts a connection."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise RayUnavailable(f"--ray-address {address}: expected auto, local, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise RayUnavailable(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc} "
                             "(is `ray start --head` running there?)") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class RayExecutor:
    name = "ray"

    def __init__(self, settings: ServiceSettings):
        self.settings = settings
        try:
            import ray
        except ImportError as exc:
            raise RayUnavailable("--executor ray needs Ray: pip install 'tunesmith[ray]'") from exc
        address = None if settings.ray_address == "local" else settings.ray_address
        if address not in (None, "auto"):
            reachable(address)  # ray.init retries an unreachable address for minutes
        try:
            ray.init(address=address, namespace="tunesmith", log_to_driver=False, ignore_reinit_error=True,
                     **({"include_dashboard": False} if address is None else {}))
        except Exception as exc:  # ConnectionError, or a bad address
            hint = ("; a HOST:PORT address needs this machine to be a node of the cluster: run `ray start --address "
                    f"{address} --num-cpus 0 --num-gpus 0` here, or give ray://HOST:10001" if address not in (None, "auto") and
                    not address.startswith("ray://") else "")
            raise RayUnavailable(f"cannot reach the Ray cluster at {settings.ray_address}: {_first_line(exc)}{hint}") from exc
        self._task = ray.remote(run_worker)
        self._resources: tuple[float, list[dict[str, float]]] = (0.0, [])
        self.gpus = self.most_gpus_on_a_node() > 0
        """Jobs ask for GPUs when the cluster had GPUs at the server's start (not at each launch:
        a GPU node restarting must not send GPU jobs to CPUs)."""

    # -- the cluster ---------------------------------------------------------------------------
    def _nodes(self) -> list[dict[str, float]]:
        """The live nodes' resources (asked of Ray at most every few seconds)."""
        import ray

        asked, nodes = self._resources
        if time.monotonic() - asked > NODES_TTL_SECONDS:
            nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
            self._resources = (time.monotonic(), nodes)
        return nodes

    def most_gpus_on_a_node(self) -> int:
        return int(max((resources.get("GPU", 0) for resources in self._nodes()), default=0))

    def most_cpus_on_a_node(self) -> float:
        return max((resources.get("CPU", 0) for resources in self._nodes()), default=0)

    def default_concurrency(self) -> int:
        """Jobs at once when ``--concurrency`` is not given: as many as the cluster fits now."""
        nodes = self._nodes()
        gpus = sum(int(r.get("GPU", 0)) for r in nodes)
        cpus = sum(int(r.get("CPU", 0) // self.settings.ray_cpus_per_job) for r in nodes)
        return max(1, gpus or cpus)

    # -- the executor --------------------------------------------------------------------------
    def problem(self, wanted: int) -> str | None:
        where = f"the Ray cluster at {self.settings.ray_address}"
        gpus, cpus = self.most_gpus_on_a_node(), self.most_cpus_on_a_node()
        if self.gpus and wanted > gpus:
            return f"tunesmithConfig.devices is {wanted}, but no node of {where} has more than {gpus} GPU(s) (a job's ranks run on one node)"
        if self.settings.ray_cpus_per_job > cpus:
            return (f"--ray-cpus-per-job is {self.settings.ray_cpus_per_job:g}, but no node of {where} has more than {cpus:g} CPU(s): "
                    "the job could never be scheduled")
        return None

    def take(self, wanted: int, busy) -> list[str]:
        return []  # Ray holds the task until a node has its resources free

    def room(self, device: str, busy) -> int:
        return 1  # one job per task: jobs are not grouped on Ray (yet)

    def launch(self, job_id: str, devices: list[str], ranks: int) -> RayWorker:
        wanted = ranks
        gpus = wanted if self.gpus else 0
        device = "cuda" if gpus else "cpu"
        folder = JobFolder(self.settings.home, job_id)
        options = {"num_cpus": self.settings.ray_cpus_per_job, "num_gpus": gpus, "max_retries": 0,
                   "name": f"tunesmith-job-{job_id}"}
        environment = {name: value for name, value in os.environ.items() if name.startswith(FORWARDED_PREFIXES)}
        environment[DATABASE_URL_VARIABLE] = self.settings.database_url
        ref = self._task.options(**options).remote(worker_arguments(self.settings, job_id, device, wanted), str(folder.log),
                                                   environment)
        resources = f"{self.settings.ray_cpus_per_job:g} CPU, {gpus} GPU"
        return RayWorker(ref, os.getpid(), resources)

    def alive(self, job: Job) -> bool:
        """Its lease, renewed by the worker itself: a task of a server that died (its driver) is
        ended by Ray, or, through Ray Client, soon after; either way its worker stops renewing."""
        return job.lease_expires is not None and job.lease_expires > utcnow()

    def lost(self, handle: RayWorker) -> str | None:
        return handle.lost

    def error(self, handle: RayWorker) -> str | None:
        return handle.error

    def describe(self, handle: RayWorker, devices: list[str]) -> str:
        return f"Ray task {handle.ref.task_id().hex()[:12]} ({handle.resources})"

    def shutdown(self, handles: list[RayWorker]) -> bool:
        """Cancel every task: its worker gets SIGTERM and queues its job again. (A cancelled
        task's result is ready at once, before its worker has finished: the supervisor waits on
        the jobs themselves, then :meth:`close` ends the driver, and with it any task left.)"""
        for handle in handles:
            handle.terminate()
        return bool(handles)

    def close(self) -> None:
        import ray

        ray.shutdown()
