"""Validation of CreateModelCustomizationJob, with the precise messages the API returns.

Everything that can be checked without reading the data is checked here, synchronously:
names and their patterns, the base model, the customization type, URIs, and the
hyperparameters (with the guide's table and its messages).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tunesmith.hyperparameters import HyperparameterError, Hyperparameters
from tunesmith.service.errors import ValidationException
from tunesmith.service.uris import check_uri
from tunesmith.tiers import ModelTier, UnknownModelError, resolve_tier

JOB_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9\+\-\.])*")
MODEL_NAME = re.compile(r"([0-9a-zA-Z][_-]?){1,63}")
ROLE_ARN = re.compile(r"arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+")
SUPPORTED_TYPES = ("FINE_TUNING", "CONTINUED_PRE_TRAINING", "DISTILLATION")
KNOWN_TYPES = ("FINE_TUNING", "CONTINUED_PRE_TRAINING", "DISTILLATION", "REINFORCEMENT_FINE_TUNING")


@dataclass
class CreateJob:
    """A create request that passed validation."""

    job_name: str
    model_name: str
    tier: ModelTier
    base_model_id: str
    customization_type: str
    training_uri: str
    output_uri: str
    validation_uris: list[str]
    hyperparameters: Hyperparameters
    hyperparameters_sent: dict[str, str]
    client_token: str | None
    raw: dict[str, Any] = field(default_factory=dict)
    teacher: str | None = None
    """DISTILLATION: the teacher's identifier (a tier, hosted id, or custom model ARN/name here)."""
    max_response_length: int = 512


def _name(value: Any, key: str, pattern: re.Pattern) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationException(f"{key} is required")
    if len(value) > 63:
        raise ValidationException(f"{key} '{value[:70]}' is {len(value)} characters long; the maximum is 63")
    if not pattern.fullmatch(value):
        raise ValidationException(f"{key} '{value}' does not match the pattern {pattern.pattern}")
    return value


def base_model_id(identifier: str) -> str:
    """The hosted id of a tier: ``amazon.nova-micro-v1:0:128k`` etc."""
    return resolve_tier(identifier).hosted_ids[0]


def parse_create(body: dict[str, Any], allowed_roots: list[str]) -> CreateJob:
    job_name = _name(body.get("jobName"), "jobName", JOB_NAME)
    model_name = _name(body.get("customModelName"), "customModelName", MODEL_NAME)
    role = body.get("roleArn")
    if not isinstance(role, str) or not ROLE_ARN.fullmatch(role):
        raise ValidationException(f"roleArn '{role}' is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)")
    identifier = body.get("baseModelIdentifier") or ""
    try:
        tier = resolve_tier(identifier)
    except UnknownModelError as exc:
        raise ValidationException(f"baseModelIdentifier: {exc}") from exc
    kind = body.get("customizationType") or "FINE_TUNING"
    if kind not in KNOWN_TYPES:
        raise ValidationException(f"customizationType '{kind}' is not one of {', '.join(KNOWN_TYPES)}")
    if kind not in SUPPORTED_TYPES:
        raise ValidationException(f"customizationType {kind} is not supported by this tunesmith build yet (supported: {', '.join(SUPPORTED_TYPES)})")
    training = (body.get("trainingDataConfig") or {}).get("s3Uri")
    if not training:
        raise ValidationException("trainingDataConfig.s3Uri is required")
    output = (body.get("outputDataConfig") or {}).get("s3Uri")
    if not output:
        raise ValidationException("outputDataConfig.s3Uri is required")
    validators = (body.get("validationDataConfig") or {}).get("validators") or []
    if len(validators) > 10:
        raise ValidationException(f"validationDataConfig.validators has {len(validators)} entries; at most 10 are allowed")
    validation_uris = [v.get("s3Uri", "") for v in validators]
    for key, uri in [("trainingDataConfig.s3Uri", training), ("outputDataConfig.s3Uri", output)] + [
        (f"validationDataConfig.validators[{i}].s3Uri", u) for i, u in enumerate(validation_uris)
    ]:
        problem = check_uri(uri, allowed_roots)
        if problem:
            raise ValidationException(f"{key}: {problem}")
    teacher, max_response = None, 512
    if kind == "DISTILLATION":
        teacher_config = ((body.get("customizationConfig") or {}).get("distillationConfig") or {}).get("teacherModelConfig") or {}
        teacher = teacher_config.get("teacherModelIdentifier")
        if not teacher:
            raise ValidationException("customizationConfig.distillationConfig.teacherModelConfig.teacherModelIdentifier is required for DISTILLATION")
        max_response = teacher_config.get("maxResponseLengthForInference", 512)
        if not isinstance(max_response, int) or not 1 <= max_response <= 8192:
            raise ValidationException(f"maxResponseLengthForInference {max_response!r} is out of range: must be between 1 and 8192")
    sent = body.get("hyperParameters") or {}
    try:
        hyperparameters = Hyperparameters.from_wire(sent)
    except HyperparameterError as exc:
        raise ValidationException("hyperParameters: " + "; ".join(p.message for p in exc.problems)) from exc
    return CreateJob(
        job_name, model_name, tier, tier.hosted_ids[0], kind, training, output, validation_uris, hyperparameters,
        dict(sent), body.get("clientRequestToken"), body, teacher, max_response,
    )
