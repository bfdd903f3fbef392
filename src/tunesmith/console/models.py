"""Console pages for what jobs produce: custom models and their deployments, with a form that
deploys a model and Delete buttons that ask first.

Creating and deleting go through the job service (:mod:`tunesmith.jobs.custom_models`), as
the API's CreateCustomModelDeployment, DeleteCustomModelDeployment and DeleteCustomModel do,
with their messages. A Delete link opens a page that says what will go (a GET changes nothing);
its button posts. A model that a deployment names cannot be deleted: the page says which
deployments to delete first.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import ValidationError
from sqlalchemy import select
from starlette.responses import Response

from tunesmith.api.dependencies import SessionDep, StoreDep
from tunesmith.api.errors import describe
from tunesmith.api.protocol import CreateDeploymentRequest
from tunesmith.console.html import ConsoleRoute, read_form, redirect, render
from tunesmith.jobs import custom_models
from tunesmith.jobs.errors import ResourceNotFoundException, ServiceError
from tunesmith.jobs.store import CustomModel, Deployment
from tunesmith.statuses import ModelStatus

router = APIRouter(route_class=ConsoleRoute)
MAX_LISTED = 200


def listed_models(session) -> list[CustomModel]:
    return list(session.scalars(select(CustomModel).order_by(CustomModel.created.desc(), CustomModel.id.desc()).limit(MAX_LISTED)))


def deployments(session) -> list[Deployment]:
    return list(session.scalars(select(Deployment).order_by(Deployment.created.desc(), Deployment.id.desc()).limit(MAX_LISTED)))


def _page(request: Request, session, values: dict[str, str] | None = None, problems: list[str] | None = None,
          notice: str | None = None, status_code: int = 200) -> Response:
    models, listed = listed_models(session), deployments(session)
    names = {m.arn: m.name for m in models}
    deployed: dict[str, list[str]] = {}
    for d in listed:
        deployed.setdefault(d.model_arn, []).append(d.name)
    return render(request, "models.html", status_code=status_code, models=models, deployments=listed, model_names=names,
                  deployed=deployed, deployable=[m for m in models if m.status == ModelStatus.ACTIVE], values=values or {},
                  problems=problems or [], notice=notice)


@router.get("/models")
def models_page(request: Request, session: SessionDep, deploy: str | None = None, deleted: str | None = None,
                created: str | None = None) -> Response:
    notice = f"Deleted {deleted[:200]}." if deleted else f"Deployment {created[:200]} created." if created else None
    return _page(request, session, {"model": deploy or ""}, notice=notice)


@router.post("/deployments")
async def create_deployment(request: Request, store: StoreDep, session: SessionDep) -> Response:
    """CreateCustomModelDeployment, through the job service as the API's route does it."""
    values = await read_form(request)
    body = {"modelDeploymentName": values.get("name", "").strip(), "modelArn": values.get("model", "").strip()}
    if values.get("description", "").strip():
        body["description"] = values["description"].strip()
    try:
        parsed = CreateDeploymentRequest.model_validate(body)
        deployment = custom_models.create_deployment(store, session, parsed.modelDeploymentName, parsed.modelArn, parsed.description)
    except ValidationError as exc:
        return _page(request, session, values, [describe(e) for e in exc.errors()], status_code=400)
    except ServiceError as error:
        session.rollback()
        return _page(request, session, values, [error.message], status_code=400)
    return redirect(f"/console/models?created={deployment.name}")


def _model(store, session, name: str) -> CustomModel:
    model = store.model(session, name)
    if model is None:
        raise ResourceNotFoundException(f"There is no custom model named {name[:200]!r}.")
    return model


def _deployment(store, session, name: str) -> Deployment:
    deployment = store.deployment(session, name)
    if deployment is None:
        raise ResourceNotFoundException(f"There is no deployment named {name[:200]!r}.")
    return deployment


def _confirm_model(request: Request, session, model: CustomModel, problem: str | None = None, status_code: int = 200) -> Response:
    refusal = custom_models.deletion_refusal(session, model)
    consequences = [f"Its folder goes, with its weights, its checkpoints and the training events its job's page draws: {model.folder}."
                    if model.folder else "It has no folder on this server.",
                    f"Job {model.job_name} stays listed; what it wrote to its output location stays."]
    return render(request, "confirm_delete.html", status_code=status_code, kind="custom model", name=model.name,
                  consequences=consequences, blocked=refusal.message if refusal else None,
                  problem=problem, action=f"/console/models/{model.name}/delete", back="/console/models")


@router.get("/models/{name}/delete")
def confirm_model_delete(request: Request, name: str, store: StoreDep, session: SessionDep) -> Response:
    return _confirm_model(request, session, _model(store, session, name))


@router.post("/models/{name}/delete")
def delete_model(request: Request, name: str, store: StoreDep, session: SessionDep) -> Response:
    """DeleteCustomModel, through the job service as the API's route does it."""
    model = _model(store, session, name)
    try:
        custom_models.delete_model(session, model)
    except ServiceError as error:
        session.rollback()
        return _confirm_model(request, session, model, error.message, status_code=400)
    return redirect(f"/console/models?deleted={model.name}")


@router.get("/deployments/{name}/delete")
def confirm_deployment_delete(request: Request, name: str, store: StoreDep, session: SessionDep) -> Response:
    deployment = _deployment(store, session, name)
    model = store.model(session, deployment.model_arn)
    consequences = [f"Requests that name {deployment.name} stop being answered.",
                    f"Its model {model.name if model else deployment.model_arn} stays."]
    return render(request, "confirm_delete.html", kind="deployment", name=deployment.name, consequences=consequences, blocked=None,
                  problem=None, action=f"/console/deployments/{deployment.name}/delete", back="/console/models")


@router.post("/deployments/{name}/delete")
def delete_deployment(name: str, store: StoreDep, session: SessionDep) -> Response:
    """DeleteCustomModelDeployment, through the job service as the API's route does it."""
    deployment = _deployment(store, session, name)
    custom_models.delete_deployment(session, deployment)
    return redirect(f"/console/models?deleted={deployment.name}")
