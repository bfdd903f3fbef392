"""The names the hosted API gives things: ARNs of jobs, models and deployments, and its timestamps."""

from __future__ import annotations

import datetime as dt

REGION = "us-east-1"
ACCOUNT = "123456789012"


def timestamp(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if value else None


def job_arn(base_model_id: str, job_id: str) -> str:
    return f"arn:aws:bedrock:{REGION}:{ACCOUNT}:model-customization-job/{base_model_id}/{job_id}"


def model_arn(base_model_id: str, model_id: str) -> str:
    return f"arn:aws:bedrock:{REGION}:{ACCOUNT}:custom-model/{base_model_id}/{model_id}"


def foundation_model_arn(base_model_id: str) -> str:
    return f"arn:aws:bedrock:{REGION}::foundation-model/{base_model_id}"


def deployment_arn(deployment_id: str) -> str:
    return f"arn:aws:bedrock:{REGION}:{ACCOUNT}:custom-model-deployment/{deployment_id}"


def import_job_arn(job_id: str) -> str:
    return f"arn:aws:bedrock:{REGION}:{ACCOUNT}:model-import-job/{job_id}"


def imported_model_arn(model_id: str) -> str:
    """An imported model's ARN, as GetModelImportJob's ``importedModelArn`` has it; Converse takes it as ``modelId``."""
    return f"arn:aws:bedrock:{REGION}:{ACCOUNT}:imported-model/{model_id}"
