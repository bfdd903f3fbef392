"""``tunesmith models``: which models exist here, and preparing them."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import click

from tunesmith.cli.errors import user_errors
from tunesmith.cli.options import json_option
from tunesmith.cli.render import console, print_json, table
from tunesmith.models.config import config_path, load_model_config
from tunesmith.models.gguf_cache import ModelUnavailableError
from tunesmith.models.registry import resolve_model
from tunesmith.tiers import TIERS


@click.group()
def models() -> None:
    """List and prepare models."""


def _row(name: str) -> dict:
    batch = TIERS[name].effective_batch_size if name in TIERS else None
    try:
        source = resolve_model(name)
    except ModelUnavailableError as exc:
        return {"name": name, "source": str(exc).splitlines()[0], "available": False, "parameters": None, "effectiveBatchSize": batch}
    folder = source.prepared_folder()
    return {
        "name": name, "source": source.describe(), "available": source.available(),
        "parameters": _parameter_count(folder) if folder else None, "effectiveBatchSize": source.tier.effective_batch_size,
    }


def _parameter_count(folder: Path) -> int | None:
    """From the safetensors headers, without loading the model."""
    total = 0
    for path in folder.glob("*.safetensors"):
        with path.open("rb") as handle:
            header = json.loads(handle.read(struct.unpack("<Q", handle.read(8))[0]))
        total += sum(math.prod(entry["shape"]) for name, entry in header.items() if name != "__metadata__")
    return total or None


@models.command("list")
@json_option
def list_models(as_json: bool) -> None:
    """Tiers and configured models: source, parameters, effective batch size, availability."""
    with user_errors():
        names = list(TIERS) + [n for n in load_model_config() if n not in TIERS]
        rows = [_row(name) for name in names]
    if as_json:
        print_json(rows)
        return
    console.print(table(None, ["Model", "Available", "Parameters", "Batch", "Source"], [
        [r["name"], "yes" if r["available"] else "no", f"{r['parameters'] / 1e6:.0f}M" if r["parameters"] else "- (pull)" if r["available"] else "-",
         r["effectiveBatchSize"] or "-", r["source"]] for r in rows
    ]))
    console.print(f"\nConfigure lite, pro or other models in {config_path()} (see README).")


@models.command("pull")
@click.argument("name")
def pull(name: str) -> None:
    """Prepare NAME for use (convert a GGUF model into the safetensors cache)."""
    with user_errors():
        source = resolve_model(name)
        folder = source.folder()
    console.print(f"{name}: ready at {folder}")
