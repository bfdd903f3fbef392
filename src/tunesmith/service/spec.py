"""A create request, checked once and kept as a typed :class:`JobSpec`.

The route turns a :class:`~tunesmith.service.protocol.CreateJobRequest` (types, lengths and
patterns already checked by pydantic) into a ``JobSpec`` with :func:`spec_from_request`:
everything that can be checked without reading the data is checked here (base model,
customization type, URIs against the allowed roots, hyperparameters with the guide's
messages). The spec is stored with the job, and the worker reads it back with
``JobSpec.model_validate``; nobody re-parses the raw request.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from tunesmith import guide
from tunesmith.hyperparameters import HyperparameterError, Hyperparameters
from tunesmith.service.errors import ValidationException
from tunesmith.service.protocol import CreateJobRequest
from tunesmith.service.uris import check_uri
from tunesmith.tiers import UnknownModelError, resolve_tier

SUPPORTED_TYPES = ("FINE_TUNING", "CONTINUED_PRE_TRAINING", "DISTILLATION")


class JobSpec(BaseModel):
    """What a job will do, validated; stored as JSON with the job."""

    model_config = ConfigDict(frozen=True)

    job_name: str
    model_name: str
    role_arn: str
    tier: str
    """The tier's name (``micro``, ``lite``, ``pro``)."""
    base_model_id: str
    """The hosted id of the tier, e.g. ``amazon.nova-micro-v1:0:128k``."""
    customization_type: str
    training_uri: str
    validation_uris: list[str] = []
    output_uri: str
    hyperparameters: dict[str, str]
    """Resolved: every hyperparameter, defaults filled in (wire keys and strings)."""
    hyperparameters_sent: dict[str, str] = {}
    """As the client sent them."""
    client_token: str | None = None
    teacher: str | None = None
    """DISTILLATION: the teacher's identifier (a tier, a hosted id, or a custom model of this server)."""
    max_response_length: int = guide.DEFAULT_RESPONSE_TOKENS
    devices: int = 1
    """Devices (data-parallel ranks) the job trains on: ``tunesmithConfig.devices``."""
    early_stopping_patience: int | None = None
    """``tunesmithConfig.earlyStoppingPatience``: opt-in early stopping on validation loss."""
    eval_every: int | None = None
    """``tunesmithConfig.evalEvery``: validation every N steps as well as at epoch ends."""
    duplication: int = 1
    """``tunesmithConfig.duplicationFactor``: virtual duplication of the training records (``TrainConfig.duplication``)."""

    def resolved_hyperparameters(self) -> Hyperparameters:
        return Hyperparameters.from_wire(self.hyperparameters)

    # The hosted API's shapes, rebuilt from the spec for Get* responses.
    def training_data_config(self) -> dict:
        return {"s3Uri": self.training_uri}

    def validation_data_config(self) -> dict:
        return {"validators": [{"s3Uri": u} for u in self.validation_uris]}

    def output_data_config(self) -> dict:
        return {"s3Uri": self.output_uri}

    def customization_config(self) -> dict | None:
        if self.teacher is None:
            return None
        return {"distillationConfig": {"teacherModelConfig": {
            "teacherModelIdentifier": self.teacher, "maxResponseLengthForInference": self.max_response_length}}}


def spec_from_request(request: CreateJobRequest, allowed_roots: list[str]) -> JobSpec:
    try:
        tier = resolve_tier(request.baseModelIdentifier)
    except UnknownModelError as exc:
        raise ValidationException(f"baseModelIdentifier: {exc}") from exc
    kind = request.customizationType
    if kind not in SUPPORTED_TYPES:
        raise ValidationException(f"customizationType {kind} is not supported by this tunesmith build yet (supported: {', '.join(SUPPORTED_TYPES)})")
    validation_uris = [v.s3Uri for v in (request.validationDataConfig.validators if request.validationDataConfig else [])]
    located = [("trainingDataConfig.s3Uri", request.trainingDataConfig.s3Uri), ("outputDataConfig.s3Uri", request.outputDataConfig.s3Uri)]
    located += [(f"validationDataConfig.validators[{i}].s3Uri", u) for i, u in enumerate(validation_uris)]
    for key, uri in located:
        problem = check_uri(uri, allowed_roots)
        if problem:
            raise ValidationException(f"{key}: {problem}")
    teacher, max_response = None, guide.DEFAULT_RESPONSE_TOKENS
    distillation = request.customizationConfig.distillationConfig if request.customizationConfig else None
    if kind == "DISTILLATION":
        if distillation is None:
            raise ValidationException("customizationConfig.distillationConfig.teacherModelConfig.teacherModelIdentifier is required for DISTILLATION")
        teacher = distillation.teacherModelConfig.teacherModelIdentifier
        max_response = distillation.teacherModelConfig.maxResponseLengthForInference
    elif distillation is not None:
        raise ValidationException(f"customizationConfig.distillationConfig is only for DISTILLATION, not {kind}")
    extra = request.tunesmithConfig
    if extra and extra.earlyStoppingPatience is not None and not validation_uris:
        raise ValidationException("tunesmithConfig.earlyStoppingPatience needs validationDataConfig: early stopping watches the validation loss")
    sent = dict(request.hyperParameters or {})
    try:
        hyperparameters = Hyperparameters.from_wire(sent)
    except HyperparameterError as exc:
        raise ValidationException("hyperParameters: " + "; ".join(p.message for p in exc.problems)) from exc
    return JobSpec(
        job_name=request.jobName, model_name=request.customModelName, role_arn=request.roleArn, tier=tier.name,
        base_model_id=tier.hosted_ids[0], customization_type=kind, training_uri=request.trainingDataConfig.s3Uri,
        validation_uris=validation_uris, output_uri=request.outputDataConfig.s3Uri, hyperparameters=hyperparameters.to_wire(),
        hyperparameters_sent=sent, client_token=request.clientRequestToken, teacher=teacher, max_response_length=max_response,
        devices=extra.devices if extra else 1,
        early_stopping_patience=extra.earlyStoppingPatience if extra else None, eval_every=extra.evalEvery if extra else None,
        duplication=(extra.duplicationFactor or 1) if extra else 1,
    )


def spec_from_legacy(raw: dict) -> JobSpec:
    """A job stored by an earlier tunesmith, which kept the raw request (plus
    ``hyperParametersResolved``): the same facts, read the old way."""
    distillation = ((raw.get("customizationConfig") or {}).get("distillationConfig") or {}).get("teacherModelConfig") or {}
    tier = resolve_tier(raw.get("baseModelIdentifier") or "micro")
    return JobSpec(
        job_name=raw["jobName"], model_name=raw["customModelName"], role_arn=raw.get("roleArn", ""), tier=tier.name,
        base_model_id=tier.hosted_ids[0], customization_type=raw.get("customizationType") or "FINE_TUNING",
        training_uri=raw["trainingDataConfig"]["s3Uri"],
        validation_uris=[v["s3Uri"] for v in (raw.get("validationDataConfig") or {}).get("validators", [])],
        output_uri=raw["outputDataConfig"]["s3Uri"],
        hyperparameters=raw.get("hyperParametersResolved") or Hyperparameters().to_wire(),
        hyperparameters_sent=dict(raw.get("hyperParameters") or {}), client_token=raw.get("clientRequestToken"),
        teacher=distillation.get("teacherModelIdentifier"),
        max_response_length=distillation.get("maxResponseLengthForInference", guide.DEFAULT_RESPONSE_TOKENS),
    )
