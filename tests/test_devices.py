"""Device and precision choice (``tunesmith.devices``), with CUDA and MPS mocked: no GPU needed."""

import pytest
import torch

from tunesmith import devices
from tunesmith.devices import DeviceError, place, resolve_device
from tunesmith.errors import TunesmithError


@pytest.fixture
def machine(monkeypatch):
    """A machine with ``cuda`` GPUs of compute capability ``capability``, MPS or not, and a
    CPU with or without native bf16 (nothing real is asked)."""

    def build(cuda: int = 0, capability: tuple[int, int] = (8, 0), name: str = "NVIDIA A100", mps: bool = False,
              native_bf16: bool = False) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
        monkeypatch.setattr(devices, "mps_available", lambda: mps)
        monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: native_bf16)

    return build


def test_cuda_with_bf16_trains_in_bf16(machine):
    machine(cuda=2, capability=(8, 0))
    chosen = place()
    assert chosen.device == torch.device("cuda", 0)
    assert (chosen.precision, chosen.autocast_dtype, chosen.needs_grad_scaler) == ("bf16", torch.bfloat16, False)
    assert chosen.describe() == {"device": "cuda:0", "precision": "bf16"}
    assert chosen.warnings == ()


def test_older_cuda_trains_in_fp16_with_loss_scaling(machine):
    machine(cuda=1, capability=(7, 5), name="Tesla T4")
    chosen = place("cuda")
    assert (chosen.precision, chosen.autocast_dtype, chosen.needs_grad_scaler) == ("fp16", torch.float16, True)
    with pytest.raises(DeviceError, match=r"^--precision bf16: Tesla T4 has no bf16 support \(Ampere or newer needed\); use fp16 or auto$"):
        place("cuda", "bf16")
    assert place("cuda", "fp32").precision == "fp32"


def test_cpu_with_native_bf16_uses_bf16_autocast(machine):
    machine(native_bf16=True)
    chosen = place()
    assert chosen.device == torch.device("cpu")
    assert (chosen.precision, chosen.autocast_dtype, chosen.needs_grad_scaler) == ("bf16", torch.bfloat16, False)


def test_cpu_without_native_bf16_uses_fp32(machine):
    machine(native_bf16=False)
    chosen = place("auto")
    assert (chosen.device, chosen.precision, chosen.autocast_dtype) == (torch.device("cpu"), "fp32", None)
    assert place("cpu", "fp32").warnings == ()


def test_mps_uses_fp32(machine):
    machine(mps=True, native_bf16=True)
    chosen = place()
    assert (chosen.device, chosen.precision, chosen.needs_grad_scaler) == (torch.device("mps"), "fp32", False)
    assert place("mps", "fp16").precision == "fp16"
    with pytest.raises(DeviceError, match=r"^--precision bf16 is not supported on MPS here"):
        place("mps", "bf16")


def test_auto_prefers_cuda_then_mps_then_cpu(machine):
    machine(cuda=1, mps=True)
    assert resolve_device("auto").type == "cuda"
    machine(cuda=0, mps=True)
    assert resolve_device("auto").type == "mps"
    machine(cuda=0, mps=False)
    assert resolve_device("auto").type == "cpu"
    assert resolve_device(" CPU ") == torch.device("cpu")


def test_bf16_on_a_cpu_without_native_bf16_warns_in_numbers(machine, monkeypatch):
    machine(native_bf16=False)
    monkeypatch.setattr(devices, "measure_cpu_matmul", lambda: {"fp32": 115.0, "bf16": 1.5})
    chosen = place("cpu", "bf16")
    assert chosen.precision == "bf16"
    assert chosen.warnings == (
        "--precision bf16 on a CPU without native bf16: bf16 matmuls are emulated here, measured just now at 1.5 GFLOP/s "
        "against 115.0 GFLOP/s in fp32, so this run would be about 77x slower than with --precision fp32 (or auto)",
    )


def test_the_warning_measures_this_cpu(machine):
    machine(native_bf16=False)
    [warning] = place("cpu", "bf16").warnings
    assert " GFLOP/s against " in warning and "x slower than with --precision fp32" in warning
    speed = devices.measure_cpu_matmul(size=64, repeats=1)
    assert set(speed) == {"fp32", "bf16"} and all(value > 0 for value in speed.values())


def test_no_warning_where_bf16_is_native(machine):
    machine(native_bf16=True)
    assert place("cpu", "bf16").warnings == ()


@pytest.mark.parametrize(
    "device,cuda,message",
    [
        ("cuda:2", 2, "--device cuda:2: this machine has 2 CUDA device(s)"),
        ("cuda:1", 0, "--device cuda:1: no CUDA device is available (torch "),
        ("cuda", 0, "--device cuda: no CUDA device is available"),
        ("cuda:x", 1, "--device 'cuda:x': N in cuda:N must be a number"),
        ("cuda:-1", 1, "--device 'cuda:-1': N in cuda:N must be 0 or more"),
        ("mps", 0, "--device mps: Apple's MPS backend is not available on this machine"),
        ("gpu", 1, "--device 'gpu' is not auto, cpu, cuda, cuda:N or mps"),
        ("tpu:0", 0, "--device 'tpu:0' is not auto, cpu, cuda, cuda:N or mps"),
    ],
)
def test_impossible_devices_are_refused(machine, device, cuda, message):
    machine(cuda=cuda)
    with pytest.raises(DeviceError) as caught:
        place(device)
    assert str(caught.value).startswith(message)


def test_impossible_precisions_are_refused(machine):
    machine()
    with pytest.raises(DeviceError, match=r"^--precision 'fp8' is not one of auto, bf16, fp16, fp32$"):
        place("cpu", "fp8")
    with pytest.raises(DeviceError, match=r"^--precision fp16 is not supported on the CPU"):
        place("cpu", "fp16")


def test_cuda_n_picks_that_gpu(machine):
    machine(cuda=4)
    assert place("cuda:3").device == torch.device("cuda", 3)


def test_device_error_is_a_user_error():
    assert issubclass(DeviceError, TunesmithError) and issubclass(DeviceError, ValueError)


@pytest.mark.parametrize("command", [["chat"], ["generate", "--data", "d.jsonl", "--out", "o.jsonl"], ["evaluate", "--data", "d.jsonl"],
                                     ["refine", "d.jsonl", "--with", "micro", "--out", "o.jsonl"]])
def test_commands_show_a_device_error_in_one_line(in_tmp, machine, command):
    from click.testing import CliRunner

    from conftest import arithmetic, write_jsonl
    from tunesmith.cli import cli

    machine(cuda=0)
    write_jsonl(in_tmp / "d.jsonl", arithmetic(10))
    result = CliRunner().invoke(cli, [*command, "--model", "micro", "--device", "cuda:1"] if command[0] != "refine"
                                else [*command, "--device", "cuda:1"])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: --device cuda:1: no CUDA device is available")
    assert len(result.output.strip().splitlines()) == 1


def test_device_is_an_option_of_every_command_that_runs_a_model():
    from tunesmith.cli import COMMANDS, cli

    for name in ("evaluate", "generate", "chat", "refine", "decide", "quickstart", "serve"):
        options = {opt for param in cli.get_command(None, name).params for opt in param.opts}
        assert "--device" in options, name
    assert set(COMMANDS) >= {"evaluate", "generate", "chat", "refine", "decide", "quickstart", "serve"}


def test_generation_in_an_explicit_fp32_placement_equals_generation_without_one(tiny_model):
    from tunesmith.evaluation.generation import GenerationSettings, generate
    from tunesmith.models.loading import load_model, load_tokenizer
    from tunesmith.models.registry import resolve_model

    source = resolve_model(str(tiny_model))
    model, tokenizer = load_model(source, device=torch.device("cpu")), load_tokenizer(source)
    chats = [[{"role": "user", "content": f"What is {i} plus {i}?"}] for i in range(3)]
    settings = GenerationSettings(max_new_tokens=6)
    plain = generate(model, tokenizer, chats, settings)
    assert generate(model, tokenizer, chats, settings, placement=place("cpu", "fp32")) == plain


def test_evaluate_runs_on_the_device_it_is_given(tmp_path, tiny_model, machine):
    from conftest import arithmetic, write_jsonl
    from tunesmith.evaluation.evaluate import evaluate
    from tunesmith.evaluation.generation import GenerationSettings

    machine(cuda=0, mps=False)
    write_jsonl(tmp_path / "d.jsonl", arithmetic(4))
    settings = GenerationSettings(max_new_tokens=4)
    result = evaluate(str(tiny_model), tmp_path / "d.jsonl", settings, device="cpu", precision="fp32")
    assert result.records == 4 and result.loss > 0
    with pytest.raises(DeviceError, match="^--device mps: Apple's MPS backend is not available"):
        evaluate(str(tiny_model), tmp_path / "d.jsonl", settings, device="mps")
