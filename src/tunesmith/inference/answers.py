"""Answers from a loaded model: one at a time per model, whole or streamed.

:func:`stream` yields the pieces of the very answer :func:`complete` gives (same text, stop
reason and token counts), so streaming and non-streaming routes agree.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from tunesmith import guide
from tunesmith.evaluation.generation import Completion, GenerationSettings, generate
from tunesmith.inference.model_cache import LoadedModel
from tunesmith.jobs.errors import ValidationException

DEFAULT_MAX_TOKENS = guide.DEFAULT_RESPONSE_TOKENS
DEFAULT_TEMPERATURE = 0.7
DEFAULT_TOP_P = 0.9


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
    loaded.answered(completion.output_tokens)
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
    loaded.answered(completion.output_tokens)
    yield "done", (completion.stop_reason, completion.input_tokens, completion.output_tokens)
