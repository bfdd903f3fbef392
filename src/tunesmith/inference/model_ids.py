"""Which model a runtime model id names: a base tier, a custom model, or a deployment of one."""

from __future__ import annotations

import pathlib

from tunesmith.jobs.errors import ResourceNotFoundException, ValidationException
from tunesmith.jobs.store import JobStore
from tunesmith.statuses import ModelStatus
from tunesmith.tiers import UnknownModelError, resolve_tier


def resolve_model_id(store: JobStore, model_id: str) -> tuple[str, str]:
    """(cache key, spec for :meth:`ModelCache.get`) of a runtime model id. A custom model is its
    folder when this host has it, else the S3 URI its worker uploaded it to (``details.modelUri``)."""
    with store.session() as session:
        deployment = store.deployment(session, model_id)
        model = store.model(session, deployment.model_arn if deployment else model_id)
        if model is not None:
            if model.status != ModelStatus.ACTIVE or not model.folder:
                raise ValidationException(f"model {model.name} is {model.status}; it cannot be invoked")
            stored = (model.details or {}).get("modelUri")
            here = (pathlib.Path(model.folder) / "manifest.json").is_file()
            return model.arn, stored if stored and not here else model.folder
        if deployment is not None:
            raise ResourceNotFoundException(f"deployment {model_id} points to a model that no longer exists")
    try:
        tier = resolve_tier(model_id)
    except UnknownModelError as exc:
        raise ResourceNotFoundException(f"{model_id} is not a base model, a custom model or a deployment: {exc}") from exc
    return tier.name, tier.name
