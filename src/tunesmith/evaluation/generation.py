"""Batched generation with the chat template: left padding, KV cache, greedy or sampled."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 64
    temperature: float = 0.0
    """0 means greedy decoding."""
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    """Stop sequences: the text is cut before the first one."""
    batch_size: int = 16
    seed: int = 0


@dataclass(frozen=True)
class Completion:
    text: str
    input_tokens: int
    output_tokens: int
    stop_reason: str
    """``end_turn``, ``max_tokens`` or ``stop_sequence``."""


def render_prompt(tokenizer, messages: list[dict[str, str]]) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def generate(
    model, tokenizer, conversations: Sequence[list[dict[str, str]]], settings: GenerationSettings = GenerationSettings(),
    on_batch: Callable[[int], None] | None = None,
) -> list[Completion]:
    """Answer each conversation (a chat-template message list ending with a user turn).

    Prompts are grouped by length so a batch wastes little on padding; results come back in
    input order.
    """
    prompts = [render_prompt(tokenizer, c) for c in conversations]
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    results: list[Completion | None] = [None] * len(prompts)
    tokenizer.padding_side = "left"
    generator_seed = settings.seed
    model.eval()
    for start in range(0, len(order), settings.batch_size):
        chunk = order[start : start + settings.batch_size]
        encoded = tokenizer([prompts[i] for i in chunk], return_tensors="pt", padding=True, add_special_tokens=False)
        kwargs: dict[str, Any] = {"max_new_tokens": settings.max_new_tokens, "pad_token_id": tokenizer.pad_token_id}
        if settings.temperature > 0:
            torch.manual_seed(generator_seed + start)
            kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with torch.no_grad():
            output = model.generate(**encoded, **kwargs)
        new_tokens = output[:, encoded["input_ids"].shape[1] :]
        for row, index in enumerate(chunk):
            results[index] = _completion(tokenizer, new_tokens[row], lengths[index], settings)
        if on_batch:
            on_batch(len(chunk))
    return results  # type: ignore[return-value]


def _completion(tokenizer, tokens: torch.Tensor, input_tokens: int, settings: GenerationSettings) -> Completion:
    ids = tokens.tolist()
    eos = tokenizer.eos_token_id
    ended = eos in ids
    if ended:
        ids = ids[: ids.index(eos)]
    ids = [t for t in ids if t != tokenizer.pad_token_id]
    text = tokenizer.decode(ids, skip_special_tokens=True)
    reason = "end_turn" if ended else "max_tokens"
    for stop in settings.stop:
        if stop and stop in text:
            text, reason = text[: text.index(stop)], "stop_sequence"
    return Completion(text.strip(), input_tokens, len(ids) + (1 if ended else 0), reason)
