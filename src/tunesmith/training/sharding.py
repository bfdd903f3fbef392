"""``--shard``: full fine-tuning with parameters, gradients and optimizer state split over the
ranks (PyTorch's FSDP2, ``torch.distributed.fsdp.fully_shard``), for models whose full
training state does not fit one device.

Each decoder layer is one FSDP unit and the rest of the model (embeddings, final norm, the
output head, tied or not) is the root unit. FSDP averages the reduce-scattered gradients over the
ranks, so the loop scales each rank's loss by the world size (gloo has no pre-multiplied
sum to ask for a plain sum): with the loss already normalised by the step's target tokens
over all ranks, a sharded step equals the 1-process step up to float rounding.

What changes for the loop (``loop.py``): the loss runs the model's own ``forward`` (FSDP
gathers parameters in its forward hooks, so the decoder and the head cannot be called
separately), every rank runs the same number of micro-batches (a rank with no record left
runs a zero-weighted one, because each forward and backward is a collective), and
checkpoints and results are gathered to full tensors first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from tunesmith.errors import ConfigError
from tunesmith.models.loading import load_model
from tunesmith.models.registry import ModelSource
from tunesmith.training.checkpoints import CheckpointError, read_checkpoint, restore_rank_rng
from tunesmith.training.distributed import World

FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def check_sharding(shard: bool, method: str, world: World) -> None:
    if not shard:
        return
    if method != "full":
        raise ConfigError("--shard splits full fine-tuning over the ranks: use --method full (LoRA adapters are small enough to copy)")
    if not world.distributed:
        raise ConfigError("--shard splits the model over ranks: start 2 or more with --nproc N (or torchrun)")


def shard_model(model: torch.nn.Module, world: World, device: torch.device) -> None:
    """Make every decoder layer, then the whole model, an FSDP unit over all ranks."""
    mesh = init_device_mesh(device.type, (world.size,))
    for layer in model.get_decoder().layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)


def full_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter as a full CPU tensor, once per parameter (tied weights once), as
    ``named_parameters`` names them. A collective: every rank calls it; rank 0 gets the
    tensors, the others an empty dict."""
    names = [name for name, _ in model.named_parameters()]
    state = get_model_state_dict(model, options=FULL)
    return {name: state[name].clone() for name in names if name in state}


def full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer state, full and keyed by parameter name (a collective; rank 0 gets it)."""
    return get_optimizer_state_dict(model, optimizer, options=FULL)


def load_sharded_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, rank: int) -> dict[str, Any]:
    """Each rank takes its shards of a checkpoint a ``--shard`` run wrote (a collective)."""
    weights, optimizer_state, state = read_checkpoint(path)
    if not state.get("sharded"):
        raise CheckpointError(f"{path} was written by a run without --shard: resume it without --shard")
    options = StateDictOptions(full_state_dict=True, strict=False)  # strict=False: a tied weight is stored once
    set_model_state_dict(model, weights, options=options)
    set_optimizer_state_dict(model, optimizer, optimizer_state, options=options)
    restore_rank_rng(state, rank)
    return state


def unsharded_copy(model: torch.nn.Module, source: ModelSource, world: World) -> torch.nn.Module | None:
    """The trained weights in a plain (unsharded) model on rank 0, for the result folder; None
    on the other ranks. A collective: every rank calls it."""
    weights = full_weights(model)
    if not world.is_main:
        return None
    plain = load_model(source)
    plain.load_state_dict(weights, strict=False)  # strict=False: a tied weight is stored once
    return plain
