"""Model tiers: batch sizes, the warmup-divisor derivation, hosted-id aliases."""

import pytest

from tunesmith import guide
from tunesmith.hyperparameters import LEARNING_RATE
from tunesmith.tiers import TIERS, ModelTier, UnknownModelError, resolve_tier, warmup_divisor_for


def test_divisors_derived_from_batch_sizes_match_the_guide():
    assert {name: tier.effective_batch_size for name, tier in TIERS.items()} == {"micro": 64, "lite": 16, "pro": 32}
    assert {name: tier.warmup_divisor for name, tier in TIERS.items()} == guide.WARMUP_DIVISORS == {
        "micro": 640,
        "lite": 160,
        "pro": 320,
    }


def test_other_models_use_ten_times_the_batch():
    assert warmup_divisor_for(8) == 80
    custom = ModelTier.custom("my-model", effective_batch_size=24)
    assert custom.warmup_divisor == 240
    assert custom.learning_rate == LEARNING_RATE.default
    with pytest.raises(ValueError, match="at least 1"):
        ModelTier.custom("bad", effective_batch_size=0)


def test_learning_rates_follow_the_guide():
    rates = {name: tier.learning_rate for name, tier in TIERS.items()}
    assert rates["micro"] > rates["lite"] > rates["pro"]  # bigger rate for smaller models
    for rate in rates.values():
        assert LEARNING_RATE.minimum <= rate <= LEARNING_RATE.maximum
    with pytest.raises(ValueError, match="outside the guide's bounds"):
        ModelTier.custom("hot", 16, learning_rate=1e-3)


@pytest.mark.parametrize(
    "identifier,tier",
    [
        ("micro", "micro"),
        ("MICRO", "micro"),
        ("amazon.nova-micro-v1:0:128k", "micro"),
        ("amazon.nova-micro-v1:0", "micro"),
        ("amazon.nova-lite-v1:0:300k", "lite"),
        ("amazon.nova-lite-v1:0", "lite"),
        ("amazon.nova-pro-v1:0:300k", "pro"),
        ("amazon.nova-pro-v1:0", "pro"),
        ("arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:0:300k", "pro"),
    ],
)
def test_aliases(identifier, tier):
    assert resolve_tier(identifier).name == tier


def test_unknown_model_lists_known_ones():
    with pytest.raises(UnknownModelError) as info:
        resolve_tier("amazon.titan-text-express-v1")
    assert str(info.value) == (
        'unknown model "amazon.titan-text-express-v1": known models are micro, lite, pro, '
        "amazon.nova-micro-v1:0:128k, amazon.nova-micro-v1:0, amazon.nova-lite-v1:0:300k, "
        "amazon.nova-lite-v1:0, amazon.nova-pro-v1:0:300k, amazon.nova-pro-v1:0"
    )
