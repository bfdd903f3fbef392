"""What a client asks of the job service: create a job, stop one, delete one that has ended.

The API's routes (CreateModelCustomizationJob, StopModelCustomizationJob) and the console's
forms both call these, so both get the same checks, conflicts and idempotency. They take a
:class:`~tunesmith.jobs.spec.JobSpec` already parsed at the edge and raise the service's
errors (:mod:`tunesmith.jobs.errors`); each commits its own change. Bedrock has no operation
that deletes a job: only the console's Delete calls :func:`delete_job`.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tunesmith.jobs import arns, lifecycle
from tunesmith.jobs.device_pool import DevicePool
from tunesmith.jobs.errors import ConflictException, ServiceError, ValidationException
from tunesmith.jobs.layout import JobFolder
from tunesmith.jobs.settings import ServiceSettings
from tunesmith.jobs.spec import JobSpec
from tunesmith.jobs.store import Job, JobStore, new_id, utcnow
from tunesmith.statuses import ACTIVE_JOB_STATUSES, JobStatus, ModelStatus
from tunesmith.tiers import UnknownModelError, resolve_tier

log = logging.getLogger("tunesmith.service.jobs")


def create_job(store: JobStore, session: Session, settings: ServiceSettings, spec: JobSpec) -> Job:
    """The new job, queued; or the one an earlier request with the same ``clientRequestToken``
    made (an idempotent retry). ConflictException when the job name, the token or the custom
    model name is taken; ValidationException when this server cannot run it."""
    problem = DevicePool(settings.devices).problem(spec.devices)
    if problem:
        raise ValidationException(problem)
    earlier = _conflict(store, session, spec)
    if earlier is not None:
        return earlier
    if spec.teacher is not None:
        _check_teacher(store, session, spec.teacher)
    job_id, now = new_id(), utcnow()
    job = Job(
        id=job_id, arn=arns.job_arn(spec.base_model_id, job_id), name=spec.job_name, client_token=spec.client_token,
        spec_json=spec.model_dump(mode="json"), base_model_arn=arns.foundation_model_arn(spec.base_model_id),
        customization_type=spec.customization_type, output_model_name=spec.model_name, status=JobStatus.IN_PROGRESS,
        phases=lifecycle.new_phases(), validation_losses=[], checkpoints=[], created=now, modified=now, details={},
    )
    session.add(job)
    try:
        session.commit()
    except IntegrityError as exc:  # a concurrent create won a unique constraint: say which, as the checks would have
        session.rollback()
        earlier = _conflict(store, session, spec)
        if earlier is not None:
            return earlier
        raise ConflictException("The provided job name is currently in use.") from exc
    log.info("job %s created: %s of %s", job.name, spec.customization_type, spec.base_model_id)
    return job


def stop_job(session: Session, job: Job) -> None:
    """A job nobody runs stops now; a running one is asked to (its worker stops at the next
    micro-batch). ValidationException when the job has already ended."""
    try:
        lifecycle.request_stop(job)
    except lifecycle.TransitionError as exc:
        raise ValidationException(str(exc)) from exc
    session.commit()
    log.info("job %s: stop requested; %s", job.name,
             "stopped" if job.status == JobStatus.STOPPED else "its worker stops at the next micro-batch")


def delete_job(store: JobStore, session: Session, home: Path, job: Job) -> None:
    """Forget a job that has ended and remove its folder under the service home (``HOME/jobs/ID``:
    the data fetched for it, its checkpoints and events) and its log. Its data and what it wrote
    to its output location stay: they are the client's. Raises :func:`deletion_refusal`'s error,
    with nothing deleted, when the job cannot go yet."""
    refusal = deletion_refusal(store, session, job)
    if refusal is not None:
        raise refusal
    folder = JobFolder(home, job.id)
    session.delete(job)
    session.commit()
    shutil.rmtree(folder.root, ignore_errors=True)
    folder.log.unlink(missing_ok=True)
    log.info("job %s deleted, and its folder %s", job.name, folder.root)


def deletion_refusal(store: JobStore, session: Session, job: Job) -> ServiceError | None:
    """Why ``job`` cannot be deleted now, or None: it is still active (stop it first), or the custom
    model it made still exists (the model's weights are in the job's folder: delete the model first)."""
    if job.status in ACTIVE_JOB_STATUSES:
        return ValidationException(f"job {job.name} is {job.status}: stop it first; only a job that has ended can be deleted")
    if job.output_model_arn and store.model(session, job.output_model_arn) is not None:
        return ConflictException(f"job {job.name} made the custom model {job.output_model_name}, whose weights are in the "
                                 "job's folder: delete the model first")
    return None


def _conflict(store: JobStore, session: Session, spec: JobSpec) -> Job | None:
    """The job an idempotent retry (same ``clientRequestToken``) already made, or None;
    ConflictException when the name, the token or the model name is taken."""
    earlier = _same_token(session, spec)
    if earlier is not None:
        return earlier
    name_taken = store.job(session, spec.job_name) is not None
    model_taken = not name_taken and (store.model(session, spec.model_name) is not None or session.scalar(
        select(Job.id).where(Job.output_model_name == spec.model_name, Job.status.in_(ACTIVE_JOB_STATUSES))) is not None)
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
    elif model.status != ModelStatus.ACTIVE:
        raise ValidationException(f"teacher model {model.name} is {model.status}; it must be {ModelStatus.ACTIVE}")
