"""How a run turns a step's records into micro-batches and forward passes (part of ``TrainingRun``).

Three ways, chosen in ``TrainingRun.build_model``:

- packed (the CUDA default): a micro-batch's records in one row without padding
  (``packing.py``), with the attention kernel chosen by timing (``packed_attention.py``);
- shared prefixes (the CPU default): records padded to the longest, a prefix several of them
  begin with computed once (``shared_loss.py``);
- padded: records padded to the longest, length-grouped.

The micro-batches of a step are cut to the run's token budget (``memory.fit_micro_batch``)
by :func:`batches.micro_batches` with each way's cost; the estimate counts them the same way.
"""

from __future__ import annotations

import torch

from tunesmith.training import batches, distributed, packing
from tunesmith.training.checkpoints import capture_rng, restore_rng
from tunesmith.training.distributed import World
from tunesmith.training.packed_attention import BOUNDARY_IMPLEMENTATIONS, choose_packed_attention
from tunesmith.training.prefixes import prefix_groups
from tunesmith.training.shared_loss import computed_positions, micro_batch_pass


class MicroBatching:
    """``TrainingRun``'s micro-batches: needs ``train_data``, ``token_ids``, ``tokenizer``,
    ``placement``, ``model``, ``micro_batch``, ``packing``, ``share_prefixes``, ``attention``,
    ``plan`` and ``config`` on the run."""

    def _choose_packed_attention(self) -> tuple[str, dict[str, float | None]]:
        """The fastest packed-attention kernel on this device, timed on the run's first micro-batch
        (weights, gradients and RNG left as they were)."""
        first = batches.step_batches(len(self.train_data.examples), self.config.duplication,
                                     self.plan.effective_batch_size, 0, self.config.seed)[0]
        group = self.micro_batches_of(first)[0]
        rng = capture_rng()

        def step() -> None:
            with self.placement.autocast():
                loss, _, _ = self.micro_batch_forward(group)
            loss.backward()
            self.model.zero_grad(set_to_none=True)

        try:
            return choose_packed_attention(self.model, self.placement.device, self.placement.precision, step)
        finally:
            restore_rng(rng)

    def micro_batch_forward(self, group: list[int]) -> tuple[torch.Tensor, int, int]:
        """The summed target loss of one micro-batch (``group``: record indices), the token
        positions the decoder ran over, and those a shared prefix saved."""
        examples, device, pad = self.train_data.examples, self.placement.device, self.tokenizer.pad_token_id
        if self.packing:
            width = packing.packed_width(examples, group, self.micro_batch.tokens, static=False)
            row = packing.pack([examples[i] for i in group], pad, width).to(device)
            loss, _ = packing.packed_target_loss(self.model, row, self.attention in BOUNDARY_IMPLEMENTATIONS)
            return loss, row.width, 0
        return micro_batch_pass(self.model, examples, self.token_ids, group, pad, device, self.share_prefixes,
                                whole_model=self.config.shard)

    @property
    def batching(self) -> str:
        """How records share a micro-batch, in words (the estimate and the manifest say it)."""
        if self.packing:
            return f"packed into one row without padding ({self.attention} attention)"
        if self.share_prefixes:
            return "padded to the longest record, shared prefixes computed once"
        return "padded to the longest record, length-grouped"

    def computed_positions(self, group: list[int]) -> int:
        """Token positions :meth:`micro_batch_forward` computes for ``group`` (padding included)."""
        examples = self.train_data.examples
        if self.packing:
            return packing.packed_width(examples, group, self.micro_batch.tokens, static=False)
        if self.share_prefixes:
            return computed_positions(examples, prefix_groups(self.token_ids, group))
        return batches.padded_positions(examples, group)

    def _micro_batch_count(self, indices: list[int], rank: int) -> int:
        share = distributed.share(indices, self.train_data.examples, World(rank, self.world.size))
        return len(self.micro_batches_of(share))

    def micro_batches_of(self, indices: list[int]) -> list[list[int]]:
        """How this run packs ``indices`` into micro-batches (the estimate counts them the same way)."""
        examples = self.train_data.examples
        if self.packing:  # the records' own tokens: the bucket's tail padding is not counted against the budget
            cost = lambda group: sum(len(examples[i]) for i in group)  # noqa: E731
        elif self.share_prefixes:
            cost = lambda group: computed_positions(examples, prefix_groups(self.token_ids, group))  # noqa: E731
        else:
            cost = None
        return batches.micro_batches(indices, examples, self.micro_batch.tokens, cost)

