"""The devices jobs train on (``tunesmith serve --devices``) and which job holds which.

- CUDA devices are handed out in slots: ``--jobs-per-device`` jobs of one device each may hold
  a device at once (one by default; ``auto`` sizes it from the device's memory,
  :func:`jobs_per_device`), and a job of several devices takes them whole. A job holds its
  devices (``tunesmithConfig.devices``, one by default) until its worker exits, and sees only them, through the worker's
  ``CUDA_VISIBLE_DEVICES`` (inside the worker they are ``cuda:0``, ``cuda:1``...). A job that
  asks for more devices than are free waits; jobs start in the order they were created, so
  a big job is not starved by small ones behind it.
- The CPU (or Apple's MPS) is shared by the ``--concurrency`` jobs at once. On the CPU, a
  job's devices are its data-parallel ranks (gloo); MPS runs one rank.

A job with several devices runs its worker under torchrun, one rank per device.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass

MAX_JOB_DEVICES = 8
"""The most devices (ranks) one job may ask for."""
JOB_GPU_GB = 8.0
"""GPU memory one job is assumed to take when ``--jobs-per-device auto`` sizes the slots: micro
(LoRA, bf16) peaked at 2.3-6.7 GB on an H200 with micro-batches of 2,000-8,000 tokens. An
estimate from those figures, not yet measured with jobs sharing a device."""
MAX_AUTO_JOBS_PER_DEVICE = 8
"""``auto`` admits at most this many jobs per device (the many-jobs benchmark's group size)."""


def jobs_per_device(text: str, devices: list[str]) -> int:
    """``--jobs-per-device``: a number of at least 1, or ``auto``: on CUDA as many jobs as
    90% of the smallest device's memory holds at :data:`JOB_GPU_GB` each (at most
    :data:`MAX_AUTO_JOBS_PER_DEVICE`); 1 on the CPU and MPS."""
    from tunesmith.devices import DeviceError

    text = (text or "auto").strip().lower()
    if text != "auto":
        try:
            value = int(text)
        except ValueError:
            raise DeviceError(f"--jobs-per-device {text!r} is neither auto nor a whole number") from None
        if value < 1:
            raise DeviceError(f"--jobs-per-device must be at least 1, got {value}")
        return value
    if not devices[0].startswith("cuda:"):
        return 1
    import torch

    smallest = min(torch.cuda.get_device_properties(int(d.split(":")[1])).total_memory for d in devices)
    return max(1, min(MAX_AUTO_JOBS_PER_DEVICE, int(0.9 * smallest / 2**30 // JOB_GPU_GB)))


def parse_devices(text: str = "auto") -> list[str]:
    """The devices ``--devices`` names, checked against this machine (DeviceError if absent).

    ``auto``: every CUDA device, else MPS, else the CPU. ``cuda``: every CUDA device.
    ``cpu`` or ``mps``: that device. ``cuda:0,cuda:2``: those CUDA devices.
    """
    import torch

    from tunesmith.devices import DeviceError, resolve_device

    names = [name.strip().lower() for name in text.split(",") if name.strip()] or ["auto"]
    if names in (["auto"], ["cuda"]):
        where = resolve_device(names[0])
        if where.type == "cuda":
            return [f"cuda:{index}" for index in range(torch.cuda.device_count())]
        return [where.type]
    if len(names) == 1 and names[0] in ("cpu", "mps"):
        return [resolve_device(names[0]).type]
    devices: list[str] = []
    for name in names:
        if not name.startswith("cuda:"):
            raise DeviceError(f"--devices {text}: {name!r} cannot be combined with other devices; give auto, cpu, mps, "
                              "cuda (every CUDA device) or a list of CUDA devices such as cuda:0,cuda:1")
        device = str(resolve_device(name))
        if device not in devices:
            devices.append(device)
    return devices


def visible_devices(devices: list[str], environ: dict[str, str] | None = None) -> str:
    """``CUDA_VISIBLE_DEVICES`` for a worker that holds ``devices`` ("" hides every GPU).

    ``cuda:N`` counts the devices this server sees: when the server runs under a
    ``CUDA_VISIBLE_DEVICES`` of its own, N indexes into that list, as torch does.
    """
    environ = os.environ if environ is None else environ
    indices = [int(device.split(":", 1)[1]) for device in devices if device.startswith("cuda:")]
    ours = environ.get("CUDA_VISIBLE_DEVICES")
    if ours is None:
        return ",".join(str(index) for index in indices)
    entries = [entry.strip() for entry in ours.split(",") if entry.strip()]
    return ",".join(entries[index] for index in indices)


def memory_share_gb(device: str, per_device: int) -> float | None:
    """The memory budget, in GB, of one job when ``per_device`` jobs share CUDA ``device``:
    90% of the device's memory, shared out (None for one job a device, or off CUDA: the
    training loop then sizes its micro-batches from the device's free memory itself)."""
    if per_device <= 1 or not device.startswith("cuda:"):
        return None
    import torch

    return round(0.9 * torch.cuda.get_device_properties(int(device.split(":")[1])).total_memory / 2**30 / per_device, 2)


@dataclass(frozen=True)
class DevicePool:
    devices: list[str]
    """``cuda:N`` entries, or a single ``cpu`` or ``mps``."""
    per_device: int = 1
    """Jobs of one device each that may share a CUDA device (``--jobs-per-device``)."""

    @property
    def exclusive(self) -> bool:
        """CUDA devices go to one job at a time; the CPU and MPS are shared."""
        return self.devices[0].startswith("cuda:")

    @property
    def worker_device(self) -> str:
        """The ``--device`` a worker gets: ``cuda`` (its visible devices), ``cpu`` or ``mps``."""
        return "cuda" if self.exclusive else self.devices[0]

    def problem(self, wanted: int) -> str | None:
        """Why a job asking for ``wanted`` devices can never run here, or None."""
        if self.exclusive and wanted > len(self.devices):
            return (f"tunesmithConfig.devices is {wanted}, but this server trains on {len(self.devices)} device(s) "
                    f"({', '.join(self.devices)})")
        if self.devices == ["mps"] and wanted > 1:
            return f"tunesmithConfig.devices is {wanted}, but this server trains on MPS, which runs one rank"
        return None

    def take(self, wanted: int, busy: Collection[str]) -> list[str] | None:
        """The devices a job asking for ``wanted`` gets, given those ``busy`` in other jobs (a
        device once per job holding it); None while too few are free. A one-device job takes
        the least busy device with a free slot, a job of several takes idle devices. Shared
        devices are always free."""
        if not self.exclusive:
            return list(self.devices)
        held = Counter(busy)
        if wanted == 1:
            open_slots = [d for d in self.devices if held[d] < self.per_device]
            return [min(open_slots, key=lambda d: held[d])] if open_slots else None
        idle = [device for device in self.devices if not held[device]]
        return idle[:wanted] if len(idle) >= wanted else None

    def room(self, device: str, busy: Collection[str]) -> int:
        """How many more one-device jobs ``device`` takes now."""
        return self.per_device - (Counter(busy)[device] if self.exclusive else 0)
