"""LoRA's frozen base weights, stored in the precision they compute in.

Under bf16 autocast every frozen linear layer casts its fp32 weight to bf16 on each forward
pass, and autograd keeps that copy until the backward pass: one bf16 copy of the model per
pass alive at the step's peak (two per micro-batch with shared prefixes), on top of the fp32
weights themselves. Storing the frozen weights in bf16 once gives the very same matmuls
(autocast would have rounded them to bf16 anyway) without the copies or the fp32 originals.

The embeddings (and an output head tied to them), norms and the adapters stay fp32. The
merged model is built from the fp32 base read again from disk plus the saved adapter, so it
is exactly what an fp32 base would have given (``results.py``).
"""

from __future__ import annotations

import torch


def store_frozen_linears_in(model, dtype: torch.dtype) -> int:
    """Cast the weights of frozen ``nn.Linear`` layers (not the input embeddings or a head
    tied to them) to ``dtype``; returns how many parameters changed."""
    embedding = model.get_input_embeddings().weight
    changed = 0
    for module in model.modules():
        if type(module) is not torch.nn.Linear or module.weight.requires_grad or module.weight is embedding:
            continue
        module.weight.data = module.weight.data.to(dtype)
        changed += module.weight.numel()
    return changed
