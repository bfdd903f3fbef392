"""Several LoRA adapters over one frozen base in one forward pass: each adapter on its segment.

A micro-batch of a group of jobs (``multi_adapter/trainer.py``) holds the records of several jobs,
each job's records next to each other: in rows of a padded batch, or in token ranges of a
packed row. Every PEFT LoRA ``Linear`` computes the base matmul once over all of them, then
adds each job's ``lora_B(lora_A(x)) * scaling`` to that job's segment only: the other jobs'
adapters never see a job's tokens, so each job's loss, and each adapter's gradient, is the one
a run of that job alone gives (up to float rounding; ``tests/test_jobs_together.py``).

Two ways to apply them, the same sums:

- ``loop``: one pair of small matmuls per segment (PEFT's mixed-adapter batches do this for
  inference). Least arithmetic: the CPU's choice.
- ``stacked``: every adapter's ``A`` stacked into one ``(K x rank) x in`` matrix, one matmul
  for all tokens, the columns of other jobs' adapters zeroed per token by a mask, then one
  matmul with the stacked ``B``. K times the adapter arithmetic (small next to the base's)
  in two matmuls whatever K is: a GPU running a small model is bound by kernel launches, not
  arithmetic (the idea of Punica's SGMV, without a custom kernel).

Outside :func:`adapter_segments`, the layers compute as PEFT does.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from tunesmith.training.fast_lora import give_lora_linears


@dataclass(frozen=True)
class Segments:
    """Which adapter computes which slice of a batch, along ``dim`` (0: rows, 1: token positions)."""

    adapters: tuple[str, ...]
    bounds: tuple[int, ...]
    """``len(adapters) + 1`` offsets from 0 to the dimension's size: adapter ``i`` owns ``bounds[i]:bounds[i + 1]``."""
    dim: int
    stacked: bool = False
    _masks: dict = field(default_factory=dict, compare=False, repr=False)
    """Stacked masks made once per micro-batch and reused by every layer (keyed by ranks, device, dtype, rank of x)."""

    def __post_init__(self) -> None:
        if len(self.bounds) != len(self.adapters) + 1 or self.bounds[0] != 0 or any(
            b < a for a, b in zip(self.bounds, self.bounds[1:])
        ):
            raise ValueError(f"segments must tile the batch from 0: got {self.bounds} for {len(self.adapters)} adapter(s)")

    @classmethod
    def of(cls, owners: Sequence[tuple[str, int]], dim: int, stacked: bool = False) -> Segments:
        """From ``(adapter, length)`` pairs in batch order."""
        bounds = [0]
        for _, length in owners:
            bounds.append(bounds[-1] + length)
        return cls(tuple(name for name, _ in owners), tuple(bounds), dim, stacked)

    @classmethod
    def single(cls, name: str) -> Segments:
        """One adapter for the whole batch, whatever its size (a job's validation pass)."""
        return cls((name,), (0, 0), dim=0)

    def owner_index(self, device: torch.device) -> torch.Tensor:
        """Each position's segment number along ``dim`` (for the stacked mask)."""
        sizes = torch.tensor([b - a for a, b in zip(self.bounds, self.bounds[1:])], device=device)
        return torch.repeat_interleave(torch.arange(len(self.adapters), device=device), sizes)

    def stacked_mask(self, ranks: tuple[int, ...], device: torch.device, dtype: torch.dtype, dims: int) -> torch.Tensor:
        """1 where a position's segment owns a column of the stacked adapters' down projection,
        shaped to broadcast over it; made once per micro-batch, not once per layer."""
        key = (ranks, device, dtype, dims)
        if key not in self._masks:
            column_owner = torch.repeat_interleave(torch.arange(len(ranks)), torch.tensor(ranks)).to(device)
            owner = self.owner_index(device)
            shape = [1] * dims
            shape[self.dim], shape[-1] = owner.numel(), column_owner.numel()
            self._masks[key] = (owner.unsqueeze(1) == column_owner.unsqueeze(0)).view(shape).to(dtype)
        return self._masks[key]


_current: contextvars.ContextVar[Segments | None] = contextvars.ContextVar("adapter_segments", default=None)


@contextlib.contextmanager
def adapter_segments(segments: Segments) -> Iterator[None]:
    """Within the block, patched layers apply each adapter to its segment of the batch."""
    token = _current.set(segments)
    try:
        yield
    finally:
        _current.reset(token)


def _dropped(layer, name: str, x: torch.Tensor) -> torch.Tensor:
    dropout = layer.lora_dropout[name]
    return x if isinstance(dropout, torch.nn.Identity) else dropout(x)


def _loop(layer, x: torch.Tensor, segments: Segments) -> torch.Tensor:
    if len(segments.adapters) == 1:
        segments = Segments(segments.adapters, (0, x.shape[segments.dim]), segments.dim)
    parts = []
    for n, name in enumerate(segments.adapters):
        start, end = segments.bounds[n], segments.bounds[n + 1]
        if end == start:
            continue
        down_weight, up_weight = layer.lora_A[name].weight, layer.lora_B[name].weight
        piece = x.narrow(segments.dim, start, end - start)
        if not torch.is_autocast_enabled(x.device.type):
            piece = piece.to(down_weight.dtype)
        parts.append(F.linear(F.linear(_dropped(layer, name, piece), down_weight) * layer.scaling[name], up_weight))
    return torch.cat(parts, dim=segments.dim)


def _stacked(layer, x: torch.Tensor, segments: Segments) -> torch.Tensor:
    names = segments.adapters
    if len(names) == 1 or any(not isinstance(layer.lora_dropout[name], torch.nn.Identity) for name in names):
        return _loop(layer, x, segments)  # dropout is per adapter: the stacked matmul would share its masks
    downs = torch.cat([layer.lora_A[name].weight for name in names])  # (K x r) x in
    ups = torch.cat([layer.lora_B[name].weight * layer.scaling[name] for name in names], dim=1)  # out x (K x r)
    if not torch.is_autocast_enabled(x.device.type):
        x = x.to(downs.dtype)
    down = F.linear(x, downs)
    ranks = tuple(layer.lora_A[name].weight.shape[0] for name in names)
    return F.linear(down * segments.stacked_mask(ranks, x.device, down.dtype, down.dim()), ups)


def _forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    segments = _current.get()
    if segments is None or args or kwargs:
        return type(self).forward(self, x, *args, **kwargs)
    if len(segments.adapters) > 1 and segments.bounds[-1] != x.shape[segments.dim]:
        raise ValueError(f"adapter segments cover {segments.bounds[-1]} of {x.shape[segments.dim]} along dimension {segments.dim}")
    base = self.base_layer
    result = F.linear(x, base.weight, base.bias)
    added = (_stacked if segments.stacked else _loop)(self, x, segments)
    return result + added.to(result.dtype)


def install_segmented_forward(model) -> int:
    """Give every PEFT LoRA ``Linear`` over an ``nn.Linear`` of ``model`` the segmented
    forward (PEFT's own outside :func:`adapter_segments`); returns how many."""
    return give_lora_linears(model, _forward)
