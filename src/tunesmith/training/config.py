"""Typed settings of one training run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tunesmith.datasets import DatasetKind
from tunesmith.hyperparameters import Hyperparameters

Method = Literal["lora", "full"]
Precision = Literal["auto", "bf16", "fp32"]


@dataclass
class LoraSettings:
    """LoRA on every linear projection of the decoder (PEFT's ``all-linear``)."""

    rank: int = 16
    """Rank of each adapter; 16 is plenty for narrow tasks on small models."""
    alpha: int = 32
    """Scaling numerator: updates are scaled by alpha / rank = 2."""
    dropout: float = 0.0
    """Dropout on the adapter input. Off by default: on CPU, PEFT's dropout path copies
    every layer input and costs ~40% of the step time; 0.05 regularises tiny datasets."""

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"LoRA rank must be at least 1, got {self.rank}")
        if self.alpha < 1:
            raise ValueError(f"LoRA alpha must be at least 1, got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout}")


@dataclass
class TrainConfig:
    """Everything ``tunesmith train`` needs; checks live in ``__post_init__``."""

    data: Path
    """Training records (JSONL)."""
    output: Path
    """Result folder: checkpoints, metrics, adapter, merged model, manifest."""
    model: str = "micro"
    """Tier, hosted id, configured name, result folder, HF folder or .gguf file."""
    validation: list[Path] = field(default_factory=list)
    kind: DatasetKind = DatasetKind.FINE_TUNING
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    hyperparameters_sent: dict[str, str] = field(default_factory=dict)
    """The values as the user gave them, for the manifest."""
    duplication: int = 1
    """Each record is seen this many times per epoch (virtually: no copies in memory)."""
    method: Method = "lora"
    lora: LoraSettings = field(default_factory=LoraSettings)
    max_length: int = 1024
    """Longer records are cut (and counted in a warning)."""
    micro_batch_tokens: int = 2048
    """Padded tokens per forward pass; gradient accumulation reaches the effective batch."""
    seed: int = 0
    save_every: int | None = None
    """Also checkpoint every N optimizer steps (always at each epoch end)."""
    keep_checkpoints: int = 2
    eval_every: int | None = None
    """Also compute validation loss every N steps (always at each epoch end)."""
    precision: Precision = "auto"
    """``auto`` uses bf16 autocast where the CPU has native bf16 (AVX-512 BF16/AMX), else fp32."""
    resume: bool = False
    max_grad_norm: float = 1.0
    merge: bool = True
    """Write a merged model (base + adapter) that plain transformers loads."""

    def __post_init__(self) -> None:
        self.data = Path(self.data)
        self.output = Path(self.output)
        self.validation = [Path(p) for p in self.validation]
        self.kind = DatasetKind(self.kind)
        if self.kind is DatasetKind.DISTILLATION:
            raise ValueError("distillation data needs a teacher first: use `tunesmith distill`")
        if self.method not in ("lora", "full"):
            raise ValueError(f"method must be lora or full, got {self.method!r}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be auto, bf16 or fp32, got {self.precision!r}")
        for name in ("duplication", "max_length", "micro_batch_tokens", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("save_every", "eval_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
