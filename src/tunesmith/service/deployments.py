"""Routes for custom-model deployments (Create/Get/List/DeleteCustomModelDeployment).

The hosted service needs a deployment (paid capacity) before a custom model can be
invoked; here a deployment is a name for an Active custom model, ready at once.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from tunesmith.service import wire
from tunesmith.service.errors import ConflictException, ResourceNotFoundException, ValidationException
from tunesmith.service.listing import json_body, list_response
from tunesmith.service.store import Deployment, new_id, utcnow

router = APIRouter()
BASE = "/model-customization/custom-model-deployments"
NAME = re.compile(r"([0-9a-zA-Z][_-]?){1,63}")


@router.post(BASE)
async def create_deployment(request: Request) -> Response:
    store = request.app.state.store
    body = await json_body(request)
    name, model_arn = body.get("modelDeploymentName"), body.get("modelArn")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValidationException(f"modelDeploymentName '{name}' does not match the pattern {NAME.pattern}")
    with store.session() as session:
        token = body.get("clientRequestToken")
        if token:
            existing = session.scalar(select(Deployment).where(Deployment.client_token == token))
            if existing is not None:
                return JSONResponse({"customModelDeploymentArn": existing.arn}, status_code=202)
        model = store.model(session, model_arn or "")
        if model is None:
            raise ResourceNotFoundException(f"Could not find model with identifier {model_arn}")
        if model.status != "Active":
            raise ValidationException(f"model {model.name} is {model.status}; only an Active model can be deployed")
        deployment_id = new_id()
        deployment = Deployment(
            id=deployment_id, arn=wire.deployment_arn(deployment_id), name=name, model_arn=model.arn,
            description=body.get("description"), client_token=token, status="Active", created=utcnow(), modified=utcnow(),
        )
        session.add(deployment)
        try:
            session.commit()
        except IntegrityError as exc:
            session.rollback()
            raise ConflictException(f"The provided deployment name {name} is currently in use.") from exc
        return JSONResponse({"customModelDeploymentArn": deployment.arn}, status_code=202)


def _deployment_or_404(store, session, identifier: str) -> Deployment:
    deployment = store.deployment(session, identifier)
    if deployment is None:
        raise ResourceNotFoundException(f"Could not find deployment with identifier {identifier}")
    return deployment


@router.get(BASE)
async def list_deployments(request: Request) -> Response:
    store, params = request.app.state.store, request.query_params
    with store.session() as session:
        rows = list(session.scalars(select(Deployment)).all())
    rows = [
        d for d in rows
        if (not params.get("nameContains") or params["nameContains"] in d.name)
        and (not params.get("statusEquals") or d.status == params["statusEquals"])
        and (not params.get("modelArnEquals") or d.model_arn == params["modelArnEquals"])
    ]
    return list_response(request, rows, wire.deployment_summary, "modelDeploymentSummaries")


@router.get(BASE + "/{identifier:path}")
async def get_deployment(request: Request, identifier: str) -> Response:
    store = request.app.state.store
    with store.session() as session:
        return JSONResponse(wire.deployment_detail(_deployment_or_404(store, session, identifier)))


@router.delete(BASE + "/{identifier:path}")
async def delete_deployment(request: Request, identifier: str) -> Response:
    store = request.app.state.store
    with store.session() as session:
        session.delete(_deployment_or_404(store, session, identifier))
        session.commit()
    return JSONResponse({})
