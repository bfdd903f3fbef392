"""Routes for custom-model deployments (Create/Get/List/DeleteCustomModelDeployment).

The hosted service needs a deployment (paid capacity) before a custom model can be
invoked; here a deployment is a name for an Active custom model, ready at once. Creating and
deleting one are the job service's (:mod:`tunesmith.jobs.custom_models`), as the console's are.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from tunesmith.api import wire
from tunesmith.api.dependencies import IdentifierPath, SessionDep, StoreDep
from tunesmith.api.listing import Filter, ListQuery, Timestamp, created_between, list_page
from tunesmith.api.protocol import CreateDeploymentRequest, DeploymentArn, DeploymentDetail, DeploymentList, Empty
from tunesmith.jobs import custom_models
from tunesmith.jobs.errors import ResourceNotFoundException
from tunesmith.jobs.store import Deployment, JobStore
from tunesmith.statuses import DeploymentStatus

router = APIRouter()
BASE = "/model-customization/custom-model-deployments"


@router.post(BASE, status_code=202, response_model=DeploymentArn)
def create_deployment(body: CreateDeploymentRequest, store: StoreDep, session: SessionDep) -> JSONResponse:
    deployment = custom_models.create_deployment(store, session, body.modelDeploymentName, body.modelArn, body.description,
                                                 body.clientRequestToken)
    return JSONResponse({"customModelDeploymentArn": deployment.arn}, status_code=202)


def _deployment_or_404(store: JobStore, session: Session, identifier: str) -> Deployment:
    deployment = store.deployment(session, identifier)
    if deployment is None:
        raise ResourceNotFoundException(f"Could not find deployment with identifier {identifier}")
    return deployment


class ListDeploymentsQuery(ListQuery):
    createdAfter: Timestamp | None = None
    createdBefore: Timestamp | None = None
    nameContains: Filter | None = None
    statusEquals: DeploymentStatus | None = None
    modelArnEquals: Filter | None = None


@router.get(BASE, response_model=DeploymentList, response_model_exclude_none=True)
def list_deployments(query: Annotated[ListDeploymentsQuery, Query()], session: SessionDep) -> dict:
    conditions = created_between(Deployment.created, query.createdAfter, query.createdBefore)
    if query.nameContains:
        conditions.append(Deployment.name.contains(query.nameContains, autoescape=True))
    if query.statusEquals:
        conditions.append(Deployment.status == query.statusEquals)
    if query.modelArnEquals:
        conditions.append(Deployment.model_arn == query.modelArnEquals)
    statement = select(Deployment).where(*conditions)
    return list_page(session, statement, Deployment, query, wire.deployment_summary, "modelDeploymentSummaries")


@router.get(BASE + "/{identifier:path}", response_model=DeploymentDetail, response_model_exclude_none=True)
def get_deployment(identifier: IdentifierPath, store: StoreDep, session: SessionDep) -> dict:
    return wire.deployment_detail(_deployment_or_404(store, session, identifier))


@router.delete(BASE + "/{identifier:path}", response_model=Empty)
def delete_deployment(identifier: IdentifierPath, store: StoreDep, session: SessionDep) -> dict:
    custom_models.delete_deployment(session, _deployment_or_404(store, session, identifier))
    return {}
