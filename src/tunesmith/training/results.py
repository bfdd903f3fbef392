"""The result folder of a finished run: adapter, merged model, tokenizer, manifest, plot.

    OUTPUT/adapter/            the LoRA adapter in PEFT format (LoRA runs only)
    OUTPUT/model/              a full model in HF safetensors format, with its tokenizer:
                               base + adapter merged, so plain transformers loads it
    OUTPUT/manifest.json       what was trained, on what, how, and how it went (the data by absolute
                               path and sha256, and its system prompts, so export needs only this folder)
    OUTPUT/loss_curve.png      training and validation loss per optimizer step
    OUTPUT/training_artifacts/, validation_artifacts/, events.jsonl   (written while training)
"""

from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path
from typing import Any

from tunesmith import __version__
from tunesmith.datasets import DatasetKind
from tunesmith.files import file_sha256, set_modes
from tunesmith.models.loading import load_model
from tunesmith.training.estimate import estimate_vs_actual
from tunesmith.training.examples import read_records, system_prompts
from tunesmith.training.loop import TrainingRun
from tunesmith.training.memory import peak_memory_mb
from tunesmith.training.plot import plot_loss


def _versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    return {
        "tunesmith": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
        "peft": peft.__version__, "python": platform.python_version(),
    }


def _replace_folder(staging: Path, final: Path, private: bool) -> None:
    set_modes(staging, private)  # safetensors writes 0600 files whatever the umask
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)


def name_base_model(adapter: Path, public_id: str) -> None:
    """PEFT records the folder the base was loaded from (for micro, a cache path that means
    nothing elsewhere): name the base by ``public_id`` in the adapter's config and model card.
    Rewritten after saving, because PEFT looks the name up on the hub while it saves."""
    config_file = adapter / "adapter_config.json"
    config = json.loads(config_file.read_text())
    local = config.get("base_model_name_or_path")
    config["base_model_name_or_path"] = public_id
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True))
    card = adapter / "README.md"
    if local and card.is_file():
        card.write_text(card.read_text().replace(local, public_id))


def _model_spec(spec: str) -> str:
    """``--model`` as given, a path made absolute: what resolves the base again (``tunesmith export``)."""
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


def _training_data(data: Path, kind: DatasetKind, records: int) -> dict[str, Any]:
    """The manifest's ``data.training``: an absolute path (export runs from any folder), the
    sha256 that says whether a file there is still the same, and, for conversations, the
    system prompts trained with (``tunesmith export`` writes the Modelfile's SYSTEM from them)."""
    entry: dict[str, Any] = {"path": str(data.resolve()), "sha256": file_sha256(data), "records": records}
    if kind is DatasetKind.FINE_TUNING:
        entry["systemPrompts"] = system_prompts(read_records(data))
    return entry


def write_results(run: TrainingRun) -> dict[str, Any]:
    """Save the model(s) and the manifest; returns the manifest."""
    config, output = run.config, run.config.output
    model = run.model
    model.eval()
    if config.method == "lora":
        staging = output / ".adapter.partial"
        shutil.rmtree(staging, ignore_errors=True)
        model.save_pretrained(staging)
        name_base_model(staging, run.source.public_id())
        run.tokenizer.save_pretrained(staging)
        _replace_folder(staging, output / "adapter", config.private)
        if config.merge and run.frozen_dtype is not None:  # the base trained in low precision: merge into the fp32 original
            from peft import PeftModel

            model = PeftModel.from_pretrained(load_model(run.source), output / "adapter")
        model = model.merge_and_unload() if config.merge and config.quantize == "none" else None  # QLoRA: adapter only
    if model is not None:
        staging = output / ".model.partial"
        shutil.rmtree(staging, ignore_errors=True)
        model.save_pretrained(staging, safe_serialization=True)
        run.tokenizer.save_pretrained(staging)
        _replace_folder(staging, output / "model", config.private)
    training_rows, validation_rows = run.metrics.training_rows, run.metrics.validation_rows
    hp = config.hyperparameters
    manifest = {
        "tunesmith": __version__,
        "baseModel": run.source.describe(),
        "baseModelId": run.source.public_id(),
        "model": run.source.name,
        "modelSpec": _model_spec(config.model),
        "tier": run.source.tier.name,
        "effectiveBatchSize": run.plan.effective_batch_size,
        "kind": config.kind.value,
        "method": config.method,
        "lora": vars(config.lora) if config.method == "lora" else None,
        "hyperParameters": {"sent": dict(config.hyperparameters_sent), "resolved": hp.to_wire()},
        "duplicationFactor": config.duplication,
        "seed": config.seed,
        "maxLength": config.max_length,
        "device": str(run.placement.device),
        "precision": run.placement.precision,
        "worldSize": run.world.size,
        "quantize": config.quantize,
        "data": {
            "training": _training_data(config.data, config.kind, run.report.training.records),
            "validation": [
                {"path": str(p.resolve()), "sha256": file_sha256(p), "records": s.records}
                for p, s in zip(config.validation, run.report.validation)
            ],
            "trainingTokens": run.train_data.tokens,
            "truncatedRecords": run.train_data.truncated,
            "droppedRecords": run.train_data.dropped,
        },
        "plan": run.plan.as_dict(),
        "warnings": list(run.warnings),
        "result": {
            **run_summary(run),
            "finalTrainingLoss": training_rows[-1][2] if training_rows else None,
            "finalValidationLoss": validation_rows[-1][2] if validation_rows else None,
            "stopped": run.state.stopped,
        },
        **run.watch.manifest(run.state.step),
        "estimate": None,
        "versions": _versions(),
    }
    manifest["estimate"] = estimate_vs_actual(output, manifest["result"])  # written before training, if it was
    (output / "manifest.json").write_text(json.dumps(manifest, indent=2))
    plot_loss(training_rows, validation_rows, output / "loss_curve.png", f"{run.source.name} {config.method} ({config.kind.value})")
    if config.private:
        set_modes(output, private=True)
    run.metrics.event("end", **manifest["result"])
    return manifest


def run_summary(run: TrainingRun) -> dict[str, Any]:
    """What the run did, for the manifest's ``result`` and the ``end`` event."""
    state = run.state
    positions = state.tokens + state.padded_tokens
    return {
        "steps": state.step,
        "totalSteps": run.total_steps,
        "earlyStopped": run.watch.should_stop,
        "finishedEarly": run.finished_early,
        "tokens": state.tokens,
        "paddingFraction": round(state.padded_tokens / positions, 4) if positions else 0.0,
        "sharedPrefixTokens": state.shared_tokens,
        "sharedPrefixFraction": round(state.shared_tokens / state.tokens, 4) if state.tokens else 0.0,
        "microBatchTokens": run.micro_batch.tokens,
        "microBatchReason": run.micro_batch.reason,
        "batching": run.batching,
        "peakMemoryMB": peak_memory_mb(run.placement.device),
        "tokensPerSecond": round(state.tokens / state.elapsed_s, 1) if state.elapsed_s else None,
        "wallSeconds": round(state.elapsed_s, 1),
    }
