"""Cross-entropy through the output projection, a chunk of positions at a time.

The logits of a 49k-token vocabulary are the largest tensors of a small model's step:
1,000 target positions hold 200 MB of fp32 logits, and autograd keeps the logits, their
log-softmax and, in the backward pass, their gradient, at the moment the decoder's own
activations peak. Here the forward pass computes each chunk's logits, its loss and at once
its gradient with respect to the hidden states (and to the projection, when it trains),
then frees them: the step keeps only that gradient, one hidden-sized row per position.

Equal to ``F.cross_entropy(head(hidden).float(), labels, reduction="sum")`` up to float
rounding, under autocast too (the matmuls run in the autocast dtype, the softmax in fp32);
``tests/test_head_loss.py`` checks it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CHUNK = 256
"""Positions per chunk: 256 x 49,152 fp32 logits are 48 MB."""


def _compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    kind = tensor.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else tensor.dtype


class _ChunkedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, labels, softcap, dtype):
        with torch.autocast(hidden.device.type, enabled=False):
            w = weight.detach().to(dtype)
            grad_hidden = torch.empty(hidden.shape, dtype=dtype, device=hidden.device)
            grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if weight.requires_grad else None
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            for start in range(0, hidden.shape[0], CHUNK):
                h = hidden[start : start + CHUNK].detach().to(dtype)
                target = labels[start : start + CHUNK]
                logits = (h @ w.T).float()
                if softcap:
                    squashed = torch.tanh(logits / softcap)
                    logits = squashed * softcap
                total += F.cross_entropy(logits, target, reduction="sum")
                grad = torch.softmax(logits, dim=-1)
                grad[torch.arange(len(target), device=grad.device), target] -= 1
                if softcap:
                    grad *= 1 - squashed * squashed
                del logits
                grad = grad.to(dtype)
                grad_hidden[start : start + CHUNK] = grad @ w
                if grad_weight is not None:
                    grad_weight += (grad.T @ h).float()
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.hidden_dtype, ctx.weight_dtype = hidden.dtype, weight.dtype
        return total

    @staticmethod
    def backward(ctx, grad_output):
        grad_hidden, grad_weight = ctx.saved_tensors
        g_hidden = (grad_hidden * grad_output).to(ctx.hidden_dtype)
        g_weight = (grad_weight * grad_output).to(ctx.weight_dtype) if grad_weight is not None else None
        return g_hidden, g_weight, None, None, None


def fused_head_applies(head) -> bool:
    """The output projection is a plain bias-free ``nn.Linear`` (not wrapped by an adapter)."""
    return type(head) is torch.nn.Linear and head.bias is None


def head_cross_entropy(model, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of ``labels`` given ``hidden`` (positions x hidden size) through
    the model's output projection (and its final logit soft-capping, if it has one)."""
    head = model.get_output_embeddings()
    cap = getattr(model.config, "final_logit_softcapping", None)
    if not fused_head_applies(head) or not torch.is_grad_enabled():
        logits = head(hidden).float()
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return F.cross_entropy(logits, labels, reduction="sum")
    return _ChunkedCrossEntropy.apply(hidden, head.weight, labels, cap, _compute_dtype(hidden))
