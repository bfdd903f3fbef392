"""Loss on target tokens only, computing logits only where the loss needs them.

The output projection of a small model is a large share of its compute (SmolLM2-135M:
576 x 49,152 per token). Running the decoder, then the head on just the positions whose
next token is a target, skips that work for prompts and padding.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from tunesmith.devices import Placement
from tunesmith.training.head_loss import head_cross_entropy


def target_loss(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over target tokens, and how many there were."""
    ids, attention = batch["input_ids"], batch["attention_mask"]
    hidden = model.get_decoder()(input_ids=ids, attention_mask=attention, use_cache=False).last_hidden_state
    select = batch["targets"][:, 1:] & attention[:, 1:].bool()
    labels = ids[:, 1:][select]
    return head_cross_entropy(model, hidden[:, :-1][select], labels), int(labels.numel())


def forward_target_loss(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """:func:`target_loss` through the model's own ``forward`` (every position's logits): for
    FSDP, which gathers parameters in forward hooks that calling submodules would skip."""
    ids, attention = batch["input_ids"], batch["attention_mask"]
    logits = model(input_ids=ids, attention_mask=attention, use_cache=False).logits
    select = batch["targets"][:, 1:] & attention[:, 1:].bool()
    labels = ids[:, 1:][select]
    return F.cross_entropy(logits[:, :-1][select].float(), labels, reduction="sum"), int(labels.numel())


def dataset_loss(model, examples, pad_id: int, micro_batch_tokens: int, placement: Placement | None = None) -> float:
    """Mean loss per target token over ``examples`` (no gradients; eval mode restored after),
    on the model's device, in ``placement``'s precision (fp32 when None)."""
    from tunesmith.training import batches

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for group in batches.micro_batches(list(range(len(examples))), examples, micro_batch_tokens):
            batch = {k: v.to(device) for k, v in batches.collate([examples[i] for i in group], pad_id).items()}
            with placement.autocast() if placement is not None else contextlib.nullcontext():
                loss_sum, n = target_loss(model, batch)
            total, count = total + loss_sum.item(), count + n
    model.train(was_training)
    return total / count if count else float("nan")
