"""Read a training result folder and give back its model with any LoRA adapter merged in.

A result folder (``training/results.py``) holds ``manifest.json`` and ``model/`` (the run's
merge of base + adapter, in fp32) and/or ``adapter/`` (LoRA). Where ``model/`` is missing
(QLoRA, or a run told not to merge) the adapter is merged into its base here, with PEFT's
``merge_and_unload``: the base is the one the manifest's ``modelSpec`` names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.errors import TunesmithError
from tunesmith.models.registry import result_inside

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
"""The manifest's ``precision`` -> the torch dtype the merged weights are saved in."""


class NotAResultError(TunesmithError, ValueError):
    """RUN is not a finished tunesmith result folder."""


@dataclass(frozen=True)
class RunFolder:
    path: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, path: Path) -> RunFolder:
        """The result in ``path``, or in the one result folder ``path`` holds (:func:`result_inside`)."""
        path = Path(path)
        if not path.is_dir():
            raise NotAResultError(f"{path}: no such folder; give the --output folder of a finished `tunesmith train`")
        path = result_inside(path) or path
        manifest_path = path / "manifest.json"
        if not manifest_path.is_file():
            raise NotAResultError(f"{path}: not a tunesmith result folder (no manifest.json), nor a folder holding one; "
                                  "give the --output folder of a finished `tunesmith train`")
        try:
            manifest = json.loads(manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise NotAResultError(f"{manifest_path}: not valid JSON ({exc})") from exc
        if not isinstance(manifest, dict) or "method" not in manifest:
            raise NotAResultError(f"{manifest_path}: not a tunesmith manifest (no \"method\")")
        run = cls(path, manifest)
        if not run.has_merged_model and not run.has_adapter:
            raise NotAResultError(f"{path}: holds neither model/ nor adapter/; was the run stopped before it finished?")
        return run

    @property
    def has_merged_model(self) -> bool:
        return (self.path / "model" / "config.json").is_file()

    @property
    def has_adapter(self) -> bool:
        return (self.path / "adapter" / "adapter_config.json").is_file()

    @property
    def dtype_name(self) -> str:
        """The torch dtype the run trained in (``bfloat16``, ``float16`` or ``float32``)."""
        return DTYPES.get(self.manifest.get("precision", "fp32"), "float32")

    def model_config(self):
        """The HF config of the model, read without loading weights (to refuse early)."""
        from transformers import AutoConfig

        if self.has_merged_model:
            return AutoConfig.from_pretrained(self.path / "model")
        return AutoConfig.from_pretrained(self._base().folder())

    def _base(self):
        from tunesmith.models.registry import resolve_model

        return resolve_model(self.manifest.get("modelSpec") or self.manifest["model"])

    def load_merged(self) -> tuple[Any, Any, str]:
        """(model in fp32, tokenizer, where the weights came from)."""
        from tunesmith.models.loading import load_model, load_tokenizer
        from tunesmith.models.registry import resolve_model

        if self.has_merged_model:
            source = resolve_model(str(self.path))
            return load_model(source), load_tokenizer(source), "model/ (base + adapter, merged by the run)"
        from peft import PeftModel
        from transformers import AutoTokenizer

        base, adapter = self._base(), self.path / "adapter"
        model = PeftModel.from_pretrained(load_model(base), adapter).merge_and_unload()
        model.eval()
        # the run saved its tokenizer (chat template and pad token set) beside the adapter
        tokenizer = AutoTokenizer.from_pretrained(adapter) if (adapter / "tokenizer_config.json").is_file() else load_tokenizer(base)
        return model, tokenizer, f"adapter/ merged into {base.describe()}"
