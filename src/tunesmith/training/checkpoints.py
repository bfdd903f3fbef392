"""Checkpoints that are either complete or absent.

Each checkpoint is a folder ``checkpoints/step-000042`` holding the trainable weights
(safetensors), the optimizer state and ``state.json`` (step, RNG state, metric history).
It is written under a temporary name and renamed into place last, so a crash or a full
disk mid-write never leaves a partial checkpoint that ``--resume`` would pick up.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from tunesmith.errors import TunesmithError
from tunesmith.files import set_modes

PREFIX = "step-"


class CheckpointError(TunesmithError, RuntimeError):
    pass


def checkpoint_dir(output: Path) -> Path:
    return output / "checkpoints"


def list_checkpoints(output: Path) -> list[Path]:
    folder = checkpoint_dir(output)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def latest_checkpoint(output: Path) -> Path | None:
    found = list_checkpoints(output)
    return found[-1] if found else None


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().contiguous().clone() for name, p in model.named_parameters() if p.requires_grad}


def capture_rng() -> dict[str, list]:
    """This process's random state: the CPU generator, and CUDA's where CUDA is in use."""
    rng = {"torch": torch.get_rng_state().tolist()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state().tolist()
    return rng


def restore_rng(rng: dict[str, list]) -> None:
    torch.set_rng_state(torch.tensor(rng["torch"], dtype=torch.uint8))
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(torch.tensor(rng["cuda"], dtype=torch.uint8))


def save_checkpoint(
    output: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any], keep: int,
    rng_of_ranks: list[dict] | None = None, weights: dict[str, torch.Tensor] | None = None, optimizer_state: dict | None = None,
    protect: int | None = None,
) -> Path:
    """``rng_of_ranks``: every rank's :func:`capture_rng`, in rank order (this process's alone by
    default). ``weights`` and ``optimizer_state``: what to save instead of the model's trainable
    parameters and the optimizer's own state (a sharded run gathers them first). Only the
    ``keep`` newest checkpoints stay, and the one of step ``protect`` (the best validation)."""
    folder = checkpoint_dir(output)
    folder.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(output, step)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=folder))
    try:
        save_file(weights if weights is not None else trainable_state(model), str(staging / "trainable.safetensors"))
        torch.save(optimizer_state if optimizer_state is not None else optimizer.state_dict(), staging / "optimizer.pt")
        ranks = rng_of_ranks or [capture_rng()]
        rng = {**ranks[0], "ranks": ranks}
        (staging / "state.json").write_text(json.dumps({**state, "step": step, "rng": rng}))
        set_modes(staging)  # mkdtemp's 0700 and safetensors' 0600: a result folder follows the umask
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise CheckpointError(f"could not write checkpoint {final}: {exc.strerror or exc}") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    kept = checkpoint_path(output, protect) if protect is not None else None
    for old in list_checkpoints(output)[:-keep] if keep > 0 else []:
        if old != kept:
            shutil.rmtree(old, ignore_errors=True)
    return final


def checkpoint_path(output: Path, step: int) -> Path:
    """Where the checkpoint of ``step`` is (or would be) written."""
    return checkpoint_dir(output) / f"{PREFIX}{step:06d}"


def load_checkpoint(path: Path, model: torch.nn.Module | dict[str, torch.nn.Parameter], optimizer: torch.optim.Optimizer, rank: int = 0) -> dict[str, Any]:
    """Weights, optimizer and this rank's random state from ``path``. A rank the checkpoint
    has no state for (it was saved by fewer ranks) continues from rank 0's."""
    weights, optimizer_state, state = read_checkpoint(path)
    if state.get("sharded"):
        raise CheckpointError(f"{path} was written by a --shard run: resume it with --shard")
    copy_weights(path, weights, model)
    optimizer.load_state_dict(optimizer_state)
    restore_rank_rng(state, rank)
    return state


def load_weights(path: Path, model: torch.nn.Module | dict[str, torch.nn.Parameter]) -> None:
    """The trainable weights of the checkpoint at ``path`` into ``model`` (nothing else)."""
    copy_weights(path, load_file(str(path / "trainable.safetensors")), model)


def copy_weights(path: Path, weights: dict[str, torch.Tensor], model: torch.nn.Module | dict[str, torch.nn.Parameter]) -> None:
    """``weights`` into ``model``'s parameters of the same names (or into a name -> parameter map)."""
    params = model if isinstance(model, dict) else dict(model.named_parameters())
    missing = [name for name in weights if name not in params]
    if missing:
        raise CheckpointError(f"{path} does not match this model (unknown parameter {missing[0]}); was it made with another --method or model?")
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor)


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict, dict[str, Any]]:
    """(weights, optimizer state, state.json) as written."""
    weights = load_file(str(path / "trainable.safetensors"))
    optimizer_state = torch.load(path / "optimizer.pt", weights_only=True)
    return weights, optimizer_state, json.loads((path / "state.json").read_text())


def restore_rank_rng(state: dict[str, Any], rank: int) -> None:
    """This rank's random state from a checkpoint's ``state.json`` (rank 0's when it has none)."""
    ranks = state["rng"].get("ranks") or [state["rng"]]
    restore_rng(ranks[rank] if rank < len(ranks) else ranks[0])
