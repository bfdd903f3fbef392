"""Records to token ids with a loss mask, using the model's own chat template.

Fine-tuning learns every assistant turn (all of them, in multi-turn records) and nothing
else; continued pre-training learns every token. Records longer than ``max_length`` are cut
and counted, never silently.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunesmith.datasets import DatasetKind, ProblemLog
from tunesmith.datasets.jsonl import read_jsonl
from tunesmith.errors import TunesmithError


class TemplateError(TunesmithError, ValueError):
    """The chat template cannot be used to find the assistant's tokens."""


@dataclass(frozen=True)
class Example:
    """One tokenized record."""

    input_ids: list[int]
    targets: list[bool]
    """True where the token is learned (its prediction from the previous position counts)."""

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def target_count(self) -> int:
        return sum(self.targets[1:])  # the first token has nothing before it to predict from


@dataclass
class TokenizedData:
    examples: list[Example] = field(default_factory=list)
    truncated: int = 0
    """Records cut at max_length."""
    dropped: int = 0
    """Records with no target tokens left after truncation (not trained on)."""

    @property
    def tokens(self) -> int:
        return sum(len(e) for e in self.examples)


def chat_messages(record: dict[str, Any]) -> list[dict[str, str]]:
    """A bedrock-conversation record as the ``[{"role", "content"}]`` list chat templates take."""
    messages = []
    system = "\n".join(block["text"] for block in record.get("system", []))
    if system:
        messages.append({"role": "system", "content": system})
    for message in record["messages"]:
        messages.append({"role": message["role"], "content": "\n".join(b["text"] for b in message["content"])})
    return messages


MAX_SYSTEM_PROMPTS = 8
"""The distinct system prompts :func:`system_prompts` lists; a dataset with more has no one prompt to name."""


def system_prompts(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The distinct system prompts of conversation records, as training rendered them (blocks joined
    as :func:`chat_messages` joins them), in order of first use: ``{"distinct": [{"text", "records"}],
    "unlisted": N}``. ``text`` None stands for records without one (the chat template's default, if it
    has one, stood in while training). At most :data:`MAX_SYSTEM_PROMPTS` are listed; ``unlisted``
    counts the records whose prompt is not."""
    counts: dict[str | None, int] = {}
    unlisted = 0
    for record in records:
        text = "\n".join(block["text"] for block in record.get("system", [])) or None
        if text in counts:
            counts[text] += 1
        elif len(counts) < MAX_SYSTEM_PROMPTS:
            counts[text] = 1
        else:
            unlisted += 1
    return {"distinct": [{"text": text, "records": n} for text, n in counts.items()], "unlisted": unlisted}


def _render(tokenizer, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def assistant_spans(tokenizer, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of each assistant turn (with its end tokens)."""
    full = _render(tokenizer, messages)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], add_generation_prompt=True)
        through = _render(tokenizer, messages[: i + 1])
        if not through.startswith(before) or not full.startswith(through):
            raise TemplateError("the chat template does not render conversations prefix by prefix; cannot mask the answers")
        spans.append((len(before), len(through)))
    return full, spans


def tokenize_conversation(tokenizer, record: dict[str, Any], max_length: int) -> tuple[Example, bool]:
    text, spans = assistant_spans(tokenizer, chat_messages(record))
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    targets = [any(start <= begin < end for start, end in spans) for begin, _ in encoded["offset_mapping"]]
    ids = encoded["input_ids"]
    truncated = len(ids) > max_length
    return Example(ids[:max_length], targets[:max_length]), truncated


def tokenize_text(tokenizer, text: str, max_length: int) -> tuple[Example, bool]:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if tokenizer.bos_token_id is not None and tokenizer.bos_token_id != tokenizer.eos_token_id:
        ids = [tokenizer.bos_token_id] + ids
    ids = ids + [tokenizer.eos_token_id]
    truncated = len(ids) > max_length
    return Example(ids[:max_length], [True] * min(len(ids), max_length)), truncated


def read_records(path: str | Path) -> Iterable[dict[str, Any]]:
    """The records of an already validated file."""
    return (item.value for item in read_jsonl(Path(path), str(path), ProblemLog()))


def tokenize_records(records: Iterable[dict[str, Any]], tokenizer, kind: DatasetKind, max_length: int) -> TokenizedData:
    data = TokenizedData()
    for record in records:
        if kind is DatasetKind.PRETRAINING:
            example, truncated = tokenize_text(tokenizer, record["text"], max_length)
        else:
            example, truncated = tokenize_conversation(tokenizer, record, max_length)
        data.truncated += truncated
        if example.target_count == 0:
            data.dropped += 1
            continue
        data.examples.append(example)
    return data


def record_token_count(tokenizer, record: dict[str, Any], kind: DatasetKind) -> int:
    """Tokens of one record as the model will see it (chat template included)."""
    if kind is DatasetKind.PRETRAINING:
        return len(tokenize_text(tokenizer, record["text"], 1 << 30)[0])
    messages = chat_messages(record)
    text = _render(tokenizer, messages, add_generation_prompt=messages[-1]["role"] == "user")
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])
