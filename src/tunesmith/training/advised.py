"""``--advised``: a run's hyperparameters and duplication replaced by the advisor's for its data and model tier.

:func:`advised_config` is pure (records and tier given); :func:`advise` reads them from the run's
own data and model, as ``tunesmith train --advised`` and ``tunesmith estimate --advised`` do.
"""

from __future__ import annotations

import dataclasses

from tunesmith.advisor import Advice, recommend
from tunesmith.datasets import DataError, validate_dataset
from tunesmith.models.registry import resolve_model
from tunesmith.tiers import ModelTier
from tunesmith.training.config import TrainConfig


def advised_config(config: TrainConfig, records: int, tier: ModelTier) -> tuple[TrainConfig, Advice]:
    """``config`` with the advisor's hyperparameters and duplication for ``records`` training
    records on ``tier``, and the advice itself (reasons and warnings). Pure: nothing is read."""
    advice = recommend(records, tier)
    advised = dataclasses.replace(config, hyperparameters=advice.hyperparameters, duplication=advice.plan.duplication_factor)
    return advised, advice


def advise(config: TrainConfig) -> tuple[TrainConfig, Advice]:
    """``config`` with the advisor's values for its training records and model tier, and the advice.
    The data is validated first: :class:`~tunesmith.datasets.DataError` when it is not valid."""
    report = validate_dataset(config.data, config.validation, config.kind)
    if not report.valid:
        raise DataError(report)
    return advised_config(config, report.training.records, resolve_model(config.model).tier)
