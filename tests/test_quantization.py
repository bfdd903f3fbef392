"""--quantize (QLoRA) is refused, before any model loads, where it cannot work."""

import pytest
import torch

from tunesmith.devices import DeviceError, Placement
from tunesmith.errors import ConfigError
from tunesmith.training.quantization import check_quantization

CPU = Placement(torch.device("cpu"), "fp32")
GPU = Placement(torch.device("cuda", 0), "bf16")


def test_no_quantization_is_always_fine():
    check_quantization("none", CPU, "full")


@pytest.mark.parametrize("placement", [CPU, Placement(torch.device("mps"), "fp32")])
def test_refused_off_cuda(placement):
    with pytest.raises(DeviceError, match=rf"--quantize 4bit needs a CUDA GPU .* this run is on {placement.device.type}"):
        check_quantization("4bit", placement, "lora")


def test_refused_for_full_fine_tuning():
    with pytest.raises(ConfigError, match="use --method lora"):
        check_quantization("8bit", GPU, "full")


def test_names_the_missing_package(monkeypatch):
    import builtins

    real = builtins.__import__

    def without_bitsandbytes(name, *args, **kwargs):
        if name == "bitsandbytes":
            raise ImportError("No module named 'bitsandbytes'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_bitsandbytes)
    with pytest.raises(DeviceError, match="pip install bitsandbytes"):
        check_quantization("4bit", GPU, "lora")


def test_the_command_line_says_so_in_one_line(tmp_path, tiny_model):
    from click.testing import CliRunner

    from conftest import arithmetic, write_jsonl
    from tunesmith.cli import cli

    data = write_jsonl(tmp_path / "t.jsonl", arithmetic(10))
    result = CliRunner().invoke(cli, ["train", str(data), "--model", str(tiny_model), "--output", str(tmp_path / "o"),
                                      "--device", "cpu", "--quantize", "4bit"])
    assert result.exit_code == 1 and "--quantize 4bit needs a CUDA GPU" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()
