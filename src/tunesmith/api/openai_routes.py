"""Routes of the OpenAI-compatible API, for the ``openai`` SDKs and the tools built on them:

  POST /v1/chat/completions     an answer, or with ``stream: true`` server-sent events
  GET  /v1/models, /v1/models/{id}

A model is anything the runtime API invokes (``runtime.model_spec``): a tier (``micro``), a
hosted id, a custom model or a deployment, by name or ARN. Models, their cache and the threads
that generate are the runtime API's own. One generator, :func:`inference.stream`, makes every
answer: streamed, its pieces become ``chat.completion.chunk`` events; otherwise they are joined
into one ``chat.completion``, so both carry the same text, finish reason and usage.

Unset ``temperature`` and ``top_p`` are OpenAI's 1 and 1, with no top-k: the model's whole
distribution, as OpenAI samples it (Converse keeps Bedrock's 0.7 and 0.9). ``seed``, the
penalties, ``logit_bias`` and ``response_format`` act on the model's logits in the generation
layer (:mod:`tunesmith.evaluation.sampling`, :mod:`tunesmith.evaluation.json_output`). The
models listed are those that can answer. Errors come in OpenAI's shape (``errors.py``); with
``--credentials``, clients send one of the secrets as their API key.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Path, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from tunesmith.api.converse import generation_threads
from tunesmith.api.dependencies import SessionDep, StoreDep
from tunesmith.api.openai_protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    ChunkChoice,
    Delta,
    ErrorResponse,
    ModelCard,
    ModelList,
    Usage,
)
from tunesmith.api.protocol import PRINTABLE
from tunesmith.errors import TunesmithError
from tunesmith.evaluation.generation import GenerationSettings
from tunesmith.inference.answers import DEFAULT_MAX_TOKENS, answerable, stream
from tunesmith.inference.model_cache import LoadedModel
from tunesmith.inference.model_ids import resolve_model_id as model_spec
from tunesmith.jobs.errors import ResourceNotFoundException, ValidationException
from tunesmith.jobs.store import CustomModel, Deployment, JobStore
from tunesmith.models.registry import resolve_model
from tunesmith.statuses import DeploymentStatus, ModelStatus
from tunesmith.tiers import TIERS, UnknownModelError, resolve_tier

log = logging.getLogger("tunesmith.service")
router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"], responses={
    status: {"model": ErrorResponse} for status in (400, 401, 404, 413)})
FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}
"""Generation's stop reasons as OpenAI's finish reasons."""
ModelId = Annotated[str, Path(min_length=1, max_length=2048, pattern=PRINTABLE, description="A tier, hosted id, custom model or deployment.")]


OPENAI_TEMPERATURE = OPENAI_TOP_P = 1.0
"""OpenAI's defaults: sampling from the model's whole distribution."""


def generation_settings(body: ChatCompletionRequest) -> GenerationSettings:
    from tunesmith.evaluation.json_output import ANY_OBJECT  # here: it brings transformers, which start-up can do without

    max_tokens = body.max_completion_tokens or body.max_tokens or DEFAULT_MAX_TOKENS
    temperature = OPENAI_TEMPERATURE if body.temperature is None else body.temperature
    top_p = OPENAI_TOP_P if body.top_p is None else body.top_p
    form = body.response_format
    schema = None if form is None or form.type == "text" else ANY_OBJECT if form.type == "json_object" else form.json_schema.schema_
    return GenerationSettings(max_new_tokens=max_tokens, temperature=float(temperature), top_p=float(top_p), top_k=0,
                              stop=tuple(body.stop or ()), batch_size=1, seed=body.seed,
                              presence_penalty=float(body.presence_penalty or 0), frequency_penalty=float(body.frequency_penalty or 0),
                              logit_bias={token: float(bias) for token, bias in (body.logit_bias or {}).items()}, json_schema=schema)


def check_token_ids(loaded: LoadedModel, body: ChatCompletionRequest) -> None:
    """``logit_bias`` names tokens of this model's vocabulary, and ``response_format`` needs a fast
    tokenizer (the JSON constraint reads its vocabulary): both known only once the model is loaded."""
    if body.response_format is not None and body.response_format.type != "text" and not getattr(loaded.tokenizer, "is_fast", False):
        raise ValidationException(f"response_format: {body.model} has no fast tokenizer, which constrained JSON output needs",
                                  param="response_format")
    size = len(loaded.tokenizer)
    outside = sorted(token for token in body.logit_bias or {} if token >= size)
    if outside:
        raise ValidationException(f"logit_bias: token {outside[0]} is not in the vocabulary of {body.model} (ids 0 to {size - 1})",
                                  param="logit_bias")


def chat_of(messages: list[ChatMessage]) -> list[dict[str, str]]:
    """OpenAI messages as a chat-template message list (text parts joined by newlines, as in Converse)."""
    roles = {"developer": "system"}
    return answerable([{"role": roles.get(m.role, m.role), "content": "\n".join(p.text for p in m.content)} for m in messages])


def _load(request: Request, store: JobStore, model_id: str) -> LoadedModel:
    """The model, or an error that names ``model`` as the field at fault."""
    try:
        return request.app.state.models.get(*model_spec(store, model_id))
    except ResourceNotFoundException as exc:
        raise ResourceNotFoundException(exc.message, param="model", code="model_not_found") from exc
    except ValidationException as exc:
        raise ValidationException(exc.message, param="model") from exc


def _answer(loaded: LoadedModel, chat: list[dict[str, str]], settings: GenerationSettings) -> tuple[str, str, Usage]:
    """The whole answer: text, finish reason and usage."""
    pieces, done = [], None
    for kind, value in stream(loaded, chat, settings):
        if kind == "delta":
            pieces.append(value)
        else:
            done = value
    reason, prompt_tokens, completion_tokens = done
    return "".join(pieces), FINISH_REASONS[reason], _usage(prompt_tokens, completion_tokens)


def _usage(prompt_tokens: int, completion_tokens: int) -> Usage:
    return Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, total_tokens=prompt_tokens + completion_tokens)


def _events(loaded: LoadedModel, chat: list[dict[str, str]], settings: GenerationSettings, head: dict[str, Any],
            include_usage: bool) -> Iterator[str]:
    """The answer as ``data:`` lines: the role, the text pieces, the finish reason, the usage if asked, ``[DONE]``."""
    def chunk(delta: Delta | None = None, finish_reason: str | None = None, usage: Usage | None = None) -> str:
        choices = [] if delta is None else [ChunkChoice(index=0, delta=delta, finish_reason=finish_reason)]
        return f"data: {ChatCompletionChunk(**head, choices=choices, usage=usage).model_dump_json()}\n\n"

    yield chunk(Delta(role="assistant", content=""))
    try:
        for kind, value in stream(loaded, chat, settings):
            if kind == "delta":
                yield chunk(Delta(content=value))
            else:
                reason, prompt_tokens, completion_tokens = value
                yield chunk(Delta(), FINISH_REASONS[reason])
                if include_usage:
                    yield chunk(usage=_usage(prompt_tokens, completion_tokens))
    except Exception as exc:  # the status line has gone: the error travels as an event, which the SDKs raise
        log.exception("generation failed while streaming %s", head["model"])
        error = {"message": f"internal error ({type(exc).__name__}); the server log has the details", "type": "server_error",
                 "param": None, "code": None}
        yield f"data: {json.dumps({'error': error})}\n\n"
    yield "data: [DONE]\n\n"


@router.post("/chat/completions", response_model=ChatCompletion,
             responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                              "description": "With stream: server-sent chat.completion.chunk events, then [DONE]."}})
async def chat_completions(request: Request, body: ChatCompletionRequest, store: StoreDep) -> Any:
    chat, settings = chat_of(body.messages), generation_settings(body)
    limiter = generation_threads(request)
    loaded = await anyio.to_thread.run_sync(_load, request, store, body.model, limiter=limiter)
    check_token_ids(loaded, body)
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": body.model}
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        lines = _events(loaded, chat, settings, head, include_usage)

        async def sent() -> AsyncIterator[str]:
            while (line := await anyio.to_thread.run_sync(next, lines, None, limiter=limiter)) is not None:
                yield line

        return StreamingResponse(sent(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    text, finish_reason, usage = await anyio.to_thread.run_sync(_answer, loaded, chat, settings, limiter=limiter)
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}
    return ChatCompletion(**head, choices=[choice], usage=usage)


def _parent_tier(base_model_arn: str) -> str:
    try:
        return resolve_tier(base_model_arn).name
    except UnknownModelError:
        return base_model_arn


def _custom_card(model_id: str, model: CustomModel) -> ModelCard:
    return ModelCard(id=model_id, created=int(model.created.timestamp()), owned_by="custom", parent=_parent_tier(model.base_model_arn))


def _deployment_card(model_id: str, deployment: Deployment, model: CustomModel) -> ModelCard:
    return ModelCard(id=model_id, created=int(deployment.created.timestamp()), owned_by="custom", parent=model.name)


def _tier_card(model_id: str, tier_name: str) -> ModelCard:
    return ModelCard(id=model_id, created=0, owned_by="tunesmith", parent=None if model_id == tier_name else tier_name)


def _tier_problem(name: str) -> str | None:
    """Why the tier cannot answer here (nothing configured for it, its files missing); None if it can.
    A hub id counts as answering: where the hub is reachable, it is fetched on first use."""
    try:
        source = resolve_model(name)
    except TunesmithError as exc:
        return str(exc).splitlines()[0]
    if source.kind != "hub" and not source.available():
        return f"the {name} tier's model ({source.describe()}) is not on this server"
    return None


@router.get("/models", response_model=ModelList)
def list_models(session: SessionDep) -> ModelList:
    """What can answer: the tiers with a model here, the Active custom models and the deployments of Active models."""
    cards = [_tier_card(name, name) for name in TIERS if _tier_problem(name) is None]
    models = session.scalars(select(CustomModel).where(CustomModel.status == ModelStatus.ACTIVE).order_by(CustomModel.created))
    cards += [_custom_card(model.name, model) for model in models if model.folder]
    deployed = session.execute(select(Deployment, CustomModel).join(CustomModel, CustomModel.arn == Deployment.model_arn)
                               .where(Deployment.status == DeploymentStatus.ACTIVE, CustomModel.status == ModelStatus.ACTIVE).order_by(Deployment.created))
    cards += [_deployment_card(deployment.name, deployment, model) for deployment, model in deployed]
    # A name used twice means what chat completions take it for: a deployment, else a custom model, else a tier.
    return ModelList(data=list({card.id: card for card in cards}.values()))


def _card(store: JobStore, session: Session, model_id: str) -> ModelCard:
    """The card of any id chat completions can answer with, resolved as ``runtime.model_spec`` resolves it."""
    deployment = store.deployment(session, model_id)
    model = store.model(session, deployment.model_arn if deployment else model_id)
    if model is not None and model.status == ModelStatus.ACTIVE and model.folder:
        return _deployment_card(model_id, deployment, model) if deployment else _custom_card(model_id, model)
    if model is not None or deployment is not None:
        state = model.status if model is not None else "gone"
        raise ResourceNotFoundException(f"the model {model_id} is {state}; only {ModelStatus.ACTIVE} models can be used", param="model",
                                        code="model_not_found")
    try:
        tier = resolve_tier(model_id)
    except UnknownModelError as exc:
        raise ResourceNotFoundException(f"{model_id} is not a base model, a custom model or a deployment: {exc}", param="model",
                                        code="model_not_found") from exc
    problem = _tier_problem(tier.name)
    if problem:
        raise ResourceNotFoundException(f"{model_id} cannot answer here: {problem}", param="model", code="model_not_found")
    return _tier_card(model_id, tier.name)


@router.get("/models/{model_id:path}", response_model=ModelCard)
def retrieve_model(model_id: ModelId, store: StoreDep, session: SessionDep) -> ModelCard:
    return _card(store, session, model_id)

