"""Routes of the control plane: customization jobs and custom models."""

from __future__ import annotations


from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from tunesmith.service.listing import json_body, list_response, parse_time
from tunesmith.service.errors import ConflictException, ResourceNotFoundException, ValidationException
from tunesmith.service.requests import parse_create
from tunesmith.service.store import CustomModel, Job, new_id, utcnow
from tunesmith.service import wire
from tunesmith.tiers import UnknownModelError, resolve_tier

router = APIRouter()
PHASES = ("validationDetails", "dataProcessingDetails", "trainingDetails")


@router.post("/model-customization-jobs")
async def create_job(request: Request) -> Response:
    settings, store = request.app.state.settings, request.app.state.store
    body = await json_body(request)
    create = parse_create(body, settings.allowed_roots)
    with store.session() as session:
        if create.client_token:
            existing = session.scalar(select(Job).where(Job.client_token == create.client_token))
            if existing is not None:
                if existing.name != create.job_name:
                    raise ConflictException("clientRequestToken was already used for a different job")
                return JSONResponse({"jobArn": existing.arn}, status_code=201)
        if store.job(session, create.job_name) is not None:
            raise ConflictException("The provided job name is currently in use.")
        if store.model(session, create.model_name) is not None or session.scalar(
            select(Job).where(Job.output_model_name == create.model_name, Job.status.in_(("InProgress", "Stopping")))
        ):
            raise ConflictException(f"The provided custom model name {create.model_name} is currently in use.")
        if create.teacher is not None:
            model = store.model(session, create.teacher)
            if model is None:
                try:
                    resolve_tier(create.teacher)
                except UnknownModelError as exc:
                    raise ValidationException(f"teacherModelIdentifier: {exc}; or give a custom model ARN of this server") from exc
            elif model.status != "Active":
                raise ValidationException(f"teacher model {model.name} is {model.status}; it must be Active")
        job_id = new_id()
        now = utcnow()
        stamp = wire.timestamp(now)
        normalised = {
            **body,
            "customizationType": create.customization_type,
            "hyperParametersResolved": create.hyperparameters.to_wire(),
            "validationDataConfig": body.get("validationDataConfig") or {"validators": []},
        }
        job = Job(
            id=job_id, arn=wire.job_arn(create.base_model_id, job_id), name=create.job_name,
            client_token=create.client_token, request=normalised,
            base_model_arn=wire.foundation_model_arn(create.base_model_id), customization_type=create.customization_type,
            output_model_name=create.model_name, status="InProgress",
            phases={p: {"status": "NotStarted", "creationTime": stamp, "lastModifiedTime": stamp} for p in PHASES},
            validation_losses=[], checkpoints=[], created=now, modified=now,
        )
        session.add(job)
        try:
            session.commit()
        except IntegrityError as exc:  # a concurrent create of the same name or token won
            session.rollback()
            raise ConflictException("The provided job name is currently in use.") from exc
        return JSONResponse({"jobArn": job.arn}, status_code=201)


@router.get("/model-customization-jobs")
async def list_jobs(request: Request) -> Response:
    params = request.query_params
    store = request.app.state.store
    after = parse_time(params.get("creationTimeAfter"), "creationTimeAfter")
    before = parse_time(params.get("creationTimeBefore"), "creationTimeBefore")
    status = params.get("statusEquals")
    if status and status not in ("InProgress", "Completed", "Failed", "Stopping", "Stopped"):
        raise ValidationException(f"statusEquals '{status}' is not InProgress, Completed, Failed, Stopping or Stopped")
    with store.session() as session:
        rows = list(session.scalars(select(Job)).all())
    rows = [
        j for j in rows
        if (not status or j.status == status)
        and (not params.get("nameContains") or params["nameContains"] in j.name)
        and (after is None or j.created > after)
        and (before is None or j.created < before)
    ]
    return list_response(request, rows, wire.job_summary, "modelCustomizationJobSummaries")


def _job_or_404(store, session, identifier: str) -> Job:
    job = store.job(session, identifier)
    if job is None:
        raise ResourceNotFoundException(f"Could not find job with identifier {identifier}")
    return job


@router.get("/model-customization-jobs/{identifier:path}/events")
async def job_events(request: Request, identifier: str) -> Response:
    """tunesmith's addition: the job's training events as JSON lines (``?after=N`` skips N)."""
    settings, store = request.app.state.settings, request.app.state.store
    with store.session() as session:
        job = _job_or_404(store, session, identifier)
    path = settings.home / "jobs" / job.id / "run" / "events.jsonl"
    skip = int(request.query_params.get("after", 0))
    lines = path.read_text().splitlines()[skip:] if path.exists() else []
    return Response("".join(line + "\n" for line in lines), media_type="application/x-ndjson")


@router.get("/model-customization-jobs/{identifier:path}/checkpoints")
async def job_checkpoints(request: Request, identifier: str) -> Response:
    """tunesmith's addition: the job's checkpoints (botocore drops fields its model lacks)."""
    store = request.app.state.store
    with store.session() as session:
        job = _job_or_404(store, session, identifier)
        return JSONResponse({"jobArn": job.arn, "checkpoints": job.checkpoints})


@router.post("/model-customization-jobs/{identifier:path}/stop")
async def stop_job(request: Request, identifier: str) -> Response:
    store = request.app.state.store
    with store.session() as session:
        job = _job_or_404(store, session, identifier)
        if job.status != "InProgress":
            raise ValidationException(f"job {job.name} is {job.status}; only an InProgress job can be stopped")
        job.stop_requested = True
        now = utcnow()
        if job.worker_pid is None:  # not started: nothing to interrupt
            job.status, job.ended = "Stopped", now
            job.phases = _mark_unfinished(job.phases, "Stopped")
        else:
            job.status = "Stopping"
        job.modified = now
        session.commit()
    return JSONResponse({})


def _mark_unfinished(phases: dict, status: str) -> dict:
    return {k: {**v, "status": status if v["status"] in ("NotStarted", "InProgress") else v["status"]} for k, v in phases.items()}


@router.get("/model-customization-jobs/{identifier:path}")
async def get_job(request: Request, identifier: str) -> Response:
    store = request.app.state.store
    with store.session() as session:
        return JSONResponse(wire.job_detail(_job_or_404(store, session, identifier)))


@router.get("/custom-models")
async def list_models(request: Request) -> Response:
    params = request.query_params
    store = request.app.state.store
    with store.session() as session:
        rows = list(session.scalars(select(CustomModel)).all())
    rows = [
        m for m in rows
        if (not params.get("nameContains") or params["nameContains"] in m.name)
        and (not params.get("modelStatus") or m.status == params["modelStatus"])
        and (not params.get("baseModelArnEquals") or m.base_model_arn == params["baseModelArnEquals"])
    ]
    return list_response(request, rows, wire.model_summary, "modelSummaries")


def _model_or_404(store, session, identifier: str) -> CustomModel:
    model = store.model(session, identifier)
    if model is None:
        raise ResourceNotFoundException(f"Could not find model with identifier {identifier}")
    return model


@router.get("/custom-models/{identifier:path}")
async def get_model(request: Request, identifier: str) -> Response:
    store = request.app.state.store
    with store.session() as session:
        model = _model_or_404(store, session, identifier)
        job = store.job(session, model.job_arn)
        return JSONResponse(wire.model_detail(model, job))


@router.delete("/custom-models/{identifier:path}")
async def delete_model(request: Request, identifier: str) -> Response:
    import shutil

    store = request.app.state.store
    with store.session() as session:
        model = _model_or_404(store, session, identifier)
        folder = model.folder
        session.delete(model)
        session.commit()
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
    return JSONResponse({})
