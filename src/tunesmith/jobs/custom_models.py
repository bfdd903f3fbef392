"""What a client asks of the job service about what jobs made: deploy a custom model, delete a
deployment, delete a custom model.

The API's routes (CreateCustomModelDeployment, DeleteCustomModelDeployment, DeleteCustomModel)
and the console's forms both call these, so both get the same checks and messages. Each raises
the service's errors (:mod:`tunesmith.jobs.errors`) and commits its own change.

A model that a deployment names is not deleted (ConflictException naming the deployments):
deleting it would leave the deployment answering nothing. Delete the deployments first.
"""

from __future__ import annotations

import logging
import shutil

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tunesmith.jobs import arns
from tunesmith.jobs.errors import ConflictException, ResourceNotFoundException, ServiceError, ValidationException
from tunesmith.jobs.store import CustomModel, Deployment, JobStore, new_id, utcnow
from tunesmith.statuses import DeploymentStatus, ModelStatus

log = logging.getLogger("tunesmith.service.jobs")


def create_deployment(store: JobStore, session: Session, name: str, model_identifier: str, description: str | None = None,
                      client_token: str | None = None) -> Deployment:
    """A new deployment of an Active custom model (by name or ARN), Active at once; or the one an
    earlier request with the same ``client_token`` made. ResourceNotFoundException for an unknown
    model, ValidationException for one not Active, ConflictException when the name is taken."""
    earlier = _same_token(session, client_token)
    if earlier is not None:
        return earlier
    model = store.model(session, model_identifier)
    if model is None:
        raise ResourceNotFoundException(f"Could not find model with identifier {model_identifier}")
    if model.status != ModelStatus.ACTIVE:
        raise ValidationException(f"model {model.name} is {model.status}; only an {ModelStatus.ACTIVE} model can be deployed")
    deployment_id, now = new_id(), utcnow()
    deployment = Deployment(id=deployment_id, arn=arns.deployment_arn(deployment_id), name=name, model_arn=model.arn,
                            description=description, client_token=client_token, status=DeploymentStatus.ACTIVE, created=now, modified=now)
    session.add(deployment)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        earlier = _same_token(session, client_token)  # a concurrent retry with the same token won: answer as it was answered
        if earlier is not None:
            return earlier
        raise ConflictException(f"The provided deployment name {name} is currently in use.") from exc
    log.info("deployment %s created for model %s", name, model.name)
    return deployment


def delete_deployment(session: Session, deployment: Deployment) -> None:
    """The deployment's name stops answering; its model stays."""
    session.delete(deployment)
    session.commit()
    log.info("deployment %s deleted", deployment.name)


def deployments_of(session: Session, model: CustomModel) -> list[Deployment]:
    return list(session.scalars(select(Deployment).where(Deployment.model_arn == model.arn).order_by(Deployment.name)))


def delete_model(session: Session, model: CustomModel) -> None:
    """The model's row and its folder (the result folder of the job that made it: weights,
    checkpoints, the run's events); the job stays listed, and what the job wrote to its output
    location stays. Raises :func:`deletion_refusal`'s error, with nothing deleted, while a
    deployment names the model."""
    refusal = deletion_refusal(session, model)
    if refusal is not None:
        raise refusal
    folder = model.folder
    session.delete(model)
    session.commit()
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
    log.info("model %s deleted", model.name)


def deletion_refusal(session: Session, model: CustomModel) -> ServiceError | None:
    """Why ``model`` cannot be deleted now, or None: deployments name it (delete them first)."""
    using = deployments_of(session, model)
    if not using:
        return None
    return ConflictException(f"model {model.name} is deployed as {', '.join(d.name for d in using)}: delete the deployment(s) first")


def _same_token(session: Session, client_token: str | None) -> Deployment | None:
    if not client_token:
        return None
    return session.scalar(select(Deployment).where(Deployment.client_token == client_token))
