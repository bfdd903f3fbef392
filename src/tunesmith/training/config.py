"""Typed settings of one training run (the advisor's version of them is ``advised.py``).

Each setting is declared once, with :func:`setting`: its default, its bounds and a one-line
help text. ``__post_init__`` checks the bounds and ``tunesmith.cli.options.config_options``
turns the same fields into command-line flags, so a default or a limit lives only here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tunesmith.datasets import DatasetKind
from tunesmith.datasets.duplicate import MAX_FACTOR
from tunesmith.errors import ConfigError
from tunesmith.hyperparameters import Hyperparameters

Quantize = Literal["none", "4bit", "8bit"]
"""``training.quantization`` (it imports torch; this module must not)."""

Method = Literal["lora", "full"]
Precision = Literal["auto", "bf16", "fp16", "fp32"]


def setting(
    default: Any = dataclasses.MISSING, *, help: str, minimum: float | None = None, maximum: float | None = None,
    below: float | None = None, choices: tuple[str, ...] | None = None,
) -> Any:
    """A dataclass field with its help text and bounds (inclusive ``minimum``/``maximum``,
    exclusive ``below``); ``choices`` narrows an enum to the values the command accepts."""
    bounds = {"minimum": minimum, "maximum": maximum, "below": below, "choices": choices}
    return field(default=default, metadata={"help": help, **bounds})


def setting_of(settings: type, name: str) -> Any:
    """The same setting (default, bounds, help) as field ``name`` of ``settings``, for a
    config that passes the value on (``DistillConfig.method`` -> ``TrainConfig.method``)."""
    item = next(f for f in dataclasses.fields(settings) if f.name == name)
    return field(default=item.default, metadata=item.metadata)


def check_settings(settings: Any, label: str = "") -> None:
    """Raise :class:`ConfigError` for the first field outside the bounds its :func:`setting` gives."""
    for item in dataclasses.fields(settings):
        meta, value = item.metadata, getattr(settings, item.name)
        if "help" not in meta or value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        name = f"{label}{item.name}"
        low, high, below = meta["minimum"], meta["maximum"], meta["below"]
        if low is not None and below is not None and not low <= value < below:
            raise ConfigError(f"{name} must be in [{low:g}, {below:g}), got {value}")
        if low is not None and high is not None and not low <= value <= high:
            raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {value}")
        if low is not None and value < low:
            raise ConfigError(f"{name} must be at least {low:g}, got {value}")


@dataclass
class LoraSettings:
    """LoRA on every linear projection of the decoder (PEFT's ``all-linear``)."""

    rank: int = setting(16, minimum=1, help="Rank of each adapter; 16 is plenty for narrow tasks on small models.")
    alpha: int = setting(32, minimum=1, help="Scaling numerator: updates are scaled by alpha / rank.")
    dropout: float = setting(0.0, minimum=0, below=1, help="Dropout on the adapter input.")
    """Off by default: on CPU, PEFT's dropout path copies every layer input and costs ~40% of
    the step time; 0.05 regularises tiny datasets."""

    def __post_init__(self) -> None:
        check_settings(self, "LoRA ")


@dataclass
class TrainConfig:
    """Everything ``tunesmith train`` needs; checks live in ``__post_init__``."""

    data: Path = setting(help="Training records (JSONL).")
    output: Path = setting(help="Result folder: checkpoints, metrics, adapter, merged model, manifest.")
    model: str = setting("micro", help="Tier, hosted id, configured name, result folder, HF folder or .gguf file.")
    validation: list[Path] = field(default_factory=list)
    kind: DatasetKind = setting(
        DatasetKind.FINE_TUNING, choices=(DatasetKind.FINE_TUNING.value, DatasetKind.PRETRAINING.value),
        help="Conversations to fine-tune on, or plain text to continue pre-training on.",
    )
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    hyperparameters_sent: dict[str, str] = field(default_factory=dict)
    """The values as the user gave them, for the manifest."""
    duplication: int = setting(1, minimum=1, maximum=MAX_FACTOR, help="Virtual duplication factor: each record is seen this many times per epoch.")
    """No copies are made in memory (``batches.epoch_order``)."""
    method: Method = setting("lora", help="LoRA adapters, or full fine-tuning of every weight.")
    lora: LoraSettings = field(default_factory=LoraSettings)
    max_length: int = setting(1024, minimum=8, help="Longer records are cut (and counted).")
    micro_batch_tokens: int | None = setting(
        None, minimum=64, help="Token positions per forward pass (padding included, a shared prefix counted once). "
        "Default: the most that fits --max-memory, at most 2048 on a CPU.")
    """Gradient accumulation over micro-batches reaches the effective batch; this bounds memory."""
    max_memory: float | None = setting(
        None, minimum=0.5, help="Memory budget in GB that sizes the micro-batches. Default: what transformers.Trainer "
        "(micro-batches of 16 records) would take for the same model and data.")
    """``training/memory.py`` models the peak from the model's shape; the summary reports the real one."""
    share_prefixes: bool | None = setting(
        None, help="Compute a token prefix that records of a micro-batch share (system prompt, template) once. "
        "Default: on the CPU, not on GPUs.")
    """Same loss and gradients up to float rounding (``training/shared_loss.py``). It saves compute, which is
    what limits a CPU. On an H200 it depends: with one 64-record micro-batch the extra, smaller kernels made
    steps slower (0.5x with a 20-token prompt, 0.77x with a 430-token one, at a third of the memory), while
    under the default memory budget with a 90%-shared prompt it packed more records per micro-batch and trained
    1.20-1.24x faster at a third of the GPU memory. GPUs train each record in full unless asked
    (``benchmarks/gpu_shared_prefix.py``)."""
    packing: bool | None = setting(
        None, help="Pack each micro-batch's records into one row without padding (attention kept inside each "
        "record, each row padded at its tail to a multiple of 64 tokens). Default: on CUDA, not on the CPU.")
    """Same loss and gradients up to float rounding (``training/packing.py``); the attention kernel is chosen
    by measurement (``training/packed_attention.py``). On the CPU the padded, length-grouped micro-batches with
    shared prefixes cost less: its attention kernels compute every pair of positions of a packed row."""
    seed: int = setting(0, help="Seeds the initial adapter weights, the shuffles and dropout.")
    save_every: int | None = setting(None, minimum=1, help="Also checkpoint every N optimizer steps (always at each epoch end).")
    keep_checkpoints: int = setting(2, minimum=1, help="Checkpoints kept on disk; older ones are deleted.")
    eval_every: int | None = setting(None, minimum=1, help="Also compute validation loss every N steps (always at each epoch end).")
    early_stopping_patience: int | None = setting(
        None, minimum=1, help="Stop after N validations in a row without a lower validation loss, and keep the best "
        "validation checkpoint as the model (needs --validation). Off by default: every planned epoch trains.")
    """``training/early_stopping.py``; the manifest's ``selectedCheckpoint`` says which step became the model and why."""
    device: str = setting("auto", help="auto, cpu, cuda, cuda:N or mps; auto picks CUDA, then MPS, then the CPU.")
    precision: Precision = setting(
        "auto", help="auto: bf16 on Ampere+ GPUs and CPUs with native bf16, fp16 with loss scaling on older GPUs, else fp32.")
    """On a CPU, bf16 needs AVX-512 BF16 or AMX to be faster; fp32 is exact across machines."""
    shard: bool = setting(False, help="Full fine-tuning with parameters, gradients and optimizer state split over the ranks (FSDP); needs --nproc 2+.")
    quantize: Quantize = setting("none", help="QLoRA: LoRA over a base quantized to 4 or 8 bits by bitsandbytes (CUDA only).")
    resume: bool = setting(False, help="Continue the run in the output folder from its last checkpoint.")
    private: bool = setting(False, help="Make the result folder readable by you alone (0700, files 0600). "
                            "Default: the umask's modes (typically 0755 and 0644).")
    max_grad_norm: float = 1.0
    merge: bool = True
    """Write a merged model (base + adapter) that plain transformers loads."""

    def __post_init__(self) -> None:
        self.data = Path(self.data)
        self.output = Path(self.output)
        self.validation = [Path(p) for p in self.validation]
        self.kind = DatasetKind(self.kind)
        if self.kind is DatasetKind.DISTILLATION:
            raise ConfigError("distillation data needs a teacher first: use `tunesmith distill`")
        if self.method not in ("lora", "full"):
            raise ConfigError(f"method must be lora or full, got {self.method!r}")
        if self.quantize not in ("none", "4bit", "8bit"):
            raise ConfigError(f"quantize must be none, 4bit or 8bit, got {self.quantize!r}")
        if self.precision not in ("auto", "bf16", "fp16", "fp32"):
            raise ConfigError(f"precision must be auto, bf16, fp16 or fp32, got {self.precision!r}")
        check_settings(self)
        if self.early_stopping_patience is not None and not self.validation:
            raise ConfigError("early_stopping_patience needs validation data (--validation): it watches the validation loss")
        if self.packing and self.share_prefixes:
            raise ConfigError("packing and share_prefixes are two ways to batch records: choose one (--no-share-prefixes or --no-packing)")
        if self.packing and self.shard:
            raise ConfigError("packing does not work with --shard yet: FSDP trains padded micro-batches (--no-packing)")
        if self.early_stopping_patience is not None and self.shard:
            raise ConfigError("early_stopping_patience does not work with --shard yet: drop one of them")
