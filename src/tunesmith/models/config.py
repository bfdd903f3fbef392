"""Where tunesmith keeps things, and the user's model configuration file.

``TUNESMITH_HOME`` (default ``~/.cache/tunesmith``) holds converted models. The model
configuration is a TOML file, ``TUNESMITH_CONFIG`` or ``~/.config/tunesmith/models.toml``::

    [tiers.lite]
    source = "/models/Qwen2.5-0.5B-Instruct"      # a local HF folder, a .gguf file, or a hub id
    effective_batch_size = 16                     # optional; the tier's default otherwise

    [models.gemma]
    source = "/models/gemma-3-270m-it-Q4_K_M.gguf"
    effective_batch_size = 8

Tiers map ``lite`` and ``pro`` (and may override ``micro``); ``models`` add named models that
are none of the tiers (their warmup divisor follows the 10 x batch rule).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from tunesmith.errors import TunesmithError


def home() -> Path:
    return Path(os.environ.get("TUNESMITH_HOME", Path.home() / ".cache" / "tunesmith"))


def config_path() -> Path:
    return Path(os.environ.get("TUNESMITH_CONFIG", Path.home() / ".config" / "tunesmith" / "models.toml"))


class ModelConfigError(TunesmithError, ValueError):
    """The configuration file is unreadable or wrong; the message names file and key."""


@dataclass(frozen=True)
class ConfiguredModel:
    """One entry of the configuration file."""

    name: str
    source: str
    effective_batch_size: int | None = None
    gguf_file: str | None = None
    """With a folder source: the GGUF file inside it to load."""


def load_model_config(path: Path | None = None) -> dict[str, ConfiguredModel]:
    """Entries by name (tier names and model names share one namespace)."""
    path = path or config_path()
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelConfigError(f"{path}: cannot be read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ModelConfigError(f"{path}: invalid TOML: {exc}") from exc
    entries: dict[str, ConfiguredModel] = {}
    for section in ("tiers", "models"):
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise ModelConfigError(f"{path}: [{section}] must be a table")
        for name, entry in table.items():
            where = f"{path}: {section}.{name}"
            if not isinstance(entry, dict) or not isinstance(entry.get("source"), str) or not entry["source"]:
                raise ModelConfigError(f'{where}.source: missing; give a local folder, a .gguf file or a hub id')
            unknown = set(entry) - {"source", "effective_batch_size", "gguf_file"}
            if unknown:
                raise ModelConfigError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: source, effective_batch_size, gguf_file)")
            batch = entry.get("effective_batch_size")
            if batch is not None and (not isinstance(batch, int) or isinstance(batch, bool) or batch < 1):
                raise ModelConfigError(f"{where}.effective_batch_size: {batch!r} is not a positive integer")
            entries[name] = ConfiguredModel(name, entry["source"], batch, entry.get("gguf_file"))
    return entries
