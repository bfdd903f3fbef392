"""Data parallelism on torch.distributed: N ranks train as one, with the guide's semantics intact.

Processes are started by torchrun (``torch.distributed.run``): ``tunesmith train --nproc N``
runs it for one machine, and ``torchrun --nnodes ... -m tunesmith train`` spans several.
torchrun's agent watches the ranks: when one dies it stops the others and reports the
failure; ``--resume`` then continues from the last checkpoint on any number of ranks, and
ranks torchrun restarts itself (``--max-restarts``) resume from it on their own (on gloo
the restarted ranks often fail to reconnect, a torch issue reproduced without tunesmith:
``--resume`` is the dependable path). The backend is NCCL on CUDA and gloo on the CPU.

What each optimizer step does, on every rank:
- It takes the step's records (the same records the 1-process run takes: the order is a
  function of seed and epoch only), sorts them by length and deals them round-robin, so
  each rank gets a share with about the same number of tokens.
- Each rank runs its share in micro-batches, scaling each loss by the step's target
  tokens summed over ALL ranks (known to every rank without communication), and sums its
  gradients locally.
- One all-reduce (SUM) of the gradients gives every rank the exact gradient of the
  1-process step; clipping and the optimizer step then run identically everywhere.
- Before each micro-batch the ranks agree (all-reduce MAX of a flag) on whether to stop,
  so a stop seen by one rank discards the step on all of them.

Only rank 0 writes metrics, events, checkpoints and results; checkpoints carry every
rank's RNG state (gathered to rank 0), and a run resumes on any world size.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from tunesmith.devices import Placement, place
from tunesmith.training.examples import Example


@dataclass(frozen=True)
class World:
    """This process's place among the ranks (``World()`` is a single process)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Element-wise sum over ranks (float64, so token counts stay exact)."""
        if not self.distributed:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.tolist()

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank if ``flag`` is True on any."""
        if not self.distributed:
            return flag
        tensor = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return bool(tensor.item())

    def sum_gradients(self, parameters: list[torch.nn.Parameter]) -> None:
        """Every rank ends with the sum of all ranks' gradients (missing ones count as zero),
        flattened into one buffer so the step costs a single all-reduce."""
        if not self.distributed:
            return
        for p in parameters:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in parameters]
        flat = torch._utils._flatten_dense_tensors(grads)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        for grad, reduced in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
            grad.copy_(reduced)

    def broadcast_parameters(self, parameters: list[torch.nn.Parameter]) -> None:
        """Rank 0's values everywhere (the runs start identical even if initialisation differed)."""
        if not self.distributed:
            return
        with torch.no_grad():
            for p in parameters:
                dist.broadcast(p.data, src=0)

    def gather(self, value: object) -> list[object]:
        """``value`` from every rank, in rank order, on every rank."""
        if not self.distributed:
            return [value]
        out: list[object] = [None] * self.size
        dist.all_gather_object(out, value)
        return out

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def placement_for(device: str, precision: str, world: World) -> Placement:
    """The device and precision of this rank: with several ranks on CUDA, each takes the GPU
    of its local rank."""
    chosen = place(device, precision)
    if world.distributed and chosen.device.type == "cuda":
        torch.cuda.set_device(world.local_rank)
        return place(f"cuda:{world.local_rank}", precision)
    return chosen


def world_from_environment() -> World:
    """The world torchrun describes in ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, or one process."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))


def join(world: World, device: torch.device, timeout: dt.timedelta | None = None) -> None:
    """Join the process group (once per process): NCCL on CUDA, gloo otherwise. ``timeout``:
    how long a collective waits for the slowest rank (torch's default when None)."""
    if not world.distributed or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    extra = {"timeout": timeout} if timeout is not None else {}
    if device.type == "cuda":
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group(backend=backend, rank=world.rank, world_size=world.size, **extra)


def broadcast_from_main(world: World, value: object) -> object:
    """Rank 0's ``value`` on every rank (the others pass anything)."""
    if not world.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def restarted_by_torchrun() -> bool:
    """True in a rank torchrun restarted after a failure (``--max-restarts``): resume then."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def share(indices: list[int], examples: list[Example], world: World) -> list[int]:
    """This rank's part of a step: records by length, longest first, dealt round-robin."""
    if not world.distributed:
        return list(indices)
    ordered = sorted(indices, key=lambda i: (-len(examples[i]), i))
    return ordered[world.rank :: world.size]
