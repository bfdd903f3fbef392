"""A create request, checked once at the edge and turned into the job service's :class:`JobSpec`.

Pydantic has already checked types, lengths and patterns (:class:`~tunesmith.api.protocol.CreateJobRequest`);
everything else that can be checked without reading the data is checked here: base model,
customization type, URIs against the allowed roots, hyperparameters with the guide's messages.
"""

from __future__ import annotations

from tunesmith import guide
from tunesmith.api.protocol import CreateJobRequest
from tunesmith.hyperparameters import HyperparameterError, Hyperparameters
from tunesmith.jobs.errors import ValidationException
from tunesmith.jobs.spec import JobSpec
from tunesmith.jobs.uris import UriError, locate
from tunesmith.kinds import SUPPORTED_KINDS, CustomizationKind
from tunesmith.tiers import UnknownModelError, resolve_tier


def spec_from_request(request: CreateJobRequest, allowed_roots: list[str]) -> JobSpec:
    try:
        tier = resolve_tier(request.baseModelIdentifier)
    except UnknownModelError as exc:
        raise ValidationException(f"baseModelIdentifier: {exc}") from exc
    kind = request.customizationType
    if kind not in SUPPORTED_KINDS:
        raise ValidationException(f"customizationType {kind} is not supported by this tunesmith build yet (supported: {', '.join(SUPPORTED_KINDS)})")
    validation_uris = [v.s3Uri for v in (request.validationDataConfig.validators if request.validationDataConfig else [])]
    located = [("trainingDataConfig.s3Uri", request.trainingDataConfig.s3Uri), ("outputDataConfig.s3Uri", request.outputDataConfig.s3Uri)]
    located += [(f"validationDataConfig.validators[{i}].s3Uri", u) for i, u in enumerate(validation_uris)]
    for key, uri in located:
        try:
            locate(uri, allowed_roots)
        except UriError as exc:
            raise ValidationException(f"{key}: {exc}") from None
    teacher, max_response = None, guide.DEFAULT_RESPONSE_TOKENS
    distillation = request.customizationConfig.distillationConfig if request.customizationConfig else None
    if kind == CustomizationKind.DISTILLATION:
        if distillation is None:
            raise ValidationException(f"customizationConfig.distillationConfig.teacherModelConfig.teacherModelIdentifier is required for {kind}")
        teacher = distillation.teacherModelConfig.teacherModelIdentifier
        max_response = distillation.teacherModelConfig.maxResponseLengthForInference
    elif distillation is not None:
        raise ValidationException(f"customizationConfig.distillationConfig is only for {CustomizationKind.DISTILLATION}, not {kind}")
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
        validation_uris=validation_uris, output_uri=request.outputDataConfig.s3Uri, hyperparameters=hyperparameters,
        hyperparameters_sent=sent, client_token=request.clientRequestToken, teacher=teacher, max_response_length=max_response,
        devices=extra.devices if extra else 1,
        early_stopping_patience=extra.earlyStoppingPatience if extra else None, eval_every=extra.evalEvery if extra else None,
        duplication=(extra.duplicationFactor or 1) if extra else 1,
    )
