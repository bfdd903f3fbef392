"""Batched generation with the chat template: left padding, KV cache, greedy or sampled.

How each token is chosen beyond the model's logits lives beside this module: sampling from a
generator of the call's own, OpenAI's penalties and logit bias (:mod:`~tunesmith.evaluation.sampling`)
and JSON answers (:mod:`~tunesmith.evaluation.json_output`); :func:`generation_kwargs` hands
them to ``model.generate``. Inputs go to the model's device; a :class:`~tunesmith.devices.Placement` adds its autocast
(bf16 on a bf16-capable GPU or CPU), the same choice training makes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from tunesmith.devices import Placement

TRANSFORMERS_TOP_K = 50
"""What ``generate(do_sample=True)`` samples among when not told: kept where ``top_k`` is unset."""


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 64
    temperature: float = 0.0
    """0 means greedy decoding."""
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    """Stop sequences: generation ends once the text contains one; the text is cut before it."""
    batch_size: int = 16
    seed: int | None = 0
    """Sampling's seed: the same seed, settings and prompt give the same answer (each call draws
    from a generator of its own, :class:`~tunesmith.evaluation.sampling.Sampling`). None: a fresh one."""
    top_k: int | None = None
    """Sample among the k likeliest tokens only; 0: no limit; None: transformers' default, 50."""
    presence_penalty: float = 0.0
    """OpenAI's: subtracted from the logit of every token already generated (-2 to 2)."""
    frequency_penalty: float = 0.0
    """OpenAI's: subtracted once per time a token has been generated (-2 to 2)."""
    logit_bias: Mapping[int, float] = field(default_factory=dict)
    """Added to the logits of these token ids (-100 bans a token, 100 all but forces it)."""
    json_schema: Mapping[str, Any] | None = None
    """The answer is JSON following this schema (``{"type": "object"}``: any JSON object);
    None: free text. See :mod:`~tunesmith.evaluation.json_output`."""


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


def first_stop(text: str, stops: Sequence[str]) -> int | None:
    """Where the earliest stop sequence in ``text`` begins; None if there is none."""
    found = [text.find(stop) for stop in stops if stop and stop in text]
    return min(found) if found else None


class StopOnText:
    """A ``model.generate`` stopping criterion: ends each row of a batch once the text it has
    generated contains a stop sequence.

    Each step decodes only the last few tokens: every token carries at least one byte, so a
    stop sequence of n bytes ends within the last n tokens (the margin covers tokenizers that
    drop a leading space when decoding from a word's first token). The check costs the same
    at token 4,000 as at token 10.
    """

    def __init__(self, tokenizer, stops: Sequence[str], prompt_length: int):
        self.tokenizer, self.stops, self.prompt_length = tokenizer, tuple(stops), prompt_length
        self.window = max(len(stop.encode("utf-8")) for stop in self.stops) + 4

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        start = max(self.prompt_length, input_ids.shape[1] - self.window)
        tails = self.tokenizer.batch_decode(input_ids[:, start:], skip_special_tokens=True)
        return torch.tensor([first_stop(tail, self.stops) is not None for tail in tails], dtype=torch.bool, device=input_ids.device)


def generation_kwargs(tokenizer, settings: GenerationSettings, prompt_length: int) -> dict[str, Any]:
    """``model.generate`` arguments for ``settings``: greedy at temperature 0, else sampled
    (by :class:`~tunesmith.evaluation.sampling.Sampling`, from its own generator); penalties,
    bias and a JSON constraint first; with stop sequences, each row ends at its first
    (``prompt_length``: the padded prompt's)."""
    from transformers import LogitsProcessorList

    from tunesmith.evaluation.sampling import Penalties, Sampling

    kwargs: dict[str, Any] = {"max_new_tokens": settings.max_new_tokens, "pad_token_id": tokenizer.pad_token_id,
                              "do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    if any(settings.stop):
        from transformers import StoppingCriteriaList

        kwargs["stopping_criteria"] = StoppingCriteriaList([StopOnText(tokenizer, [s for s in settings.stop if s], prompt_length)])
    processors = LogitsProcessorList()
    if settings.presence_penalty or settings.frequency_penalty or settings.logit_bias:
        processors.append(Penalties(prompt_length, settings.presence_penalty, settings.frequency_penalty, settings.logit_bias))
    if settings.json_schema is not None:
        from tunesmith.evaluation.json_output import JsonConstraint

        processors.append(JsonConstraint(tokenizer, prompt_length, settings.max_new_tokens, dict(settings.json_schema)))
    if settings.temperature > 0:
        top_k = TRANSFORMERS_TOP_K if settings.top_k is None else settings.top_k
        processors.append(Sampling(settings.temperature, settings.top_p, top_k, settings.seed))
    if processors:
        kwargs["logits_processor"] = processors
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
    model.eval()
    device = model_device(model)
    for start in range(0, len(order), settings.batch_size):
        chunk = order[start : start + settings.batch_size]
        encoded = tokenizer([prompts[i] for i in chunk], return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        batch = replace(settings, seed=None if settings.seed is None else settings.seed + start)
        with inference_context(placement):
            output = model.generate(**encoded, **generation_kwargs(tokenizer, batch, encoded["input_ids"].shape[1]))
        new_tokens = output[:, encoded["input_ids"].shape[1] :]
        for row, index in enumerate(chunk):
            results[index] = completion_of(tokenizer, new_tokens[row], lengths[index], settings)
        if on_batch:
            on_batch(len(chunk))
    return results  # type: ignore[return-value]


def completion_of(tokenizer, tokens: torch.Tensor, input_tokens: int, settings: GenerationSettings) -> Completion:
    """The answer in one row of generated tokens (padding after its end is ignored).

    ``output_tokens`` counts what the model generated: up to and including the end token or
    the token that completed a stop sequence.
    """
    ids = tokens.tolist()
    eos = tokenizer.eos_token_id
    ended = eos in ids
    if ended:
        ids = ids[: ids.index(eos)]
    ids = [t for t in ids if t != tokenizer.pad_token_id]
    text = tokenizer.decode(ids, skip_special_tokens=True)
    stop_at = first_stop(text, settings.stop)
    if stop_at is not None:  # the row ended there (where padding is the end token, ``ended`` is True after a stop too)
        return Completion(text[:stop_at].strip(), input_tokens, len(ids), "stop_sequence")
    return Completion(text.strip(), input_tokens, len(ids) + (1 if ended else 0), "end_turn" if ended else "max_tokens")
