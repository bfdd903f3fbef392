"""The customization kinds (``customizationType``), spelled once, and those this build trains.

The values are the hosted API's (botocore's ``bedrock`` service model): the wire format and
what the database holds. Standard library only; which data each kind trains on is
:data:`tunesmith.jobs.spec.DATASET_KINDS`.
"""

from __future__ import annotations

import enum


class CustomizationKind(enum.StrEnum):
    """A job's ``customizationType``: a member equals, formats and serializes as its value."""

    FINE_TUNING = "FINE_TUNING"
    CONTINUED_PRE_TRAINING = "CONTINUED_PRE_TRAINING"
    DISTILLATION = "DISTILLATION"
    REINFORCEMENT_FINE_TUNING = "REINFORCEMENT_FINE_TUNING"
    IMPORTED = "IMPORTED"


SUPPORTED_KINDS: tuple[CustomizationKind, ...] = (
    CustomizationKind.FINE_TUNING, CustomizationKind.CONTINUED_PRE_TRAINING, CustomizationKind.DISTILLATION)
"""What this build trains; the API refuses the others with a ValidationException."""
