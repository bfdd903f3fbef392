"""Padding-free micro-batches: a micro-batch's records packed into one row.

A padded micro-batch computes ``records x longest`` token positions; a packed one computes
the records' own tokens, one after another in a single row, and nothing else. Each record
still sees only itself:

- position ids restart at 0 at each record, so rotary embeddings are those of the record
  alone;
- attention stays inside each record. Which kernel keeps it there is the attention
  implementation's business (``packed_attention.py``): varlen flash attention and
  flash-attn take the records' boundaries (``cu_seq_lens``) and compute nothing across
  them; FlexAttention builds a block mask; SDPA and eager attention get the block-diagonal
  causal mask transformers derives from the restarting position ids (every pair of
  positions computed, the cross-record ones masked: the fallback).

Tail padding: the training loop pads a row at its tail to a multiple of :data:`ALIGN`
positions; :func:`bucket_size` gives the fixed *buckets* (eight sizes per budget) that
compiled kernels and CUDA graphs need, for when they are used (:func:`packed_width`). Either
tail is a sequence of its own (positions from 0, no targets), so it changes no record's loss.

The loss is the padded path's, :func:`tunesmith.training.loss.target_loss`: summed
cross-entropy over the target tokens, logits only where a target is predicted. Which
positions those are is worked out here on the host, as an index, so the step needs no
boolean indexing on the device (a host sync per micro-batch). ``tests/test_packing.py``
checks loss and gradients against the padded path within 1e-5 in fp32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tunesmith.training.examples import Example
from tunesmith.training.head_loss import head_cross_entropy

BUCKETS = 8
"""Shapes per micro-batch budget: a packed row is padded to the next eighth of it."""
ALIGN = 64
"""Bucket sizes are multiples of this (tensor-core friendly)."""


def bucket_size(tokens: int, micro_batch_tokens: int, buckets: int = BUCKETS) -> int:
    """The length a packed row of ``tokens`` is padded to: the smallest of ``buckets`` evenly
    spaced sizes up to the budget (rounded up to :data:`ALIGN`) that holds it. A row longer
    than the budget (a single record over it) is rounded up to :data:`ALIGN` alone."""
    step = -(-max(micro_batch_tokens, 1) // buckets)
    step = -(-step // ALIGN) * ALIGN
    return max(step, -(-tokens // step) * step)


@dataclass(frozen=True)
class PackedBatch:
    """One packed row and what the loss needs of it (all tensors on one device)."""

    input_ids: torch.Tensor
    """1 x width token ids: the records, then the tail's pad ids."""
    position_ids: torch.Tensor
    """1 x width: 0, 1, ... within each record and within the tail."""
    cu_seq_lens: torch.Tensor
    """int32, sequences + 1: where each sequence (the records, then the tail if any) starts, and the width."""
    max_length: int
    """The longest sequence of the row."""
    predict_at: torch.Tensor
    """Positions whose next token (same record) is a target, in order."""
    labels: torch.Tensor
    """The target token predicted at each of ``predict_at``."""
    tokens: int
    """Real (record) tokens in the row; the rest is tail padding."""

    @property
    def width(self) -> int:
        return self.input_ids.shape[1]

    def to(self, device: torch.device) -> PackedBatch:
        """On ``device``; from pinned host memory without waiting, on CUDA."""
        if device.type != "cuda":
            return self if self.input_ids.device == device else self._map(lambda t: t.to(device))
        return self._map(lambda t: t.pin_memory().to(device, non_blocking=True))

    def _map(self, move) -> PackedBatch:
        return PackedBatch(
            move(self.input_ids), move(self.position_ids), move(self.cu_seq_lens), self.max_length,
            move(self.predict_at), move(self.labels), self.tokens,
        )


def pack(examples: list[Example], pad_id: int, width: int | None = None) -> PackedBatch:
    """``examples`` one after another in one row, padded at the tail to ``width`` (at least
    their total length; default: no padding)."""
    ids: list[int] = []
    positions: list[int] = []
    starts = [0]
    predict_at: list[int] = []
    labels: list[int] = []
    for example in examples:
        start, n = len(ids), len(example)
        ids.extend(example.input_ids)
        positions.extend(range(n))
        starts.append(start + n)
        for t in range(n - 1):
            if example.targets[t + 1]:
                predict_at.append(start + t)
                labels.append(example.input_ids[t + 1])
    tokens = len(ids)
    width = max(width or tokens, tokens)
    if width > tokens:
        ids.extend([pad_id] * (width - tokens))
        positions.extend(range(width - tokens))
        starts.append(width)
    lengths = [b - a for a, b in zip(starts, starts[1:])]
    return PackedBatch(
        input_ids=torch.tensor([ids], dtype=torch.long),
        position_ids=torch.tensor([positions], dtype=torch.long),
        cu_seq_lens=torch.tensor(starts, dtype=torch.int32),
        max_length=max(lengths),
        predict_at=torch.tensor(predict_at, dtype=torch.long),
        labels=torch.tensor(labels, dtype=torch.long),
        tokens=tokens,
    )


def packed_width(examples: list[Example], group: list[int], micro_batch_tokens: int, static: bool, aligned: bool = True) -> int:
    """Token positions a packed micro-batch of ``group`` computes: its bucket when ``static``,
    else its records' total, rounded up to :data:`ALIGN` when ``aligned``.

    The training loop aligns and does not bucket: a bucket's tail costs up to an eighth of the
    budget per micro-batch (on a GPU's large budgets, thousands of positions), which only pays
    when compiled kernels or CUDA graphs need the few fixed shapes, and neither is used until a
    GPU measurement shows it faster (``benchmarks/README.md``)."""
    tokens = sum(len(examples[i]) for i in group)
    if static:
        return bucket_size(tokens, micro_batch_tokens)
    return -(-tokens // ALIGN) * ALIGN if aligned else tokens


def sequence_kwargs(batch: PackedBatch) -> dict:
    """The records' boundaries as transformers' flash-attention keyword arguments, which the
    decoder passes to its attention function (``packed_attention.varlen_attention`` and
    flash-attn read them; other implementations ignore them)."""
    return {
        "cu_seq_lens_q": batch.cu_seq_lens, "cu_seq_lens_k": batch.cu_seq_lens,
        "max_length_q": batch.max_length, "max_length_k": batch.max_length,
    }


def packed_target_loss(model, batch: PackedBatch, boundaries: bool = False) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over the packed records' target tokens, and how many there were.
    ``boundaries``: pass the records' boundaries to the attention function as well (the
    varlen and flash-attn kernels need them; the masks of the others come from the position ids)."""
    extra = sequence_kwargs(batch) if boundaries else {}
    hidden = model.get_decoder()(
        input_ids=batch.input_ids, position_ids=batch.position_ids, attention_mask=None, use_cache=False, **extra
    ).last_hidden_state
    return head_cross_entropy(model, hidden[0].index_select(0, batch.predict_at), batch.labels), int(batch.labels.numel())
