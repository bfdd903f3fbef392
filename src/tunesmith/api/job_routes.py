"""Routes of the control plane: customization jobs and custom models.

Creating and stopping a job are the job service's (:mod:`tunesmith.jobs.control`), deleting a
model too (:mod:`tunesmith.jobs.custom_models`: refused while a deployment names it): the routes
parse the request and shape the answer, as the console's forms do for theirs.

Plain ``def`` routes: FastAPI runs them on its threadpool, so database and file work never
blocks the event loop (and ``/health``) while it runs.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session, defer

from tunesmith.api import wire
from tunesmith.api.dependencies import IdentifierPath, SessionDep, SettingsDep, StoreDep
from tunesmith.api.job_requests import spec_from_request
from tunesmith.api.listing import Filter, ListQuery, Timestamp, created_between, list_page
from tunesmith.api.protocol import CreateJobRequest, Empty, JobArn, JobCheckpoints, JobDetail, JobList, ModelDetail, ModelList
from tunesmith.jobs import control, custom_models
from tunesmith.jobs.errors import ResourceNotFoundException
from tunesmith.jobs.layout import JobFolder
from tunesmith.jobs.store import CustomModel, Job, JobStore
from tunesmith.statuses import JobStatus, ModelStatus

router = APIRouter()
MAX_EVENT_LINES = 100_000


@router.post("/model-customization-jobs", status_code=201, response_model=JobArn)
def create_job(body: CreateJobRequest, settings: SettingsDep, store: StoreDep, session: SessionDep) -> dict:
    job = control.create_job(store, session, settings, spec_from_request(body, settings.allowed_roots))
    return {"jobArn": job.arn}


class ListJobsQuery(ListQuery):
    creationTimeAfter: Timestamp | None = None
    creationTimeBefore: Timestamp | None = None
    statusEquals: JobStatus | None = None
    nameContains: Filter | None = None


@router.get("/model-customization-jobs", response_model=JobList, response_model_exclude_none=True)
def list_jobs(query: Annotated[ListJobsQuery, Query()], session: SessionDep) -> dict:
    statement = select(Job).options(defer(Job.spec_json), defer(Job.details), defer(Job.checkpoints), defer(Job.validation_losses))
    conditions = created_between(Job.created, query.creationTimeAfter, query.creationTimeBefore)
    if query.statusEquals:
        conditions.append(Job.status == query.statusEquals)
    if query.nameContains:
        conditions.append(Job.name.contains(query.nameContains, autoescape=True))
    return list_page(session, statement.where(*conditions), Job, query, wire.job_summary, "modelCustomizationJobSummaries")


def _job_or_404(store: JobStore, session: Session, identifier: str) -> Job:
    job = store.job(session, identifier)
    if job is None:
        raise ResourceNotFoundException(f"Could not find job with identifier {identifier}")
    return job


EVENT_LINES = {"description": "The training events (events.jsonl) as JSON lines: start, step, validation, checkpoint, ...",
               "content": {"application/x-ndjson": {"schema": {"type": "string"}}}}


@router.get("/model-customization-jobs/{identifier:path}/events", response_class=Response, responses={200: EVENT_LINES})
def job_events(identifier: IdentifierPath, settings: SettingsDep, store: StoreDep, session: SessionDep,
               after: Annotated[int, Query(ge=0, le=MAX_EVENT_LINES * 100, description="Skip this many lines.")] = 0) -> Response:
    """tunesmith's addition: the job's training events as JSON lines (``?after=N`` skips N lines)."""
    job = _job_or_404(store, session, identifier)
    path = JobFolder(settings.home, job.id).events
    lines: list[str] = []
    if path.is_file():
        with path.open(encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle):
                if number >= after + MAX_EVENT_LINES:
                    break
                if number >= after and line.endswith("\n"):  # a line still being written is sent next time
                    lines.append(line)
    return Response("".join(lines), media_type="application/x-ndjson")


@router.get("/model-customization-jobs/{identifier:path}/checkpoints", response_model=JobCheckpoints, response_model_exclude_none=True)
def job_checkpoints(identifier: IdentifierPath, store: StoreDep, session: SessionDep) -> dict:
    """tunesmith's addition: the job's checkpoints (botocore drops fields its model lacks)."""
    job = _job_or_404(store, session, identifier)
    return {"jobArn": job.arn, "checkpoints": job.checkpoints or []}


@router.post("/model-customization-jobs/{identifier:path}/stop", response_model=Empty)
def stop_job(identifier: IdentifierPath, store: StoreDep, session: SessionDep) -> dict:
    control.stop_job(session, _job_or_404(store, session, identifier))
    return {}


@router.get("/model-customization-jobs/{identifier:path}", response_model=JobDetail, response_model_exclude_none=True)
def get_job(identifier: IdentifierPath, store: StoreDep, session: SessionDep) -> dict:
    return wire.job_detail(_job_or_404(store, session, identifier))


class ListModelsQuery(ListQuery):
    creationTimeAfter: Timestamp | None = None
    creationTimeBefore: Timestamp | None = None
    nameContains: Filter | None = None
    baseModelArnEquals: Filter | None = None
    foundationModelArnEquals: Filter | None = None
    modelStatus: ModelStatus | None = None
    isOwned: bool | None = None


@router.get("/custom-models", response_model=ModelList, response_model_exclude_none=True)
def list_models(query: Annotated[ListModelsQuery, Query()], session: SessionDep) -> dict:
    conditions = created_between(CustomModel.created, query.creationTimeAfter, query.creationTimeBefore)
    if query.nameContains:
        conditions.append(CustomModel.name.contains(query.nameContains, autoescape=True))
    if query.modelStatus:
        conditions.append(CustomModel.status == query.modelStatus)
    for arn in (query.baseModelArnEquals, query.foundationModelArnEquals):
        if arn:
            conditions.append(CustomModel.base_model_arn == arn)
    statement = select(CustomModel).options(defer(CustomModel.details)).where(*conditions)
    return list_page(session, statement, CustomModel, query, wire.model_summary, "modelSummaries")


def _model_or_404(store: JobStore, session: Session, identifier: str) -> CustomModel:
    model = store.model(session, identifier)
    if model is None:
        raise ResourceNotFoundException(f"Could not find model with identifier {identifier}")
    return model


@router.get("/custom-models/{identifier:path}", response_model=ModelDetail, response_model_exclude_none=True)
def get_model(identifier: IdentifierPath, store: StoreDep, session: SessionDep) -> dict:
    model = _model_or_404(store, session, identifier)
    return wire.model_detail(model, store.job(session, model.job_arn))


@router.delete("/custom-models/{identifier:path}", response_model=Empty)
def delete_model(identifier: IdentifierPath, store: StoreDep, session: SessionDep) -> dict:
    custom_models.delete_model(session, _model_or_404(store, session, identifier))
    return {}

