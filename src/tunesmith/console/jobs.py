"""Console pages for jobs: the list, a job's page, and the fragments htmx polls while it runs."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from starlette.responses import Response

from tunesmith.api.dependencies import SessionDep, SettingsDep, StoreDep
from tunesmith.console.html import ConsoleRoute, error_page, render
from tunesmith.console.progress import job_progress, loss_series, read_events, shown_fields
from tunesmith.hyperparameters import TABLE
from tunesmith.jobs import control
from tunesmith.jobs.errors import ResourceNotFoundException, ServiceError
from tunesmith.jobs.layout import JobFolder
from tunesmith.jobs.store import Job
from tunesmith.statuses import ACTIVE_JOB_STATUSES

router = APIRouter(route_class=ConsoleRoute)
MAX_LISTED = 200
RECENT_EVENTS = 50
POLL_SECONDS = 2


def _row(job: Job, home) -> dict:
    return {"job": job, "progress": job_progress(job, JobFolder(home, job.id).events), "active": job.status in ACTIVE_JOB_STATUSES}


def _rows(session, home) -> list[dict]:
    jobs = session.scalars(select(Job).order_by(Job.created.desc(), Job.id.desc()).limit(MAX_LISTED)).all()
    return [_row(job, home) for job in jobs]


@router.get("")
@router.get("/jobs")
def jobs_page(request: Request, settings: SettingsDep, session: SessionDep) -> Response:
    return render(request, "jobs.html", rows=_rows(session, settings.home), poll=POLL_SECONDS)


@router.get("/job-rows")
def jobs_rows(request: Request, settings: SettingsDep, session: SessionDep) -> Response:
    return render(request, "_job_rows.html", rows=_rows(session, settings.home))


def _job(store, session, name: str) -> Job:
    job = store.job(session, name)
    if job is None:
        raise ResourceNotFoundException(f"There is no job named {name[:200]!r}.")
    return job


def _live(job: Job, home) -> dict:
    """What the polled parts of a job's page show."""
    details = job.details or {}
    return {"job": job, "progress": job_progress(job, JobFolder(home, job.id).events), "active": job.status in ACTIVE_JOB_STATUSES,
            "poll": POLL_SECONDS, "warnings": details.get("warnings") or [], "plan": details.get("plan") or {}}


def _summary(request: Request, job: Job, home, notice: str | None = None) -> Response:
    return render(request, "_job_summary.html", notice=notice, **_live(job, home))


@router.get("/jobs/{name}")
def job_page(request: Request, name: str, settings: SettingsDep, store: StoreDep, session: SessionDep) -> Response:
    job = _job(store, session, name)
    spec = job.spec
    resolved = spec.hyperparameters.to_wire()
    hyperparameters = [{"label": s.label, "key": s.key, "sent": spec.hyperparameters_sent.get(s.key), "resolved": resolved[s.key]}
                       for s in TABLE]
    return render(request, "job.html", spec=spec, hyperparameters=hyperparameters, **_live(job, settings.home))


@router.get("/jobs/{name}/summary")
def job_summary(request: Request, name: str, settings: SettingsDep, store: StoreDep, session: SessionDep) -> Response:
    return _summary(request, _job(store, session, name), settings.home)


@router.get("/jobs/{name}/outputs")
def job_outputs(request: Request, name: str, settings: SettingsDep, store: StoreDep, session: SessionDep) -> Response:
    """The advisor's warnings, the plan and the checkpoints: they appear as the job runs."""
    return render(request, "_job_outputs.html", **_live(_job(store, session, name), settings.home))


@router.get("/jobs/{name}/events")
def job_events(request: Request, name: str, settings: SettingsDep, store: StoreDep, session: SessionDep) -> Response:
    job = _job(store, session, name)
    events = read_events(JobFolder(settings.home, job.id).events)
    recent = [{"time": dt.datetime.fromtimestamp(e["time"], dt.UTC) if isinstance(e.get("time"), (int, float)) else None,
               "event": str(e.get("event", "")), "fields": shown_fields(e)} for e in reversed(events[-RECENT_EVENTS:])]
    return render(request, "_events.html", job=job, events=recent, total=len(events), active=job.status in ACTIVE_JOB_STATUSES,
                  poll=POLL_SECONDS)


@router.get("/jobs/{name}/losses")
def job_losses(name: str, settings: SettingsDep, store: StoreDep, session: SessionDep) -> Response:
    """The loss curves as JSON, polled by the chart while the job runs."""
    job = _job(store, session, name)
    series = loss_series(read_events(JobFolder(settings.home, job.id).events))
    return JSONResponse({**series, "status": job.status, "active": job.status in ACTIVE_JOB_STATUSES})


@router.post("/jobs/{name}/stop")
def stop_job(request: Request, name: str, settings: SettingsDep, store: StoreDep, session: SessionDep) -> Response:
    """StopModelCustomizationJob, through the job service as the API's route does it."""
    job = _job(store, session, name)
    try:
        control.stop_job(session, job)
    except ServiceError as error:
        session.rollback()
        return _summary(request, _job(store, session, name), settings.home, notice=error.message)
    session.refresh(job)
    if request.headers.get("hx-request") != "true":
        return Response(status_code=303, headers={"Location": f"/console/jobs/{job.name}"})
    return _summary(request, job, settings.home, notice="Stop requested.")


def not_found(request: Request) -> Response:
    return error_page(request, 404, f"There is no console page at {request.url.path[:200]}.")
