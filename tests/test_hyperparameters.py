"""The guide's hyperparameter table: bounds, parsing and messages."""

import math

import pytest

from tunesmith.hyperparameters import (
    BY_KEY,
    EPOCH_COUNT,
    LEARNING_RATE,
    TABLE,
    WARMUP_STEPS,
    HyperparameterError,
    Hyperparameters,
    parse_assignments,
    parse_wire,
)


def test_table_is_the_guides():
    assert [(s.key, s.type, s.minimum, s.maximum, s.default) for s in TABLE] == [
        ("epochCount", int, 1, 5, 2),
        ("learningRate", float, 1e-6, 1e-4, 1e-5),
        ("learningRateWarmupSteps", int, 0, 20, 10),
    ]


def test_defaults():
    assert Hyperparameters() == Hyperparameters(2, 1e-5, 10)
    assert Hyperparameters.from_wire({}).to_wire() == {
        "epochCount": "2",
        "learningRate": "1e-05",
        "learningRateWarmupSteps": "10",
    }


# Every boundary: the inclusive minimum and maximum pass, one step outside fails.
BOUNDARIES = [
    ("epochCount", "1", 1),
    ("epochCount", "5", 5),
    ("learningRate", "1e-06", 1e-6),
    ("learningRate", "0.000001", 1e-6),
    ("learningRate", "1e-4", 1e-4),
    ("learningRate", "0.0001", 1e-4),
    ("learningRateWarmupSteps", "0", 0),
    ("learningRateWarmupSteps", "20", 20),
]
OUTSIDE = [
    ("epochCount", "0", "epochCount=0 is out of range: must be between 1 and 5"),
    ("epochCount", "6", "epochCount=6 is out of range: must be between 1 and 5"),
    ("learningRate", "9.99e-07", "learningRate=9.99e-07 is out of range: must be between 1e-06 and 0.0001"),
    ("learningRate", "0.000101", "learningRate=0.000101 is out of range: must be between 1e-06 and 0.0001"),
    ("learningRateWarmupSteps", "-1", "learningRateWarmupSteps=-1 is out of range: must be between 0 and 20"),
    ("learningRateWarmupSteps", "21", "learningRateWarmupSteps=21 is out of range: must be between 0 and 20"),
]


@pytest.mark.parametrize("key,raw,expected", BOUNDARIES)
def test_inclusive_bounds(key, raw, expected):
    spec = BY_KEY[key]
    assert spec.parse(raw) == (expected, None)
    hp = Hyperparameters.from_wire({key: raw})
    assert getattr(hp, spec.attribute) == expected


@pytest.mark.parametrize("key,raw,message", OUTSIDE)
def test_one_step_outside(key, raw, message):
    with pytest.raises(HyperparameterError) as info:
        Hyperparameters.from_wire({key: raw})
    assert [p.message for p in info.value.problems] == [message]


def test_issue_example_message():
    assert LEARNING_RATE.parse("0.5") == (None, "learningRate=0.5 is out of range: must be between 1e-06 and 0.0001")


@pytest.mark.parametrize(
    "raw,message",
    [
        ("5E-5", None),
        ("1e-05", None),
        ("0.00001", None),
        (" 3e-5 ", None),
        ("abc", "learningRate=abc is not a number: it must be between 1e-06 and 0.0001"),
        ("nan", "learningRate=nan is not a number: it must be between 1e-06 and 0.0001"),
        ("NaN", "learningRate=NaN is not a number: it must be between 1e-06 and 0.0001"),
        ("inf", "learningRate=inf is infinite: it must be between 1e-06 and 0.0001"),
        ("-Infinity", "learningRate=-Infinity is infinite: it must be between 1e-06 and 0.0001"),
        ("1e999", "learningRate=1e999 is infinite: it must be between 1e-06 and 0.0001"),
        ("", "learningRate is empty: it must be between 1e-06 and 0.0001"),
        ("   ", "learningRate is empty: it must be between 1e-06 and 0.0001"),
        ("1_0", "learningRate=1_0 is not a number: it must be between 1e-06 and 0.0001"),
        ("0x10", "learningRate=0x10 is not a number: it must be between 1e-06 and 0.0001"),
    ],
)
def test_learning_rate_strings(raw, message):
    assert LEARNING_RATE.parse(raw)[1] == message


@pytest.mark.parametrize(
    "raw,message",
    [
        ("2.5", "epochCount=2.5 is not an integer: epochs must be between 1 and 5"),
        ("2.0", "epochCount=2.0 is not an integer: epochs must be between 1 and 5"),
        ("1e0", "epochCount=1e0 is not an integer: epochs must be between 1 and 5"),
        (2.5, "epochCount=2.5 is not an integer: epochs must be between 1 and 5"),
        (True, "epochCount=True is not an integer that must be between 1 and 5 (got bool)"),
        (None, "epochCount=None is not an integer that must be between 1 and 5 (got NoneType)"),
    ],
)
def test_epochs_must_be_integers(raw, message):
    assert EPOCH_COUNT.parse(raw) == (None, message)


def test_python_numbers_are_accepted():
    assert Hyperparameters(epoch_count=3, learning_rate=5e-5, learning_rate_warmup_steps=0) == Hyperparameters.from_wire(
        {"epochCount": "3", "learningRate": "5e-5", "learningRateWarmupSteps": "0"}
    )
    assert Hyperparameters(learning_rate=1e-4).learning_rate == 1e-4
    with pytest.raises(HyperparameterError, match="is infinite"):
        Hyperparameters(learning_rate=math.inf)
    with pytest.raises(HyperparameterError, match="is not a number"):
        Hyperparameters(learning_rate=math.nan)


def test_unknown_keys_are_rejected():
    with pytest.raises(HyperparameterError) as info:
        Hyperparameters.from_wire({"batchSize": "32"})
    assert str(info.value) == (
        "batchSize is not a hyperparameter of these models: the known keys are "
        "epochCount, learningRate, learningRateWarmupSteps"
    )


@pytest.mark.parametrize("values,kind", [([], "an array"), ("epochCount=2", "a string"), (2, "a number")])
def test_wire_map_must_be_a_map(values, kind):
    """``"hyperParameters": []`` is refused, not taken as the defaults."""
    with pytest.raises(HyperparameterError) as info:
        Hyperparameters.from_wire(values)
    assert [(p.key, p.message) for p in info.value.problems] == [
        ("hyperParameters", f'hyperParameters must be a map of strings such as {{"epochCount": "2"}}, got {kind}')
    ]


def test_missing_wire_map_means_defaults():
    assert Hyperparameters.from_wire(None) == Hyperparameters.from_wire({}) == Hyperparameters()


def test_wire_values_must_be_strings():
    _, problems = parse_wire({"epochCount": 2, "learningRate": None, "learningRateWarmupSteps": ["5"]})
    assert [p.message for p in problems] == [
        'epochCount must be a string such as "2", got a number',
        'learningRate must be a string such as "1e-05", got null',
        'learningRateWarmupSteps must be a string such as "10", got an array',
    ]


def test_every_problem_is_reported_at_once():
    _, problems = parse_wire({"epochCount": "0", "learningRate": "abc", "learningRateWarmupSteps": "21", "batchSize": "8"})
    assert [p.key for p in problems] == ["epochCount", "learningRate", "learningRateWarmupSteps", "batchSize"]


def test_construction_validates_every_field():
    with pytest.raises(HyperparameterError) as info:
        Hyperparameters(epoch_count=9, learning_rate=1.0, learning_rate_warmup_steps=-3)
    assert len(info.value.problems) == 3


def test_wire_round_trip():
    hp = Hyperparameters(4, 3e-5, 7)
    assert hp.to_wire() == {"epochCount": "4", "learningRate": "3e-05", "learningRateWarmupSteps": "7"}
    assert Hyperparameters.from_wire(hp.to_wire()) == hp
    assert hp.replace(epoch_count=1).epoch_count == 1


def test_assignments():
    values, problems = parse_assignments(["epochCount=3", "learningRate", "epochCount=4", "=5"])
    assert values == {"epochCount": "3"}
    assert [p.message for p in problems] == [
        "'learningRate' is not KEY=VALUE (e.g. epochCount=2)",
        "epochCount is given more than once",
        "'=5' is not KEY=VALUE (e.g. epochCount=2)",
    ]


def test_flags_come_from_the_table():
    assert [s.flag for s in TABLE] == ["--epochs", "--learning-rate", "--warmup-steps"]
    assert WARMUP_STEPS.as_dict()["flag"] == "--warmup-steps"
