"""Check an exported GGUF by reading it back: same greedy answers as the safetensors model?

The GGUF is loaded with transformers' GGUF loader (``from_pretrained(folder, gguf_file=...)``),
tokenizer included, from a folder that holds nothing else: next to ``tokenizer.json``
transformers would read that file instead of the GGUF's vocabulary, and the check would not
see a broken one. Both models answer the same prompts greedily in fp32 on the CPU; any
difference comes from the file (weights rounded to F16 or Q8_0, a tokenizer that splits text
otherwise). It checks the file's contents, not llama.cpp's kernels.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tunesmith.training.examples import chat_messages, read_records


@dataclass(frozen=True)
class CheckResult:
    prompts: int
    differ: int
    examples: list[dict[str, str]]
    """Up to three prompts whose answers differ, with both answers."""

    def as_dict(self) -> dict:
        return {"prompts": self.prompts, "differ": self.differ, "examples": self.examples}


def training_prompts(data: Path, count: int) -> list[list[dict[str, str]]]:
    """The first ``count`` conversations of the training data, cut before their last assistant turn."""
    prompts = []
    for record in read_records(data):
        if "messages" not in record:
            continue
        messages = chat_messages(record)
        while messages and messages[-1]["role"] == "assistant":
            messages = messages[:-1]
        if messages:
            prompts.append(messages)
        if len(prompts) == count:
            break
    return prompts


def load_gguf(gguf: Path):
    """(model in fp32, tokenizer) as transformers reads ``gguf``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesmith.models.gguf_cache import LOAD_LOCK
    from tunesmith.models.loading import quiet_transformers

    quiet_transformers()
    with tempfile.TemporaryDirectory(prefix="tunesmith-gguf-check-") as alone:
        (Path(alone) / gguf.name).symlink_to(gguf.resolve())
        with LOAD_LOCK, contextlib.redirect_stderr(io.StringIO()):  # transformers' GGUF reader draws a tqdm bar of its own
            tokenizer = AutoTokenizer.from_pretrained(alone, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(alone, gguf_file=gguf.name, dtype=torch.float32)
    model.eval()
    return model, tokenizer


def compare_answers(reference, gguf: Path, prompts: list[list[dict[str, str]]], max_new_tokens: int = 32) -> CheckResult:
    """``reference``: (model, tokenizer) the GGUF was written from."""
    import torch

    from tunesmith.evaluation.generation import GenerationSettings, generate

    settings = GenerationSettings(max_new_tokens=max_new_tokens)
    model, tokenizer = reference
    expected = [c.text for c in generate(model.to(torch.float32), tokenizer, prompts, settings)]
    loaded, loaded_tokenizer = load_gguf(gguf)
    if loaded_tokenizer.pad_token_id is None:
        loaded_tokenizer.pad_token = loaded_tokenizer.eos_token
    actual = [c.text for c in generate(loaded, loaded_tokenizer, prompts, settings)]
    different = [
        {"prompt": p[-1]["content"], "safetensors": e, "gguf": a} for p, e, a in zip(prompts, expected, actual) if e != a
    ]
    return CheckResult(len(prompts), len(different), different[:3])
