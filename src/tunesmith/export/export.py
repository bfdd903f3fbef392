"""``tunesmith export``: one call from a result folder to a folder llama.cpp, Ollama and transformers load.

    OUTPUT/model.safetensors, config.json, tokenizer files   the merged model, in the run's training dtype
    OUTPUT/model.gguf        the same weights (F16 or Q8_0) with tokenizer and chat template
    OUTPUT/Modelfile         ``ollama create NAME -f Modelfile``
    OUTPUT/README.md         model card: base model, data sha256, hyperparameters, metrics, how to load
    OUTPUT/export.json       what was written and how the GGUF compared with the safetensors model

The folder is written under a temporary name and renamed into place last. An existing OUTPUT
is replaced only when it holds an earlier export (``export.json``). Its files get the umask's
modes (typically 0644, folders 0755), or owner-only ones with ``private``.

Everything comes from the result folder: the Modelfile's ``SYSTEM`` from the manifest's record of
the training system prompts, never from the data file, which may have moved. Only the round-trip
check reads training prompts: from ``data``, else the manifest's (absolute) path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tunesmith.errors import ConfigError, TunesmithError
from tunesmith.export.check import compare_answers, training_prompts
from tunesmith.export.gguf_writer import check_architecture, write_gguf
from tunesmith.export.model_card import model_card
from tunesmith.export.modelfile import modelfile, read_chat_template, trained_system_prompt
from tunesmith.export.run_folder import RunFolder
from tunesmith.files import file_sha256, staged_folder
from tunesmith.models.registry import result_inside
from tunesmith.training.examples import read_records, system_prompts

FORMATS = ("gguf",)
QUANTIZE = ("f16", "q8_0")


class ExportOutputError(TunesmithError, ValueError):
    """OUTPUT cannot take the export."""


@dataclass
class ExportConfig:
    """Everything ``tunesmith export`` needs; checks live in ``__post_init__``."""

    run: Path
    """A result folder of ``tunesmith train`` (manifest.json, model/ and/or adapter/), or a folder
    holding exactly one (the quickstart's); then ``run`` becomes that one and ``found_in`` the folder given."""
    format: str = "gguf"
    """Only GGUF (llama.cpp, Ollama) so far."""
    quantize: str = "f16"
    """f16: exact for bf16/fp16 runs, weights rounded to F16 for fp32 ones. q8_0: about half the size."""
    output: Path | None = None
    """Default: RUN/gguf-QUANTIZE."""
    check: int = 20
    """Greedy answers to this many training prompts, GGUF against safetensors; 0 skips."""
    name: str | None = None
    """The model's name in the GGUF and the model card; default: the run folder's name."""
    data: Path | None = None
    """Conversations for the check; default: the training data at the path the manifest records."""
    private: bool = False
    """Owner-only modes (0600 files, 0700 folders) instead of the umask's."""
    found_in: Path | None = None
    """Set when ``run`` was a folder holding the result rather than the result itself."""

    def __post_init__(self) -> None:
        self.run = Path(self.run)
        inner = result_inside(self.run)
        if inner is not None:
            self.found_in, self.run = self.run, inner
        if self.data is not None and not Path(self.data).is_file():
            raise ConfigError(f"--data {self.data}: no such file")
        if self.format not in FORMATS:
            raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if self.quantize not in QUANTIZE:
            raise ConfigError(f"--quantize must be one of {', '.join(QUANTIZE)}, got {self.quantize!r}")
        if self.check < 0:
            raise ConfigError(f"--check must be 0 or more, got {self.check}")
        self.output = Path(self.output) if self.output is not None else self.run / f"gguf-{self.quantize}"
        self.name = self.name or self.run.resolve().name


def _check_output(output: Path) -> None:
    if output.exists() and not output.is_dir():
        raise ExportOutputError(f"{output} exists and is not a folder")
    if output.is_dir() and any(output.iterdir()) and not (output / "export.json").is_file():
        raise ExportOutputError(f"{output} holds other files (no export.json): choose another --output")


def export_run(config: ExportConfig) -> dict[str, Any]:
    """Write the export folder; returns what ``export.json`` records."""
    run = RunFolder.open(config.run)
    check_architecture(run.model_config())  # before any weights load
    output = config.output
    _check_output(output)
    model, tokenizer, merged_from = run.load_merged()
    model = model.to(getattr(torch, run.dtype_name))
    data = _check_data(config, run)
    prompts = _system_prompts(run, data)
    with staged_folder(output, config.private) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        summary = write_gguf(model, tokenizer, staging / "model.gguf", config.quantize, config.name)
        template = read_chat_template(tokenizer)
        system = trained_system_prompt(prompts, template, fine_tuned=run.manifest.get("kind") == "fine-tuning")
        (staging / "Modelfile").write_text(modelfile(template, system))
        record: dict[str, Any] = {
            "run": str(config.run), "output": str(output), "format": config.format, "quantize": config.quantize,
            "name": config.name, "mergedFrom": merged_from, "dtype": run.dtype_name,
            "baseModelId": run.manifest.get("baseModelId") or run.manifest.get("model"),
            "gguf": {
                "file": "model.gguf", "bytes": summary.path.stat().st_size, "sha256": file_sha256(summary.path),
                "fileType": summary.file_type, "tensors": summary.tensors, "tensorTypes": summary.tensor_types,
                "preTokenizer": summary.pre_tokenizer,
            },
            "chatTemplate": "chatml" if template.is_chatml else "other (Modelfile has no TEMPLATE)",
            "systemPrompt": system.text,
            "systemPromptSource": system.why,
            "trainedSystemPrompts": prompts,
            "check": _check(config, run, data, (model, tokenizer), staging / "model.gguf"),
        }
        (staging / "README.md").write_text(model_card(run.manifest, record, config.name))
        (staging / "export.json").write_text(json.dumps(record, indent=2, ensure_ascii=False))
    return record


def _training(run: RunFolder) -> dict[str, Any]:
    return run.manifest.get("data", {}).get("training", {})


def _check_data(config: ExportConfig, run: RunFolder) -> Path | None:
    """``--data``, else the training data where the manifest says it was (older manifests hold the
    path relative to the folder training ran in; it is tried from here)."""
    if config.data is not None:
        return Path(config.data)
    recorded = _training(run).get("path")
    return Path(recorded) if recorded else None


def _system_prompts(run: RunFolder, data: Path | None) -> dict[str, Any] | None:
    """The manifest's record of the training system prompts. A manifest from before they were
    recorded has none; then a data file whose sha256 is the manifest's is the training data itself."""
    training = _training(run)
    if "systemPrompts" in training:
        return training["systemPrompts"]
    if run.manifest.get("kind") == "fine-tuning" and data is not None and data.is_file() and file_sha256(data) == training.get("sha256"):
        return system_prompts(read_records(data))
    return None


def _check(config: ExportConfig, run: RunFolder, data: Path | None, reference, gguf: Path) -> dict[str, Any] | None:
    if config.check == 0:
        return None
    if run.manifest.get("kind") != "fine-tuning":
        return {"skipped": "the run trained on plain text: there are no prompts to answer"}
    if data is None or not data.is_file():
        return {"skipped": f"the training data {data} is not there; pass --data with a conversations file to check against"}
    result = compare_answers(reference, gguf, training_prompts(data, config.check)).as_dict()
    return {**result, "data": str(data.resolve()), "trainingData": file_sha256(data) == _training(run).get("sha256")}
