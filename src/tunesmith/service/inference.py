"""Loaded models for the runtime API: resolve a model id, keep a bounded cache, generate.

Models stay loaded between calls (least recently used first out, ``MAX_LOADED`` at once),
on the server's ``--device`` in its precision (:func:`tunesmith.devices.place`, as for
training). Generation runs under a lock per model: one model serves one request at a time.
A custom model whose files are on S3 only is downloaded first (:mod:`~tunesmith.service.model_downloads`).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tunesmith import guide
from tunesmith.devices import Placement
from tunesmith.evaluation.generation import Completion, GenerationSettings, generate
from tunesmith.service import uris
from tunesmith.service.errors import ValidationException
from tunesmith.service.model_downloads import ModelDownloads
from tunesmith.service.protocol import InferenceConfig, Message, TextBlock

MAX_LOADED = 2
DEFAULT_MAX_TOKENS = guide.DEFAULT_RESPONSE_TOKENS
DEFAULT_TEMPERATURE = 0.7
DEFAULT_TOP_P = 0.9


@dataclass
class LoadedModel:
    name: str
    model: Any
    tokenizer: Any
    lock: threading.Lock
    placement: Placement


class ModelCache:
    def __init__(self, placement: Placement, capacity: int = MAX_LOADED, downloads: ModelDownloads | None = None):
        self.placement, self.capacity, self.downloads = placement, capacity, downloads
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._loading = threading.Lock()

    def get(self, key: str, spec: str) -> LoadedModel:
        """The model for ``spec`` (anything :func:`resolve_model` accepts, or the S3 URI of a
        result folder), loading it once."""
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
        from tunesmith.models.gguf_cache import ModelUnavailableError
        from tunesmith.models.loading import load_model, load_tokenizer
        from tunesmith.models.registry import resolve_model

        with self._loading:  # one load at a time; a second request for the same model waits for the first
            with self._lock:
                if key in self._models:
                    return self._models[key]
            if uris.is_s3(spec):
                if self.downloads is None:
                    raise ValidationException(f"model {key} is stored on S3 ({spec}) and this server has no model cache")
                with self._lock:
                    in_use = list(self._models)
                spec = str(self.downloads.local(key, spec, in_use))
            try:
                source = resolve_model(spec)
                model = load_model(source, device=self.placement.device)
                loaded = LoadedModel(source.name, model, load_tokenizer(source), threading.Lock(), self.placement)
            except ModelUnavailableError as exc:
                raise ValidationException(str(exc)) from exc
        with self._lock:
            self._models[key] = loaded
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)
        return loaded


def settings_from(config: InferenceConfig | None) -> GenerationSettings:
    """Converse's ``inferenceConfig`` (and Nova's snake_case spellings), already range-checked
    by the protocol models, as generation settings."""
    values = config.model_dump(exclude_none=True) if config is not None else {}
    max_tokens = values.get("maxTokens", values.get("max_new_tokens", DEFAULT_MAX_TOKENS))
    top_p = values.get("topP", values.get("top_p", DEFAULT_TOP_P))
    return GenerationSettings(max_new_tokens=max_tokens, temperature=float(values.get("temperature", DEFAULT_TEMPERATURE)),
                              top_p=float(top_p), stop=tuple(values.get("stopSequences") or ()), batch_size=1)


def chat_from(messages: list[Message], system: list[TextBlock] | None) -> list[dict[str, str]]:
    """Converse/Nova messages and system blocks as a chat-template message list."""
    chat = []
    if system:
        chat.append({"role": "system", "content": "\n".join(b.text for b in system)})
    for message in messages:
        chat.append({"role": message.role, "content": "\n".join(b.text for b in message.content)})
    return answerable(chat)


def answerable(chat: list[dict[str, str]]) -> list[dict[str, str]]:
    """``chat`` if it ends with a user turn (the turn the model answers), else a ValidationException."""
    if not chat or chat[-1]["role"] != "user":
        raise ValidationException("the last message must be from the user")
    return chat


def complete(loaded: LoadedModel, chat: list[dict[str, str]], settings: GenerationSettings) -> tuple[Completion, int]:
    """One answer and the latency in ms."""
    started = time.perf_counter()
    with loaded.lock:
        [completion] = generate(loaded.model, loaded.tokenizer, [chat], settings, placement=loaded.placement)
    return completion, int((time.perf_counter() - started) * 1000)


def stream(loaded: LoadedModel, chat: list[dict[str, str]], settings: GenerationSettings) -> Iterator[tuple[str, Any]]:
    """Yields ("delta", text) pieces, then ("done", (stop_reason, input_tokens, output_tokens)).

    The pieces join to the text :func:`complete` answers, and the reason and counts are its
    own (:func:`~tunesmith.evaluation.generation.completion_of` reads both from the tokens).
    """
    from transformers import TextIteratorStreamer

    from tunesmith.evaluation.generation import completion_of, first_stop, generation_kwargs, inference_context, model_device, render_prompt

    tokenizer, model = loaded.tokenizer, loaded.model
    with loaded.lock:
        encoded = tokenizer([render_prompt(tokenizer, chat)], return_tensors="pt", add_special_tokens=False).to(model_device(model))
        prompt_length = int(encoded["input_ids"].shape[1])
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = {**generation_kwargs(tokenizer, settings, prompt_length), "streamer": streamer}
        result: dict[str, Any] = {}

        def run() -> None:  # autocast is per thread: entered here, in the generating thread
            try:
                with inference_context(loaded.placement):
                    result["output"] = model.generate(**encoded, **kwargs)
            except BaseException as exc:  # end the stream, or the reading loop below waits forever
                result["error"] = exc
                streamer.end()

        thread = threading.Thread(target=run)
        thread.start()
        # The answer is text.strip(), as in Converse: hold back leading and trailing whitespace,
        # and the last characters that could begin a stop sequence. Generation itself ends at a
        # stop sequence (generation_kwargs), so nothing after one is sent.
        text, sent = "", 0
        holdback = max((len(s) for s in settings.stop), default=1) - 1
        for piece in streamer:
            text += piece
            stop_at = first_stop(text, settings.stop)
            visible = (text if stop_at is None else text[:stop_at]).lstrip()
            safe = len(visible.rstrip()) if stop_at is not None else min(len(visible.rstrip()), len(visible) - holdback)
            if safe > sent:
                yield "delta", visible[sent:safe]
                sent = safe
        thread.join()
    if "error" in result:
        raise result["error"]
    completion = completion_of(tokenizer, result["output"][0, prompt_length:], prompt_length, settings)
    if len(completion.text) > sent:
        yield "delta", completion.text[sent:]
    yield "done", (completion.stop_reason, completion.input_tokens, completion.output_tokens)
