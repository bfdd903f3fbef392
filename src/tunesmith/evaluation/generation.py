"""Batched generation with the chat template: left padding, KV cache, greedy or sampled.

Inputs go to the model's device; a :class:`~tunesmith.devices.Placement` adds its autocast
(bf16 on a bf16-capable GPU or CPU), the same choice training makes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from tunesmith.devices import Placement


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


def model_device(model) -> torch.device:
    """Where the model's weights are (inputs must go there too)."""
    return next(model.parameters()).device


def inference_context(placement: Placement | None):
    """No gradients, and the placement's autocast (none without a placement: fp32)."""
    stack = contextlib.ExitStack()
    stack.enter_context(torch.no_grad())
    if placement is not None:
        stack.enter_context(placement.autocast())
    return stack


def generation_kwargs(tokenizer, settings: GenerationSettings) -> dict[str, Any]:
    """``model.generate`` arguments for ``settings``: greedy at temperature 0, else sampled."""
    kwargs: dict[str, Any] = {"max_new_tokens": settings.max_new_tokens, "pad_token_id": tokenizer.pad_token_id}
    if settings.temperature > 0:
        kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    return kwargs


def generate(
    model, tokenizer, conversations: Sequence[list[dict[str, str]]], settings: GenerationSettings = GenerationSettings(),
    on_batch: Callable[[int], None] | None = None, placement: Placement | None = None,
) -> list[Completion]:
    """Answer each conversation (a chat-template message list ending with a user turn).

    Prompts are grouped by length so a batch wastes little on padding; results come back in
    input order. The model is used where it is; ``placement`` gives the autocast precision.
    """
    prompts = [render_prompt(tokenizer, c) for c in conversations]
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])
    results: list[Completion | None] = [None] * len(prompts)
    tokenizer.padding_side = "left"
    generator_seed = settings.seed
    model.eval()
    device = model_device(model)
    for start in range(0, len(order), settings.batch_size):
        chunk = order[start : start + settings.batch_size]
        encoded = tokenizer([prompts[i] for i in chunk], return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        if settings.temperature > 0:
            torch.manual_seed(generator_seed + start)
        with inference_context(placement):
            output = model.generate(**encoded, **generation_kwargs(tokenizer, settings))
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
