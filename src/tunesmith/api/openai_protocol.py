"""The OpenAI-compatible API's wire protocol: typed request and response models (pydantic).

The part of OpenAI's Chat Completions and Models APIs that ``openai_routes.py`` serves. Requests
are strict, as the Bedrock ones are (``protocol.py``): wrong JSON types are refused, never
coerced, and so are fields this server does not implement (``tools``, ``logprobs``,
``response_format``...), by name, rather than answered as if they had been honoured.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from tunesmith import guide
from tunesmith.api.protocol import PRINTABLE
from tunesmith.jobs.settings import MAX_BODY_BYTES

MAX_STOP_SEQUENCES = 4
"""OpenAI's limit."""


class Request(BaseModel):
    """Base of every request body: strict types, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


def _as_parts(value: Any) -> Any:
    """``"text"`` is short for ``[{"type": "text", "text": "text"}]``."""
    if isinstance(value, str):
        return [{"type": "text", "text": value}]
    if not isinstance(value, list):
        raise PydanticCustomError("content_type", 'must be a string or a list of {"type": "text", "text": ...} parts')
    return value


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class TextPart(Request):
    """Only text parts are supported; images, audio and files are refused by name."""

    type: Literal["text"]
    text: Annotated[str, StringConstraints(max_length=MAX_BODY_BYTES)]


class ChatMessage(Request):
    role: Literal["system", "developer", "user", "assistant"]
    """``developer`` is OpenAI's newer name for ``system`` and means the same here."""
    content: Annotated[list[TextPart], Field(min_length=1, max_length=100),
                       BeforeValidator(_as_parts, json_schema_input_type=str | list[TextPart])]
    name: Annotated[str, StringConstraints(max_length=256)] | None = None
    """Accepted and not used (chat templates have no place for it)."""


class StreamOptions(Request):
    include_usage: bool = False
    """Send one more chunk before ``[DONE]``: no choices, the request's usage."""


StopSequence = Annotated[str, StringConstraints(min_length=1, max_length=256)]
MaxTokens = Annotated[int, Field(ge=1, le=guide.MAX_RESPONSE_TOKENS)]


class ChatCompletionRequest(Request):
    model: Annotated[str, StringConstraints(min_length=1, max_length=2048, pattern=PRINTABLE)]
    """A tier, hosted id, custom model or deployment (as the runtime API's ``modelId``)."""
    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=1000)]
    max_completion_tokens: MaxTokens | None = None
    max_tokens: MaxTokens | None = None
    """The older name of ``max_completion_tokens`` (which wins when both are given)."""
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    """0 is greedy decoding."""
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    n: int | None = 1
    stop: Annotated[list[StopSequence], Field(max_length=MAX_STOP_SEQUENCES),
                    BeforeValidator(_as_list, json_schema_input_type=StopSequence | list[StopSequence])] | None = None
    """Up to 4 sequences: generation ends at the first, which the answer does not include."""
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    user: Annotated[str, StringConstraints(max_length=256)] | None = None
    """Accepted and not used."""

    @field_validator("n")
    @classmethod
    def _one_choice(cls, n: int | None) -> int:
        if n not in (None, 1):
            raise PydanticCustomError("n_unsupported", "{n} choices were asked for; this server generates one per request (n must be 1)",
                                      {"n": n})
        return 1

    @field_validator("stream_options")
    @classmethod
    def _only_when_streaming(cls, options: StreamOptions | None, info: ValidationInfo) -> StreamOptions | None:
        if options is not None and not info.data.get("stream"):
            raise PydanticCustomError("stream_options_without_stream", "is only allowed when stream is true")
        return options


# --- Responses ------------------------------------------------------------------------------
FinishReason = Literal["stop", "length"]
"""``stop``: the model ended its turn or a stop sequence was reached; ``length``: max tokens ran out."""


class Response(BaseModel):
    model_config = ConfigDict(extra="allow")


class Usage(Response):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(Response):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(Response):
    index: int
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: None = None


class ChatCompletion(Response):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


def _absent_when_none(value: Any) -> bool:
    return value is None


class Delta(Response):
    """What a chunk adds: the role (first chunk), text, or nothing (the finishing chunk)."""

    role: Annotated[Literal["assistant"] | None, Field(exclude_if=_absent_when_none)] = None
    content: Annotated[str | None, Field(exclude_if=_absent_when_none)] = None


class ChunkChoice(Response):
    index: int
    delta: Delta
    finish_reason: FinishReason | None = None
    logprobs: None = None


class ChatCompletionChunk(Response):
    """One ``data:`` line of a streamed answer."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Annotated[Usage | None, Field(exclude_if=_absent_when_none)] = None


class ModelCard(Response):
    id: str
    object: Literal["model"] = "model"
    created: int
    """Unix seconds; 0 for the built-in tiers."""
    owned_by: str
    """``tunesmith`` for a tier, ``custom`` for a custom model or deployment."""
    parent: str | None = None
    """What the model was made from: a custom model's base model, a deployment's custom model."""


class ModelList(Response):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(Response):
    message: str
    type: Literal["invalid_request_error", "server_error"]
    param: str | None
    """The request field at fault, e.g. ``messages[0].content``."""
    code: str | None
    """``model_not_found``, ``invalid_api_key`` or null."""


class ErrorResponse(Response):
    error: ErrorDetail
