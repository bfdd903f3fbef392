"""Routes of the runtime API (botocore's ``bedrock-runtime``): Converse, ConverseStream, InvokeModel.

A model id is a base tier (``amazon.nova-micro-v1:0``, ``micro``, a foundation-model ARN),
a deployment ARN or name, or a custom model ARN or name.
"""

from __future__ import annotations

import time
from typing import Annotated

import anyio
from fastapi import APIRouter, Path, Request
from fastapi.responses import StreamingResponse

from tunesmith.api import eventstream
from tunesmith.api.converse import chat_from, generation_threads, settings_from
from tunesmith.api.dependencies import StoreDep
from tunesmith.api.protocol import (
    PRINTABLE,
    ConverseRequest,
    ConverseResponse,
    InvokeRequest,
    InvokeResponse,
)
from tunesmith.inference.answers import complete, stream
from tunesmith.inference.model_cache import LoadedModel
from tunesmith.inference.model_ids import resolve_model_id
from tunesmith.jobs.store import JobStore

router = APIRouter()
EVENT_STREAM = {
    "description": "AWS event stream (application/vnd.amazon.eventstream): messageStart, contentBlockDelta, "
                   "contentBlockStop, messageStop and metadata events, as botocore decodes them.",
    "content": {"application/vnd.amazon.eventstream": {"schema": {"type": "string", "format": "binary"}}},
}
ModelId = Annotated[str, Path(min_length=1, max_length=2048, pattern=PRINTABLE, description="A tier, hosted id, custom model or deployment.")]


def _load(request: Request, store: JobStore, model_id: str) -> LoadedModel:
    key, spec = resolve_model_id(store, model_id)
    return request.app.state.models.get(key, spec)


def _usage(input_tokens: int, output_tokens: int) -> dict:
    return {"inputTokens": input_tokens, "outputTokens": output_tokens, "totalTokens": input_tokens + output_tokens}


def _answer(completion) -> dict:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": completion.text}]}},
        "stopReason": completion.stop_reason,
        "usage": _usage(completion.input_tokens, completion.output_tokens),
    }


@router.post("/model/{model_id:path}/converse", response_model=ConverseResponse)
async def converse(request: Request, model_id: ModelId, body: ConverseRequest, store: StoreDep) -> dict:
    def answer() -> dict:
        chat, settings = chat_from(body.messages, body.system), settings_from(body.inferenceConfig)
        completion, latency = complete(_load(request, store, model_id), chat, settings)
        return {**_answer(completion), "metrics": {"latencyMs": latency}}

    return await anyio.to_thread.run_sync(answer, limiter=generation_threads(request))


@router.post("/model/{model_id:path}/converse-stream", response_class=StreamingResponse, responses={200: EVENT_STREAM})
async def converse_stream(request: Request, model_id: ModelId, body: ConverseRequest, store: StoreDep) -> StreamingResponse:
    """The answer as AWS event-stream frames (messageStart, contentBlockDelta..., messageStop, metadata)."""
    chat, settings = chat_from(body.messages, body.system), settings_from(body.inferenceConfig)
    limiter = generation_threads(request)
    loaded = await anyio.to_thread.run_sync(_load, request, store, model_id, limiter=limiter)
    started = time.perf_counter()

    def events():
        yield eventstream.event("messageStart", {"role": "assistant"})
        for kind, value in stream(loaded, chat, settings):
            if kind == "delta":
                yield eventstream.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": value}})
            else:
                reason, input_tokens, output_tokens = value
                yield eventstream.event("contentBlockStop", {"contentBlockIndex": 0})
                yield eventstream.event("messageStop", {"stopReason": reason})
                latency = int((time.perf_counter() - started) * 1000)
                yield eventstream.event("metadata", {"usage": _usage(input_tokens, output_tokens), "metrics": {"latencyMs": latency}})

    async def frames():
        pieces = events()
        while (frame := await anyio.to_thread.run_sync(next, pieces, None, limiter=limiter)) is not None:
            yield frame

    return StreamingResponse(frames(), media_type="application/vnd.amazon.eventstream")


@router.post("/model/{model_id:path}/invoke", response_model=InvokeResponse)
async def invoke(request: Request, model_id: ModelId, body: InvokeRequest, store: StoreDep) -> dict:
    """The Nova ``messages-v1`` body."""
    def answer() -> dict:
        chat, settings = chat_from(body.messages, body.system), settings_from(body.inferenceConfig)
        completion, _ = complete(_load(request, store, model_id), chat, settings)
        return _answer(completion)

    return await anyio.to_thread.run_sync(answer, limiter=generation_threads(request))
