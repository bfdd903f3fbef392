"""The app factory: the HTTP layer (:mod:`tunesmith.api`), the console, the job service's supervisor and
the inference model cache, wired into one ASGI app, wire-compatible with botocore.

Routes (botocore ``bedrock`` client, apiVersion 2023-04-20), in ``api/job_routes.py`` and ``api/deployment_routes.py``:
  POST   /model-customization-jobs                      CreateModelCustomizationJob
  GET    /model-customization-jobs                      ListModelCustomizationJobs
  GET    /model-customization-jobs/{job}                GetModelCustomizationJob
  POST   /model-customization-jobs/{job}/stop           StopModelCustomizationJob
  GET    /model-customization-jobs/{job}/events         (tunesmith) the job's events, JSON lines
  GET    /model-customization-jobs/{job}/checkpoints    (tunesmith) the job's checkpoints
  GET    /custom-models, /custom-models/{model}         ListCustomModels, GetCustomModel
  DELETE /custom-models/{model}                         DeleteCustomModel
  POST/GET/DELETE /model-customization/custom-model-deployments[/{id}]   deployments
  POST   /model-import-jobs, GET /model-import-jobs[/{job}]   Create/List/GetModelImportJob (``api/import_routes.py``)
and the runtime (botocore ``bedrock-runtime``), in ``api/runtime_routes.py``:
  POST   /model/{modelId}/converse, /converse-stream, /invoke
and an OpenAI-compatible API (the ``openai`` SDKs), in ``api/openai_routes.py``: POST /v1/chat/completions, GET /v1/models[/{id}]

Also GET /metrics for Prometheus (``api/metrics.py``), and /docs and /redoc on local assets (``api/docs.py``);
each request is logged and timed (``api/observability.py``).

Request and response bodies are the typed models of ``api/protocol.py``; every error carries
``x-amzn-ErrorType`` (``api/errors.py``); bodies over ``max_body_bytes`` are refused unread
(``api/body_limit.py``); SigV4 is checked when credentials are set (``api/auth.py``).
"""

from __future__ import annotations

import contextlib

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, Response

from tunesmith import console
from tunesmith.api import (
    deployment_routes as deployments,
    import_routes,
    job_routes as job_routes,
    openai_routes as openai_api,
    runtime_routes as runtime,
)
from tunesmith.api.auth import SigV4Middleware
from tunesmith.api.body_limit import BodyLimitMiddleware
from tunesmith.api.docs import install_docs
from tunesmith.api.errors import install_handlers
from tunesmith.api.metrics import ServiceMetrics, router as metrics_router
from tunesmith.api.observability import RequestObserver, log_access
from tunesmith.devices import place
from tunesmith.inference.model_cache import ModelCache
from tunesmith.inference.model_downloads import GB, ModelDownloads
from tunesmith.jobs.executors import Executor
from tunesmith.jobs.settings import ServiceSettings
from tunesmith.jobs.store import JobStore
from tunesmith.jobs.supervisor import Supervisor

__all__ = ["ServiceSettings", "create_app"]


def create_app(settings: ServiceSettings, executor: Executor | None = None) -> FastAPI:
    """The app; its jobs run where ``executor`` says (default: the one ``settings.executor`` names)."""
    store = JobStore(settings.database_url)
    supervisor = Supervisor(store, settings, executor)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if settings.run_workers:
            supervisor.start()
        yield
        supervisor.shutdown()

    # strict_content_type=False: boto3 sends InvokeModel bodies without a Content-Type; they are JSON all the same.
    app = FastAPI(title="tunesmith", description=__doc__, lifespan=lifespan, strict_content_type=False,
                  docs_url=None, redoc_url=None)  # install_docs serves them offline
    app.state.settings = settings
    app.state.store = store
    app.state.supervisor = supervisor
    downloads = ModelDownloads(settings.home / "model-cache", int(settings.model_cache_gb * GB))
    app.state.metrics = ServiceMetrics(store, settings.home)
    app.state.models = ModelCache(place(settings.device), downloads=downloads, listeners=[app.state.metrics.observe_inference])
    install_handlers(app)
    install_docs(app)

    @app.get("/health", include_in_schema=False)
    async def health() -> Response:  # async: answered on the event loop, whatever the threadpools are doing
        return PlainTextResponse("ok")

    if settings.credentials:
        app.add_middleware(SigV4Middleware, credentials=settings.credentials, region=settings.region,
                           allow_unsigned_payload=settings.allow_unsigned_payload)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)  # added last: outermost
    app.add_middleware(RequestObserver, listeners=[log_access, app.state.metrics.observe])  # around even that: every request logged and timed
    app.mount("/console/static", console.static_files(), name="console-static")  # before the console's router: its 404 page covers /console/*
    app.include_router(console.router)
    app.include_router(job_routes.router)
    app.include_router(deployments.router)
    app.include_router(import_routes.router)
    app.include_router(runtime.router)
    app.include_router(openai_api.router)
    app.include_router(metrics_router)
    return app
