"""How much memory training takes: the peak so far, and a micro-batch size that fits a budget.

On the CPU the peak is the process's peak resident set (``ru_maxrss``), the figure a user
sees in ``top``; on CUDA it is the peak the caching allocator handed out.
"""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass

import torch


def peak_memory_mb(device: torch.device | None = None) -> float:
    """The process's peak memory in MB: GPU memory on CUDA, resident set elsewhere."""
    if device is not None and device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)  # bytes on macOS, KiB on Linux


RUNTIME_MB = 1150
"""Python, torch, tokenizer and allocator overhead of a training process beyond the model's
tensors (measured: SmolLM2-135M LoRA, the intercept of peak RSS against micro-batch size)."""
SAFETY = 0.8
"""Micro-batches take this share of the budget left after the fixed part: measured peaks ran
up to 5% above the estimate, and the allocator's footprint grows a little over the first steps."""
MAX_MICRO_BATCH_TOKENS = {"cpu": 2048, "cuda": 65536}
"""Larger micro-batches were no faster on 2-core CPUs (``benchmarks/README.md``). A GPU runs
fastest on big ones (on an H200, micro trained 4.3x faster with 8,192-token micro-batches than
with the 2,147 the peer's CPU footprint gave, and a little faster again at 32,768); past 65,536
a step of even the longest tier's records fits one micro-batch."""
CUDA_FREE_SHARE = 0.9
"""On CUDA the default budget is what the run holds already plus this share of the device's
free memory: the rest is left for the allocator's fragmentation and other processes."""
MIN_MICRO_BATCH_TOKENS = 64


@dataclass(frozen=True)
class MemoryModel:
    """What a training process of one model holds, in bytes, as a function of its micro-batch.

    Fitted on SmolLM2-135M with LoRA on an AMD EPYC, from the peak RSS of the training loop
    at several micro-batch sizes (token positions computed): about 1.4 MB per position in
    bf16 (frozen base in bf16) and 2.8-3.5 MB in fp32, about 1.6 GB fixed; and from
    ``transformers.Trainer``'s peaks on the same data (3.6 GB in bf16 and 4.4 GB in fp32 with
    16 records of ~75 tokens, 16.7 GB in bf16 with 16 of ~480). Written in terms of the
    model's shape so that it scales to other models; the factors are those measurements.
    """

    fixed: float
    """Weights, gradients and optimizer state of the trainable ones, runtime."""
    per_token: float
    """Activations kept for the backward pass, per token position of a micro-batch."""
    peer_per_token: float
    """The same for the peer, whose attention kernel and loss keep less per position..."""
    logits_per_token: float
    """...but whose full-vocabulary logits, log-softmax and their gradient add this."""

    @classmethod
    def of(cls, model, precision: str, longest: int, eager_attention: bool, runtime: bool = True) -> MemoryModel:
        """``runtime``: count the process's own overhead (CPU memory, not GPU memory)."""
        config = model.config
        config = getattr(config, "text_config", None) or config
        layers, hidden = config.num_hidden_layers, config.hidden_size
        intermediate = getattr(config, "intermediate_size", 4 * hidden)
        heads = config.num_attention_heads
        parameters = sum(p.numel() * p.element_size() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        low = precision in ("bf16", "fp16")
        shape = (12 * hidden + 5 * intermediate) * 4  # fp32 bytes of the tensors one layer keeps per position
        per_layer = shape * (0.8 if low else 1.9)  # measured: low precision keeps many fp32 tensors, fp32 more than twice
        if eager_attention:  # the attention weights (fp32 softmax and its low-precision copy) per query
            per_layer += heads * longest * (6 if low else 8)
        return cls(
            fixed=parameters + 16 * trainable + (RUNTIME_MB * 2**20 if runtime else 0),
            per_token=layers * per_layer,
            peer_per_token=layers * shape * (0.82 if low else 1.18),
            logits_per_token=config.vocab_size * 4 * 3,
        )

    def peak(self, micro_batch_tokens: int) -> float:
        return self.fixed + self.per_token * micro_batch_tokens

    def peer_peak(self, records_per_micro_batch: int, longest: int) -> float:
        """A ``transformers.Trainer`` run of the same model: micro-batches of that many records
        padded to the longest, whole-vocabulary logits."""
        tokens = records_per_micro_batch * longest
        return self.fixed + (self.peer_per_token + self.logits_per_token) * tokens

    def micro_batch_tokens(self, budget: float, cap: int | None = None) -> int:
        """The largest micro-batch (padded tokens) that keeps the peak within ``budget`` bytes,
        at most ``cap``; 0 when not even the smallest fits."""
        tokens = int(SAFETY * (budget - self.fixed) / self.per_token)
        return min(tokens, cap or tokens) if tokens >= MIN_MICRO_BATCH_TOKENS else 0


PEER_RECORDS_PER_MICRO_BATCH = 16


@dataclass(frozen=True)
class MicroBatchSize:
    """The micro-batch a run uses, and why."""

    tokens: int
    budget_mb: float
    """The memory budget it was fitted to (the peer's estimated peak when none was given)."""
    estimated_peak_mb: float
    warning: str | None = None
    reason: str = ""
    """Why this size, in words (``estimate`` and the run's ``start`` event show it)."""


def cuda_budget(device: torch.device) -> tuple[float, str]:
    """The default memory budget on a CUDA device, in bytes, and where it came from: what this
    process holds there now (the model) plus :data:`CUDA_FREE_SHARE` of the free memory."""
    free, total = torch.cuda.mem_get_info(device)
    held = torch.cuda.memory_allocated(device)
    name = torch.cuda.get_device_name(device)
    budget = held + CUDA_FREE_SHARE * free
    return budget, (f"{CUDA_FREE_SHARE:.0%} of the {free / 2**30:.1f} GB free on {name} ({total / 2**30:.0f} GB) "
                    f"plus the {held / 2**30:.1f} GB the model holds")


def fit_micro_batch(
    model, placement, lengths: list[int], eager_attention: bool, max_memory_gb: float | None, fixed_tokens: int | None
) -> MicroBatchSize:
    """The micro-batch size for a run over records of ``lengths`` on ``placement`` (a
    ``devices.Placement``): ``fixed_tokens`` if given, else the largest that fits
    ``max_memory_gb``. Without one, the budget follows the device: on CUDA the device's free
    memory (:func:`cuda_budget`; GPU memory throughout), elsewhere the peer's peak for the
    same data (the process's resident memory)."""
    ordered = sorted(lengths)
    longest, typical = ordered[-1], ordered[int(0.9 * (len(ordered) - 1))]
    device = placement.device.type
    memory = MemoryModel.of(model, placement.precision, longest, eager_attention, runtime=device != "cuda")
    cap = MAX_MICRO_BATCH_TOKENS.get(device)
    if max_memory_gb:
        budget, reason = max_memory_gb * 2**30, f"the most that fits --max-memory {max_memory_gb:g} GB"
    elif device == "cuda":
        budget, where = cuda_budget(placement.device)
        reason = f"the most that fits {where}"
    else:
        budget = memory.peer_peak(PEER_RECORDS_PER_MICRO_BATCH, typical)
        reason = (f"the most that fits the memory transformers.Trainer would take for this data "
                  f"({PEER_RECORDS_PER_MICRO_BATCH} records per micro-batch)")
    tokens = fixed_tokens or memory.micro_batch_tokens(budget, cap)
    if fixed_tokens:
        reason = f"--micro-batch-tokens {fixed_tokens}"
    elif cap and tokens == cap:
        reason += f", capped at {cap:,} on {device} (larger ones are no faster there)"
    warning = None
    if not tokens:
        tokens = max(MIN_MICRO_BATCH_TOKENS, longest)
        warning = (f"--max-memory {budget / 2**30:.1f} GB is below the estimated {memory.peak(tokens) / 2**30:.1f} GB "
                   f"this model needs for one record of {longest} tokens; training with that anyway")
    if tokens < longest:
        reason += f", raised to the longest record ({longest} tokens)"
    tokens = max(tokens, longest)  # a record is never split: its micro-batch holds at least it
    return MicroBatchSize(tokens, round(budget / 2**20), round(memory.peak(tokens) / 2**20), warning, reason)
