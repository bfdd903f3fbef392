"""The Nova customization guide's advice, as data: one place for every rule and threshold.

The advisor (:mod:`tunesmith.advisor`) applies these rules; each reason it gives names the
rule by its :attr:`GuideRule.title`, which is the guide's own heading. Dataset limits come
from the hosted service's documentation (the Amazon Bedrock User Guide's model-customization
data preparation limits).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GuideRule:
    """One piece of the guide's advice."""

    id: str
    """Short stable identifier used in JSON output (``epochs-by-size``)."""
    title: str
    """The guide's heading for the advice."""
    says: str
    """What the guide says, condensed."""


EPOCHS_BY_SIZE = GuideRule(
    "epochs-by-size",
    "Tweak the Epochs Based on Sample Size",
    "Larger data sets need fewer epochs, smaller ones more; the default of 2 works for most cases.",
)
EFFECTIVE_EPOCHS = GuideRule(
    "effective-epochs",
    "Increasing Effective Epochs",
    "Under 1K samples, duplicate the data to raise the effective epochs past the cap of 5; "
    "up to 5K use 2 epochs; over 5K use 1 epoch.",
)
WARMUP_FOR_SMALL_SAMPLES = GuideRule(
    "warmup-by-size",
    "Avoid a Large Warm up Number for Small Sample",
    "Warmup steps = dataset size / 640 (Micro), / 160 (Lite), / 320 (Pro), rounded, so the "
    "learning rate reaches its set value.",
)
LARGER_RATE_FOR_SMALLER_MODELS = GuideRule(
    "learning-rate-by-model",
    "Bigger learning rate for smaller models",
    "Nova Micro may benefit from a larger learning rate due to its effective batch size.",
)
QUALITY_OVER_QUANTITY = GuideRule(
    "quality-over-quantity",
    "Quality over Quantity",
    "Start with a small, high-quality dataset, evaluate, then iterate and expand.",
)
MATCH_REAL_TRAFFIC = GuideRule(
    "match-real-traffic",
    "Diversify and Augment",
    "Fine-tuning and evaluation data should match the traffic the model will see.",
)

RULES: tuple[GuideRule, ...] = (
    EPOCHS_BY_SIZE,
    EFFECTIVE_EPOCHS,
    WARMUP_FOR_SMALL_SAMPLES,
    LARGER_RATE_FOR_SMALLER_MODELS,
    QUALITY_OVER_QUANTITY,
    MATCH_REAL_TRAFFIC,
)

# --- Epochs by sample size ------------------------------------------------------------------
SMALL_DATASET_BELOW = 1_000
"""Under this many training records the guide recommends 5 epochs plus duplication."""
SMALL_DATASET_EPOCHS = 5
MEDIUM_DATASET_UP_TO = 5_000
"""From SMALL_DATASET_BELOW up to and including this many records: 2 epochs."""
MEDIUM_DATASET_EPOCHS = 2
LARGE_DATASET_EPOCHS = 1

# --- Duplication ("effective epochs") -------------------------------------------------------
# The guide leaves the duplication factor open. tunesmith's target: duplicate a small dataset
# until it holds at least SMALL_DATASET_BELOW records, the size at which the guide stops asking
# for duplication. An epoch then has as many optimizer steps as the smallest unduplicated
# dataset the guide trains for 5 epochs, so a 300-record set is not trained for a handful of
# steps just because it is small. The factor is capped: beyond ~50 passes over the same
# examples a model memorises them rather than learning the task.
DUPLICATION_TARGET_RECORDS = SMALL_DATASET_BELOW
MIN_DUPLICATION_FACTOR = 2
"""The guide's own example duplicates 2x; any small dataset gets at least that."""
MAX_DUPLICATION_FACTOR = 10
"""At 5 epochs this caps the effective epochs at 50."""

# --- Warmup ---------------------------------------------------------------------------------
WARMUP_DIVISORS = {"micro": 640, "lite": 160, "pro": 320}
"""The guide's divisors, copied verbatim. :mod:`tunesmith.tiers` derives them from the tiers'
effective batch sizes and a test checks both agree."""
WARMUP_EPOCH_DIVISOR = 10
"""Warmup lasts one epoch divided by this (a tenth): the guide's records-per-warmup-step
divisor is ``WARMUP_EPOCH_DIVISOR x effective batch size`` (640 = 10 x 64 for micro)."""
WARMUP_TOO_LONG_FRACTION = 0.5
"""Warn when warmup takes more than this fraction of all optimizer steps."""

# --- Dataset limits (hosted service) --------------------------------------------------------
MIN_RECORDS = 8
"""Fewest records for training plus validation."""
MAX_RECORDS = 20_000
"""Most records for training plus validation."""
RECOMMENDED_MIN_RECORDS = 100
MAX_DISTILLATION_PROMPTS = 15_000
MAX_VALIDATION_FILES = 10

# --- Generation limits (hosted service) -----------------------------------------------------
DEFAULT_RESPONSE_TOKENS = 512
"""A teacher's answer budget when none is given (``maxResponseLengthForInference``)."""
MAX_RESPONSE_TOKENS = 8192
"""Most tokens one answer may ask for: ``maxResponseLengthForInference`` and ``maxTokens``."""

# --- When to distill or fine-tune ----------------------------------------------------------
DISTILL_NO_LABELS = GuideRule(
    "distill-no-labels",
    "When to Distill or Fine Tune?",
    "Distill when you have no labeled data and the teacher is highly capable on the task.",
)
DISTILL_FOR_LATENCY = GuideRule(
    "distill-for-latency",
    "When to Distill or Fine Tune?",
    "Distill when the larger model beats the smaller one but you need the smaller one's latency and cost.",
)
FINE_TUNE_INTELLIGENCE_GAP = GuideRule(
    "fine-tune-intelligence-gap",
    "When to Distill or Fine Tune?",
    "Fine-tune when even the larger model does poorly: there is an intelligence gap.",
)
FINE_TUNE_NARROW_DOMAIN = GuideRule(
    "fine-tune-narrow-domain",
    "When to Distill or Fine Tune?",
    "Fine-tune when the use case is too narrow for the models to know: labels teach it.",
)
CAPABLE_TEACHER_SCORE = 0.7
"""A teacher scoring at least this (exact match on held-out labels) is "highly capable"."""
POOR_TEACHER_SCORE = 0.3
"""Below this, even the teacher does poorly: an intelligence gap."""
CLEAR_MARGIN = 0.1
"""Score differences smaller than this count as a tie."""
DECIDE_HOLDOUT_FRACTION = 0.2
"""``tunesmith decide`` scores the models on this share of the labelled records..."""
DECIDE_MIN_HOLDOUT = 8
"""...and on at least this many, so one answer moves a score by at most 12.5 points."""
