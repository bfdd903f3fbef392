"""The ASGI app: Bedrock's model-customization control plane, wire-compatible with botocore.

Routes (botocore ``bedrock`` client, apiVersion 2023-04-20):
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
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from tunesmith.service.auth import SigV4Middleware
from tunesmith.service.errors import ServiceError
from tunesmith.service import deployments, runtime
from tunesmith.service import jobs as job_routes
from tunesmith.service.inference import ModelCache
from tunesmith.service.store import JobStore
from tunesmith.service.supervisor import Supervisor


@dataclass
class ServiceSettings:
    """How one server runs."""

    home: Path
    """Jobs' working folders, the trained models and (by default) the database."""
    database_url: str | None = None
    """Any SQLAlchemy URL; SQLite under ``home`` by default."""
    allowed_roots: list[str] = field(default_factory=list)
    """Local folders requests may read from and write to (``home`` is always allowed)."""
    concurrency: int = 1
    """Jobs trained at the same time, each in its own worker process."""
    run_workers: bool = True
    """False serves the API only (for tests of the control plane)."""
    credentials: dict[str, str] = field(default_factory=dict)
    """Access key -> secret. When set, every request must carry a valid SigV4 signature."""

    def __post_init__(self) -> None:
        self.home = Path(self.home)
        self.home.mkdir(parents=True, exist_ok=True)
        if self.database_url is None:
            self.database_url = f"sqlite:///{self.home / 'tunesmith.db'}"
        self.allowed_roots = [str(self.home), *self.allowed_roots]


def error_response(error: ServiceError) -> Response:
    return JSONResponse({"message": error.message}, status_code=error.status, headers={"x-amzn-ErrorType": error.name})


def create_app(settings: ServiceSettings) -> FastAPI:
    store = JobStore(settings.database_url)
    supervisor = Supervisor(store, settings.home, settings.concurrency)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if settings.run_workers:
            supervisor.start()
        yield
        supervisor.shutdown()

    app = FastAPI(title="tunesmith", description=__doc__, lifespan=lifespan)
    app.state.settings = settings
    app.state.store = store
    app.state.supervisor = supervisor

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, error: ServiceError) -> Response:
        return error_response(error)

    @app.get("/health", include_in_schema=False)
    async def health() -> Response:
        return PlainTextResponse("ok")

    app.state.models = ModelCache()
    if settings.credentials:
        app.add_middleware(SigV4Middleware, credentials=settings.credentials)
    app.include_router(job_routes.router)
    app.include_router(deployments.router)
    app.include_router(runtime.router)
    return app
