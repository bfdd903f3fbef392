"""Store rows as the hosted API's JSON shapes (GetModelCustomizationJob and friends)."""

from __future__ import annotations

from typing import Any

from tunesmith.jobs.arns import ACCOUNT, timestamp
from tunesmith.jobs.store import CustomModel, Deployment, Job, ModelImport


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


def status_details(job: Job) -> dict[str, Any]:
    return {
        key: _drop_none({"status": phase["status"], "creationTime": phase.get("creationTime"), "lastModifiedTime": phase.get("lastModifiedTime")})
        for key, phase in job.phases.items()
    }


def job_detail(job: Job) -> dict[str, Any]:
    spec = job.spec
    return _drop_none({
        "jobArn": job.arn,
        "jobName": job.name,
        "outputModelName": job.output_model_name,
        "outputModelArn": job.output_model_arn,
        "clientRequestToken": job.client_token,
        "roleArn": spec.role_arn,
        "status": job.status,
        "statusDetails": status_details(job),
        "failureMessage": job.failure_message,
        "creationTime": timestamp(job.created),
        "lastModifiedTime": timestamp(job.modified),
        "endTime": timestamp(job.ended),
        "baseModelArn": job.base_model_arn,
        "hyperParameters": spec.hyperparameters.to_wire(),
        "trainingDataConfig": spec.training_data_config(),
        "validationDataConfig": spec.validation_data_config(),
        "outputDataConfig": spec.output_data_config(),
        "customizationType": job.customization_type,
        "customizationConfig": spec.customization_config(),
        "trainingMetrics": {"trainingLoss": job.training_loss} if job.training_loss is not None else None,
        "validationMetrics": [{"validationLoss": v} for v in job.validation_losses] or None,
        "tunesmith": _drop_none({"checkpoints": job.checkpoints or None, **(job.details or {})}) or None,
    })


def job_summary(job: Job) -> dict[str, Any]:
    return _drop_none({
        "jobArn": job.arn,
        "baseModelArn": job.base_model_arn,
        "jobName": job.name,
        "status": job.status,
        "statusDetails": status_details(job),
        "lastModifiedTime": timestamp(job.modified),
        "creationTime": timestamp(job.created),
        "endTime": timestamp(job.ended),
        "customModelArn": job.output_model_arn,
        "customModelName": job.output_model_name,
        "customizationType": job.customization_type,
    })


def model_detail(model: CustomModel, job: Job | None) -> dict[str, Any]:
    spec = job.spec if job else None
    return _drop_none({
        "modelArn": model.arn,
        "modelName": model.name,
        "jobName": model.job_name,
        "jobArn": model.job_arn,
        "baseModelArn": model.base_model_arn,
        "customizationType": model.customization_type,
        "hyperParameters": spec.hyperparameters.to_wire() if spec else None,
        "trainingDataConfig": spec.training_data_config() if spec else None,
        "validationDataConfig": spec.validation_data_config() if spec else None,
        "outputDataConfig": spec.output_data_config() if spec else None,
        "trainingMetrics": {"trainingLoss": job.training_loss} if job and job.training_loss is not None else None,
        "validationMetrics": [{"validationLoss": v} for v in job.validation_losses] if job and job.validation_losses else None,
        "creationTime": timestamp(model.created),
        "modelStatus": model.status,
    })


def model_summary(model: CustomModel) -> dict[str, Any]:
    return {
        "modelArn": model.arn, "modelName": model.name, "creationTime": timestamp(model.created),
        "baseModelArn": model.base_model_arn, "baseModelName": model.base_model_arn.rsplit("/", 1)[-1],
        "customizationType": model.customization_type, "ownerAccountId": ACCOUNT, "modelStatus": model.status,
    }


def deployment_detail(deployment: Deployment) -> dict[str, Any]:
    return _drop_none({
        "customModelDeploymentArn": deployment.arn, "modelDeploymentName": deployment.name, "modelArn": deployment.model_arn,
        "createdAt": timestamp(deployment.created), "status": deployment.status, "description": deployment.description,
        "lastUpdatedAt": timestamp(deployment.modified),
    })


def deployment_summary(deployment: Deployment) -> dict[str, Any]:
    return {
        "customModelDeploymentArn": deployment.arn, "customModelDeploymentName": deployment.name,
        "modelArn": deployment.model_arn, "createdAt": timestamp(deployment.created), "status": deployment.status,
        "lastUpdatedAt": timestamp(deployment.modified),
    }


def import_job_detail(job: ModelImport) -> dict[str, Any]:
    return _drop_none({
        "jobArn": job.arn, "jobName": job.name, "importedModelName": job.model_name, "importedModelArn": job.model_arn,
        "roleArn": job.role_arn, "modelDataSource": {"s3DataSource": {"s3Uri": job.source_uri}}, "status": job.status,
        "failureMessage": job.failure_message, "creationTime": timestamp(job.created), "lastModifiedTime": timestamp(job.modified),
        "endTime": timestamp(job.ended),
    })


def import_job_summary(job: ModelImport) -> dict[str, Any]:
    return _drop_none({
        "jobArn": job.arn, "jobName": job.name, "status": job.status, "creationTime": timestamp(job.created),
        "lastModifiedTime": timestamp(job.modified), "endTime": timestamp(job.ended), "importedModelArn": job.model_arn,
        "importedModelName": job.model_name,
    })
