"""Which records each optimizer step trains on, and how they are cut into micro-batches.

Duplication is virtual: an epoch over K copies of N records is K shuffles of the N record
indices, one after another; nothing is copied in memory. Where a batch straddles the seam
between two shuffles, the next shuffle starts with records not already in that batch, so
two copies of a record never share a batch when N is at least the batch size (below that
they cannot all be kept apart).

Within an optimizer step the records are sorted by length and grouped into micro-batches
of at most ``micro_batch_tokens`` computed token positions (padding included; a shared prefix
counted once when prefixes are shared), so little compute goes to padding while
the step still sees exactly its effective batch.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch

from tunesmith.training.examples import Example


def epoch_order(records: int, duplication: int, epoch: int, seed: int, batch_size: int) -> list[int]:
    rng = random.Random(f"{seed}:{epoch}")
    order: list[int] = []
    for _ in range(duplication):
        copy = list(range(records))
        rng.shuffle(copy)
        placed = len(order) % batch_size  # records already in the batch this copy continues
        if placed:
            open_batch = set(order[-placed:])
            head = [i for i in copy if i not in open_batch][: batch_size - placed]
            chosen = set(head)
            copy = head + [i for i in copy if i not in chosen]
        order.extend(copy)
    return order


def step_batches(records: int, duplication: int, batch_size: int, epoch: int, seed: int) -> list[list[int]]:
    """The record indices of each optimizer step of ``epoch``: ``TrainingPlan.steps_per_epoch``
    lists, the last one short when the batch does not divide the duplicated records."""
    order = epoch_order(records, duplication, epoch, seed, batch_size)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def padded_positions(examples: list[Example], group: list[int]) -> int:
    """Token positions a micro-batch of ``group`` computes, each record padded to the longest."""
    return max(len(examples[i]) for i in group) * len(group)


def micro_batches(
    indices: list[int], examples: list[Example], micro_batch_tokens: int,
    cost: Callable[[list[int]], int] | None = None,
) -> list[list[int]]:
    """``indices`` sorted longest first and cut into micro-batches whose ``cost`` (token
    positions computed; default :func:`padded_positions`) stays within ``micro_batch_tokens``."""
    cost = cost or (lambda group: padded_positions(examples, group))
    ordered = sorted(indices, key=lambda i: len(examples[i]), reverse=True)
    groups: list[list[int]] = []
    for index in ordered:
        if groups and cost([*groups[-1], index]) <= micro_batch_tokens:
            groups[-1].append(index)
            continue
        groups.append([index])
    return groups


def collate(examples: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded tensors: input_ids, attention_mask and targets (bool)."""
    width = max(len(e) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    targets = torch.zeros((len(examples), width), dtype=torch.bool)
    for row, example in enumerate(examples):
        n = len(example)
        ids[row, :n] = torch.tensor(example.input_ids)
        mask[row, :n] = 1
        targets[row, :n] = torch.tensor(example.targets)
    return {"input_ids": ids, "attention_mask": mask, "targets": targets}
