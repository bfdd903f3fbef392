"""How one server runs: one typed settings object, passed explicitly to the app and its workers."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.jobs.logs import LOG_LEVELS

MAX_BODY_BYTES = 1 << 20
"""Control-plane and runtime request bodies above 1 MiB are refused (HTTP 413) before parsing."""
DEFAULT_REGION = "us-east-1"
DATABASE_URL_VARIABLE = "TUNESMITH_DATABASE_URL"
"""Where workers (and ``tunesmith serve``) find the database URL: never on a command line, which ``ps`` shows."""
DEFAULT_LEASE_SECONDS = 30.0


@dataclass
class ServiceSettings:
    home: Path
    """Jobs' working folders, the trained models and (by default) the database."""
    database_url: str | None = None
    """Any SQLAlchemy URL; SQLite under ``home`` by default. Servers sharing a PostgreSQL database
    (and a ``home`` on a shared filesystem, where checkpoints are) share its jobs."""
    allowed_roots: list[str] = field(default_factory=list)
    """Local folders requests may read from and write to (``home`` is always allowed)."""
    concurrency: int = 1
    """Jobs trained at the same time (in worker processes of their own, or in groups)."""
    jobs_per_device: int = 1
    """Jobs of one device each that may train on one CUDA device at once (on the CPU: jobs a
    group may hold). Above 1, queued LoRA jobs on the same base model that start together train
    in one process, over one copy of the base (``jobs/group_worker.py``)."""
    run_workers: bool = True
    """False serves the API only (for tests of the control plane)."""
    credentials: dict[str, str] = field(default_factory=dict)
    """Access key -> secret. When set, every request must carry a valid SigV4 signature."""
    region: str = DEFAULT_REGION
    """The region signatures must be scoped to (the service must be ``bedrock``)."""
    allow_unsigned_payload: bool = False
    """Accept ``X-Amz-Content-SHA256: UNSIGNED-PAYLOAD`` (the body is then not authenticated)."""
    save_every: int | None = None
    """Workers also checkpoint every N optimizer steps (always at each epoch end)."""
    max_body_bytes: int = MAX_BODY_BYTES
    """Larger request bodies are refused with HTTP 413 before they are parsed."""
    devices: list[str] | None = None
    """What jobs train on: ``cuda:N`` devices (each held by one job at a time), or ``["cpu"]``
    or ``["mps"]`` (shared). None: every CUDA device, else MPS, else the CPU
    (:func:`~tunesmith.jobs.device_pool.parse_devices`)."""
    device: str = "auto"
    """Where the runtime API's models run (``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``)."""
    log_level: str = "info"
    """How much the server and its workers log (``debug``, ``info``, ``warning``, ``error``)."""
    node_name: str = field(default_factory=socket.gethostname)
    """This machine, in job claims: a worker's pid is only checked by servers on the same node."""
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    """How long a claimed job stays claimed without a renewal (renewed every third of it); then
    another server sharing the database takes it over."""
    model_cache_gb: float = 20.0
    """The most disk that custom models downloaded from S3 for the runtime API take (``HOME/model-cache``)."""
    executor: str = "local"
    """Where workers run (:mod:`tunesmith.jobs.executors`): ``local`` processes on this machine,
    or ``ray`` tasks on the Ray cluster at ``ray_address``."""
    ray_address: str | None = None
    """With ``executor="ray"``: ``auto`` (the cluster ``ray start`` runs on this machine, or ``RAY_ADDRESS``),
    ``HOST:PORT``, ``ray://HOST:10001``, or ``local`` (``ray.init()`` without an address: a Ray instance
    started by the server, unless ``RAY_ADDRESS`` or a ``ray start`` on this machine names one)."""
    ray_cpus_per_job: float = 1.0
    """With ``executor="ray"``: the CPUs each job's task asks Ray for (and its torch threads)."""

    def __post_init__(self) -> None:
        self.home = Path(self.home)
        self.home.mkdir(parents=True, exist_ok=True)
        if self.database_url is None:
            self.database_url = f"sqlite:///{self.home / 'tunesmith.db'}"
        self.allowed_roots = [str(self.home), *self.allowed_roots]
        if self.devices is None:
            from tunesmith.jobs.device_pool import parse_devices  # loads torch

            self.devices = parse_devices("auto")
        if not self.devices:
            raise ValueError("devices must name at least one device (or be None: chosen at start)")
        if self.save_every is not None and self.save_every < 1:
            raise ValueError(f"save_every must be at least 1, got {self.save_every}")
        if not self.model_cache_gb > 0:
            raise ValueError(f"model_cache_gb must be more than 0, got {self.model_cache_gb}")
        if self.lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be positive, got {self.lease_seconds}")
        if self.executor not in ("local", "ray"):
            raise ValueError(f"executor must be local or ray, got '{self.executor}'")
        if self.executor == "ray" and not self.ray_address:
            raise ValueError("the ray executor needs a Ray address (auto, HOST:PORT, ray://HOST:10001 or local)")
        if self.jobs_per_device < 1:
            raise ValueError(f"jobs_per_device must be at least 1, got {self.jobs_per_device}")
        if self.jobs_per_device > 1 and self.executor == "ray":
            raise ValueError("jobs per device above 1 works with the local executor only, not with Ray yet")
        if not self.ray_cpus_per_job > 0:
            raise ValueError(f"ray_cpus_per_job must be more than 0, got {self.ray_cpus_per_job}")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got '{self.log_level}'")
