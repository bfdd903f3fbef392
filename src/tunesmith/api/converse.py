"""From the runtime API's request models to generation: chat messages, settings, and the threads
generation runs on. Shared by the runtime routes, the OpenAI-compatible routes and the console's playground."""

from __future__ import annotations

import anyio
from fastapi import Request

from tunesmith.api.protocol import InferenceConfig, Message, TextBlock
from tunesmith.evaluation.generation import GenerationSettings
from tunesmith.inference.answers import DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE, DEFAULT_TOP_P, answerable

RUNTIME_THREADS = 4
"""Threads generating at once (each model generates one answer at a time anyway)."""


def settings_from(config: InferenceConfig | None) -> GenerationSettings:
    """Converse's ``inferenceConfig`` (and Nova's snake_case spellings), already range-checked
    by the protocol models, as generation settings. Sampled answers vary from call to call, as
    Bedrock's do (a fresh seed each time)."""
    values = config.model_dump(exclude_none=True) if config is not None else {}
    max_tokens = values.get("maxTokens", values.get("max_new_tokens", DEFAULT_MAX_TOKENS))
    top_p = values.get("topP", values.get("top_p", DEFAULT_TOP_P))
    return GenerationSettings(max_new_tokens=max_tokens, temperature=float(values.get("temperature", DEFAULT_TEMPERATURE)),
                              top_p=float(top_p), top_k=values.get("top_k"), stop=tuple(values.get("stopSequences") or ()),
                              batch_size=1, seed=None)


def chat_from(messages: list[Message], system: list[TextBlock] | None) -> list[dict[str, str]]:
    """Converse/Nova messages and system blocks as a chat-template message list."""
    chat = []
    if system:
        chat.append({"role": "system", "content": "\n".join(b.text for b in system)})
    for message in messages:
        chat.append({"role": message.role, "content": "\n".join(b.text for b in message.content)})
    return answerable(chat)


def generation_threads(request: Request) -> anyio.CapacityLimiter:
    """The runtime's own threads: generation waits for these, never for the threads the
    control plane and ``/health`` use, however many calls queue up."""
    state = request.app.state
    if getattr(state, "runtime_threads", None) is None:
        state.runtime_threads = anyio.CapacityLimiter(RUNTIME_THREADS)
    return state.runtime_threads
