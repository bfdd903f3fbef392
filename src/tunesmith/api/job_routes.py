"""Routes of the control plane: customization jobs and custom models.

Plain ``def`` routes: FastAPI runs them on its threadpool, so database and file work never
blocks the event loop (and ``/health``) while it runs.
"""

from __future__ import annotations

import logging
import shutil
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer

from tunesmith.api import wire
from tunesmith.api.dependencies import IdentifierPath, SessionDep, SettingsDep, StoreDep
from tunesmith.api.job_requests import spec_from_request
from tunesmith.api.listing import Filter, ListQuery, Timestamp, created_between, list_page
from tunesmith.api.protocol import (
    CreateJobRequest,
    Empty,
    JobArn,
    JobCheckpoints,
    JobDetail,
    JobList,
    JobStatusName,
    ModelDetail,
    ModelList,
    ModelStatusName,
)
from tunesmith.jobs import arns, lifecycle
from tunesmith.jobs.device_pool import DevicePool
from tunesmith.jobs.errors import ConflictException, ResourceNotFoundException, ValidationException
from tunesmith.jobs.layout import JobFolder
from tunesmith.jobs.lifecycle import JobStatus, TransitionError
from tunesmith.jobs.spec import JobSpec
from tunesmith.jobs.store import CustomModel, Job, JobStore, new_id, utcnow
from tunesmith.tiers import UnknownModelError, resolve_tier

router = APIRouter()
log = logging.getLogger("tunesmith.service.jobs")
MAX_EVENT_LINES = 100_000


@router.post("/model-customization-jobs", status_code=201, response_model=JobArn)
def create_job(body: CreateJobRequest, settings: SettingsDep, store: StoreDep, session: SessionDep) -> JSONResponse:
    spec = spec_from_request(body, settings.allowed_roots)
    problem = DevicePool(settings.devices).problem(spec.devices)
    if problem:
        raise ValidationException(problem)
    earlier = _conflict(store, session, spec)
    if earlier is not None:
        return JSONResponse({"jobArn": earlier.arn}, status_code=201)
    if spec.teacher is not None:
        _check_teacher(store, session, spec.teacher)
    job_id, now = new_id(), utcnow()
    job = Job(
        id=job_id, arn=arns.job_arn(spec.base_model_id, job_id), name=spec.job_name, client_token=spec.client_token,
        spec_json=spec.model_dump(mode="json"), base_model_arn=arns.foundation_model_arn(spec.base_model_id),
        customization_type=spec.customization_type, output_model_name=spec.model_name, status=JobStatus.IN_PROGRESS.value,
        phases=lifecycle.new_phases(), validation_losses=[], checkpoints=[], created=now, modified=now, details={},
    )
    session.add(job)
    try:
        session.commit()
    except IntegrityError as exc:  # a concurrent create won a unique constraint: say which, as the checks would have
        session.rollback()
        earlier = _conflict(store, session, spec)
        if earlier is not None:
            return JSONResponse({"jobArn": earlier.arn}, status_code=201)
        raise ConflictException("The provided job name is currently in use.") from exc
    log.info("job %s created: %s of %s", job.name, spec.customization_type, spec.base_model_id)
    return JSONResponse({"jobArn": job.arn}, status_code=201)


def _conflict(store: JobStore, session: Session, spec: JobSpec) -> Job | None:
    """The job an idempotent retry (same ``clientRequestToken``) already made, or None;
    ConflictException when the name, the token or the model name is taken."""
    earlier = _same_token(session, spec)
    if earlier is not None:
        return earlier
    name_taken = store.job(session, spec.job_name) is not None
    model_taken = not name_taken and (store.model(session, spec.model_name) is not None or session.scalar(
        select(Job.id).where(Job.output_model_name == spec.model_name, Job.status.in_(lifecycle.ACTIVE))) is not None)
    if name_taken or model_taken:
        earlier = _same_token(session, spec)  # a concurrent retry may have committed since the first look
        if earlier is not None:
            return earlier
    if name_taken:
        raise ConflictException("The provided job name is currently in use.")
    if model_taken:
        raise ConflictException(f"The provided custom model name {spec.model_name} is currently in use.")
    return None


def _same_token(session: Session, spec: JobSpec) -> Job | None:
    if not spec.client_token:
        return None
    existing = session.scalar(select(Job).where(Job.client_token == spec.client_token))
    if existing is not None and existing.name != spec.job_name:
        raise ConflictException("clientRequestToken was already used for a different job")
    return existing


def _check_teacher(store: JobStore, session: Session, teacher: str) -> None:
    model = store.model(session, teacher)
    if model is None:
        try:
            resolve_tier(teacher)
        except UnknownModelError as exc:
            raise ValidationException(f"teacherModelIdentifier: {exc}; or give a custom model ARN of this server") from exc
    elif model.status != "Active":
        raise ValidationException(f"teacher model {model.name} is {model.status}; it must be Active")


class ListJobsQuery(ListQuery):
    creationTimeAfter: Timestamp | None = None
    creationTimeBefore: Timestamp | None = None
    statusEquals: JobStatusName | None = None
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
    job = _job_or_404(store, session, identifier)
    try:
        lifecycle.request_stop(job)
    except TransitionError as exc:
        raise ValidationException(str(exc)) from exc
    session.commit()
    log.info("job %s: stop requested; %s", job.name, "stopped" if job.status == JobStatus.STOPPED.value else "its worker stops at the next micro-batch")
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
    modelStatus: ModelStatusName | None = None
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
    model = _model_or_404(store, session, identifier)
    folder = model.folder
    session.delete(model)
    session.commit()
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
    return {}

