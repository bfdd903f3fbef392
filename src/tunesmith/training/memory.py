"""How much memory training takes: the peak so far, and a micro-batch size that fits a budget.

On the CPU the peak is the process's peak resident set (``ru_maxrss``), the figure a user
sees in ``top``; on CUDA it is the peak the caching allocator handed out.
"""

from __future__ import annotations

import resource
import sys

import torch


def peak_memory_mb(device: torch.device | None = None) -> float:
    """The process's peak memory in MB: GPU memory on CUDA, resident set elsewhere."""
    if device is not None and device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)  # bytes on macOS, KiB on Linux
