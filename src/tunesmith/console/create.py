"""The create-job form: the guide's bounds beside each hyperparameter, the advisor's
recommendation for the chosen data (fetched by htmx as the data path changes), the plan the
job will follow with the values in the form ("With your values"), and the data's problems
(``file:line``) before anything is submitted.

"With your values" is the training loop's own arithmetic (:func:`job_plan`): the job's
duplication is ``tunesmithConfig.duplicationFactor`` (the form's Duplication field) or 1, never
the advised one, and unset hyperparameters take the guide's defaults, as the job's do.

The form is turned into the API's :class:`~tunesmith.api.protocol.CreateJobRequest`, parsed
into a job spec by :func:`~tunesmith.api.job_requests.spec_from_request` and created by the job
service (:func:`tunesmith.jobs.control.create_job`): the same validation, conflicts and
idempotency as ``CreateModelCustomizationJob``. Data is read only inside the server's allowed
folders (:func:`~tunesmith.jobs.uris.locate`), as jobs do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import anyio
from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import Response

from tunesmith.advisor import Advice, TrainingPlan, advise_dataset, plan_training
from tunesmith.api.dependencies import SessionDep, SettingsDep, StoreDep
from tunesmith.api.errors import describe
from tunesmith.api.job_requests import spec_from_request
from tunesmith.api.protocol import CreateJobRequest, TunesmithConfig
from tunesmith.console.html import ConsoleRoute, read_form, redirect, render
from tunesmith.datasets import DatasetKind, ValidationReport, validate_dataset
from tunesmith.datasets.duplicate import MAX_FACTOR
from tunesmith.errors import TunesmithError
from tunesmith.hyperparameters import TABLE, HyperparameterError, Hyperparameters, format_value
from tunesmith.jobs import control
from tunesmith.jobs.errors import ServiceError, ValidationException
from tunesmith.jobs.settings import ServiceSettings
from tunesmith.jobs.spec import DATASET_KINDS
from tunesmith.jobs.uris import UriError, locate, shown
from tunesmith.kinds import SUPPORTED_KINDS, CustomizationKind
from tunesmith.models.registry import resolve_model
from tunesmith.tiers import TIERS, ModelTier, UnknownModelError, resolve_tier

router = APIRouter(route_class=ConsoleRoute)
DEFAULT_ROLE = "arn:aws:iam::123456789012:role/tunesmith"
"""Bedrock requires a role; a local server does not use it."""
LISTED_PROBLEMS = 50


def _bounds() -> list[dict]:
    """The hyperparameter table, as the form shows it."""
    return [{"key": s.key, "label": s.label, "help": s.help, "minimum": format_value(s.minimum), "maximum": format_value(s.maximum),
             "default": format_value(s.default), "step": "1" if s.type is int else "any", "range": s.range_text()} for s in TABLE]


def _defaults(settings: ServiceSettings) -> dict[str, str]:
    return {"base_model": "micro", "customization_type": CustomizationKind.FINE_TUNING, "role_arn": DEFAULT_ROLE,
            "output": str(Path(settings.home) / "outputs")}


def _form_page(request: Request, settings: ServiceSettings, values: dict[str, str], problems: list[str] | None = None,
               status_code: int = 200) -> Response:
    return render(request, "new_job.html", status_code=status_code, values=values, bounds=_bounds(), tiers=list(TIERS.values()),
                  types=SUPPORTED_KINDS, problems=problems or [], max_duplication=MAX_FACTOR)


@router.get("/new-job")
def new_job_form(request: Request, settings: SettingsDep) -> Response:
    return _form_page(request, settings, _defaults(settings))


@dataclass
class DataCheck:
    """What the console could learn about the chosen data before submitting."""

    note: str | None = None
    """Why the data was not read (no path, S3, outside the allowed folders, missing)."""
    report: ValidationReport | None = None


def check_data(values: dict[str, str], settings: ServiceSettings) -> DataCheck:
    """Validate local training (and validation) data with the dataset validator jobs use."""
    training, validation = values.get("training", "").strip(), values.get("validation", "").strip()
    if not training:
        return DataCheck("Enter the training data's path to see the advisor's recommendation.")
    paths = []
    for label, uri in (("training data", training), ("validation data", validation)):
        if not uri:
            continue
        try:
            location = locate(uri, settings.allowed_roots)
        except UriError as exc:
            return DataCheck(f"The {label} {exc}.")
        if location.is_s3:
            return DataCheck(f"The {label} is on S3: the job validates it when it starts.")
        if not location.path.is_file():
            return DataCheck(f"The {label} {shown(uri)} does not exist or is not a file.")
        paths.append(location.path)
    kind = DATASET_KINDS.get(values.get("customization_type", ""), DatasetKind.FINE_TUNING)
    return DataCheck(report=validate_dataset(paths[0], paths[1:], kind, max_listed=LISTED_PROBLEMS))


def training_tier(base_model: str) -> ModelTier:
    """The tier as the training loop resolves it (``resolve_model(config.model).tier``): a
    configured model brings its own batch size. An unconfigured tier (lite, pro) keeps the guide's."""
    tier = resolve_tier(base_model)
    try:
        return resolve_model(tier.name).tier
    except TunesmithError:
        return tier


def job_plan(records: int, base_model: str, hyperparameters: Hyperparameters, duplication: int) -> TrainingPlan:
    """The plan the job's training loop will make for ``records`` training records
    (``TrainingRun._plan``): :func:`~tunesmith.advisor.plan_training` on the tier it trains, with
    the job's hyperparameters and its own duplication. They differ only where records lose every
    answer token to ``max_length``: the run skips those and says so."""
    return plan_training(records, training_tier(base_model), hyperparameters, duplication)


def _duplication(values: dict[str, str]) -> int | None:
    """The form's ``tunesmithConfig.duplicationFactor`` (None when empty). ValidationException for
    a value the API would refuse, with its message."""
    text = values.get("duplication", "").strip()
    if not text:
        return None
    if not text.isdecimal():
        raise ValidationException(f"tunesmithConfig.duplicationFactor must be a whole number, not {text[:20]!r}")
    try:
        return TunesmithConfig(duplicationFactor=int(text)).duplicationFactor
    except ValidationError as exc:
        raise ValidationException("; ".join(describe({**e, "loc": ("tunesmithConfig", *e["loc"])}) for e in exc.errors())) from None


def _chosen(values: dict[str, str]) -> dict[str, str]:
    return {s.key: values[s.key].strip() for s in TABLE if values.get(s.key, "").strip()}


@router.post("/new-job/advice")
async def advice_fragment(request: Request, settings: SettingsDep) -> Response:
    values = await read_form(request)
    return await anyio.to_thread.run_sync(_advice, request, settings, values)


def _advice(request: Request, settings: ServiceSettings, values: dict[str, str]) -> Response:
    check = check_data(values, settings)
    context: dict = {"note": check.note, "report": check.report, "advice": None, "yours": None, "problem": None}
    report = check.report
    if report is not None and report.training.records:
        base_model = values.get("base_model", "micro")
        try:
            advice: Advice = advise_dataset(report, training_tier(base_model))
            context["advice"] = advice
            context["fill"] = json.dumps(advice.hyperparameters.to_wire())
            hyperparameters = Hyperparameters.from_wire(_chosen(values))
            context["yours"] = job_plan(report.training.records, base_model, hyperparameters, _duplication(values) or 1)
        except UnknownModelError as exc:
            context["problem"] = f"baseModelIdentifier: {exc}"
        except HyperparameterError as exc:
            context["problem"] = "; ".join(p.message for p in exc.problems)
        except ValidationException as exc:
            context["problem"] = exc.message
    return render(request, "_advice.html", labels={"duplicationFactor": "Duplication factor", **{s.key: s.label for s in TABLE}}, **context)


def request_from_form(values: dict[str, str]) -> dict:
    """The CreateModelCustomizationJob body the form describes. ValidationException for a
    duplication factor the API would refuse."""
    body: dict = {
        "jobName": values.get("job_name", "").strip(), "customModelName": values.get("model_name", "").strip(),
        "roleArn": values.get("role_arn", "").strip() or DEFAULT_ROLE,
        "baseModelIdentifier": values.get("base_model", "").strip(),
        "customizationType": values.get("customization_type", CustomizationKind.FINE_TUNING).strip(),
        "trainingDataConfig": {"s3Uri": values.get("training", "").strip()},
        "outputDataConfig": {"s3Uri": values.get("output", "").strip()},
        "hyperParameters": _chosen(values),
    }
    if values.get("validation", "").strip():
        body["validationDataConfig"] = {"validators": [{"s3Uri": values["validation"].strip()}]}
    duplication = _duplication(values)
    if duplication is not None:
        body["tunesmithConfig"] = {"duplicationFactor": duplication}
    if body["customizationType"] == CustomizationKind.DISTILLATION and values.get("teacher", "").strip():
        body["customizationConfig"] = {"distillationConfig": {"teacherModelConfig": {"teacherModelIdentifier": values["teacher"].strip()}}}
    return body


@router.post("/new-job")
async def create_job(request: Request, settings: SettingsDep, store: StoreDep, session: SessionDep) -> Response:
    values = await read_form(request)
    return await anyio.to_thread.run_sync(_create, request, settings, store, session, values)


def _create(request: Request, settings: ServiceSettings, store, session, values: dict[str, str]) -> Response:
    check = check_data(values, settings)
    if check.report is not None and not check.report.valid:
        problems = [str(p) for p in check.report.log.errors]
        more = check.report.log.error_count - len(problems)
        if more > 0:
            problems.append(f"... and {more} more")
        return _form_page(request, settings, values, ["Fix the data first:", *problems], status_code=400)
    try:
        body = CreateJobRequest.model_validate(request_from_form(values))
    except ValidationError as exc:
        return _form_page(request, settings, values, [describe(e) for e in exc.errors()], status_code=400)
    except ValidationException as exc:
        return _form_page(request, settings, values, [exc.message], status_code=400)
    try:
        job = control.create_job(store, session, settings, spec_from_request(body, settings.allowed_roots))
    except ServiceError as error:
        session.rollback()
        return _form_page(request, settings, values, [error.message], status_code=400)
    return redirect(f"/console/jobs/{job.name}")
