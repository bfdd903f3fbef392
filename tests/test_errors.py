"""Errors a user can act on print one line; anything else is a bug and keeps its traceback."""

import pytest

from tunesmith.cli.errors import user_errors
from tunesmith.datasets import DataError
from tunesmith.datasets.duplicate import DuplicationError
from tunesmith.distillation.distill import DistillationError
from tunesmith.distillation.teachers import RemoteError
from tunesmith.errors import ConfigError, TunesmithError
from tunesmith.hyperparameters import HyperparameterError
from tunesmith.models.config import ModelConfigError
from tunesmith.models.gguf_cache import ModelUnavailableError
from tunesmith.tiers import UnknownModelError
from tunesmith.training.checkpoints import CheckpointError
from tunesmith.training.config import TrainConfig
from tunesmith.training.examples import TemplateError
from tunesmith.training.run_inputs import OutputError


@pytest.mark.parametrize(
    "error",
    [ConfigError, DataError, DistillationError, HyperparameterError, ModelConfigError, OutputError, TemplateError, UnknownModelError],
)
def test_former_value_errors_are_still_value_errors(error):
    assert issubclass(error, TunesmithError) and issubclass(error, ValueError)


@pytest.mark.parametrize("error", [CheckpointError, DuplicationError, ModelUnavailableError, RemoteError])
def test_other_user_errors_share_the_base(error):
    assert issubclass(error, TunesmithError)


def test_config_checks_raise_config_error():
    with pytest.raises(ConfigError, match="method must be lora or full, got 'qlora'"):
        TrainConfig(data="d.jsonl", output="out", method="qlora")


def test_a_user_error_is_one_line(capsys):
    with pytest.raises(SystemExit) as info, user_errors():
        raise ConfigError("precision must be auto, bf16 or fp32, got 'fp8'")
    assert info.value.code == 1
    assert capsys.readouterr().err.strip() == "error: precision must be auto, bf16 or fp32, got 'fp8'"


def test_a_file_error_names_the_file(in_tmp, capsys):
    with pytest.raises(SystemExit), user_errors():
        (in_tmp / "missing" / "out.jsonl").open("w")
    assert capsys.readouterr().err.strip() == f"error: {in_tmp / 'missing' / 'out.jsonl'}: No such file or directory"


@pytest.mark.parametrize("bug", [KeyError("messages"), TypeError("unsupported operand"), ValueError("a plain ValueError is a bug")])
def test_a_bug_keeps_its_traceback(bug):
    with pytest.raises(type(bug)), user_errors():
        raise bug
