"""The advisor: every guide rule, its boundaries, and the plan arithmetic."""

import pytest

from tunesmith import guide
from tunesmith.advisor import plan_training, recommend, round_half_up
from tunesmith.deviations import MIN_RECORD_PASSES, NO_EPOCH_CLIFF_AT_1K
from tunesmith.hyperparameters import HyperparameterError, Hyperparameters
from tunesmith.tiers import TIERS, ModelTier

MICRO, LITE, PRO = TIERS["micro"], TIERS["lite"], TIERS["pro"]


@pytest.mark.parametrize("tier,warmup", [(MICRO, 5), (LITE, 20), (PRO, 10)])
def test_issue_acceptance_3200_records(tier, warmup):
    advice = recommend(3200, tier)
    assert advice.hyperparameters.learning_rate_warmup_steps == warmup
    assert advice.hyperparameters.epoch_count == 2
    assert advice.plan.duplication_factor == 1


def test_issue_acceptance_20000_records_clamps_warmup():
    advice = recommend(20_000, MICRO)
    assert advice.hyperparameters.learning_rate_warmup_steps == 20
    assert advice.hyperparameters.epoch_count == 1
    assert "clamped to the maximum of 20" in advice.reasons["learningRateWarmupSteps"].text
    assert "31.25" in advice.reasons["learningRateWarmupSteps"].text


def test_issue_acceptance_small_and_medium():
    assert recommend(3000, MICRO).hyperparameters.epoch_count == 2
    small = recommend(300, MICRO)
    assert small.hyperparameters.epoch_count == 5
    assert small.plan.duplication_factor > 1


@pytest.mark.parametrize(
    "records,epochs,factor",
    [
        (1, 5, 10),
        (8, 5, 10),
        (100, 5, 10),
        (101, 5, 10),  # ceil(1000/101) = 10
        (112, 5, 9),
        (300, 5, 4),
        (500, 5, 2),
        (501, 5, 2),  # at least the guide's own 2x example
        (999, 5, 2),
        (1000, 5, 1),  # boundary: "<1K" duplicates, 1K does not; 5,000 passes (deviations.py)
        (1250, 4, 1),  # ceil(5000 / 1250) = 4
        (2499, 3, 1),
        (2500, 2, 1),  # the guide's 2 epochs reach 5,000 passes
        (5000, 2, 1),  # "up to 5k" -> 2
        (5001, 1, 1),  # "greater than 5k" -> 1
        (20000, 1, 1),
    ],
)
def test_epochs_and_duplication_by_size(records, epochs, factor):
    advice = recommend(records, MICRO)
    assert (advice.hyperparameters.epoch_count, advice.plan.duplication_factor) == (epochs, factor)
    assert advice.plan.effective_epochs == epochs * factor
    if factor > 1:
        assert records * factor >= guide.DUPLICATION_TARGET_RECORDS or factor == guide.MAX_DUPLICATION_FACTOR


@pytest.mark.parametrize("records", [1000, 1250, 2499])
def test_medium_sets_below_5000_passes_deviate_from_the_guide_and_say_so(records):
    advice = recommend(records, MICRO)
    written = recommend(records, MICRO, as_written=True)
    assert written.hyperparameters.epoch_count == guide.MEDIUM_DATASET_EPOCHS
    assert advice.hyperparameters.epoch_count * records >= MIN_RECORD_PASSES > written.hyperparameters.epoch_count * records
    reason = advice.reasons["epochCount"]
    assert reason.deviation is NO_EPOCH_CLIFF_AT_1K and reason.as_written == "2"
    shown = reason.as_dict()["deviation"]
    assert shown["guideSays"] == guide.EFFECTIVE_EPOCHS.says and shown["guideValue"] == "2"
    assert "62% to 100%" in shown["evidence"]
    assert written.reasons["epochCount"].deviation is None


@pytest.mark.parametrize("records", [300, 999, 2500, 5000, 5001])
def test_where_the_guide_was_not_beaten_the_advice_is_the_guide(records):
    advice, written = recommend(records, MICRO), recommend(records, MICRO, as_written=True)
    assert advice.as_dict() == written.as_dict()


def test_warmup_uses_records_after_duplication():
    advice = recommend(300, MICRO)  # 4x -> 1,200 records / 640 = 1.875 -> 2
    assert advice.plan.records_after_duplication == 1200
    assert advice.hyperparameters.learning_rate_warmup_steps == 2
    assert advice.reasons["learningRateWarmupSteps"].text.startswith("1,200 records / 640 (micro) = 1.88, rounded to 2")


def test_warmup_rounds_half_up():
    assert round_half_up(2.5) == 3 and round_half_up(2.49) == 2 and round_half_up(0.5) == 1
    assert recommend(1600, MICRO).hyperparameters.learning_rate_warmup_steps == 3  # 1600/640 = 2.5
    assert recommend(1599, MICRO).hyperparameters.learning_rate_warmup_steps == 2


def test_warmup_for_a_custom_model():
    custom = ModelTier.custom("mine", effective_batch_size=8)
    assert recommend(2000, custom).hyperparameters.learning_rate_warmup_steps == 20  # 2000/80 = 25 -> 20
    assert recommend(1200, custom).hyperparameters.learning_rate_warmup_steps == 15


def test_learning_rate_per_tier_with_reason():
    rates = {t.name: recommend(3200, t).hyperparameters.learning_rate for t in (MICRO, LITE, PRO)}
    assert rates == {"micro": 1e-4, "lite": 3e-5, "pro": 1e-5}
    reason = recommend(3200, MICRO).reasons["learningRate"]
    assert reason.rule is guide.LARGER_RATE_FOR_SMALLER_MODELS
    assert "effective batch (64)" in reason.text


def test_every_reason_names_its_rule():
    advice = recommend(300, MICRO)
    assert set(advice.reasons) == {"epochCount", "duplicationFactor", "learningRateWarmupSteps", "learningRate"}
    for reason in advice.reasons.values():
        assert reason.rule in guide.RULES
    data = advice.as_dict()
    assert data["reasons"]["duplicationFactor"]["guide"] == "Increasing Effective Epochs"


def test_plan_arithmetic():
    plan = plan_training(130, MICRO, Hyperparameters(3, 1e-5, 2), duplication_factor=2)
    assert (plan.records_after_duplication, plan.steps_per_epoch, plan.total_steps) == (260, 5, 15)
    assert plan.warmup_fraction == pytest.approx(2 / 15)
    assert plan.effective_epochs == 6
    with pytest.raises(ValueError):
        plan_training(0, MICRO, Hyperparameters())


def test_warns_when_warmup_never_finishes():
    advice = recommend(100, MICRO, overrides={"epochCount": "1", "learningRateWarmupSteps": "20"}, duplication_factor=1)
    assert advice.plan.total_steps == 2
    assert advice.warnings[0] == (
        "warmup (20 steps) is not shorter than training (2 steps): the learning rate never reaches "
        "the value you set (Avoid a Large Warm up Number for Small Sample)"
    )
    assert advice.reasons["learningRateWarmupSteps"].rule is None


def test_warns_when_warmup_is_most_of_training():
    advice = recommend(1000, PRO, overrides={"epochCount": "1", "learningRateWarmupSteps": "20"})
    assert advice.plan.total_steps == 32
    assert any(w.startswith("warmup takes 62% of training") for w in advice.warnings)


def test_advised_values_never_trigger_the_warmup_warning():
    for records in (1, 7, 64, 640, 999, 1000, 4000, 5001, 20000, 100000):
        for tier in TIERS.values():
            assert not any("warmup" in w for w in recommend(records, tier).warnings)


def test_dataset_size_warnings():
    assert any("100+ recommended" in w for w in recommend(99, MICRO).warnings)
    assert not any("100+ recommended" in w for w in recommend(100, MICRO).warnings)
    assert any("outside the 8..20,000" in w for w in recommend(7, MICRO).warnings)
    assert not any("outside" in w for w in recommend(8, MICRO).warnings)
    assert any("outside the 8..20,000" in w for w in recommend(20_001, MICRO).warnings)
    assert any("outside" in w for w in recommend(19_990, MICRO, total_records=20_010).warnings)


def test_overrides_are_validated_with_the_tables_messages():
    with pytest.raises(HyperparameterError, match="epochCount=9 is out of range"):
        recommend(300, MICRO, overrides={"epochCount": "9"})


def test_json_shape():
    data = recommend(300, MICRO).as_dict()
    assert set(data) == {
        "model", "records", "duplicationFactor", "effectiveEpochs", "hyperParameters", "plan", "reasons", "warnings",
    }
    assert data["hyperParameters"] == {"epochCount": "5", "learningRate": "0.0001", "learningRateWarmupSteps": "2"}
    assert all(isinstance(v, str) for v in data["hyperParameters"].values())
    assert set(data["plan"]) >= {"recordsAfterDuplication", "stepsPerEpoch", "totalSteps", "warmupFraction"}
    assert Hyperparameters.from_wire(data["hyperParameters"])  # ready to send to the API
