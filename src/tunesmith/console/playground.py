"""The playground: chat with a tier, a custom model or a deployment, the answer streamed.

The browser posts a ConverseRequest plus ``modelId``; the answer comes back as server-sent
events (``delta`` pieces, then ``done`` with the stop reason and token counts, or ``error``)
from :func:`tunesmith.inference.model_cache.stream`, the generator ConverseStream uses, on the
runtime's own threads. The page (``console.js``) labels each answer with the model that gave
it, and starts a new conversation when another model is chosen: a history is one model's.
"""

from __future__ import annotations

import json

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from starlette.responses import Response

from tunesmith.api.converse import chat_from, generation_threads, settings_from
from tunesmith.api.dependencies import SessionDep, StoreDep
from tunesmith.api.errors import describe
from tunesmith.api.protocol import ConverseRequest, Identifier
from tunesmith.console.html import ConsoleRoute, log, render
from tunesmith.console.models import deployments, listed_models
from tunesmith.inference.answers import DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE, stream
from tunesmith.inference.model_ids import resolve_model_id as model_spec
from tunesmith.jobs.errors import ServiceError
from tunesmith.statuses import ModelStatus
from tunesmith.tiers import TIERS

router = APIRouter(route_class=ConsoleRoute)


class PlaygroundRequest(ConverseRequest):
    modelId: Identifier


@router.get("/playground")
def playground_page(request: Request, session: SessionDep, model: str | None = None) -> Response:
    active = [m for m in listed_models(session) if m.status == ModelStatus.ACTIVE]
    return render(request, "playground.html", tiers=list(TIERS.values()), models=active, deployments=deployments(session),
                  chosen=model, max_tokens=DEFAULT_MAX_TOKENS, temperature=DEFAULT_TEMPERATURE)


def _event(kind: str, data: dict) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


@router.post("/playground/stream")
async def chat_stream(request: Request, store: StoreDep) -> Response:
    try:
        body = PlaygroundRequest.model_validate_json(await request.body())
        chat, settings = chat_from(body.messages, body.system), settings_from(body.inferenceConfig)
    except ValidationError as exc:
        return Response("; ".join(describe(e) for e in exc.errors()[:5]), status_code=400, media_type="text/plain")
    except ServiceError as error:
        return Response(error.message, status_code=error.status, media_type="text/plain")
    limiter = generation_threads(request)

    def load():
        key, spec = model_spec(store, body.modelId)
        return request.app.state.models.get(key, spec)

    try:
        loaded = await anyio.to_thread.run_sync(load, limiter=limiter)
    except ServiceError as error:
        return Response(error.message, status_code=error.status if error.status < 500 else 400, media_type="text/plain")

    def events():
        try:
            for kind, value in stream(loaded, chat, settings):
                if kind == "delta":
                    yield _event("delta", {"text": value})
                else:
                    reason, input_tokens, output_tokens = value
                    yield _event("done", {"stopReason": reason, "inputTokens": input_tokens, "outputTokens": output_tokens})
        except Exception as exc:  # the response has started: say so in the stream
            log.exception("playground generation failed")
            yield _event("error", {"message": f"generation failed ({type(exc).__name__}); the server log has the details"})

    async def frames():
        pieces = events()
        while (frame := await anyio.to_thread.run_sync(next, pieces, None, limiter=limiter)) is not None:
            yield frame

    return StreamingResponse(frames(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})
