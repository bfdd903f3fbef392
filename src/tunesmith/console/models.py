"""Console pages for what jobs produce: custom models and their deployments."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import select
from starlette.responses import Response

from tunesmith.api.dependencies import SessionDep
from tunesmith.console.html import ConsoleRoute, render
from tunesmith.jobs.store import CustomModel, Deployment

router = APIRouter(route_class=ConsoleRoute)
MAX_LISTED = 200


def custom_models(session) -> list[CustomModel]:
    return list(session.scalars(select(CustomModel).order_by(CustomModel.created.desc(), CustomModel.id.desc()).limit(MAX_LISTED)))


def deployments(session) -> list[Deployment]:
    return list(session.scalars(select(Deployment).order_by(Deployment.created.desc(), Deployment.id.desc()).limit(MAX_LISTED)))


@router.get("/models")
def models_page(request: Request, session: SessionDep) -> Response:
    models = custom_models(session)
    names = {m.arn: m.name for m in models}
    return render(request, "models.html", models=models, deployments=deployments(session), model_names=names)
