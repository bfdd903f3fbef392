"""The exported folder's README.md: what the model is, how it was trained, how to load it.

Everything in it comes from the run's manifest and the export's own record (``export.json``);
nothing is estimated.
"""

from __future__ import annotations

from typing import Any


def _table(rows: list[tuple[str, Any]]) -> str:
    lines = ["| | |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows if value is not None]
    return "\n".join(lines)


def _training(manifest: dict[str, Any]) -> str:
    data = manifest.get("data", {}).get("training", {})
    rows = [
        ("Base model", manifest.get("baseModelId") or manifest.get("model")),
        ("Method", manifest.get("method")),
        ("Data kind", manifest.get("kind")),
        ("Training data sha256", f"`{data.get('sha256')}`" if data.get("sha256") else None),
        ("Training records", data.get("records")),
        ("Duplication factor", manifest.get("duplicationFactor")),
        ("Effective batch size", manifest.get("effectiveBatchSize")),
        ("Precision", manifest.get("precision")),
        ("Seed", manifest.get("seed")),
        ("Max length", manifest.get("maxLength")),
    ]
    rows += [(name, value) for name, value in manifest.get("hyperParameters", {}).get("resolved", {}).items()]
    rows += [(f"LoRA {name}", value) for name, value in (manifest.get("lora") or {}).items()]
    for index, validation in enumerate(manifest.get("data", {}).get("validation", [])):
        rows.append((f"Validation data {index + 1} sha256", f"`{validation['sha256']}`"))
    return _table(rows)


def _results(manifest: dict[str, Any]) -> str:
    result = manifest.get("result", {})
    keys = ["steps", "tokens", "finalTrainingLoss", "finalValidationLoss", "wallSeconds", "earlyStopped"]
    return _table([(key, result.get(key)) for key in keys])


def _check(record: dict[str, Any]) -> str:
    check = record.get("check")
    if check is None:
        return "No check was run (`--check 0`)."
    if "skipped" in check:
        return f"Not checked: {check['skipped']}."
    return (
        f"Greedy answers of `model.gguf` (read back by transformers' GGUF loader) and of the safetensors model "
        f"to the first {check['prompts']} training prompts: {check['differ']} of {check['prompts']} differ."
    )


def _system_prompt(record: dict[str, Any]) -> str:
    if record.get("systemPrompt") is None:
        return f"The Modelfile sets no `SYSTEM`: {record['systemPromptSource']}."
    return f"The Modelfile's `SYSTEM` ({record['systemPromptSource']}):\n\n```text\n{record['systemPrompt']}\n```"


def model_card(manifest: dict[str, Any], record: dict[str, Any], name: str) -> str:
    base = manifest.get("baseModelId") or manifest.get("model")
    return f"""---
base_model: {base}
library_name: transformers
tags: [tunesmith, gguf, llama.cpp, ollama]
---

# {name}

A fine-tune of `{base}` made with tunesmith ({manifest.get("method")}, {manifest.get("kind")}), exported
by `tunesmith export` to safetensors ({record["dtype"]}) and GGUF ({record["quantize"]}).

## Training

{_training(manifest)}

## Results

{_results(manifest)}

## System prompt

{_system_prompt(record)}

## Files

- `model.safetensors`, `config.json`, tokenizer files: the merged model for transformers.
- `model.gguf`: the same weights for llama.cpp ({record["gguf"]["fileType"]}, {record["gguf"]["bytes"]:,} bytes, sha256 `{record["gguf"]["sha256"]}`).
- `Modelfile`: Ollama's recipe for `model.gguf`.
- `export.json`: what the export did and checked.

{_check(record)}

## How to load

transformers:

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained("path/to/this/folder")
tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")
messages = [{{"role": "user", "content": "Hello"}}]
inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
print(tokenizer.decode(model.generate(**inputs, max_new_tokens=64)[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True))
```

llama.cpp (the chat template is in the GGUF):

```sh
llama-cli -m model.gguf -cnv
llama-server -m model.gguf --port 8080
```

Ollama:

```sh
ollama create {name} -f Modelfile
ollama run {name}
```
"""
