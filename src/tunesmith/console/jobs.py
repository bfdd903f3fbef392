"""Console pages for jobs: the list, a job's page, the fragments htmx polls while it runs, Stop,
and Delete for a job that has ended (a page that says what goes, then a post:
:func:`tunesmith.jobs.control.delete_job`)."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from starlette.responses import Response

from tunesmith.api.dependencies import SessionDep, SettingsDep, StoreDep
from tunesmith.console.html import ConsoleRoute, error_page, redirect, render
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
def jobs_page(request: Request, settings: SettingsDep, session: SessionDep, deleted: str | None = None) -> Response:
    notice = f"Deleted job {deleted[:200]}." if deleted else None
    return render(request, "jobs.html", rows=_rows(session, settings.home), poll=POLL_SECONDS, notice=notice)


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


def _model_deleted(store, session, job: Job) -> bool:
    """The job made a custom model that has been deleted since."""
    return bool(job.output_model_arn) and store.model(session, job.output_model_arn) is None


def _summary(request: Request, store, session, job: Job, home, notice: str | None = None) -> Response:
    return render(request, "_job_summary.html", notice=notice, model_deleted=_model_deleted(store, session, job), **_live(job, home))


@router.get("/jobs/{name}")
def job_page(request: Request, name: str, settings: SettingsDep, store: StoreDep, session: SessionDep) -> Response:
    job = _job(store, session, name)
    spec = job.spec
    resolved = spec.hyperparameters.to_wire()
    hyperparameters = [{"label": s.label, "key": s.key, "sent": spec.hyperparameters_sent.get(s.key), "resolved": resolved[s.key]}
                       for s in TABLE]
    return render(request, "job.html", spec=spec, hyperparameters=hyperparameters, model_deleted=_model_deleted(store, session, job),
                  **_live(job, settings.home))


@router.get("/jobs/{name}/summary")
def job_summary(request: Request, name: str, settings: SettingsDep, store: StoreDep, session: SessionDep) -> Response:
    return _summary(request, store, session, _job(store, session, name), settings.home)


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
        return _summary(request, store, session, _job(store, session, name), settings.home, notice=error.message)
    session.refresh(job)
    if request.headers.get("hx-request") != "true":
        return redirect(f"/console/jobs/{job.name}")
    return _summary(request, store, session, job, settings.home, notice="Stop requested.")


def _confirm_delete(request: Request, store, session, job: Job, home, problem: str | None = None, status_code: int = 200) -> Response:
    folder = JobFolder(home, job.id)
    refusal = control.deletion_refusal(store, session, job)
    consequences = ["The job leaves the list, and its name can be used again.",
                    f"Its folder goes, with the data fetched for it, its checkpoints and events: {folder.root} (and its log, {folder.log}).",
                    f"Its data and what it wrote to its output location stay: {job.spec.output_uri}."]
    return render(request, "confirm_delete.html", status_code=status_code, kind="job", name=job.name, consequences=consequences,
                  blocked=refusal.message if refusal else None, problem=problem, action=f"/console/jobs/{job.name}/delete",
                  back=f"/console/jobs/{job.name}")


@router.get("/jobs/{name}/delete")
def confirm_job_delete(request: Request, name: str, settings: SettingsDep, store: StoreDep, session: SessionDep) -> Response:
    return _confirm_delete(request, store, session, _job(store, session, name), settings.home)


@router.post("/jobs/{name}/delete")
def delete_job(request: Request, name: str, settings: SettingsDep, store: StoreDep, session: SessionDep) -> Response:
    job = _job(store, session, name)
    try:
        control.delete_job(store, session, settings.home, job)
    except ServiceError as error:
        session.rollback()
        return _confirm_delete(request, store, session, _job(store, session, name), settings.home, error.message, status_code=400)
    return redirect(f"/console/jobs?deleted={job.name}")


def not_found(request: Request) -> Response:
    return error_page(request, 404, f"There is no console page at {request.url.path[:200]}.")
