"""The ASGI app: Bedrock's model-customization control plane, wire-compatible with botocore.

Routes (botocore ``bedrock`` client, apiVersion 2023-04-20), in ``jobs.py`` and ``deployments.py``:
  POST   /model-customization-jobs                      CreateModelCustomizationJob
  GET    /model-customization-jobs                      ListModelCustomizationJobs
  GET    /model-customization-jobs/{job}                GetModelCustomizationJob
  POST   /model-customization-jobs/{job}/stop           StopModelCustomizationJob
  GET    /model-customization-jobs/{job}/events         (tunesmith) the job's events, JSON lines
  GET    /model-customization-jobs/{job}/checkpoints    (tunesmith) the job's checkpoints
  GET    /custom-models, /custom-models/{model}         ListCustomModels, GetCustomModel
  DELETE /custom-models/{model}                         DeleteCustomModel
  POST/GET/DELETE /model-customization/custom-model-deployments[/{id}]   deployments
and the runtime (botocore ``bedrock-runtime``), in ``runtime.py``:
  POST   /model/{modelId}/converse, /converse-stream, /invoke

Request and response bodies are the typed models of ``protocol.py``; every error carries
``x-amzn-ErrorType`` (``errors.py``); bodies over ``max_body_bytes`` are refused unread
(``body_limit.py``); SigV4 is checked when credentials are set (``auth.py``).
"""

from __future__ import annotations

import contextlib

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, Response

from tunesmith.devices import place
from tunesmith.service import deployments, jobs as job_routes, runtime
from tunesmith.service.auth import SigV4Middleware
from tunesmith.service.body_limit import BodyLimitMiddleware
from tunesmith.service.errors import install_handlers
from tunesmith.service.inference import ModelCache
from tunesmith.service.settings import ServiceSettings
from tunesmith.service.store import JobStore
from tunesmith.service.supervisor import Supervisor

__all__ = ["ServiceSettings", "create_app"]


def create_app(settings: ServiceSettings) -> FastAPI:
    store = JobStore(settings.database_url)
    supervisor = Supervisor(store, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if settings.run_workers:
            supervisor.start()
        yield
        supervisor.shutdown()

    # strict_content_type=False: boto3 sends InvokeModel bodies without a Content-Type; they are JSON all the same.
    app = FastAPI(title="tunesmith", description=__doc__, lifespan=lifespan, strict_content_type=False)
    app.state.settings = settings
    app.state.store = store
    app.state.supervisor = supervisor
    app.state.models = ModelCache(place(settings.device))
    install_handlers(app)

    @app.get("/health", include_in_schema=False)
    async def health() -> Response:  # async: answered on the event loop, whatever the threadpools are doing
        return PlainTextResponse("ok")

    if settings.credentials:
        app.add_middleware(SigV4Middleware, credentials=settings.credentials, region=settings.region,
                           allow_unsigned_payload=settings.allow_unsigned_payload)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)  # added last: outermost
    app.include_router(job_routes.router)
    app.include_router(deployments.router)
    app.include_router(runtime.router)
    return app
