"""``tunesmith models``: which models exist here, and preparing them."""

from __future__ import annotations

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
    try:
        source = resolve_model(name)
    except ModelUnavailableError as exc:
        return {"name": name, "source": str(exc).splitlines()[0], "available": False, "parameters": None,
                "effectiveBatchSize": TIERS[name].effective_batch_size if name in TIERS else None}
    available, parameters = True, None
    try:
        folder = source.folder() if source.kind != "builtin-gguf" else None
        if source.kind == "builtin-gguf":
            from tunesmith.models.gguf_cache import micro_gguf

            micro_gguf()
        if folder is not None and source.kind != "hub":
            available = (folder / "config.json").exists()
        parameters = _parameter_count(source) if available else None
    except ModelUnavailableError as exc:
        available = False
    return {"name": name, "source": source.describe(), "available": available, "parameters": parameters,
            "effectiveBatchSize": source.tier.effective_batch_size}


def _parameter_count(source) -> int | None:
    """From the cached safetensors header, without loading the model (None before `pull`)."""
    import json
    import struct

    from tunesmith.models.gguf_cache import COMPLETE_MARKER

    if source.kind == "builtin-gguf":
        from tunesmith.models.gguf_cache import MICRO_SHA256
        from tunesmith.models.config import home

        folder = home() / "models" / f"SmolLM2-135M-Instruct-{MICRO_SHA256[:12]}"
        if not (folder / COMPLETE_MARKER).exists():
            return None
    elif source.kind == "hub":
        return None
    else:
        folder = source.folder()
    total = 0
    for path in folder.glob("*.safetensors"):
        with path.open("rb") as handle:
            header = json.loads(handle.read(struct.unpack("<Q", handle.read(8))[0]))
        for name, entry in header.items():
            if name != "__metadata__":
                count = 1
                for dim in entry["shape"]:
                    count *= dim
                total += count
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
        [r["name"], "yes" if r["available"] else "no", f"{r['parameters'] / 1e6:.0f}M" if r["parameters"] else "-",
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
