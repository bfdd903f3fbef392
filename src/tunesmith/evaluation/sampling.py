"""How the next token is chosen from the model's logits, beyond greedy decoding: OpenAI's
penalties and logit bias, and sampling from a request's own random generator.

Both are ``transformers`` logits processors that :func:`~tunesmith.evaluation.generation.generation_kwargs`
gives ``model.generate``, so every answer (evaluation, Converse, the OpenAI-compatible API,
streamed or not) is chosen by the same code.

Sampling happens here rather than in ``generate(do_sample=True)``, which draws with
``torch.multinomial`` from torch's global generator: every thread shares that one, so a seed set
with ``torch.manual_seed`` for one request is moved on by any other model sampling at the same
time, and the same seed no longer gives the same answer. :class:`Sampling` warps the scores as
transformers does (temperature, then top-k, then top-p), draws from a ``torch.Generator`` of its
own and leaves only the drawn token finite, which greedy decoding then picks.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from transformers import LogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper


class Penalties(LogitsProcessor):
    """OpenAI's ``presence_penalty``, ``frequency_penalty`` and ``logit_bias``, on the raw logits::

        logits[j] += bias[j] - c[j] * frequency - (c[j] > 0) * presence

    where ``c[j]`` is how often token ``j`` has been generated so far in this row (the prompt's
    tokens are not counted). Positive penalties make repeating less likely; a bias of -100 bans
    a token and +100 all but forces it.
    """

    def __init__(self, prompt_length: int, presence: float = 0.0, frequency: float = 0.0, bias: Mapping[int, float] | None = None):
        self.prompt_length, self.presence, self.frequency = prompt_length, presence, frequency
        self.bias = dict(bias or {})

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_length:]
        if generated.shape[1] and (self.presence or self.frequency):
            counts = torch.zeros_like(scores).scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
            scores = scores - counts * self.frequency - (counts > 0).to(scores.dtype) * self.presence
        if self.bias:
            ids = torch.tensor(list(self.bias), device=scores.device)
            values = torch.tensor(list(self.bias.values()), dtype=scores.dtype, device=scores.device)
            scores = scores.index_add(1, ids, values.expand(scores.shape[0], -1))
        return scores


class Sampling(LogitsProcessor):
    """Temperature, top-k and top-p as transformers applies them, then one draw per row from
    this processor's own generator: the scores it returns are -inf but for the drawn token.

    ``seed`` None draws a fresh seed from the operating system; the same seed, settings and
    prompt give the same answer on the same device, whatever other threads are generating.
    """

    def __init__(self, temperature: float, top_p: float = 1.0, top_k: int = 0, seed: int | None = None):
        self.warpers: list[LogitsProcessor] = [TemperatureLogitsWarper(temperature)]
        if top_k:
            self.warpers.append(TopKLogitsWarper(top_k))
        if top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p))
        self.seed = seed
        self.generator: torch.Generator | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for warper in self.warpers:
            scores = warper(input_ids, scores)
        if self.generator is None:  # made on the scores' device: a draw on a GPU needs a GPU generator
            self.generator = torch.Generator(device=scores.device)
            if self.seed is None:
                self.generator.seed()
            else:
                self.generator.manual_seed(self.seed % 2**64)
        drawn = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1, generator=self.generator)
        return torch.full_like(scores, float("-inf")).scatter_(1, drawn, 0.0)
