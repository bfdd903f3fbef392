"""Micro-batches that hold the records of several jobs, each job's records together.

A group of jobs training over one base model (``multi_adapter/trainer.py``) runs one forward and
backward per micro-batch for all of them. This module cuts a step's records, across jobs,
into micro-batches within the token budget, and lays each one out for the forward pass:
which rows (padded) or token ranges (packed) belong to which job's adapter
(``segments.Segments``), and, per job, the positions whose next token is a target
and those targets, worked out on the host so the loss needs no boolean indexing on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from tunesmith.multi_adapter.segments import Segments
from tunesmith.training import batches, packing
from tunesmith.training.examples import Example

Item = tuple[str, int]
"""A record of a job: (the job's adapter name, the record's index in that job's examples)."""


def mixed_micro_batches(
    items: Sequence[Item], examples: dict[str, list[Example]], micro_batch_tokens: int, packed: bool, order: Sequence[str]
) -> list[list[Item]]:
    """``items`` cut into micro-batches as a run of its own cuts its records
    (:func:`batches.micro_batches`: longest first, within ``micro_batch_tokens`` of padded
    positions, or of the records' own tokens when ``packed``); inside each, the jobs in
    ``order`` and each job's records longest first."""
    records = [examples[name][index] for name, index in items]
    cost = (lambda group: sum(len(records[k]) for k in group)) if packed else None
    groups = batches.micro_batches(list(range(len(items))), records, micro_batch_tokens, cost)
    rank = {name: n for n, name in enumerate(order)}
    return [[items[k] for k in sorted(group, key=lambda k: (rank[items[k][0]], -len(records[k])))] for group in groups]


@dataclass(frozen=True)
class MixedBatch:
    """One micro-batch of several jobs, ready for the decoder."""

    inputs: dict[str, torch.Tensor]
    """Keyword arguments of the decoder's forward (ids and an attention mask, or ids and positions)."""
    segments: Segments
    predict_at: dict[str, torch.Tensor]
    """Per job: positions of the flattened hidden states whose next token is a target."""
    labels: dict[str, torch.Tensor]
    tokens: dict[str, int]
    """Per job: its records' tokens in this micro-batch."""
    computed: int
    """Token positions the decoder runs over (padding included)."""

    def to(self, device: torch.device) -> MixedBatch:
        move = (lambda t: t.pin_memory().to(device, non_blocking=True)) if device.type == "cuda" else (lambda t: t.to(device))
        return MixedBatch(
            {k: move(v) if isinstance(v, torch.Tensor) else v for k, v in self.inputs.items()}, self.segments, {k: move(v) for k, v in self.predict_at.items()},
            {k: move(v) for k, v in self.labels.items()}, self.tokens, self.computed,
        )


def _jobs_in_order(group: list[Item]) -> list[str]:
    return list(dict.fromkeys(name for name, _ in group))


def lay_out(group: list[Item], examples: dict[str, list[Example]], pad_id: int, packed: bool, stacked: bool,
            boundaries: bool = False) -> MixedBatch:
    """The micro-batch ``group`` (jobs already together, as :func:`mixed_micro_batches` orders them).
    ``boundaries``: a packed row also carries its records' boundaries, for the attention kernels
    that read them (``packing.sequence_kwargs``)."""
    records = [examples[name][index] for name, index in group]
    owners = [name for name, _ in group]
    jobs = _jobs_in_order(group)
    tokens = {name: sum(len(r) for r, owner in zip(records, owners) if owner == name) for name in jobs}
    if packed:
        row = packing.pack(records, pad_id, -(-sum(tokens.values()) // packing.ALIGN) * packing.ALIGN)
        lengths = [tokens[name] for name in jobs]
        lengths[-1] += row.width - row.tokens  # the tail belongs to the last job's segment (it has no targets)
        segments = Segments.of(list(zip(jobs, lengths)), dim=1, stacked=stacked)
        predictions = [sum(r.targets[1:]) for r in records]
        predict_at, labels, start = {}, {}, 0
        for name in jobs:
            count = sum(p for p, owner in zip(predictions, owners) if owner == name)
            predict_at[name], labels[name] = row.predict_at[start : start + count], row.labels[start : start + count]
            start += count
        inputs = {"input_ids": row.input_ids, "position_ids": row.position_ids, "attention_mask": None,
                  **(packing.sequence_kwargs(row) if boundaries else {})}
        return MixedBatch(inputs, segments, predict_at, labels, tokens, row.width)
    batch = batches.collate(records, pad_id)
    width = batch["input_ids"].shape[1]
    rows = [sum(1 for owner in owners if owner == name) for name in jobs]
    segments = Segments.of(list(zip(jobs, rows)), dim=0, stacked=stacked)
    predict_at, labels = {}, {}
    for name in jobs:
        at, wanted = [], []
        for row, (record, owner) in enumerate(zip(records, owners)):
            if owner != name:
                continue
            for t in range(len(record) - 1):
                if record.targets[t + 1]:
                    at.append(row * width + t)
                    wanted.append(record.input_ids[t + 1])
        predict_at[name], labels[name] = torch.tensor(at, dtype=torch.long), torch.tensor(wanted, dtype=torch.long)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    return MixedBatch(inputs, segments, predict_at, labels, tokens, batch["input_ids"].numel())
