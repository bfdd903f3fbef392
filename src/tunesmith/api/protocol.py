"""The wire protocol: typed request and response models of every route (pydantic).

Lengths and patterns are Bedrock's (botocore's ``bedrock`` service model), with each name
and token pattern rewritten so that it cannot backtrack: pydantic checks them with Rust's
linear-time regex engine, and the rewritten forms accept the same strings. Identifiers and
URIs are deliberately broader than Bedrock's (tier names and local paths are accepted; only
control characters are refused), and so are list filters such as ``nameContains``. Tag
patterns use Rust's Unicode whitespace class where Bedrock's Java regex is ASCII. Requests are strict:
wrong JSON types are refused, never coerced, and unknown fields are refused (nothing a
client did not mean to send is stored). Control characters in names and URIs are refused.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints

from tunesmith import guide
from tunesmith.datasets.duplicate import MAX_FACTOR
from tunesmith.jobs.device_pool import MAX_JOB_DEVICES
from tunesmith.jobs.settings import MAX_BODY_BYTES
from tunesmith.kinds import CustomizationKind
from tunesmith.statuses import DeploymentStatus, ImportJobStatus, JobStatus, ModelStatus, PhaseStatus

# --- Strings --------------------------------------------------------------------------------
# Bedrock's [a-zA-Z0-9](-*[a-zA-Z0-9\+\-\.])* accepts the same strings as this one.
JOB_NAME_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9+.\-]*$"
# ([0-9a-zA-Z][_-]?){1,63}: alphanumerics, each optionally followed by one _ or -.
MODEL_NAME_PATTERN = r"^[0-9a-zA-Z]([_-]?[0-9a-zA-Z])*[_-]?$"
ROLE_ARN_PATTERN = r"^arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/[^\x00-\x1f]+$"
TOKEN_PATTERN = r"^[a-zA-Z0-9]([-a-zA-Z0-9]{0,254}[a-zA-Z0-9])?$"
TAG_PATTERN = r"^[a-zA-Z0-9\s._:/=+@-]*$"
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
"""No control characters: NUL and friends break paths, logs and terminals."""
PATTERN_MEANINGS = {
    ROLE_ARN_PATTERN: "is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)",
    PRINTABLE: "contains a control character",
}
"""What a mismatch means, for patterns whose regex would not tell a reader."""

JobName = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=JOB_NAME_PATTERN)]
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=MODEL_NAME_PATTERN)]
RoleArn = Annotated[str, StringConstraints(max_length=2048, pattern=ROLE_ARN_PATTERN)]
ClientToken = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=TOKEN_PATTERN)]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=2048, pattern=PRINTABLE)]
Uri = Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=PRINTABLE)]
"""s3://bucket/key, file:///path or a local path (checked against the allowed roots later)."""
HyperparameterKey = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=PRINTABLE)]
HyperparameterValue = Annotated[str, StringConstraints(max_length=64, pattern=PRINTABLE)]
Description = Annotated[str, StringConstraints(min_length=1, max_length=2048)]

CustomizationType = Annotated[CustomizationKind, Strict(False)]
"""Not strict: FastAPI validates the decoded JSON as Python objects, where a strict enum field
takes only members. Lax, it takes a member's value and nothing else."""
SortBy = Literal["CreationTime"]
SortOrder = Literal["Ascending", "Descending"]

class Request(BaseModel):
    """Base of every request body: strict types, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Response(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- CreateModelCustomizationJob ------------------------------------------------------------
class Tag(Request):
    key: Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=TAG_PATTERN)]
    value: Annotated[str, StringConstraints(max_length=256, pattern=TAG_PATTERN)]


class DataLocation(Request):
    s3Uri: Uri


class ValidationDataConfig(Request):
    validators: Annotated[list[DataLocation], Field(max_length=guide.MAX_VALIDATION_FILES)] = []


class TeacherModelConfig(Request):
    teacherModelIdentifier: Identifier
    maxResponseLengthForInference: Annotated[int, Field(ge=1, le=guide.MAX_RESPONSE_TOKENS)] = guide.DEFAULT_RESPONSE_TOKENS


class DistillationConfig(Request):
    teacherModelConfig: TeacherModelConfig


class CustomizationConfig(Request):
    distillationConfig: DistillationConfig | None = None


class VpcConfig(Request):
    subnetIds: Annotated[list[Annotated[str, StringConstraints(max_length=32)]], Field(min_length=1, max_length=16)]
    securityGroupIds: Annotated[list[Annotated[str, StringConstraints(max_length=32)]], Field(min_length=1, max_length=5)]


class TunesmithConfig(Request):
    """tunesmith's own, optional part of a create request (boto3 callers simply omit it)."""

    devices: Annotated[int, Field(ge=1, le=MAX_JOB_DEVICES)] = 1
    """Devices the job trains on, one data-parallel rank each: whole CUDA devices (the job
    waits until that many are free) or, on a CPU server, ranks sharing the CPU."""
    earlyStoppingPatience: Annotated[int, Field(ge=1, le=1000)] | None = None
    """Stop after this many validations in a row without a lower validation loss and keep the
    best validation checkpoint as the model; needs ``validationDataConfig``. Omitted: every
    epoch trains, as on the hosted service."""
    evalEvery: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    """Also compute the validation loss every N optimizer steps (always at each epoch end)."""
    duplicationFactor: Annotated[int, Field(ge=1, le=MAX_FACTOR)] | None = None
    """Each training record is seen this many times per epoch (virtual duplication, as
    ``tunesmith train --duplicate``); omitted: 1. On the hosted service, duplicate the file instead."""


class CreateJobRequest(Request):
    """CreateModelCustomizationJob. ``vpcConfig``, ``customModelKmsKeyId`` and tags are accepted
    (boto3 scripts written for the hosted service send them) and have no effect here.

    ``tunesmithConfig`` is tunesmith's addition. botocore refuses parameters its service
    model lacks, so boto3 cannot send it as a keyword: send it over plain HTTP, with
    ``tunesmith jobs create --devices N``, or add it to the body in a ``before-call`` event
    handler (``tunesmith.cli.jobs.add_tunesmith_config`` does that)."""

    jobName: JobName
    customModelName: ModelName
    roleArn: RoleArn
    baseModelIdentifier: Identifier
    trainingDataConfig: DataLocation
    outputDataConfig: DataLocation
    clientRequestToken: ClientToken | None = None
    customizationType: CustomizationType = CustomizationKind.FINE_TUNING
    validationDataConfig: ValidationDataConfig | None = None
    hyperParameters: Annotated[dict[HyperparameterKey, HyperparameterValue], Field(max_length=16)] | None = None
    customizationConfig: CustomizationConfig | None = None
    customModelKmsKeyId: Identifier | None = None
    jobTags: Annotated[list[Tag], Field(max_length=200)] | None = None
    customModelTags: Annotated[list[Tag], Field(max_length=200)] | None = None
    vpcConfig: VpcConfig | None = None
    tunesmithConfig: TunesmithConfig | None = None


class JobArn(Response):
    jobArn: str


class PhaseDetail(Response):
    status: PhaseStatus
    creationTime: str | None = None
    lastModifiedTime: str | None = None


class StatusDetails(Response):
    validationDetails: PhaseDetail | None = None
    dataProcessingDetails: PhaseDetail | None = None
    trainingDetails: PhaseDetail | None = None


class TrainingMetrics(Response):
    trainingLoss: float | None = None


class ValidatorMetric(Response):
    validationLoss: float | None = None


class JobDetail(Response):
    """GetModelCustomizationJob. Fields botocore does not model (``tunesmith``) are dropped
    by boto3 but visible to plain HTTP clients."""

    jobArn: str
    jobName: str
    outputModelName: str
    roleArn: str
    status: JobStatus
    creationTime: str
    baseModelArn: str
    trainingDataConfig: dict
    validationDataConfig: dict
    outputDataConfig: dict
    outputModelArn: str | None = None
    clientRequestToken: str | None = None
    statusDetails: StatusDetails | None = None
    failureMessage: str | None = None
    lastModifiedTime: str | None = None
    endTime: str | None = None
    hyperParameters: dict[str, str] | None = None
    customizationType: CustomizationKind | None = None
    customizationConfig: dict | None = None
    trainingMetrics: TrainingMetrics | None = None
    validationMetrics: list[ValidatorMetric] | None = None
    tunesmith: dict | None = None


class JobSummary(Response):
    jobArn: str
    baseModelArn: str
    jobName: str
    status: JobStatus
    creationTime: str
    statusDetails: StatusDetails | None = None
    lastModifiedTime: str | None = None
    endTime: str | None = None
    customModelArn: str | None = None
    customModelName: str | None = None
    customizationType: CustomizationKind | None = None


class JobList(Response):
    modelCustomizationJobSummaries: list[JobSummary]
    nextToken: str | None = None


class Empty(Response):
    pass


class Checkpoint(Response):
    step: int
    path: str
    s3Uri: str | None = None
    """Where the checkpoint was uploaded, when the job's output is on S3."""


class JobCheckpoints(Response):
    jobArn: str
    checkpoints: list[Checkpoint]


# --- Custom models --------------------------------------------------------------------------
class ModelDetail(Response):
    modelArn: str
    modelName: str
    jobArn: str
    baseModelArn: str
    creationTime: str
    jobName: str | None = None
    customizationType: CustomizationKind | None = None
    hyperParameters: dict[str, str] | None = None
    trainingDataConfig: dict | None = None
    validationDataConfig: dict | None = None
    outputDataConfig: dict | None = None
    trainingMetrics: TrainingMetrics | None = None
    validationMetrics: list[ValidatorMetric] | None = None
    modelStatus: ModelStatus | None = None


class ModelSummary(Response):
    modelArn: str
    modelName: str
    creationTime: str
    baseModelArn: str
    baseModelName: str
    customizationType: CustomizationKind | None = None
    ownerAccountId: str | None = None
    modelStatus: ModelStatus | None = None


class ModelList(Response):
    modelSummaries: list[ModelSummary]
    nextToken: str | None = None


# --- Model import (CreateModelImportJob) -----------------------------------------------------
class S3DataSource(Request):
    s3Uri: Uri
    """A result folder: a local path or file:// URI (inside the allowed folders), or an s3:// prefix."""


class ModelDataSource(Request):
    s3DataSource: S3DataSource


class CreateImportJobRequest(Request):
    """CreateModelImportJob. ``vpcConfig``, ``importedModelKmsKeyId`` and tags are accepted and have no effect here."""

    jobName: JobName
    importedModelName: ModelName
    roleArn: RoleArn
    modelDataSource: ModelDataSource
    clientRequestToken: ClientToken | None = None
    jobTags: Annotated[list[Tag], Field(max_length=200)] | None = None
    importedModelTags: Annotated[list[Tag], Field(max_length=200)] | None = None
    vpcConfig: VpcConfig | None = None
    importedModelKmsKeyId: Identifier | None = None


class ImportJobDetail(Response):
    """GetModelImportJob."""

    jobArn: str
    jobName: str
    importedModelName: str
    roleArn: str
    modelDataSource: dict
    status: ImportJobStatus
    creationTime: str
    importedModelArn: str | None = None
    failureMessage: str | None = None
    lastModifiedTime: str | None = None
    endTime: str | None = None


class ImportJobSummary(Response):
    jobArn: str
    jobName: str
    status: ImportJobStatus
    creationTime: str
    lastModifiedTime: str | None = None
    endTime: str | None = None
    importedModelArn: str | None = None
    importedModelName: str | None = None


class ImportJobList(Response):
    modelImportJobSummaries: list[ImportJobSummary]
    nextToken: str | None = None


# --- Deployments ----------------------------------------------------------------------------
class CreateDeploymentRequest(Request):
    modelDeploymentName: ModelName
    modelArn: Annotated[str, StringConstraints(min_length=1, max_length=1011, pattern=PRINTABLE)]
    description: Description | None = None
    tags: Annotated[list[Tag], Field(max_length=200)] | None = None
    clientRequestToken: ClientToken | None = None


class DeploymentArn(Response):
    customModelDeploymentArn: str


class DeploymentDetail(Response):
    customModelDeploymentArn: str
    modelDeploymentName: str
    modelArn: str
    createdAt: str
    status: DeploymentStatus
    description: str | None = None
    lastUpdatedAt: str | None = None


class DeploymentSummary(Response):
    customModelDeploymentArn: str
    customModelDeploymentName: str
    modelArn: str
    createdAt: str
    status: DeploymentStatus
    lastUpdatedAt: str | None = None


class DeploymentList(Response):
    modelDeploymentSummaries: list[DeploymentSummary]
    nextToken: str | None = None


# --- Runtime: Converse, ConverseStream, InvokeModel (Nova messages-v1) -----------------------
class TextBlock(BaseModel):
    """Only text blocks are supported; other block kinds (images, documents, tool use) are
    refused by name rather than ignored."""

    model_config = ConfigDict(extra="forbid", strict=True)
    text: Annotated[str, StringConstraints(max_length=MAX_BODY_BYTES)]


class Message(Request):
    role: Literal["user", "assistant"]
    content: Annotated[list[TextBlock], Field(min_length=1, max_length=100)]


class InferenceConfig(Request):
    maxTokens: Annotated[int, Field(ge=1, le=guide.MAX_RESPONSE_TOKENS)] | None = None
    temperature: Annotated[float, Field(ge=0, le=1)] | None = None
    topP: Annotated[float, Field(gt=0, le=1)] | None = None
    stopSequences: Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=256)]], Field(max_length=4)] | None = None


class NovaInferenceConfig(InferenceConfig):
    """Nova's InvokeModel body also takes snake_case spellings."""

    max_new_tokens: Annotated[int, Field(ge=1, le=guide.MAX_RESPONSE_TOKENS)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=0, le=1000)] | None = None


class ConverseRequest(Request):
    messages: Annotated[list[Message], Field(min_length=1, max_length=1000)]
    system: Annotated[list[TextBlock], Field(max_length=100)] | None = None
    inferenceConfig: InferenceConfig | None = None


class InvokeRequest(Request):
    schemaVersion: Literal["messages-v1"] = "messages-v1"
    messages: Annotated[list[Message], Field(min_length=1, max_length=1000)]
    system: Annotated[list[TextBlock], Field(max_length=100)] | None = None
    inferenceConfig: NovaInferenceConfig | None = None


class Usage(Response):
    inputTokens: int
    outputTokens: int
    totalTokens: int


class OutputMessage(Response):
    role: Literal["assistant"]
    content: list[dict]


class Output(Response):
    message: OutputMessage


class ConverseResponse(Response):
    output: Output
    stopReason: str
    usage: Usage
    metrics: dict | None = None


class InvokeResponse(Response):
    output: Output
    stopReason: str
    usage: Usage
