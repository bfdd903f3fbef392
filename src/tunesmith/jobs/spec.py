"""What a job will do, validated: the typed :class:`JobSpec` stored with the job.

The HTTP layer builds it from a create request (:func:`tunesmith.api.job_requests.spec_from_request`),
checking everything that can be checked without reading the data. The spec is stored with
the job, and the worker reads it back with ``JobSpec.model_validate``; nobody re-parses the
raw request. The hyperparameters travel typed (:class:`~tunesmith.hyperparameters.Hyperparameters`)
from there to the training loop; only the API's responses spell them as the wire's strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from tunesmith import guide
from tunesmith.datasets import DatasetKind
from tunesmith.hyperparameters import BY_KEY, Hyperparameters
from tunesmith.kinds import CustomizationKind
from tunesmith.tiers import resolve_tier

DATASET_KINDS = {
    CustomizationKind.FINE_TUNING: DatasetKind.FINE_TUNING,
    CustomizationKind.CONTINUED_PRE_TRAINING: DatasetKind.PRETRAINING,
    CustomizationKind.DISTILLATION: DatasetKind.DISTILLATION,
}
"""The data each supported kind trains on (a distillation's prompts become fine-tuning data)."""


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
    customization_type: CustomizationKind
    training_uri: str
    validation_uris: list[str] = []
    output_uri: str
    hyperparameters: Hyperparameters
    """Resolved: every hyperparameter, defaults filled in. Stored as numbers under the attribute
    names; specs stored before were the wire's strings (``{"epochCount": "2"}``) and read as well."""
    hyperparameters_sent: dict[str, str] = {}
    """As the client sent them, wire strings kept as they came (the run's manifest and the console show them)."""
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

    @field_validator("hyperparameters", mode="before")
    @classmethod
    def _read_wire_strings(cls, value: Any) -> Any:
        """A spec stored by an earlier tunesmith holds the wire's string map."""
        if isinstance(value, Mapping) and any(key in BY_KEY for key in value):
            return Hyperparameters.from_wire(value)
        return value

    @property
    def dataset_kind(self) -> DatasetKind:
        return DATASET_KINDS[self.customization_type]

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
        base_model_id=tier.hosted_ids[0], customization_type=raw.get("customizationType") or CustomizationKind.FINE_TUNING,
        training_uri=raw["trainingDataConfig"]["s3Uri"],
        validation_uris=[v["s3Uri"] for v in (raw.get("validationDataConfig") or {}).get("validators", [])],
        output_uri=raw["outputDataConfig"]["s3Uri"],
        hyperparameters=Hyperparameters.from_wire(raw.get("hyperParametersResolved")),
        hyperparameters_sent=dict(raw.get("hyperParameters") or {}), client_token=raw.get("clientRequestToken"),
        teacher=distillation.get("teacherModelIdentifier"),
        max_response_length=distillation.get("maxResponseLengthForInference", guide.DEFAULT_RESPONSE_TOKENS),
    )
