"""``tunesmith export``: one call from a result folder to a folder llama.cpp, Ollama and transformers load.

    OUTPUT/model.safetensors, config.json, tokenizer files   the merged model, in the run's training dtype
    OUTPUT/model.gguf        the same weights (F16 or Q8_0) with tokenizer and chat template
    OUTPUT/Modelfile         ``ollama create NAME -f Modelfile``
    OUTPUT/README.md         model card: base model, data sha256, hyperparameters, metrics, how to load
    OUTPUT/export.json       what was written and how the GGUF compared with the safetensors model

The folder is written under a temporary name and renamed into place last. An existing OUTPUT
is replaced only when it holds an earlier export (``export.json``).
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
from tunesmith.export.modelfile import common_system_prompt, modelfile, read_chat_template
from tunesmith.export.run_folder import RunFolder
from tunesmith.files import file_sha256, staged_folder

FORMATS = ("gguf",)
QUANTIZE = ("f16", "q8_0")


class ExportOutputError(TunesmithError, ValueError):
    """OUTPUT cannot take the export."""


@dataclass
class ExportConfig:
    """Everything ``tunesmith export`` needs; checks live in ``__post_init__``."""

    run: Path
    """A result folder of ``tunesmith train`` (manifest.json, model/ and/or adapter/)."""
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

    def __post_init__(self) -> None:
        self.run = Path(self.run)
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
    with staged_folder(output) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        summary = write_gguf(model, tokenizer, staging / "model.gguf", config.quantize, config.name)
        template = read_chat_template(tokenizer)
        data = Path(run.manifest.get("data", {}).get("training", {}).get("path", ""))
        system = common_system_prompt(data) if run.manifest.get("kind") == "fine-tuning" else None
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
            "systemPrompt": system or template.default_system,
            "check": _check(config, run, data, (model, tokenizer), staging / "model.gguf"),
        }
        (staging / "README.md").write_text(model_card(run.manifest, record, config.name))
        (staging / "export.json").write_text(json.dumps(record, indent=2, ensure_ascii=False))
    return record


def _check(config: ExportConfig, run: RunFolder, data: Path, reference, gguf: Path) -> dict[str, Any] | None:
    if config.check == 0:
        return None
    if run.manifest.get("kind") != "fine-tuning":
        return {"skipped": "the run trained on plain text: there are no prompts to answer"}
    if not data.is_file():
        return {"skipped": f"the training data {data} is no longer there"}
    return compare_answers(reference, gguf, training_prompts(data, config.check)).as_dict()
