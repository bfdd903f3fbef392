"""Where a model runs and in what precision: one choice, used by training, evaluation,
generation, teachers and the runtime API alike.

``auto`` picks CUDA, then Apple's MPS, then the CPU. Precision follows the device:

==============================  ==========================================================
device                          ``precision="auto"``
==============================  ==========================================================
CUDA, bf16-capable (Ampere+)    bf16 autocast
CUDA, older                     fp16 autocast with loss scaling (``torch.amp.GradScaler``)
CPU with native bf16            bf16 autocast (AVX-512 BF16 / AMX: about 2x fp32)
anything else (MPS, plain CPU)  fp32
==============================  ==========================================================

Asking for bf16 on a CPU without native bf16 is allowed but warned about with measured
numbers: there bf16 matmuls are emulated and run tens of times slower than fp32.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Literal

import torch

from tunesmith.errors import TunesmithError

DeviceName = str
"""``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
Precision = Literal["auto", "bf16", "fp16", "fp32"]
PRECISIONS = ("auto", "bf16", "fp16", "fp32")


class DeviceError(TunesmithError, ValueError):
    """A device or precision that cannot be used here; the message says why."""


def cpu_has_native_bf16() -> bool:
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: DeviceName = "auto") -> torch.device:
    """The torch device for a ``--device`` value; DeviceError when it is not there."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not mps_available():
            raise DeviceError("--device mps: Apple's MPS backend is not available on this machine")
        return torch.device("mps")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: no CUDA device is available (torch {torch.__version__}, "
                              f"CUDA build: {torch.version.cuda or 'no'})")
        index = torch.cuda.current_device() if name == "cuda" else _index(name)
        if index >= torch.cuda.device_count():
            raise DeviceError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", index)
    raise DeviceError(f"--device {name!r} is not auto, cpu, cuda, cuda:N or mps")


def _index(name: str) -> int:
    try:
        index = int(name.split(":", 1)[1])
    except ValueError as exc:
        raise DeviceError(f"--device {name!r}: N in cuda:N must be a number") from exc
    if index < 0:
        raise DeviceError(f"--device {name!r}: N in cuda:N must be 0 or more")
    return index


def _cuda_supports_bf16(device: torch.device) -> bool:
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8


def measure_cpu_matmul(size: int = 256, repeats: int = 3) -> dict[str, float]:
    """GFLOP/s of a ``size``-cubed matmul in fp32 and bf16 on this CPU (best of ``repeats``)."""
    out = {}
    for label, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - started)
        out[label] = 2 * size**3 / best / 1e9
    return out


@dataclass(frozen=True)
class Placement:
    """A device and the precision to compute in there."""

    device: torch.device
    precision: Literal["bf16", "fp16", "fp32"]
    warnings: tuple[str, ...] = field(default=())

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    @property
    def needs_grad_scaler(self) -> bool:
        """fp16 gradients underflow without loss scaling."""
        return self.precision == "fp16"

    def autocast(self):
        """Autocast to the chosen precision on this device, or nothing in fp32."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def describe(self) -> dict[str, str]:
        return {"device": str(self.device), "precision": self.precision}


def place(device: DeviceName = "auto", precision: Precision = "auto") -> Placement:
    """Resolve ``--device`` and ``--precision`` together (DeviceError for impossible pairs)."""
    if precision not in PRECISIONS:
        raise DeviceError(f"--precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    where = resolve_device(device)
    warnings: list[str] = []
    if where.type == "cuda":
        bf16 = _cuda_supports_bf16(where)
        chosen = ("bf16" if bf16 else "fp16") if precision == "auto" else precision
        if chosen == "bf16" and not bf16:
            raise DeviceError(f"--precision bf16: {torch.cuda.get_device_name(where)} has no bf16 support (Ampere or newer "
                              "needed); use fp16 or auto")
    elif where.type == "mps":
        chosen = "fp32" if precision == "auto" else precision
        if chosen == "bf16":
            raise DeviceError("--precision bf16 is not supported on MPS here; use fp16, fp32 or auto")
    else:
        native = cpu_has_native_bf16()
        chosen = ("bf16" if native else "fp32") if precision == "auto" else precision
        if chosen == "fp16":
            raise DeviceError("--precision fp16 is not supported on the CPU; use bf16 (where the CPU has native bf16), fp32 or auto")
        if chosen == "bf16" and not native:
            speed = measure_cpu_matmul()
            warnings.append(
                f"--precision bf16 on a CPU without native bf16: bf16 matmuls are emulated here, measured just now at "
                f"{speed['bf16']:.1f} GFLOP/s against {speed['fp32']:.1f} GFLOP/s in fp32, so this run would be about "
                f"{speed['fp32'] / max(speed['bf16'], 1e-9):.0f}x slower than with --precision fp32 (or auto)"
            )
    return Placement(where, chosen, tuple(warnings))
