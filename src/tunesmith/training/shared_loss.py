"""The target loss of a micro-batch, computing each shared prefix once.

Records of a :class:`~tunesmith.training.prefixes.PrefixGroup` begin with the same
``shared`` tokens (template header, system prompt). The decoder runs over that prefix once,
for one row; its keys and values are then repeated for every record of the group and the
decoder runs over each record's own tokens, attending to them as it would to its own
prefix. Autograd sums the gradient that reaches the repeated keys and values, so the
prefix's weights receive exactly what per-record computation would give them: the loss and
gradients equal those of :func:`tunesmith.training.loss.target_loss` up to float rounding
(``tests/test_shared_prefix.py``). Dropout is the one difference: a group shares the
prefix's dropout masks.

Positions inside the prefix predict shared tokens, except the last, which predicts each
record's first own token; each prediction is counted once per record that learns it.

Only decoders whose key/value cache is plain (every layer a ``DynamicLayer``: Llama,
Qwen, Mistral without sliding windows, ...) share prefixes; other models train each record
in full (:func:`supports_shared_prefix`).
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

from tunesmith.training import batches
from tunesmith.training.examples import Example
from tunesmith.training.head_loss import head_cross_entropy
from tunesmith.training.loss import forward_target_loss, target_loss
from tunesmith.training.prefixes import PrefixGroup, prefix_groups


def _cache_keyword(decoder) -> str | None:
    parameters = inspect.signature(decoder.forward).parameters
    return next((name for name in ("cache", "past_key_values") if name in parameters), None)


def supports_shared_prefix(model) -> bool:
    """Whether the model's decoder takes a plain dynamic key/value cache this module can extend."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    decoder = model.get_decoder()
    if _cache_keyword(decoder) is None:
        return False
    try:
        cache = DynamicCache(config=model.config)
    except (TypeError, ValueError):
        return False
    return all(type(layer) is DynamicLayer for layer in getattr(cache, "layers", [None]))


def _logits(model, hidden: torch.Tensor) -> torch.Tensor:
    logits = model.get_output_embeddings()(hidden).float()
    cap = getattr(model.config, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


def _prefix_loss(model, hidden: torch.Tensor, examples: list[Example], shared: int) -> tuple[torch.Tensor, int]:
    """Summed loss of the predictions made from prefix positions (``hidden``: 1 x shared x d)."""
    device = hidden.device
    # Positions 0..shared-2 predict shared tokens 1..shared-1: one cross-entropy each, weighted
    # by how many records learn that token.
    learners = [sum(e.targets[t + 1] for e in examples) for t in range(shared - 1)]
    positions = [t for t, n in enumerate(learners) if n]
    loss = hidden.new_zeros((), dtype=torch.float32)
    count = sum(learners)
    if positions:
        index = torch.tensor(positions, device=device)
        labels = torch.tensor([examples[0].input_ids[t + 1] for t in positions], device=device)
        weights = torch.tensor([learners[t] for t in positions], dtype=torch.float32, device=device)
        each = F.cross_entropy(_logits(model, hidden[0, index]), labels, reduction="none")
        loss = loss + (each * weights).sum()
    # The last prefix position predicts each record's first own token.
    first = [e.input_ids[shared] for e in examples if e.targets[shared]]
    if first:
        labels = torch.tensor(first, device=device)
        logits = _logits(model, hidden[0, shared - 1]).expand(len(first), -1)
        loss = loss + F.cross_entropy(logits, labels, reduction="sum")
        count += len(first)
    return loss, count


def shared_prefix_loss(model, examples: list[Example], shared: int, pad_id: int, device: torch.device) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over the target tokens of ``examples`` (which all begin with the
    same ``shared`` tokens, ``shared`` shorter than each of them), and how many there were."""
    from transformers import DynamicCache

    decoder = model.get_decoder()
    keyword = _cache_keyword(decoder)
    cache = DynamicCache(config=model.config)
    prefix = torch.tensor(examples[0].input_ids[:shared], device=device).unsqueeze(0)
    hidden = decoder(input_ids=prefix, use_cache=True, **{keyword: cache}).last_hidden_state
    loss, count = _prefix_loss(model, hidden, examples, shared)

    cache.batch_repeat_interleave(len(examples))
    own = [Example(e.input_ids[shared:], e.targets[shared:]) for e in examples]
    batch = {k: v.to(device) for k, v in batches.collate(own, pad_id).items()}
    ids, attention = batch["input_ids"], batch["attention_mask"]
    rows, width = ids.shape
    full_mask = torch.cat([attention.new_ones(rows, shared), attention], dim=1)
    positions = (torch.arange(width, device=device) + shared).unsqueeze(0).expand(rows, -1)
    hidden = decoder(
        input_ids=ids, attention_mask=full_mask, position_ids=positions, use_cache=True, **{keyword: cache}
    ).last_hidden_state
    select = batch["targets"][:, 1:] & attention[:, 1:].bool()
    labels = ids[:, 1:][select]
    loss = loss + head_cross_entropy(model, hidden[:, :-1][select], labels)
    return loss, count + int(labels.numel())


def micro_batch_loss(
    model, examples: list[Example], groups: list[PrefixGroup], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, int]:
    """Summed target loss over a micro-batch cut into prefix groups: each group with a shared
    prefix in its own two passes, the records that share nothing together in one batch."""
    alone = [examples[i] for g in groups if not g.shared for i in g.indices]
    loss, count = None, 0
    if alone:
        batch = {k: v.to(device) for k, v in batches.collate(alone, pad_id).items()}
        loss, count = target_loss(model, batch)
    for group in groups:
        if group.shared:
            part, n = shared_prefix_loss(model, [examples[i] for i in group.indices], group.shared, pad_id, device)
            loss, count = (part if loss is None else loss + part), count + n
    return loss, count


def computed_positions(examples: list[Example], groups: list[PrefixGroup]) -> int:
    """Token positions the decoder runs over for this micro-batch, padding included."""
    alone = [len(examples[i]) for g in groups if not g.shared for i in g.indices]
    total = max(alone, default=0) * len(alone)
    for g in groups:
        if g.shared:
            total += g.shared + len(g.indices) * max(len(examples[i]) - g.shared for i in g.indices)
    return total


def micro_batch_pass(
    model, examples: list[Example], token_ids: list[list[int]], group: list[int], pad_id: int, device: torch.device,
    share: bool, whole_model: bool = False,
) -> tuple[torch.Tensor, int, int]:
    """The training loop's forward over one micro-batch (``group``, indices of ``examples``):
    the summed target loss, the token positions the decoder ran over, and those a shared
    prefix saved. ``whole_model``: through the model's own forward (FSDP), never shared."""
    if share and not whole_model:
        parts = prefix_groups(token_ids, group)
        loss, _ = micro_batch_loss(model, examples, parts, pad_id, device)
        return loss, computed_positions(examples, parts), sum(p.saved_tokens for p in parts)
    batch = {k: v.to(device) for k, v in batches.collate([examples[i] for i in group], pad_id).items()}
    loss, _ = (forward_target_loss if whole_model else target_loss)(model, batch)
    return loss, batch["attention_mask"].numel(), 0
