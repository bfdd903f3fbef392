"""The OpenAI-compatible API's wire protocol: typed request and response models (pydantic).

The part of OpenAI's Chat Completions and Models APIs that ``openai_routes.py`` serves. Requests
are strict, as the Bedrock ones are (``protocol.py``): wrong JSON types are refused, never
coerced. Every field of OpenAI's request is one of three kinds:

- honoured (``temperature``, ``seed``, ``logit_bias``, ``response_format``...);
- accepted and not used, where that changes nothing about the answer (``user``, ``metadata``,
  ``prompt_cache_key``, ``service_tier``, ``store: false``, ``logprobs: false``...);
- refused with a 400 that names the field and says why (``tools``, ``logprobs: true``,
  ``store: true``, ``modalities: ["audio"]``...), rather than answered as if it had been honoured.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from tunesmith import guide
from tunesmith.api.protocol import PRINTABLE
from tunesmith.jobs.settings import MAX_BODY_BYTES

MAX_STOP_SEQUENCES = 4
"""OpenAI's limit."""
MAX_LOGIT_BIAS = 300
"""OpenAI's limit on ``logit_bias`` entries."""
SEED_RANGE = (-(2**63), 2**63 - 1)
"""A seed is a 64-bit signed integer."""


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
    include_obfuscation: bool | None = None
    """Accepted and not used: chunks carry no random padding (the text is the same either way)."""


def _only(accepted: tuple[Any, ...], why: str) -> BeforeValidator:
    """A field accepted only with values that change nothing here; any other value is refused, saying ``why``."""
    def check(value: Any) -> Any:
        if value is not None and value not in accepted:
            raise PydanticCustomError("not_implemented", why)
        return value
    return BeforeValidator(check)


def _refused(why: str) -> BeforeValidator:
    """A field this server does not implement: any value but null is refused, saying ``why``."""
    return _only((), why)


def _token_biases(value: Any) -> Any:
    """``{"15339": -100}`` (token ids as JSON keys) as ``{15339: -100}``."""
    if not isinstance(value, dict):
        return value
    biases = {}
    for key, bias in value.items():
        if not (isinstance(key, str) and key.isascii() and key.isdigit() and len(key) <= 9):
            raise PydanticCustomError("token_id", "keys are token ids, such as \"15339\"; '{key}' is not one", {"key": str(key)[:70]})
        biases[int(key)] = bias
    return biases


class JsonSchemaFormat(Request):
    name: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")]
    description: Annotated[str, StringConstraints(max_length=MAX_BODY_BYTES)] | None = None
    """Accepted and not used (the schema is what constrains the answer)."""
    schema_: Annotated[dict[str, Any], Field(alias="schema")] = Field(default_factory=dict)
    """The JSON Schema every answer follows; an empty one allows any JSON value."""
    strict: bool | None = None
    """Accepted either way: answers always follow the schema (generation is constrained to it)."""

    @field_validator("schema_")
    @classmethod
    def _usable(cls, schema: dict[str, Any]) -> dict[str, Any]:
        from tunesmith.evaluation.json_output import schema_problem  # here: it brings transformers, which start-up can do without

        problem = schema_problem(schema)
        if problem:
            raise PydanticCustomError("schema_unusable", "answers cannot be constrained to this schema: {problem}", {"problem": problem})
        return schema


class ResponseFormat(Request):
    type: Literal["text", "json_object", "json_schema"]
    """``text`` (the default); ``json_object``: any JSON object; ``json_schema``: JSON that follows ``json_schema.schema``."""
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_with_its_type(self) -> ResponseFormat:
        if (self.json_schema is None) == (self.type == "json_schema"):
            raise PydanticCustomError("json_schema_with_type", "json_schema goes with type json_schema, and only with it")
        return self


class PromptCacheOptions(Request):
    """Accepted and not used: this server keeps no prompt cache between requests."""

    mode: Literal["implicit", "explicit"] | None = None
    ttl: Literal["30m"] | None = None


class PredictedContent(Request):
    """Accepted and not used: a prediction would only make the same answer come sooner."""

    type: Literal["content"]
    content: Annotated[list[TextPart], Field(min_length=1, max_length=100),
                       BeforeValidator(_as_parts, json_schema_input_type=str | list[TextPart])]


StopSequence = Annotated[str, StringConstraints(min_length=1, max_length=256)]
MaxTokens = Annotated[int, Field(ge=1, le=guide.MAX_RESPONSE_TOKENS)]
Penalty = Annotated[float, Field(ge=-2, le=2)]
Identifier = Annotated[str, StringConstraints(max_length=512)]
NO_TOOLS = "function calling is not implemented by this server"
NO_LOGPROBS = "log probabilities are not implemented by this server; send false or leave it out"


class ChatCompletionRequest(Request):
    model: Annotated[str, StringConstraints(min_length=1, max_length=2048, pattern=PRINTABLE)]
    """A tier, hosted id, custom model or deployment (as the runtime API's ``modelId``)."""
    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=1000)]
    max_completion_tokens: MaxTokens | None = None
    max_tokens: MaxTokens | None = None
    """The older name of ``max_completion_tokens`` (which wins when both are given)."""
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    """0 is greedy decoding; unset is OpenAI's 1."""
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    """Unset is OpenAI's 1 (the whole distribution)."""
    n: int | None = 1
    stop: Annotated[list[StopSequence], Field(max_length=MAX_STOP_SEQUENCES),
                    BeforeValidator(_as_list, json_schema_input_type=StopSequence | list[StopSequence])] | None = None
    """Up to 4 sequences: generation ends at the first, which the answer does not include."""
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    seed: Annotated[int, Field(ge=SEED_RANGE[0], le=SEED_RANGE[1])] | None = None
    """Sampling draws from a generator seeded with this: the same request gives the same answer."""
    presence_penalty: Penalty | None = None
    """Subtracted from the logit of each token the answer already holds."""
    frequency_penalty: Penalty | None = None
    """Subtracted from the logit of each token once per time the answer already holds it."""
    logit_bias: Annotated[dict[int, Annotated[float, Field(ge=-100, le=100)]], Field(max_length=MAX_LOGIT_BIAS),
                          BeforeValidator(_token_biases, json_schema_input_type=dict[str, float])] | None = None
    """Token id (in the model's tokenizer) -> a bias added to its logit: -100 bans it, 100 all but forces it."""
    response_format: ResponseFormat | None = None
    # Accepted and not used: none of them changes the answer.
    user: Identifier | None = None
    safety_identifier: Identifier | None = None
    prompt_cache_key: Identifier | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    prompt_cache_options: PromptCacheOptions | None = None
    metadata: Annotated[dict[Annotated[str, StringConstraints(max_length=64)], Annotated[str, StringConstraints(max_length=512)]],
                        Field(max_length=16)] | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority", "fast"] | None = None
    prediction: PredictedContent | None = None
    parallel_tool_calls: bool | None = None
    """Without tools there is nothing to call in parallel."""
    # Accepted only with the values that change nothing; refused otherwise.
    store: Annotated[bool | None, _only((False,), "this server keeps no completions; send false or leave it out")] = None
    logprobs: Annotated[bool | None, _only((False,), NO_LOGPROBS)] = None
    modalities: Annotated[list[Literal["text", "audio"]] | None,
                          _only((["text"],), 'only text answers are implemented; send ["text"] or leave it out')] = None
    tool_choice: Annotated[str | dict[str, Any] | None,
                           _only(("none", "auto"), NO_TOOLS + ": without tools, only none and auto (the same here) are accepted")] = None
    function_call: Annotated[str | dict[str, Any] | None,
                             _only(("none", "auto"), NO_TOOLS + ": without functions, only none and auto (the same here) are accepted")] = None
    reasoning_effort: Annotated[str | None, _only(("none",), "these models do not reason; only none is accepted")] = None
    verbosity: Annotated[str | None, _only(("medium",), "answers have no verbosity setting; only medium (the default) is accepted")] = None
    # Refused: implementing them would change the answer.
    tools: Annotated[None, _refused(NO_TOOLS)] = None
    functions: Annotated[None, _refused(NO_TOOLS)] = None
    top_logprobs: Annotated[None, _refused(NO_LOGPROBS)] = None
    audio: Annotated[None, _refused("audio answers are not implemented by this server")] = None
    web_search_options: Annotated[None, _refused("web search is not implemented by this server")] = None
    moderation: Annotated[None, _refused("moderation is not implemented by this server")] = None

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
