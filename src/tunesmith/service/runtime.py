"""Routes of the runtime API (botocore's ``bedrock-runtime``): Converse, ConverseStream, InvokeModel.

A model id is a base tier (``amazon.nova-micro-v1:0``, ``micro``, a foundation-model ARN),
a deployment ARN or name, or a custom model ARN or name.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.concurrency import iterate_in_threadpool, run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tunesmith.service import eventstream
from tunesmith.service.errors import ResourceNotFoundException, ValidationException
from tunesmith.service.inference import chat_from, complete, settings_from, stream
from tunesmith.service.listing import json_body
from tunesmith.tiers import UnknownModelError, resolve_tier

router = APIRouter()


def model_spec(request: Request, model_id: str) -> tuple[str, str]:
    """(cache key, spec for resolve_model) of a runtime model id."""
    store = request.app.state.store
    with store.session() as session:
        deployment = store.deployment(session, model_id)
        model = store.model(session, deployment.model_arn if deployment else model_id)
        if model is not None:
            if model.status != "Active" or not model.folder:
                raise ValidationException(f"model {model.name} is {model.status}; it cannot be invoked")
            return model.arn, model.folder
        if deployment is not None:
            raise ResourceNotFoundException(f"deployment {model_id} points to a model that no longer exists")
    try:
        tier = resolve_tier(model_id)
    except UnknownModelError as exc:
        raise ResourceNotFoundException(f"{model_id} is not a base model, a custom model or a deployment: {exc}") from exc
    return tier.name, tier.name


async def _load(request: Request, model_id: str):
    key, spec = model_spec(request, model_id)
    return await run_in_threadpool(request.app.state.models.get, key, spec)


def _usage(input_tokens: int, output_tokens: int) -> dict:
    return {"inputTokens": input_tokens, "outputTokens": output_tokens, "totalTokens": input_tokens + output_tokens}


@router.post("/model/{model_id:path}/converse")
async def converse(request: Request, model_id: str) -> Response:
    body = await json_body(request)
    chat, settings = chat_from(body.get("messages"), body.get("system")), settings_from(body.get("inferenceConfig"))
    loaded = await _load(request, model_id)
    completion, latency = await run_in_threadpool(complete, loaded, chat, settings)
    return JSONResponse({
        "output": {"message": {"role": "assistant", "content": [{"text": completion.text}]}},
        "stopReason": completion.stop_reason,
        "usage": _usage(completion.input_tokens, completion.output_tokens),
        "metrics": {"latencyMs": latency},
    })


@router.post("/model/{model_id:path}/converse-stream")
async def converse_stream(request: Request, model_id: str) -> Response:
    import time

    body = await json_body(request)
    chat, settings = chat_from(body.get("messages"), body.get("system")), settings_from(body.get("inferenceConfig"))
    loaded = await _load(request, model_id)
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

    return StreamingResponse(iterate_in_threadpool(events()), media_type="application/vnd.amazon.eventstream")


@router.post("/model/{model_id:path}/invoke")
async def invoke(request: Request, model_id: str) -> Response:
    """The Nova ``messages-v1`` body."""
    body = await json_body(request)
    version = body.get("schemaVersion", "messages-v1")
    if version != "messages-v1":
        raise ValidationException(f"schemaVersion '{version}' is not messages-v1")
    chat, settings = chat_from(body.get("messages"), body.get("system")), settings_from(body.get("inferenceConfig"))
    loaded = await _load(request, model_id)
    completion, _ = await run_in_threadpool(complete, loaded, chat, settings)
    payload = {
        "output": {"message": {"role": "assistant", "content": [{"text": completion.text}]}},
        "stopReason": completion.stop_reason,
        "usage": _usage(completion.input_tokens, completion.output_tokens),
    }
    return Response(json.dumps(payload), media_type="application/json")
