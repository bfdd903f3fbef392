"""Which attention kernel training uses.

On the CPU, PyTorch's flash-attention kernel (the ``sdpa`` default of transformers) has a
slow backward pass for the short sequences of fine-tuning data: it took 19% of a micro
LoRA step on an AMD EPYC, and the plain ("eager") matmul-softmax attention trained 1.2x to
1.5x faster in bf16 and fp32, with short and with 480-token records
(``benchmarks/README.md``). Eager attention keeps its weights (heads x length per token)
for the backward pass; ``memory.MemoryModel`` counts them when it sizes micro-batches.
GPUs keep the model's default (fused kernels are faster there).
"""

from __future__ import annotations

import torch


def choose_attention(model, device: torch.device) -> str:
    """Switch ``model`` (before PEFT wraps it) to eager attention on the CPU; returns the
    implementation in use."""
    current = getattr(model.config, "_attn_implementation", None) or "sdpa"
    if device.type != "cpu" or current == "eager":
        return current
    try:
        model.set_attn_implementation("eager")
    except (AttributeError, ValueError, ImportError):  # a model without an eager path keeps its own
        return current
    return "eager"
