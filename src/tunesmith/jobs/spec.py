"""What a job will do, validated: the typed :class:`JobSpec` stored with the job.

The HTTP layer builds it from a create request (:func:`tunesmith.api.job_requests.spec_from_request`),
checking everything that can be checked without reading the data. The spec is stored with
the job, and the worker reads it back with ``JobSpec.model_validate``; nobody re-parses the
raw request.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from tunesmith import guide
from tunesmith.hyperparameters import Hyperparameters
from tunesmith.tiers import resolve_tier

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
